"""Bad input is answered BAD_USER_INPUT with the offending field named; never INTERNAL."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from graphql import get_introspection_query

from gql.schema import build_schema
from tests.conftest import Account
from tests.support import Api

CREATE_QUESTION = "mutation($input: CreateQuestionInput!) { createQuestion(input: $input) { id } }"
CREATE_SESSION = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) { session { id } } }"""

GOOD_QUESTION: dict[str, Any] = {
    "title": "Add",
    "prompt": "Add two numbers.",
    "languages": [
        {
            "language": "PYTHON",
            "entrypoint": "add",
            "solutionPath": "solution.py",
            "starterFiles": [{"path": "solution.py", "content": "def add(a, b): ..."}],
        }
    ],
    "testCases": [
        {"name": "small", "input": [1, 2], "expected": 3},
        {"name": "more", "input": [2, 2], "expected": 4, "hidden": True},
    ],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD_QUESTION)
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()


async def test_good_question_is_accepted(api: Api, account: Account) -> None:
    result = await api(CREATE_QUESTION, {"input": GOOD_QUESTION}, token=account["interviewerToken"])
    assert result.ok()["createQuestion"]["id"]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("title", "   ", "input.title"),
        ("title", "x" * 201, "input.title"),
        ("prompt", "", "input.prompt"),
        ("languages", [], "input.languages"),
        ("languages.0.entrypoint", "not an identifier", "input.languages[0].entrypoint"),
        ("languages.0.solutionPath", "../escape.py", "input.languages[0].solutionPath"),
        ("languages.0.solutionPath", "/etc/passwd.py", "input.languages[0].solutionPath"),
        ("languages.0.solutionPath", "solution.js", "input.languages[0].solutionPath"),
        ("languages.0.starterFiles.0.path", "a/../../b", "input.languages[0].starterFiles[0].path"),
        (
            "languages.0.starterFiles.0.content",
            "x" * ((1 << 20) + 1),
            "input.languages[0].starterFiles[0].content",
        ),
        ("testCases", [], "input.testCases"),
        ("testCases.0.input", {"a": 1}, "input.testCases[0].input"),
        ("testCases.0.expected", _DELETE, "input.testCases[0].expected"),
        ("testCases.0.name", "", "input.testCases[0].name"),
        ("testCases.0.timeoutMs", 0, "input.testCases[0].timeoutMs"),
        ("testCases.1.input", _DELETE, "input.testCases[1].input"),
        ("testCases.1", {"name": "p", "stdin": "1", "expectedStdout": "1"}, "input.testCases"),
        ("testCases.1", {"name": "p", "stdin": "1"}, "input.testCases[1].expectedStdout"),
        ("floatTolerance", -1.0, "input.floatTolerance"),
    ],
)
async def test_bad_question_input_names_the_field(
    api: Api, account: Account, path: str, value: Any, field: str
) -> None:
    result = await api(
        CREATE_QUESTION, {"input": _with(path, value)}, token=account["interviewerToken"]
    )
    assert result.codes == ["BAD_USER_INPUT"], result.body
    assert result.errors[0]["extensions"]["field"] == field
    assert result.errors[0]["message"].startswith(field)
    assert result.data is None


async def test_unknown_language_is_bad_user_input(api: Api, account: Account) -> None:
    data = _with("languages.0.language", "COBOL")
    result = await api(CREATE_QUESTION, {"input": data}, token=account["interviewerToken"])
    assert result.status == 400
    assert result.codes == ["BAD_USER_INPUT"]
    assert "COBOL" in result.errors[0]["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"candidateEmail": "not-an-email"}, "input.candidateEmail"),
        ({"candidateName": ""}, "input.candidateName"),
        ({"candidateName": "n" * 500}, "input.candidateName"),
        ({"questionId": "not-a-uuid"}, "input.questionId"),
        ({"externalId": "e" * 300}, "input.externalId"),
        ({"expiresAt": "2001-01-01T00:00:00+00:00"}, "input.expiresAt"),
    ],
)
async def test_bad_session_input_names_the_field(
    api: Api, account: Account, change: dict[str, str], field: str
) -> None:
    data = {
        "questionId": account["questionId"],
        "candidateName": "Grace",
        "candidateEmail": "grace@example.com",
        **change,
    }
    result = await api(CREATE_SESSION, {"input": data}, token=account["atsToken"])
    assert result.codes == ["BAD_USER_INPUT"], result.body
    assert result.errors[0]["extensions"]["field"] == field


async def test_language_the_question_lacks_is_rejected(api: Api, account: Account) -> None:
    question = (
        await api(CREATE_QUESTION, {"input": GOOD_QUESTION}, token=account["interviewerToken"])
    ).ok()["createQuestion"]
    data = {
        "questionId": question["id"],
        "candidateName": "Grace",
        "candidateEmail": "grace@example.com",
        "language": "GO",
    }
    result = await api(CREATE_SESSION, {"input": data}, token=account["atsToken"])
    assert result.codes == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "input.language"


@pytest.mark.parametrize("cursor", ["!!!", "bm90IGpzb24", "WzEsMl0", ""])
async def test_malformed_cursor_is_bad_user_input(api: Api, account: Account, cursor: str) -> None:
    result = await api(
        "query($after: String) { sessions(after: $after) { totalCount } }",
        {"after": cursor},
        token=account["interviewerToken"],
    )
    assert result.codes == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "after"


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_page_size_is_bounded(api: Api, account: Account, first: int) -> None:
    result = await api(
        "query($first: Int!) { sessions(first: $first) { totalCount } }",
        {"first": first},
        token=account["interviewerToken"],
    )
    assert result.codes == ["BAD_USER_INPUT"]
    assert result.errors[0]["extensions"]["field"] == "first"


async def test_malformed_ids_are_bad_user_input(api: Api, account: Account) -> None:
    result = await api('{ session(id: "nope") { id } }', token=account["interviewerToken"])
    assert result.codes == ["BAD_USER_INPUT"]


async def test_too_deep_query_is_refused(api: Api, account: Account) -> None:
    token = account["interviewerToken"]
    legit = "{ sessions { edges { node { question { languages { starterFiles { path } } } } } } }"
    assert (await api(legit, token=token)).ok()
    assert (await api(get_introspection_query(), token=token)).ok()["__schema"]
    # The schema has no cycles yet, so the default limit (12) cannot be reached
    # through it; the same limiter with a small limit shows it is in force.
    shallow = build_schema(max_depth=3)
    for _ in range(2):  # also once the document is cached (gql.parsing)
        result = await shallow.execute(legit)
        assert result.errors
        assert [e.formatted["extensions"]["code"] for e in result.errors] == ["BAD_USER_INPUT"]
        assert "depth" in result.errors[0].message
