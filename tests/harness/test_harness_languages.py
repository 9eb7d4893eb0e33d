"""Language specifics: Go argument decoding and results, entry points in JS/TS, Python loading."""

from __future__ import annotations

import json

import pytest

from modal_app.base import Language
from modal_app.harness.protocol import CaseInput
from modal_app.harness.runner import run_harness
from tests.harness.conftest import Box, toolchain_dir

PY, JS, TS, GO = Language.PYTHON, Language.JAVASCRIPT, Language.TYPESCRIPT, Language.GO


@pytest.fixture
def ts(boxes: dict[Language, Box]) -> Box:
    if toolchain_dir() is None:
        pytest.skip("no TypeScript toolchain (scripts/setup, or INTERVIEWLM_TOOLCHAIN_DIR)")
    return boxes[TS]


# -- Go ------------------------------------------------------------------------------

GO_DECODE = """package main

func Decode(
	xs []int, s string, m map[string]int, grid [][]int, f float64, b bool,
) map[string]interface{} {
	sum := 0
	for _, x := range xs {
		sum += x
	}
	weights := 0
	for _, v := range m {
		weights += v
	}
	cells := 0
	for _, row := range grid {
		cells += len(row)
	}
	var none []string
	var noMap map[string]int
	return map[string]interface{}{
		"sum": sum, "s": s + "|", "weights": weights, "cells": cells, "rows": len(grid),
		"f": f * 2, "b": !b, "none": none, "noMap": noMap, "grid": grid,
	}
}
"""


async def test_go_decodes_arguments_into_parameter_types(boxes: dict[Language, Box]) -> None:
    cases = [
        CaseInput(0, [[1, 2, 3], "héllo ✓", {"a": 1, "b": 2}, [[1, 2], [3], []], 0.25, True]),
        CaseInput(1, [None, "", {}, [], -1.5e10, False]),
    ]
    run = await boxes[GO].run(GO_DECODE, cases, entry="Decode")
    assert run.compile_error is None
    first, second = (json.loads(o.value_json or "") for o in run.outcomes)
    assert first == {
        "sum": 6,
        "s": "héllo ✓|",
        "weights": 3,
        "cells": 3,
        "rows": 3,
        "f": 0.5,
        "b": False,
        "none": [],  # nil slices and maps encode as [] and {}, not null
        "noMap": {},
        "grid": [[1, 2], [3], []],
    }
    assert second["sum"] == 0
    assert second["f"] == -3e10
    assert second["grid"] == []
    assert second["b"] is True


GO_RESULTS = """package main

import "errors"

func Divide(a, b int) (int, error) {
	if b == 0 {
		return 0, errors.New("division by zero")
	}
	return a / b, nil
}
"""


async def test_go_error_results_and_bad_arguments(boxes: dict[Language, Box]) -> None:
    cases = [
        CaseInput(0, [7, 2]),
        CaseInput(1, [1, 0]),
        CaseInput(2, [1]),
        CaseInput(3, ["x", 1]),
        CaseInput(4, [9, 3]),
    ]
    run = await boxes[GO].run(GO_RESULTS, cases, entry="Divide")
    ok, error, few, bad, after = run.outcomes
    assert (ok.status, ok.value_json) == ("OK", "3")
    assert (error.status, error.error) == ("RUNTIME_ERROR", "error: division by zero")
    assert few.status == "RUNTIME_ERROR"
    assert few.error == "Divide takes 2 arguments, the test case gives 1"
    assert bad.status == "RUNTIME_ERROR"
    assert bad.error is not None
    assert bad.error.startswith('argument 1: cannot decode "x" into int')
    assert (after.status, after.value_json) == ("OK", "3")


async def test_go_multiple_results_and_runtime_panics(boxes: dict[Language, Box]) -> None:
    source = """package main

func Pick(xs []int, i int) (int, string) {
	return xs[i], "picked"
}
"""
    run = await boxes[GO].run(
        source, [CaseInput(0, [[4, 5], 1]), CaseInput(1, [[4], 3])], entry="Pick"
    )
    ok, panicked = run.outcomes
    assert (ok.status, ok.value_json) == ("OK", '[5,"picked"]')
    assert panicked.status == "RUNTIME_ERROR"
    assert panicked.error == "panic: runtime error: index out of range [3] with length 1"


