"""Test-run harness benchmark: a 20-case run per language, against one process per case.

Every measurement is from ``run_harness`` being called to its return (every
result in hand), in a local bubblewrap sandbox per language, on a warm
sandbox (the first run, which warms Go's build cache, is not counted).  Runs
are 200 ms apart (all variants alike), so one run's sandbox teardown does not
land in the next one's measurement.

Baselines for Python, same 20 cases and solution:

* ``exec per case``: one sandbox command per case (``python3 -c`` importing
  the solution and printing the JSON result), the naive runner.
* ``process per case``: one sandbox command running a fresh ``python3`` per
  case in a shell loop (what a harness without a long-lived worker costs).

    .venv/bin/python bench/testrun_harness.py [--runs 7] [--toolchain DIR]

``--toolchain`` is a directory holding ``node_modules/typescript`` (default:
the repository's ``toolchain/``); without one TypeScript is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from modal_app.base import Language, SandboxBackend, SandboxSpec, run
from modal_app.harness.protocol import CaseInput
from modal_app.harness.runner import run_harness
from modal_app.local.backend import LocalSandboxBackend

REPO = Path(__file__).resolve().parents[1]
CASES = 20
PAUSE_S = 0.2
SOLUTIONS = {
    Language.PYTHON: ("solution.py", "solve", "def solve(a, b):\n    return [a + b, str(a)]\n"),
    Language.JAVASCRIPT: (
        "solution.js",
        "solve",
        "function solve(a, b) {\n  return [a + b, String(a)];\n}\n",
    ),
    Language.TYPESCRIPT: (
        "solution.ts",
        "solve",
        "function solve(a: number, b: number): [number, string] {\n"
        "  return [a + b, String(a)];\n}\n",
    ),
    Language.GO: (
        "solution.go",
        "Solve",
        'package main\n\nimport "strconv"\n\n'
        "func Solve(a, b int) []interface{} {\n\treturn []interface{}{a + b, strconv.Itoa(a)}\n}\n",
    ),
}


async def timed(runs: int, once: Callable[[], Awaitable[None]]) -> list[float]:
    await once()  # warm-up (Go's build cache, page cache)
    timings = []
    for _ in range(runs):
        # run_harness returns at the last result and the sandbox command exits
        # just after: let that teardown finish outside the next measurement.
        await asyncio.sleep(PAUSE_S)
        started = time.perf_counter()
        await once()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def report(name: str, timings: list[float]) -> float:
    median = statistics.median(timings)
    print(
        f"  {name:<28} median {median:7.1f} ms   min {min(timings):7.1f}   max {max(timings):7.1f}"
    )
    return median


async def bench_language(backend: SandboxBackend, language: Language, runs: int) -> float:
    info = await backend.create(SandboxSpec(language=language))
    path, entry, source = SOLUTIONS[language]
    await backend.write_file(info.id, path, source.encode())
    cases = [CaseInput(i, [i, i + 1]) for i in range(CASES)]
    compile_ms: list[int] = []

    async def once() -> None:
        result = await run_harness(
            backend,
            info.id,
            language=language,
            entrypoint=entry,
            solution_path=path,
            cases=cases,
            total_timeout_s=120,
        )
        assert result.compile_error is None, result.compile_error
        assert [o.status for o in result.outcomes] == ["OK"] * CASES, result.outcomes
        compile_ms.append(result.compile_ms)

    try:
        median = report(f"{language.value} harness", await timed(runs, once))
        if any(compile_ms):
            print(f"  {'':<28} (compile step median {statistics.median(compile_ms):.0f} ms)")
        return median
    finally:
        await backend.terminate(info.id)


async def bench_python_baselines(backend: SandboxBackend, runs: int) -> tuple[float, float]:
    info = await backend.create(SandboxSpec(language=Language.PYTHON))
    path, _, source = SOLUTIONS[Language.PYTHON]
    await backend.write_file(info.id, path, source.encode())
    program = (
        "import json,sys; sys.path.insert(0, '/workspace'); from solution import solve; "
        "print(json.dumps(solve(*json.loads(sys.argv[1]))))"
    )
    args = [json.dumps([i, i + 1]) for i in range(CASES)]

    async def exec_per_case() -> None:
        for arg in args:
            result = await run(backend, info.id, ["python3", "-c", program, arg], timeout_s=30)
            assert result.exit_code == 0, result.stderr

    loop = "; ".join(f"python3 -c {shlex.quote(program)} {shlex.quote(a)}" for a in args)

    async def process_per_case() -> None:
        result = await run(backend, info.id, loop, timeout_s=60)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.count(b"\n") == CASES

    try:
        exec_median = report("PYTHON exec per case", await timed(runs, exec_per_case))
        proc_median = report("PYTHON process per case", await timed(runs, process_per_case))
        return exec_median, proc_median
    finally:
        await backend.terminate(info.id)


def make_root() -> Path:
    top = Path(tempfile.mkdtemp(prefix="ilm-bench-harness-"))
    top.chmod(0o711)  # the sandbox uids must traverse it
    return top


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--toolchain", type=Path, default=REPO / "toolchain")
    options = parser.parse_args()
    toolchain = options.toolchain
    has_ts = (toolchain / "node_modules" / "typescript" / "lib" / "typescript.js").is_file()
    top = make_root()
    backend = LocalSandboxBackend(top / "sandboxes", toolchain_dir=toolchain if has_ts else None)
    await backend.start()
    try:
        print(f"{CASES}-case runs, {options.runs} measured runs each (after one warm-up):")
        medians = {}
        for language in Language:
            if language is Language.TYPESCRIPT and not has_ts:
                print("  TYPESCRIPT skipped: no toolchain with node_modules/typescript")
                continue
            medians[language] = await bench_language(backend, language, options.runs)
        exec_median, proc_median = await bench_python_baselines(backend, options.runs)
        python = medians[Language.PYTHON]
        print(
            f"Python harness vs exec per case: {exec_median / python:.1f}x faster; "
            f"vs process per case: {proc_median / python:.1f}x faster"
        )
    finally:
        await backend.aclose()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
