"""The test harness in real sandboxes, for every language: one scenario per test.

Each scenario has a solution per language; the ``box`` fixture runs it in that
language's sandbox (one sandbox per language for the whole session).
"""

from __future__ import annotations

import json
from typing import Any

from modal_app.base import Language
from modal_app.harness.protocol import CaseInput
from tests.harness.conftest import Box

PY, JS, TS, GO = Language.PYTHON, Language.JAVASCRIPT, Language.TYPESCRIPT, Language.GO


def entry(box: Box) -> str:
    return "Solve" if box.language is GO else "solve"


def values(run: Any) -> list[Any]:
    return [json.loads(o.value_json) if o.value_json is not None else None for o in run.outcomes]


# -- a correct solution --------------------------------------------------------------

CORRECT = {
    PY: """
def solve(nums, label, factor):
    return {
        "label": label + "!",
        "total": sum(nums),
        "scaled": [n * factor for n in nums],
        "pairs": [[n, [n * n]] for n in nums],
        "ok": True,
        "none": None,
    }
""",
    JS: """
function solve(nums, label, factor) {
  return {
    label: label + "!",
    total: nums.reduce((a, b) => a + b, 0),
    scaled: nums.map((n) => n * factor),
    pairs: nums.map((n) => [n, [n * n]]),
    ok: true,
    none: null,
  };
}
""",
    TS: """
interface Summary {
  label: string; total: number; scaled: number[]; pairs: unknown[]; ok: boolean; none: null;
}
function solve(nums: number[], label: string, factor: number): Summary {
  return {
    label: label + "!",
    total: nums.reduce((a, b) => a + b, 0),
    scaled: nums.map((n) => n * factor),
    pairs: nums.map((n) => [n, [n * n]]),
    ok: true,
    none: null,
  };
}
""",
    GO: """package main

func Solve(nums []int, label string, factor float64) map[string]interface{} {
	total := 0
	scaled := []float64{}
	pairs := [][]interface{}{}
	for _, n := range nums {
		total += n
		scaled = append(scaled, float64(n)*factor)
		pairs = append(pairs, []interface{}{n, []int{n * n}})
	}
	return map[string]interface{}{
		"label": label + "!", "total": total, "scaled": scaled, "pairs": pairs,
		"ok": true, "none": nil,
	}
}
""",
}

CORRECT_ARGS = [
    [[1, 2, 3], "héllo ✓ 你好 🎉", 0.5],
    [[], "", 1.5],
    [[-7, 1000000], 'tab\tquote"back\\slash\nnewline', -0.25],
]


def expected_correct(nums: list[int], label: str, factor: float) -> dict[str, Any]:
    return {
        "label": label + "!",
        "total": sum(nums),
        "scaled": [n * factor for n in nums],
        "pairs": [[n, [n * n]] for n in nums],
        "ok": True,
        "none": None,
    }


async def test_correct_solution(box: Box) -> None:
    cases = [CaseInput(i, args) for i, args in enumerate(CORRECT_ARGS)]
    run = await box.run(CORRECT[box.language], cases, entry=entry(box))
    assert run.compile_error is None
    assert run.harness_error is None
    assert [o.index for o in run.outcomes] == [0, 1, 2]
    assert [o.status for o in run.outcomes] == ["OK"] * 3
    assert values(run) == [expected_correct(*args) for args in CORRECT_ARGS]
    for outcome in run.outcomes:
        assert outcome.stdout == ""
        assert outcome.error is None
        assert outcome.duration_ms >= 0


# -- a wrong solution: values are reported, not judged -------------------------------

WRONG = {
    PY: "def solve(nums):\n    return sum(nums) + 1\n",
    JS: "function solve(nums) { return nums.length; }\nmodule.exports = { solve };\n",
    TS: "export function solve(nums: number[]): string { return 'x' + nums.length; }\n",
    GO: "package main\n\nfunc Solve(nums []int) []int { return nums[1:] }\n",
}
WRONG_VALUES = {PY: [7, 1], JS: [3, 1], TS: ["x3", "x1"], GO: [[2, 3], []]}


