"""Every JSON value round-trips through test cases (the bug: ``expected: "olleh"`` was INTERNAL).

Tortoise's JSONField took a Python ``str`` for already-encoded JSON text. These
tests go through the real app and the real database (SQLite, and PostgreSQL in
the postgres pass): over GraphQL (createQuestion, then question) and at the
model level, for each kind of JSON value.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from models.event import Event
from models.question import Question, QuestionLanguage
from models.question import TestCase as CaseModel
from tests.conftest import Account
from tests.support import Api
from tests.test_inputs import CREATE_QUESTION, GOOD_QUESTION

KINDS: dict[str, Any] = {
    "string": "olleh",
    "numeric string": "5",
    "json-looking string": '[1, {"a": null}]',
    "empty string": "",
    "quoted string": '"quoted"',
    "integer": 42,
    "negative float": -2.5,
    "big integer": 2**70,
    "true": True,
    "false": False,
    "null": None,
    "empty list": [],
    "list": [1, "two", None, False],
    "empty object": {},
    "object": {"a": 1, "b": "x"},
    "nested": {"a": [{"b": [[], {"c": "d"}]}], "e": {"f": {"g": [1.5, None]}}},
    "unicode": "héllo wörld ✓ 漢字 🐍 \u200b",
    "unicode keys": {"ключ": "значение", "🔑": ["ü"]},
}


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


READ_CASES = "query($id: ID!) { question(id: $id) { testCases { name input expected } } }"


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_json_kind_round_trips_through_create_question(
    api: Api, account: Account, kind: str
) -> None:
    value = KINDS[kind]
    question = copy.deepcopy(GOOD_QUESTION)
    question["testCases"] = [
        {"name": "as expected", "input": [value], "expected": value},
        {"name": "as input", "input": [value, [value], {"k": value}], "expected": [value]},
    ]
    token = account["interviewerToken"]
    created = (await api(CREATE_QUESTION, {"input": question}, token=token)).ok()
    read = await api(READ_CASES, {"id": created["createQuestion"]["id"]}, token=token)
    cases = read.ok()["question"]["testCases"]
    assert cases == question["testCases"]
    assert type(cases[0]["expected"]) is type(value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\x00b", "NUL"),
        ({"k\x00": 1}, "keys"),
        (_nested(70), "nested"),
    ],
)
async def test_unstorable_json_is_bad_user_input(
    api: Api, account: Account, value: Any, problem: str
) -> None:
    question = copy.deepcopy(GOOD_QUESTION)
    question["testCases"][0]["expected"] = value
    result = await api(CREATE_QUESTION, {"input": question}, token=account["interviewerToken"])
    assert result.codes == ["BAD_USER_INPUT"], result.body
    assert result.errors[0]["extensions"]["field"] == "input.testCases[0].expected"
    assert problem in result.errors[0]["message"]


async def test_non_finite_numbers_are_bad_user_input(api: Api, account: Account) -> None:
    """``1e999`` is a valid GraphQL float literal that becomes Infinity."""
    mutation = """mutation { createQuestion(input: {
      title: "t", prompt: "p",
      languages: [{language: PYTHON, entrypoint: "f", solutionPath: "solution.py"}],
      testCases: [{name: "n", input: [], expected: 1e999}]}) { id } }"""
    result = await api(mutation, token=account["interviewerToken"])
    assert result.codes == ["BAD_USER_INPUT"], result.body


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_json_kind_round_trips_at_the_model_level(account: Account, kind: str) -> None:
    """Constructor, save, reload, values() and update() all keep the value as given."""
    value = KINDS[kind]
    question = await Question.get(id=account["questionId"])
    case = CaseModel(question=question, position=99, name=kind, input=[value], expected=value)
    assert case.expected == value
    await case.save()
    fresh = await CaseModel.get(id=case.id)
    assert (fresh.input, fresh.expected) == ([value], value)
    row = await CaseModel.filter(id=case.id).values("expected")
    assert row == [{"expected": value}]
    await CaseModel.filter(id=case.id).update(expected=[value])
    assert (await CaseModel.get(id=case.id)).expected == [value]
    lang = QuestionLanguage(
        question=question,
        language=f"x{uuid.uuid4().hex[:8]}",
        entrypoint="f",
        solution_path="s",
        starter_files=[{"path": "a", "content": str(value)}],
    )
    await lang.save()
    assert (await QuestionLanguage.get(id=lang.id)).starter_files == lang.starter_files
    await lang.delete()
    await fresh.delete()


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_json_kind_round_trips_in_event_payloads(account: Account, kind: str) -> None:
    """Event payloads are objects; every kind of value inside one round-trips."""
    value = KINDS[kind]
    event = await Event.create(
        session_id=account["sessionId"],
        seq=10_000 + list(KINDS).index(kind),
        type="test.json",
        at=datetime.now(UTC),
        payload={"value": value},
    )
    assert (await Event.get(id=event.id)).payload == {"value": value}
    await event.delete()
