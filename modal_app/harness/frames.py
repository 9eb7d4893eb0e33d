"""Frame parsing, the runner's side of the harness protocol: frames in, typed outcomes out.

Only lines ``<<ILM:{nonce}>>{json}`` on the supervisor's stdout count (see
``modal_app.harness``); one outcome per requested case index is accepted.
Texts are made storable (lone surrogates replaced), and cases the harness
did not report are filled in with fixed text: what the sandbox wrote to
stderr goes to ``harness_error`` (for the server's log) only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from modal_app import harness
from modal_app.base import ExitStatus, OutputChunk
from modal_app.harness.protocol import STATUSES, CaseOutcome, Status

_MAX_FRAME_BYTES = 64 * 1024 * 1024
_STDERR_TAIL = 8 * 1024


@dataclass
class FrameState:
    wanted: dict[int, object]
    outcomes: dict[int, CaseOutcome] = field(default_factory=dict)
    compile_error: str | None = None
    harness_error: str | None = None
    done: bool = False
    compile_ms: int = 0
    hidden_wanted: bool = False
    hidden_sent: bool = False
    artifact: dict[str, Any] | None = None


def stopped(status: ExitStatus, stderr: bytes, total_timeout_s: float) -> str:
    """Why the harness ended without finishing."""
    if status.timed_out:
        return f"the test run exceeded its time limit of {total_timeout_s:g} s"
    if status.signal is not None:
        how = f"killed by signal {status.signal}"
    else:
        how = f"exit status {status.exit_code}"
    tail = stderr.decode("utf-8", "replace").strip()
    return f"the test harness stopped unexpectedly ({how})" + (f": {tail}" if tail else "")


async def consume(
    output: AsyncIterator[OutputChunk],
    state: FrameState,
    nonce: str,
    on_outcome: Callable[[CaseOutcome], Awaitable[None]] | None,
    stderr: bytearray,
    *,
    send_hidden: Callable[[], Awaitable[None]],
) -> None:
    """Act on every valid frame until the done frame or the end of the output.

    Keeps the tail of stderr (the supervisor's own; candidate output never
    reaches it) for the error message of a harness that died.
    """
    prefix = f"{harness.FRAME_PREFIX}{nonce}>>".encode()
    pending = bytearray()
    async for chunk in output:
        if chunk.stream == "stderr":
            stderr += chunk.data
            del stderr[:-_STDERR_TAIL]
            continue
        # Search only the new bytes: a large frame (a Go binary) arrives in
        # many chunks, and rescanning it from the start each time is quadratic.
        scan_from = len(pending)
        pending += chunk.data
        while (end := pending.find(b"\n", scan_from)) >= 0:
            line = bytes(pending[:end])
            del pending[: end + 1]
            scan_from = 0
            if line.startswith(prefix):
                outcome = apply(state, line[len(prefix) :])
                if state.hidden_wanted:
                    state.hidden_wanted = False
                    await send_hidden()
                if outcome is not None and on_outcome is not None:
                    await on_outcome(outcome)
                if state.done:
                    return
        if len(pending) > _MAX_FRAME_BYTES:
            pending.clear()


def apply(state: FrameState, payload: bytes) -> CaseOutcome | None:
    """Record one frame; the new outcome if it was a case frame."""
    try:
        frame = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(frame, dict):
        return None
    kind = frame.get("t")
    if kind == "case":
        outcome = outcome_of(frame)
        if outcome is None or outcome.index not in state.wanted or outcome.index in state.outcomes:
            return None
        state.outcomes[outcome.index] = outcome
        return outcome
    if kind == "artifact":
        state.artifact = {"binary": frame.get("binary"), "rewrites": frame.get("rewrites") or []}
    elif kind == "hidden":
        # Once: every visible case is reported, the hidden ones may enter.
        state.hidden_wanted = not state.hidden_sent
        state.hidden_sent = True
    elif kind == "compile_error":
        state.compile_error = str(frame.get("message") or "compilation failed")
    elif kind == "done":
        state.done = True
        compile_ms = frame.get("compile_ms")
        state.compile_ms = compile_ms if isinstance(compile_ms, int) else 0
    elif kind == "harness_error":
        state.harness_error = f"the test harness failed: {frame.get('message')}"
    return None


def outcome_of(frame: dict[str, Any]) -> CaseOutcome | None:
    index, status = frame.get("index"), frame.get("status")
    if not isinstance(index, int) or status not in STATUSES:
        return None

    def text(key: str) -> str | None:
        value = frame.get(key)
        if not isinstance(value, str):
            return None
        # Lone surrogates (JSON allows them) cannot be stored or sent as UTF-8.
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")

    sig, duration = frame.get("signal"), frame.get("duration_ms")
    return CaseOutcome(
        index=index,
        status=status,
        value_json=text("value") if status == "OK" else None,
        stdout=text("stdout") or "",
        stderr=text("stderr") or "",
        error=text("error"),
        traceback=text("traceback"),
        signal=sig if isinstance(sig, int) else None,
        duration_ms=duration if isinstance(duration, int) else 0,
    )


async def fill_missing(
    state: FrameState,
    *,
    timed_out: bool,
    on_outcome: Callable[[CaseOutcome], Awaitable[None]] | None,
) -> None:
    # Fixed text: harness_error may quote the sandbox's stderr.
    if timed_out:
        reason = "the test run's time limit was reached"
    else:
        reason = "the test harness stopped before reporting it"
    status: Status = "TIMEOUT" if timed_out else "RUNTIME_ERROR"
    for index in state.wanted:
        if index in state.outcomes:
            continue
        outcome = CaseOutcome(
            index=index,
            status=status,
            value_json=None,
            stdout="",
            stderr="",
            error=f"not run: {reason}",
            traceback=None,
            signal=None,
            duration_ms=0,
        )
        state.outcomes[index] = outcome
        if on_outcome is not None:
            await on_outcome(outcome)
