"""Verdict rules: JSON compared by value, float tolerance, stdout normalization."""

from __future__ import annotations

import pytest

from resolvers.judging import json_equal, normalize_stdout


@pytest.mark.parametrize(
    ("actual", "expected", "tolerance", "equal"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, None, True),
        ([1, 2], [2, 1], None, False),
        (1, 1.0, None, True),
        (True, 1, None, False),
        (0.1 + 0.2, 0.3, None, False),
        (0.1 + 0.2, 0.3, 1e-9, True),
        ([0.5001], [0.5], 1e-3, True),
        ([0.51], [0.5], 1e-3, False),
        ("1", 1, None, False),
        (None, None, None, True),
        ({"a": None}, {}, None, False),
        ({"x": {"y": [1.0000001]}}, {"x": {"y": [1]}}, 1e-6, True),
    ],
)
def test_json_equal(actual: object, expected: object, tolerance: float | None, equal: bool) -> None:
    assert json_equal(actual, expected, tolerance=tolerance) is equal


def test_stdout_trailing_whitespace_is_normalized() -> None:
    assert normalize_stdout("1 2  \n3\t\n\n\n") == normalize_stdout("1 2\n3")
    assert normalize_stdout(" 1\n") != normalize_stdout("1\n")
    assert normalize_stdout("a\n\nb\n") != normalize_stdout("a\nb\n")
