"""Test runs inside a sandbox: ship the harness and the case inputs, stream typed outcomes.

``run_harness`` starts one command in the sandbox (the harness supervisor,
see ``modal_app.harness`` for the process, framing and isolation design),
writes the harness sources and the case *inputs* to its stdin, and turns the
framed lines of its stdout into ``CaseOutcome`` values as they arrive.  It
never sees expected values and judges nothing: comparing ``value_json`` or
``stdout`` with the expected result is the server's job.

Outcomes hold raw candidate output and error text.  For hidden cases the
server must not show them to the candidate as they are: the printed output,
the error and the traceback can all contain the case's inputs.

Hidden inputs stay in the run (issue 9):

* the command is a ``private`` exec: candidate code sees a read-only
  snapshot of the workspace, a fresh home and /tmp, nothing it writes
  outlives the run, and nothing is shared with the candidate's terminals;
* hidden cases run after every visible case, so nothing a later visible
  case prints can carry a hidden input stashed in memory or in /tmp;
* what the run reports about itself (``harness_error`` aside, which is for
  the server's log only) is fixed text, never candidate-influenced output;
* Go is built first in an ordinary command (no case input exists there), so
  the sandbox's build cache stays warm; the private run gets the binary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from modal_app import harness
from modal_app.base import ExecHandle, ExitStatus, Language, OutputChunk, SandboxBackend
from modal_app.harness.build import python_worker_config
from modal_app.harness.frames import FrameState, consume, fill_missing, stopped
from modal_app.harness.protocol import (
    DEFAULT_LIMITS,
    CaseInput,
    CaseOutcome,
    HarnessLimits,
    HarnessRun,
    case_json,
    check_cases,
    check_entrypoint,
    request_document,
)
from modal_app.logged import suppressed
from modal_app.paths import normalize_workspace_path, workspace_abspath

_log = logging.getLogger(__name__)


async def run_harness(
    backend: SandboxBackend,
    sandbox_id: str,
    *,
    language: Language,
    entrypoint: str,
    solution_path: str,
    cases: Sequence[CaseInput],
    on_outcome: Callable[[CaseOutcome], Awaitable[None]] | None = None,
    total_timeout_s: float,
    limits: HarnessLimits = DEFAULT_LIMITS,
) -> HarnessRun:
    """Run ``cases`` against the solution in the sandbox; stream each outcome to ``on_outcome``.

    All cases must be of one mode: every case has ``args`` (function mode:
    ``entrypoint`` is called) or every case has ``stdin`` (program mode:
    the solution runs as a program).  Raises ValueError for a malformed
    request and the backend's SandboxError if the command cannot start.
    """
    mode = check_cases(cases)
    # Visible cases first: once a hidden input is in the sandbox, nothing the
    # candidate sees may be produced (sorted() is stable: order is kept within each).
    visible = [case for case in cases if not case.hidden]
    hidden = [case for case in cases if case.hidden]
    if mode == "function":
        check_entrypoint(language, entrypoint)
    if not total_timeout_s > 0:
        raise ValueError("total_timeout_s must be positive")
    solution = workspace_abspath(normalize_workspace_path(solution_path))
    nonce = secrets.token_hex(16)
    document = request_document(
        language=language,
        mode=mode,
        entrypoint=entrypoint,
        solution=solution,
        cases=visible,
        nonce=nonce,
        budget_s=total_timeout_s,
        limits=limits,
    )
    document["hidden_count"] = len(hidden)
    hidden_line = json.dumps([case_json(case) for case in hidden]).encode() + b"\n"
    state = FrameState(wanted={case.index: case for case in cases})
    started = time.monotonic()
    command = ["python3", "-I", "-S", "-c", harness.BOOTSTRAP]
    status: ExitStatus | None = None
    if language is Language.GO:
        status = await _build_go(backend, sandbox_id, command, document, state, limits=limits)
        document["budget_s"] = max(0.001, total_timeout_s - (time.monotonic() - started))
    if language is Language.PYTHON:
        # The bootstrap starts the worker before it reads the document.
        config = python_worker_config(solution, entrypoint, mode)
        command += [harness.source(harness.PYTHON_WORKER), config]
    if state.compile_error is None and state.harness_error is None:
        status = await _supervise(
            backend,
            sandbox_id,
            command,
            document,
            state,
            on_outcome=on_outcome,
            hidden_line=hidden_line if hidden else None,
            private=True,
            timeout_s=float(document["budget_s"]) + limits.exec_grace_s,
        )
    timed_out = status is not None and status.timed_out
    if state.compile_error is None:
        await fill_missing(state, timed_out=timed_out, on_outcome=on_outcome)
    return HarnessRun(
        compile_error=state.compile_error,
        outcomes=[] if state.compile_error else [state.outcomes[case.index] for case in cases],
        harness_error=state.harness_error,
        compile_ms=state.compile_ms,
        total_ms=int((time.monotonic() - started) * 1000),
        timed_out=timed_out,
    )


async def _build_go(
    backend: SandboxBackend,
    sandbox_id: str,
    command: list[str],
    document: dict[str, Any],
    state: FrameState,
    *,
    limits: HarnessLimits,
) -> ExitStatus | None:
    """Go: ``go build`` in an ordinary command first, so the sandbox's build cache is
    used and kept warm (a private run could not write it); the binary goes into
    the run's document.  No case input exists in this command."""
    build = FrameState(wanted={})
    status = await _supervise(
        backend,
        sandbox_id,
        command,
        document | {"phase": "build", "cases": [], "hidden_count": 0},
        build,
        on_outcome=None,
        hidden_line=None,
        private=False,
        timeout_s=float(document["budget_s"]) + limits.exec_grace_s,
    )
    state.compile_error, state.compile_ms = build.compile_error, build.compile_ms
    if build.artifact is not None:
        document["artifact"] = build.artifact
    elif build.compile_error is None:
        state.harness_error = build.harness_error or "the Go build reported no binary"
    return status