async def test_go_function_mode_must_not_define_main(boxes: dict[Language, Box]) -> None:
    source = "package main\n\nfunc main() {}\n\nfunc Solve() int { return 1 }\n"
    run = await boxes[GO].run(source, [CaseInput(0, [])], entry="Solve")
    assert run.compile_error is not None
    assert "main redeclared" in run.compile_error
    assert "must not define func main" in run.compile_error


async def test_go_program_without_main_is_a_compile_error(boxes: dict[Language, Box]) -> None:
    source = "package main\n\nfunc Solve() int { return 1 }\n"
    run = await boxes[GO].run(source, [CaseInput(0, stdin="")])
    assert run.compile_error is not None
    assert "main" in run.compile_error


# -- JavaScript and TypeScript entry points ------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "function solve(a, b) { return a + b; }",
        "const solve = (a, b) => a + b;",
        "module.exports = { solve: (a, b) => a + b };",
        "exports.solve = function (a, b) { return a + b; };",
        "export function solve(a, b) { return a + b; }",
        "export default function solve(a, b) { return a + b; }",
        "async function solve(a, b) { await null; return a + b; }",
        "class Solver {}\nfunction solve(a, b) { return new Solver() && a + b; }\n"
        "if (require.main === module) { throw new Error('main guard ran'); }",
    ],
    ids=[
        "declaration",
        "arrow",
        "module-exports",
        "exports",
        "esm",
        "esm-default",
        "async",
        "guard",
    ],
)
async def test_javascript_entry_points(boxes: dict[Language, Box], source: str) -> None:
    if "export " in source and toolchain_dir() is None:
        pytest.skip("ES module syntax in .js is transpiled with the TypeScript toolchain")
    run = await boxes[JS].run(source, [CaseInput(0, [2, 3])])
    assert run.compile_error is None
    assert [(o.status, o.value_json) for o in run.outcomes] == [("OK", "5")], run.outcomes


async def test_typescript_exports_imports_and_async(ts: Box) -> None:
    await ts.write(
        "export function double(n: number): number { return n * 2; }\n", name="helper.ts"
    )
    source = """
import { double } from "./helper";
import * as os from "os";

export async function solve(n: number): Promise<number[]> {
  await new Promise((resolve) => setTimeout(resolve, 1));
  return [double(n), typeof os.EOL === "string" ? 1 : 0];
}
"""
    run = await ts.run(source, [CaseInput(0, [21])])
    assert run.compile_error is None
    assert [(o.status, o.value_json) for o in run.outcomes] == [("OK", "[42,1]")]


async def test_typescript_strict_mode_is_off(ts: Box) -> None:
    source = "function solve(xs, k) {\n  let best = null;\n  best = xs[k];\n  return best;\n}\n"
    run = await ts.run(source, [CaseInput(0, [[1, 2], 1])])
    assert run.compile_error is None
    assert run.outcomes[0].value_json == "2"


async def test_javascript_load_time_exception(boxes: dict[Language, Box]) -> None:
    source = "const table = undefined.size;\nfunction solve() { return 1; }\n"
    run = await boxes[JS].run(source, [CaseInput(0, []), CaseInput(1, [])])
    assert run.compile_error is None
    for outcome in run.outcomes:
        assert outcome.status == "RUNTIME_ERROR"
        assert outcome.error is not None
        assert outcome.error.startswith("while loading the solution: TypeError")


# -- Python ------------------------------------------------------------------------


async def test_python_module_is_loaded_once_with_helpers_and_main_guard(
    boxes: dict[Language, Box],
) -> None:
    await boxes[PY].write("def triple(n):\n    return 3 * n\n", name="pyhelper.py")
    source = """
import asyncio
from pyhelper import triple

LOADS = []
LOADS.append(1)

async def solve(n):
    await asyncio.sleep(0)
    return [triple(n), len(LOADS), __name__]

if __name__ == "__main__":
    raise SystemExit("the main guard ran")
"""
    run = await boxes[PY].run(source, [CaseInput(0, [1]), CaseInput(1, [2])])
    assert run.compile_error is None
    name = json.loads(run.outcomes[0].value_json or "")[2]
    assert name.startswith("sol")
    assert [json.loads(o.value_json or "")[:2] for o in run.outcomes] == [[3, 1], [6, 1]]