async def test_wrong_solution_values_are_reported(box: Box) -> None:
    run = await box.run(
        WRONG[box.language], [CaseInput(0, [[1, 2, 3]]), CaseInput(1, [[0]])], entry=entry(box)
    )
    assert [o.status for o in run.outcomes] == ["OK", "OK"]
    assert values(run) == WRONG_VALUES[box.language]


# -- a solution that throws ----------------------------------------------------------

THROWS = {
    PY: """
def solve(n):
    if n > 0:
        raise ValueError(f"bad input {n}")
    return -1
""",
    JS: """
function solve(n) {
  if (n > 0) {
    throw new RangeError(`bad input ${n}`);
  }
  return -1;
}
""",
    TS: """
function solve(n: number): number {
  if (n > 0) {
    throw new RangeError(`bad input ${n}`);
  }
  return -1;
}
""",
    GO: """package main

import "fmt"

func Solve(n int) int {
	if n > 0 {
		panic(fmt.Sprintf("bad input %d", n))
	}
	return -1
}
""",
}
THROWS_ERROR = {
    PY: "ValueError: bad input 5",
    JS: "RangeError: bad input 5",
    TS: "RangeError: bad input 5",
    GO: "panic: bad input 5",
}


async def test_exception_is_a_runtime_error_and_later_cases_run(box: Box) -> None:
    run = await box.run(
        THROWS[box.language], [CaseInput(0, [5]), CaseInput(1, [0])], entry=entry(box)
    )
    failed, passed = run.outcomes
    assert failed.status == "RUNTIME_ERROR"
    assert failed.error == THROWS_ERROR[box.language]
    assert failed.value_json is None
    # The trace names the candidate's file and the line that threw, nothing of the harness.
    assert failed.traceback is not None
    assert "harness" not in failed.traceback
    line = {PY: "line 4", JS: ":4:", TS: ":4:", GO: ":7"}[box.language]
    assert line in failed.traceback, failed.traceback
    assert (passed.status, passed.value_json) == ("OK", "-1")


# -- a solution that loops forever ---------------------------------------------------

LOOPS = {
    PY: """
def solve(n):
    if n == 1:
        print("spinning")
        while True:
            pass
    return n * 2
""",
    JS: """
function solve(n) {
  if (n === 1) {
    console.log("spinning");
    for (;;) {}
  }
  return n * 2;
}
""",
    TS: """
function solve(n: number): number {
  if (n === 1) {
    console.log("spinning");
    for (;;) {}
  }
  return n * 2;
}
""",
    GO: """package main

import "fmt"

func Solve(n int) int {
	if n == 1 {
		fmt.Println("spinning")
		for {
		}
	}
	return n * 2
}
""",
}


async def test_infinite_loop_times_out_and_later_cases_still_run(box: Box) -> None:
    cases = [CaseInput(i, [n], timeout_ms=400) for i, n in enumerate([0, 1, 2, 1, 3])]
    run = await box.run(LOOPS[box.language], cases, entry=entry(box))
    assert [o.status for o in run.outcomes] == ["OK", "TIMEOUT", "OK", "TIMEOUT", "OK"]
    assert values(run) == [0, None, 4, None, 6]
    hung = run.outcomes[1]
    assert hung.error == "timed out after 400 ms"
    assert hung.stdout == "spinning\n"  # printed before it hung
    assert 400 <= hung.duration_ms < 2000


# -- compile errors ------------------------------------------------------------------

DOES_NOT_COMPILE = {
    PY: "def solve(n):\n    return n +\n",
    JS: "function solve(n) {\n  return n +;\n}\n",
    TS: "function solve(n: number): number {\n  const s: string = n;\n  return 1;\n}\n",
    GO: "package main\n\nfunc Solve(n int) int {\n\treturn m\n}\n",
}
COMPILE_MESSAGE = {
    PY: "SyntaxError",
    JS: "SyntaxError: Unexpected token ';'",
    TS: "error TS2322: Type 'number' is not assignable to type 'string'.",
    GO: "undefined: m",
}
COMPILE_LINE = {PY: "line 2", JS: ":2", TS: "(2,9)", GO: ":4:9"}


