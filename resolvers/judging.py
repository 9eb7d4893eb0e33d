"""Verdicts: the server compares results with expected values (never shipped to the sandbox).

Function mode compares JSON values by value: object key order is irrelevant,
numbers compare numerically (``1 == 1.0``), booleans are not numbers, and with
a float tolerance on the question two numbers match when they differ by at
most that much. Program mode compares stdout with trailing whitespace removed
from every line and trailing blank lines dropped.
"""

from __future__ import annotations

import json
import math
from typing import Any

from modal_app.harness.protocol import CaseOutcome
from models.question import TestCase
from models.testrun import Verdict

_STATUS_VERDICTS = {
    "RUNTIME_ERROR": Verdict.RUNTIME_ERROR,
    "TIMEOUT": Verdict.TIMEOUT,
    "MEMORY_LIMIT": Verdict.MEMORY_LIMIT,
}


def json_equal(actual: Any, expected: Any, *, tolerance: float | None) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        if tolerance is None:
            return actual == expected
        if math.isnan(actual) or math.isnan(expected):
            return math.isnan(actual) and math.isnan(expected)
        return abs(actual - expected) <= tolerance
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(
            json_equal(a, e, tolerance=tolerance) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            json_equal(actual[k], expected[k], tolerance=tolerance) for k in expected
        )
    return type(actual) is type(expected) and bool(actual == expected)


def normalize_stdout(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def judge(outcome: CaseOutcome, case: TestCase, *, tolerance: float | None) -> Verdict:
    if outcome.status != "OK":
        return _STATUS_VERDICTS[outcome.status]
    if case.expected_stdout is not None:
        matches = normalize_stdout(outcome.stdout) == normalize_stdout(case.expected_stdout)
        return Verdict.PASSED if matches else Verdict.WRONG_ANSWER
    try:
        actual = json.loads(outcome.value_json or "null")
    except ValueError:
        return Verdict.WRONG_ANSWER
    matches = json_equal(actual, case.expected, tolerance=tolerance)
    return Verdict.PASSED if matches else Verdict.WRONG_ANSWER
