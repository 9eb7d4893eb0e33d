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
import contextlib
import json
import keyword
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modal_app import harness
from modal_app.base import ExecHandle, ExitStatus, Language, OutputChunk, SandboxBackend
from modal_app.harness.build import python_worker_config
from modal_app.harness.protocol import (
    CaseOutcome,
    FrameState,
    Status,
    consume,
    fill_missing,
    stopped,
)
from modal_app.paths import normalize_workspace_path, workspace_abspath

Mode = Literal["function", "program"]

KIB = 1024
MIB = 1024 * 1024
_JS_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_GO_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORKERS: dict[Language, tuple[str, ...]] = {
    Language.PYTHON: (harness.PYTHON_WORKER,),
    Language.JAVASCRIPT: (harness.NODE_WORKER,),
    Language.TYPESCRIPT: (harness.NODE_WORKER,),
    Language.GO: (harness.GO_MAIN,),
}


@dataclass(frozen=True, slots=True)
class CaseInput:
    """One case's input: ``args`` (function mode) or ``stdin`` (program mode)."""

    index: int
    args: Sequence[Any] | None = None
    """The positional arguments, JSON values."""
    stdin: str | None = None
    timeout_ms: int = 2000
    hidden: bool = False
    """Hidden cases run after all visible ones (see the module doc)."""


@dataclass(frozen=True, slots=True)
class HarnessRun:
    compile_error: str | None
    """Compiler output (TS type errors, Go build errors, Python/JS syntax errors,
    a missing entry point); when set, ``outcomes`` is empty."""
    outcomes: list[CaseOutcome]
    """One per input case, in input order (unless ``compile_error``)."""
    harness_error: str | None = None
    """The harness itself failed or was stopped; cases it did not report are
    filled in (TIMEOUT if the run's time limit was reached, else RUNTIME_ERROR).
    For the server's log: it may hold what the sandbox wrote to stderr."""
    timed_out: bool = False
    """The run's time limit was reached (the command was killed)."""
    compile_ms: int = 0
    total_ms: int = 0


@dataclass(frozen=True, slots=True)
class HarnessLimits:
    output_cap: int = 64 * KIB
    """Per case: what a function printed (function mode)."""
    program_output_cap: int = 1 * MIB
    """Per case: a program's stdout (program mode; it is the answer)."""
    stderr_cap: int = 64 * KIB
    value_cap: int = 1 * MIB
    """Per case: the return value's JSON; larger is a RUNTIME_ERROR."""
    compile_output_cap: int = 64 * KIB
    compile_timeout_s: float = 60.0
    load_timeout_s: float = 10.0
    """Loading (importing) the solution in a worker, before the first case."""
    exec_grace_s: float = 5.0
    """The sandbox command is killed this long after ``total_timeout_s``."""


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
    limits: HarnessLimits = HarnessLimits(),
) -> HarnessRun:
    """Run ``cases`` against the solution in the sandbox; stream each outcome to ``on_outcome``.

    All cases must be of one mode: every case has ``args`` (function mode:
    ``entrypoint`` is called) or every case has ``stdin`` (program mode:
    the solution runs as a program).  Raises ValueError for a malformed
    request and the backend's SandboxError if the command cannot start.
    """
    mode = _mode(cases)
    # Visible cases first: once a hidden input is in the sandbox, nothing the
    # candidate sees may be produced (sorted() is stable: order is kept within each).
    visible = [case for case in cases if not case.hidden]
    hidden = [case for case in cases if case.hidden]
    if mode == "function":
        _check_entrypoint(language, entrypoint)
    if not total_timeout_s > 0:
        raise ValueError("total_timeout_s must be positive")
    solution = workspace_abspath(normalize_workspace_path(solution_path))
    nonce = secrets.token_hex(16)
    document = _document(
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
    hidden_line = json.dumps([_case_json(case) for case in hidden]).encode() + b"\n"
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
        with contextlib.suppress(Exception):
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
        except Exception:
            with contextlib.suppress(Exception):
                await handle.kill()

    task = asyncio.create_task(finish())
    _FINISHING.add(task)
    task.add_done_callback(_FINISHING.discard)


def _mode(cases: Sequence[CaseInput]) -> Mode:
    if not cases:
        raise ValueError("a test run needs at least one case")
    seen: set[int] = set()
    modes: set[Mode] = set()
    for case in cases:
        if case.index in seen:
            raise ValueError(f"duplicate case index {case.index}")
        seen.add(case.index)
        if (case.args is None) == (case.stdin is None):
            raise ValueError(f"case {case.index} must have exactly one of args and stdin")
        if case.args is not None and not isinstance(case.args, list | tuple):
            raise ValueError(f"case {case.index}: args must be a list of JSON values")
        if not isinstance(case.timeout_ms, int) or case.timeout_ms <= 0:
            raise ValueError(f"case {case.index}: timeout_ms must be a positive integer")
        modes.add("function" if case.args is not None else "program")
    if len(modes) > 1:
        raise ValueError("a test run's cases must all be function mode or all program mode")
    return modes.pop()


def _check_entrypoint(language: Language, entrypoint: str) -> None:
    """An identifier: it is spliced into the Go main and the JavaScript loader's trailer."""
    if language is Language.PYTHON:
        valid = entrypoint.isidentifier() and not keyword.iskeyword(entrypoint)
    elif language is Language.GO:
        valid = bool(_GO_IDENTIFIER.match(entrypoint))
    else:
        valid = bool(_JS_IDENTIFIER.match(entrypoint))
    if not valid:
        raise ValueError(f"{entrypoint!r} is not a valid {language.value} function name")


def _document(
    *,
    language: Language,
    mode: Mode,
    entrypoint: str,
    solution: str,
    cases: Sequence[CaseInput],
    nonce: str,
    budget_s: float,
    limits: HarnessLimits,
) -> dict[str, Any]:
    """The stdin document of the supervisor: sources and inputs, never expected values."""
    return {
        "modules": harness.supervisor_modules(),
        "compiled": harness.compiled_modules(),
        "files": {name: harness.source(name) for name in _WORKERS[language]},
        "nonce": nonce,
        "language": language.value,
        "mode": mode,
        "entrypoint": entrypoint,
        "solution": solution,
        "budget_s": budget_s,
        "caps": _caps(limits, mode),
        "compile_timeout_s": limits.compile_timeout_s,
        "load_timeout_s": limits.load_timeout_s,
        "cases": [_case_json(case) for case in cases],
    }


def _case_json(case: CaseInput) -> dict[str, Any]:
    return {
        "index": case.index,
        "args": list(case.args) if case.args is not None else None,
        "stdin": case.stdin,
        "timeout_ms": case.timeout_ms,
    }


def _caps(limits: HarnessLimits, mode: Mode) -> dict[str, int]:
    return {
        "stdout": limits.output_cap if mode == "function" else limits.program_output_cap,
        "stderr": limits.stderr_cap,
        "value": limits.value_cap,
        "compile": limits.compile_output_cap,
    }


__all__ = [
    "CaseInput",
    "CaseOutcome",
    "HarnessLimits",
    "HarnessRun",
    "Status",
    "run_harness",
]