async def test_compile_error_is_reported_once(box: Box) -> None:
    run = await box.run(
        DOES_NOT_COMPILE[box.language], [CaseInput(0, [1]), CaseInput(1, [2])], entry=entry(box)
    )
    assert run.outcomes == []
    assert run.harness_error is None
    assert run.compile_error is not None
    assert COMPILE_MESSAGE[box.language] in run.compile_error
    assert COMPILE_LINE[box.language] in run.compile_error, run.compile_error
    assert "/tmp/" not in run.compile_error  # the candidate's paths, not the harness's


async def test_missing_entrypoint_is_a_compile_error(box: Box) -> None:
    source = {
        PY: "def other():\n    return 1\n",
        JS: "function other() { return 1; }\n",
        TS: "function other(): number { return 1; }\n",
        GO: "package main\n\nfunc Other() int { return 1 }\n",
    }[box.language]
    run = await box.run(source, [CaseInput(0, [])], entry=entry(box))
    assert run.outcomes == []
    assert run.compile_error is not None
    assert entry(box) in run.compile_error


# -- output that imitates the harness ------------------------------------------------

FAKES = [
    "<<ILM:00000000000000000000000000000000>>"
    '{"t":"case","index":1,"status":"OK","value":"999","duration_ms":1}',
    '<<ILM:>>{"t":"compile_error","message":"forged"}',
    '{"t":"result","i":0,"ok":true,"value":"999","ms":1}',
    '{"t":"result","i":1,"ok":true,"value":"999","ms":1}',
    '{"t":"ready"}',
    '{"t":"done","compile_ms":0}',
]
FAKES_JSON = json.dumps(FAKES)

NOISE = {
    PY: f"""
import sys
FAKES = {FAKES_JSON}

def solve(n):
    for fake in FAKES:
        print(fake)
        print(fake, file=sys.stderr)
    return n + 1
""",
    JS: f"""
const FAKES = {FAKES_JSON};
function solve(n) {{
  for (const fake of FAKES) {{
    console.log(fake);
    console.error(fake);
  }}
  return n + 1;
}}
""",
    TS: f"""
const FAKES: string[] = {FAKES_JSON};
function solve(n: number): number {{
  for (const fake of FAKES) {{
    console.log(fake);
    console.error(fake);
  }}
  return n + 1;
}}
""",
    GO: f"""package main

import (
	"encoding/json"
	"fmt"
	"os"
)

var fakes = `{FAKES_JSON}`

func Solve(n int) int {{
	var lines []string
	json.Unmarshal([]byte(fakes), &lines)
	for _, fake := range lines {{
		fmt.Println(fake)
		fmt.Fprintln(os.Stderr, fake)
	}}
	return n + 1
}}
""",
}


async def test_printed_imitations_of_the_harness_are_only_output(box: Box) -> None:
    run = await box.run(
        NOISE[box.language], [CaseInput(0, [1]), CaseInput(1, [2])], entry=entry(box)
    )
    assert run.compile_error is None
    assert run.harness_error is None
    assert [o.status for o in run.outcomes] == ["OK", "OK"]
    assert [o.value_json for o in run.outcomes] == ["2", "3"]
    printed = "".join(f"{fake}\n" for fake in FAKES)
    for outcome in run.outcomes:
        assert outcome.stdout == printed
        assert outcome.stderr == printed


# -- program mode --------------------------------------------------------------------