async def test_python_load_time_exception_fails_every_case(boxes: dict[Language, Box]) -> None:
    source = "print('loading')\nTABLE = {}['missing']\n\ndef solve():\n    return 1\n"
    run = await boxes[PY].run(source, [CaseInput(0, []), CaseInput(1, [])])
    assert run.compile_error is None
    for outcome in run.outcomes:
        assert outcome.status == "RUNTIME_ERROR"
        assert outcome.error == "while loading the solution: KeyError: 'missing'"
        assert outcome.traceback is not None
        assert "line 2" in outcome.traceback
    assert run.outcomes[0].stdout == "loading\n"


async def test_python_program_mode_state_is_fresh_per_case(boxes: dict[Language, Box]) -> None:
    source = """
import sys
seen = globals().setdefault("seen", [])
seen.append(input())
print(len(seen), seen[-1], sys.argv[0].endswith(".py"))
"""
    run = await boxes[PY].run(source, [CaseInput(0, stdin="a\n"), CaseInput(1, stdin="b\n")])
    assert [o.stdout for o in run.outcomes] == ["1 a True\n", "1 b True\n"]


async def test_python_crash_of_the_worker_is_reported_and_recovered(
    boxes: dict[Language, Box],
) -> None:
    source = "import os\n\ndef solve(n):\n    if n:\n        os._exit(7)\n    return n\n"
    run = await boxes[PY].run(source, [CaseInput(0, [1]), CaseInput(1, [0])])
    crashed, after = run.outcomes
    assert crashed.status == "RUNTIME_ERROR"
    assert crashed.error == "exit status 7"
    assert (after.status, after.value_json) == ("OK", "0")


async def test_javascript_es_module_program_and_traces(boxes: dict[Language, Box]) -> None:
    if toolchain_dir() is None:
        pytest.skip("ES module syntax in .js is transpiled with the TypeScript toolchain")
    program = """import { readFileSync } from "fs";

const text = readFileSync(0, "utf8").trim();
if (text === "boom") {
  throw new TypeError("boom at line 5");
}
console.log(text.toUpperCase());
"""
    run = await boxes[JS].run(program, [CaseInput(0, stdin="héllo\n"), CaseInput(1, stdin="boom")])
    assert run.compile_error is None
    ok, boom = run.outcomes
    assert (ok.status, ok.stdout) == ("OK", "HÉLLO\n")
    assert boom.status == "RUNTIME_ERROR"
    assert boom.error is not None
    assert "TypeError: boom at line 5" in boom.error
    assert ":5:" in boom.stderr

    function = 'import os from "os";\n\nexport function solve() {\n  throw new Error(os.EOL);\n}\n'
    run = await boxes[JS].run(function, [CaseInput(0, [])])
    assert run.outcomes[0].status == "RUNTIME_ERROR"
    assert ":4:" in (run.outcomes[0].traceback or "")

    broken = 'import { x } from "fs";\nconst y = ;\n'
    run = await boxes[JS].run(broken, [CaseInput(0, stdin="")])
    assert run.compile_error is not None
    assert "(2,11): error TS1109: Expression expected." in run.compile_error


async def test_python_solution_cannot_change_itself_under_a_run(
    boxes: dict[Language, Box],
) -> None:
    """The run sees a read-only snapshot: the solution cannot rewrite its file for
    a respawned worker (or leave anything behind); the next case still runs."""
    source = """
def solve(n):
    if n == 0:
        with open(__file__, "a") as fh:
            fh.write("\\ndef broken(:\\n")
    while n == 1:
        pass
    return n
"""
    cases = [CaseInput(0, [0]), CaseInput(1, [1], timeout_ms=300), CaseInput(2, [2])]
    box = boxes[PY]
    path = await box.write(source)
    run = await run_harness(
        box.backend,
        box.id,
        language=PY,
        entrypoint="solve",
        solution_path=path,
        cases=cases,
        total_timeout_s=60,
    )
    assert run.compile_error is None
    wrote, hung, after = run.outcomes
    assert wrote.status == "RUNTIME_ERROR"
    assert "Read-only file system" in (wrote.error or "")
    assert hung.status == "TIMEOUT"
    assert after.status == "OK"
    assert after.value_json == "2"
    assert (await box.backend.read_file(box.id, path)).decode() == source
