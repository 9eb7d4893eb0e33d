"""The runner API: streaming, validation, limits, isolation of the result channel, speed."""

from __future__ import annotations

import json
import statistics
import time

import pytest

from modal_app.base import InvalidPath, Language, SandboxBackend
from modal_app.harness.protocol import CaseInput, CaseOutcome, HarnessLimits
from modal_app.harness.runner import run_harness
from tests.harness.conftest import Box

PY, JS = Language.PYTHON, Language.JAVASCRIPT


async def test_outcomes_stream_as_each_case_finishes(boxes: dict[Language, Box]) -> None:
    source = "import time\n\ndef solve(s):\n    time.sleep(s)\n    return s\n"
    seen: list[tuple[float, CaseOutcome]] = []

    async def on_outcome(outcome: CaseOutcome) -> None:
        seen.append((time.monotonic(), outcome))

    cases = [CaseInput(0, [0]), CaseInput(1, [0.8]), CaseInput(2, [0])]
    run = await boxes[PY].run(source, cases, on_outcome=on_outcome)
    finished = time.monotonic()
    assert [o for _, o in seen] == run.outcomes
    assert [o.index for _, o in seen] == [0, 1, 2]
    first_at = seen[0][0]
    assert finished - first_at >= 0.7  # case 0 was delivered before case 1 ran


async def test_nothing_is_written_into_the_workspace(boxes: dict[Language, Box]) -> None:
    box = boxes[JS]
    before = {e.path for e in await box.backend.list_files(box.id)}
    run = await box.run("function solve() { return 1; }", [CaseInput(0, [])])
    assert run.outcomes[0].status == "OK"
    after = {e.path for e in await box.backend.list_files(box.id)}
    assert after - before == {p for p in after - before if p.startswith("sol")}
    assert len(after - before) == 1  # the solution the test wrote, nothing of the harness


async def test_candidate_cannot_reach_the_supervisors_stdout(boxes: dict[Language, Box]) -> None:
    source = """
import os

def solve():
    attempts = {}
    parent = os.getppid()
    for what, mode in (("fd/1", "w"), ("fd/0", "r"), ("environ", "r"), ("mem", "r")):
        try:
            with open(f"/proc/{parent}/{what}", mode) as fh:
                if mode == "w":
                    fh.write("<<ILM:x>>{}\\n")
            attempts[what] = "opened"
        except OSError as exc:
            attempts[what] = type(exc).__name__
    return attempts
"""
    run = await boxes[PY].run(source, [CaseInput(0, [])])
    assert run.outcomes[0].status == "OK"
    attempts = json.loads(run.outcomes[0].value_json or "")
    assert attempts == dict.fromkeys(("fd/1", "fd/0", "environ", "mem"), "PermissionError")


async def test_killing_the_supervisor_is_a_harness_error(boxes: dict[Language, Box]) -> None:
    source = """
import os, signal

def solve(n):
    if n:
        os.kill(os.getppid(), signal.SIGKILL)
    return n
"""
    run = await boxes[PY].run(source, [CaseInput(0, [0]), CaseInput(1, [1]), CaseInput(2, [0])])
    assert run.harness_error is not None
    assert "stopped unexpectedly" in run.harness_error
    first, second, third = run.outcomes
    assert (first.status, first.value_json) == ("OK", "0")
    for outcome in (second, third):
        assert outcome.status == "RUNTIME_ERROR"
        assert outcome.error is not None
        assert outcome.error.startswith("not run: ")


async def test_total_time_limit_stops_the_run(boxes: dict[Language, Box]) -> None:
    source = "def solve():\n    while True:\n        pass\n"
    cases = [CaseInput(i, [], timeout_ms=5000) for i in range(3)]
    started = time.monotonic()
    run = await boxes[PY].run(source, cases, total_timeout_s=1.0)
    assert time.monotonic() - started < 4
    assert [o.status for o in run.outcomes] == ["TIMEOUT"] * 3
    assert run.outcomes[0].error == "the test run's time limit was reached"
    assert run.outcomes[2].error == "not run: the test run's time limit was reached"


async def test_printed_output_is_capped(boxes: dict[Language, Box]) -> None:
    source = "def solve():\n    print('x' * 5000)\n    return [0] * 100\n"
    limits = HarnessLimits(output_cap=1000, value_cap=100)
    run = await boxes[PY].run(source, [CaseInput(0, [])], limits=limits)
    outcome = run.outcomes[0]
    assert outcome.stdout.startswith("x" * 1000 + "\n[output truncated: 5001 bytes, limit 1000]")
    assert outcome.status == "RUNTIME_ERROR"  # the value is 201 bytes of JSON
    assert outcome.error == "the return value is larger than 100 bytes of JSON"