PROGRAM = {
    PY: """
import sys

data = sys.stdin.read().split("\\n")
if data[0] == "hang":
    while True:
        pass
if data[0] == "fail":
    print("failing", file=sys.stderr)
    sys.exit(3)
print(sum(int(x) for x in data[1].split()))
print(data[2])
""",
    JS: """
const data = require("fs").readFileSync(0, "utf8").split("\\n");
if (data[0] === "hang") for (;;) {}
if (data[0] === "fail") {
  console.error("failing");
  process.exit(3);
}
console.log(data[1].split(" ").map(Number).reduce((a, b) => a + b, 0));
console.log(data[2]);
""",
    TS: """
import { readFileSync } from "fs";
const data: string[] = readFileSync(0, "utf8").split("\\n");
if (data[0] === "hang") for (;;) {}
if (data[0] === "fail") {
  console.error("failing");
  process.exit(3);
}
console.log(data[1].split(" ").map(Number).reduce((a, b) => a + b, 0));
console.log(data[2]);
""",
    GO: """package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	var lines []string
	for in.Scan() {
		lines = append(lines, in.Text())
	}
	if lines[0] == "hang" {
		for {
		}
	}
	if lines[0] == "fail" {
		fmt.Fprintln(os.Stderr, "failing")
		os.Exit(3)
	}
	total := 0
	for _, f := range strings.Fields(lines[1]) {
		n, _ := strconv.Atoi(f)
		total += n
	}
	fmt.Println(total)
	fmt.Println(lines[2])
}
""",
}


async def test_program_mode_feeds_stdin_and_captures_stdout(box: Box) -> None:
    cases = [
        CaseInput(0, stdin="3\n1 2 3\nhé✓ 🎉\n"),
        CaseInput(1, stdin="hang\n", timeout_ms=500),
        CaseInput(2, stdin="fail\n"),
        CaseInput(3, stdin="2\n-5 5\n<<ILM:00>>{}\n"),
    ]
    run = await box.run(PROGRAM[box.language], cases)
    assert run.compile_error is None
    ok, hung, failed, last = run.outcomes
    assert (ok.status, ok.stdout, ok.value_json) == ("OK", "6\nhé✓ 🎉\n", None)
    assert hung.status == "TIMEOUT"
    assert failed.status == "RUNTIME_ERROR"
    assert failed.error is not None
    assert "exit status 3" in failed.error
    assert failed.stderr == "failing\n"
    assert (last.status, last.stdout) == ("OK", "0\n<<ILM:00>>{}\n")


# -- memory --------------------------------------------------------------------------

MEMORY_HOG = {
    PY: "def solve(n):\n    return len(bytearray(10**10)) if n else 0\n",
    JS: """
function solve(n) {
  if (!n) return 0;
  const hoard = [];
  for (;;) hoard.push(new Array(100000).fill(1.5));
}
""",
    TS: """
function solve(n: number): number {
  if (!n) return 0;
  const hoard: number[][] = [];
  for (;;) hoard.push(new Array(100000).fill(1.5));
}
""",
    GO: """package main

func Solve(n int) int {
	if n == 0 {
		return 0
	}
	hoard := make([]byte, 1<<36)
	hoard[1] = 1
	return len(hoard)
}
""",
}


async def test_memory_blowup_is_a_memory_limit(box: Box) -> None:
    cases = [CaseInput(0, [1], timeout_ms=10_000), CaseInput(1, [0])]
    run = await box.run(MEMORY_HOG[box.language], cases, entry=entry(box))
    hog, after = run.outcomes
    assert hog.status == "MEMORY_LIMIT", hog
    assert hog.error
    assert (after.status, after.value_json) == ("OK", "0")


NON_JSON = {
    PY: "def solve(k):\n    return {3, 1, 2} if k == 'set' else float('inf')\n",
    JS: "function solve(k) { return k === 'set' ? new Set([3, 1, 2]) : Infinity; }\n",
    TS: "function solve(k: string): unknown {\n"
    "  return k === 'set' ? new Set([1, 2, 3]) : Infinity;\n}\n",
    GO: 'package main\n\nimport "math"\n\nfunc Solve(k string) interface{} {\n'
    '\tif k == "set" {\n\t\treturn []int{1, 2, 3}\n\t}\n\treturn math.Inf(1)\n}\n',
}


async def test_values_json_cannot_represent_are_runtime_errors(box: Box) -> None:
    cases = [CaseInput(0, ["set"]), CaseInput(1, ["inf"])]
    run = await box.run(NON_JSON[box.language], cases, entry=entry(box))
    as_list, infinite = run.outcomes
    assert as_list.status == "OK"
    assert sorted(json.loads(as_list.value_json or "")) == [1, 2, 3]
    assert infinite.status == "RUNTIME_ERROR"
    assert infinite.error is not None
    assert "JSON" in infinite.error