async def _supervise(
    backend: SandboxBackend,
    sandbox_id: str,
    command: list[str],
    document: dict[str, Any],
    state: FrameState,
    *,
    on_outcome: Callable[[CaseOutcome], Awaitable[None]] | None,
    hidden_line: bytes | None,
    private: bool,
    timeout_s: float,
) -> ExitStatus | None:
    """One supervisor command: document in, frames out; its status if it was waited for."""
    handle = await backend.exec(sandbox_id, command, timeout_s=timeout_s, private=private)
    output = aiter(handle.output())
    stderr = bytearray()
    try:
        await handle.write_stdin(json.dumps(document).encode() + b"\n")
        if hidden_line is None:
            await handle.close_stdin()

        async def send_hidden() -> None:
            if hidden_line is not None:
                await handle.write_stdin(hidden_line)
            await handle.close_stdin()

        await consume(
            output, state, str(document["nonce"]), on_outcome, stderr, send_hidden=send_hidden
        )
        status = None if state.done else await handle.wait()
    except BaseException:
        with suppressed(
            _log,
            "killing a test-run command after an error",
            safe_because="the error is raised; the command's own timeout ends it anyway",
        ):
            await handle.kill()
        raise
    if status is None:
        # Every result is in; the supervisor is exiting.  Reap it without making
        # the caller wait for the sandbox's teardown.
        _finish_in_background(handle, output)
    elif state.harness_error is None:
        state.harness_error = stopped(status, bytes(stderr), timeout_s)
    return status


_FINISHING: set[asyncio.Task[None]] = set()


def _finish_in_background(handle: ExecHandle, output: AsyncIterator[OutputChunk]) -> None:
    async def finish() -> None:
        try:
            async with asyncio.timeout(10):
                async for _ in output:
                    pass
                await handle.wait()
        except Exception as exc:
            _log.warning("a test-run command that reported everything did not end: %r", exc)
            with suppressed(
                _log,
                "killing a finished test-run command",
                safe_because="its results are in; its timeout ends it anyway",
            ):
                await handle.kill()

    task = asyncio.create_task(finish())
    _FINISHING.add(task)
    task.add_done_callback(_FINISHING.discard)
