"""The test-run protocol's types and the request the runner sends (host side).

``CaseInput`` and ``HarnessLimits`` describe a request, ``CaseOutcome`` and
``HarnessRun`` its results; ``request_document`` builds the supervisor's stdin
document (sources and inputs, never expected values).  Frames coming back
are parsed by ``frames``; ``runner`` drives the sandbox command.  Imports
``modal_app.base`` and this package only (nothing of the sandbox side runs here).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from modal_app import harness
from modal_app.base import Language

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


Status = Literal["OK", "RUNTIME_ERROR", "TIMEOUT", "MEMORY_LIMIT"]
STATUSES: frozenset[str] = frozenset(get_args(Status))


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    index: int
    status: Status
    value_json: str | None
    """Function mode: the return value as JSON text (None unless OK)."""
    stdout: str
    """Program mode: the program's output; function mode: what the function printed."""
    stderr: str
    error: str | None
    """``Type: message`` of an exception, exit/signal description, or timeout note."""
    traceback: str | None
    signal: int | None
    duration_ms: int


def check_cases(cases: Sequence[CaseInput]) -> Mode:
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


def check_entrypoint(language: Language, entrypoint: str) -> None:
    """An identifier: it is spliced into the Go main and the JavaScript loader's trailer."""
    if language is Language.PYTHON:
        valid = entrypoint.isidentifier() and not keyword.iskeyword(entrypoint)
    elif language is Language.GO:
        valid = bool(_GO_IDENTIFIER.match(entrypoint))
    else:
        valid = bool(_JS_IDENTIFIER.match(entrypoint))
    if not valid:
        raise ValueError(f"{entrypoint!r} is not a valid {language.value} function name")


def request_document(
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
        "cases": [case_json(case) for case in cases],
    }


def case_json(case: CaseInput) -> dict[str, Any]:
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


DEFAULT_LIMITS = HarnessLimits()
"""The limits a run gets unless the caller passes its own (frozen: safe to share)."""