async def test_program_output_cap_is_separate(boxes: dict[Language, Box]) -> None:
    source = "print('y' * 3000)\n"
    limits = HarnessLimits(output_cap=100, program_output_cap=5000)
    run = await boxes[PY].run(source, [CaseInput(0, stdin="")], limits=limits)
    assert run.outcomes[0].stdout == "y" * 3000 + "\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cases": []}, "at least one case"),
        ({"cases": [CaseInput(0, [1]), CaseInput(0, [2])]}, "duplicate case index 0"),
        ({"cases": [CaseInput(0, [1]), CaseInput(1, stdin="")]}, "all be function mode"),
        ({"cases": [CaseInput(0, [1], stdin="x")]}, "exactly one of args and stdin"),
        ({"cases": [CaseInput(0, {"a": 1})]}, "args must be a list"),  # type: ignore[arg-type]
        ({"cases": [CaseInput(0, [1], timeout_ms=0)]}, "positive integer"),
        ({"entrypoint": "solve; import os"}, "not a valid PYTHON function name"),
        ({"entrypoint": "class"}, "not a valid PYTHON function name"),
        ({"total_timeout_s": 0}, "must be positive"),
    ],
)
async def test_malformed_requests_are_refused_before_anything_runs(
    harness_backend: SandboxBackend, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "language": PY,
        "entrypoint": "solve",
        "solution_path": "solution.py",
        "cases": [CaseInput(0, [1])],
        "total_timeout_s": 10,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        await run_harness(harness_backend, "sb-does-not-exist", **arguments)  # type: ignore[arg-type]


async def test_solution_path_outside_the_workspace_is_refused(
    harness_backend: SandboxBackend,
) -> None:
    with pytest.raises(InvalidPath):
        await run_harness(
            harness_backend,
            "sb-does-not-exist",
            language=PY,
            entrypoint="solve",
            solution_path="/etc/passwd",
            cases=[CaseInput(0, [])],
            total_timeout_s=10,
        )


async def test_twenty_python_cases_are_fast(boxes: dict[Language, Box]) -> None:
    """The issue's target is 300 ms (median); the bound here leaves room for a loaded CI box."""
    box = boxes[PY]
    path = await box.write("def solve(a, b):\n    return a + b\n")
    cases = [CaseInput(i, [i, i]) for i in range(20)]
    timings = []
    for _ in range(5):
        started = time.monotonic()
        run = await run_harness(
            box.backend,
            box.id,
            language=PY,
            entrypoint="solve",
            solution_path=path,
            cases=cases,
            total_timeout_s=30,
        )
        timings.append(time.monotonic() - started)
        assert [o.value_json for o in run.outcomes] == [str(2 * i) for i in range(20)]
    assert statistics.median(timings) < 1.0, timings


async def test_supervisor_compiles_its_source_when_the_bytecode_does_not_fit(
    boxes: dict[Language, Box], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytecode shipped with the harness is for the server's Python; Modal's may differ."""
    from modal_app import harness

    monkeypatch.setattr(harness, "compiled_modules", lambda: {"tag": "other-999", "code": []})
    run = await boxes[PY].run("def solve(n):\n    return n * 2\n", [CaseInput(0, [21])])
    assert [(o.status, o.value_json) for o in run.outcomes] == [("OK", "42")]


class _Recording:
    """A backend wrapper that records what each exec is sent on stdin, and when."""

    def __init__(self, inner: SandboxBackend) -> None:
        self.inner = inner
        self.writes: list[tuple[float, bytes]] = []
        self.private: list[bool] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def exec(self, *args: object, **kwargs: object) -> object:
        self.private.append(bool(kwargs.get("private")))
        handle = await self.inner.exec(*args, **kwargs)  # type: ignore[arg-type]
        writes = self.writes
        write = handle.write_stdin

        async def recorded(data: bytes) -> None:
            writes.append((time.monotonic(), data))
            await write(data)

        handle.write_stdin = recorded  # type: ignore[method-assign]
        return handle


@pytest.mark.parametrize("language", [PY, Language.GO])
async def test_hidden_inputs_enter_only_after_every_visible_case(
    boxes: dict[Language, Box], language: Language
) -> None:
    """Hidden cases run last, in a private command, and their inputs are sent only
    when every visible case is reported: no visible output can carry one."""
    box = boxes[language]
    source = (
        "def solve(s):\n    return s\n"
        if language is PY
        else "package main\n\nfunc Solve(s string) string { return s }\n"
    )
    path = await box.write(source)
    recording = _Recording(box.backend)
    reported: list[tuple[float, CaseOutcome]] = []

    async def on_outcome(outcome: CaseOutcome) -> None:
        reported.append((time.monotonic(), outcome))

    cases = [
        CaseInput(0, ["visible-0"]),
        CaseInput(1, ["SECRET-1"], hidden=True),
        CaseInput(2, ["visible-2"]),
    ]
    run = await run_harness(
        recording,  # type: ignore[arg-type]
        box.id,
        language=language,
        entrypoint="solve" if language is PY else "Solve",
        solution_path=path,
        cases=cases,
        on_outcome=on_outcome,
        total_timeout_s=60,
    )
    assert [o.value_json for o in run.outcomes] == ['"visible-0"', '"SECRET-1"', '"visible-2"']
    assert [o.index for _, o in reported] == [0, 2, 1]  # hidden last
    assert recording.private[-1] is True
    assert all(not p for p in recording.private[:-1])  # the Go build: no case input there
    secret_writes = [(at, data) for at, data in recording.writes if b"SECRET-1" in data]
    assert len(secret_writes) == 1
    sent_at, data = secret_writes[0]
    assert b"visible" not in data
    assert sent_at > max(at for at, o in reported if o.index != 1)
