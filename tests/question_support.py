"""Questions through the API, for the question tests: operations, input, helpers."""

from __future__ import annotations

from typing import Any

from tests.conftest import Account, random_email
from tests.support import Api

FIELDS = """id revision title tags difficulty archivedAt createdAt updatedAt
  totalTestCount hiddenTestCount testCases { name hidden }"""
QUESTION = "query($id: ID!) { question(id: $id) { " + FIELDS + " } }"
CREATE = "mutation($in: CreateQuestionInput!) { createQuestion(input: $in) { " + FIELDS + " } }"
UPDATE = (
    """mutation($id: ID!, $in: CreateQuestionInput!) {
  updateQuestion(id: $id, input: $in) { """
    + FIELDS
    + " } }"
)
ARCHIVE = "mutation($id: ID!) { archiveQuestion(id: $id) { id archivedAt } }"
UNARCHIVE = "mutation($id: ID!) { unarchiveQuestion(id: $id) { id archivedAt } }"
SESSION_QUESTION = "query($id: ID!) { session(id: $id) { question { " + FIELDS + " } } }"
LIST = """query($first: Int!, $after: String, $search: String, $tag: String,
             $difficulty: Difficulty, $all: Boolean! = false) {
  questions(first: $first, after: $after, search: $search, tag: $tag,
            difficulty: $difficulty, includeArchived: $all) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id revision title tags archivedAt
                          languages { language } testCases { name } } }
  }
}"""
CREATE_SESSION = """mutation($q: ID!) {
  createSession(input: {questionId: $q, candidateName: "Bo", candidateEmail: "%s"}) {
    session { id question { id revision title } } candidateToken
  }
}"""
ADD = "def add(a, b):\n    return a + b\n"


def question_input(
    title: str,
    *,
    prompt: str = "Add two numbers.",
    tags: list[str] | None = None,
    difficulty: str | None = None,
) -> dict[str, Any]:
    return {
        "title": title,
        "prompt": prompt,
        "languages": [
            {
                "language": "PYTHON",
                "entrypoint": "add",
                "solutionPath": "solution.py",
                "starterFiles": [{"path": "solution.py", "content": "def add(a, b):\n    pass\n"}],
            }
        ],
        "testCases": [
            {"name": "one plus two", "input": [1, 2], "expected": 3},
            {"name": "secret", "input": [40, 2], "expected": 42, "hidden": True},
        ],
        "tags": tags or [],
        "difficulty": difficulty,
    }


async def create(api: Api, account: Account, title: str, **kwargs: Any) -> dict[str, Any]:
    made = await api(CREATE, {"in": question_input(title, **kwargs)}, token=staff(account))
    return made.ok()["createQuestion"]  # type: ignore[no-any-return]


async def update(api: Api, account: Account, qid: str, title: str, **kwargs: Any) -> Any:
    updated = await api(
        UPDATE, {"id": qid, "in": question_input(title, **kwargs)}, token=staff(account)
    )
    return updated.ok()["updateQuestion"]


async def new_session(api: Api, account: Account, qid: str) -> dict[str, Any]:
    made = await api(CREATE_SESSION % random_email(), {"q": qid}, token=staff(account))
    created = made.ok()["createSession"]
    return {
        "sessionId": created["session"]["id"],
        "candidateToken": created["candidateToken"],
        "question": created["session"]["question"],
    }


def staff(account: Account) -> str:
    return account["interviewerToken"]


async def titles(api: Api, account: Account, **variables: Any) -> list[str]:
    listed = await api(LIST, {"first": 100, **variables}, token=staff(account))
    return [edge["node"]["title"] for edge in listed.ok()["questions"]["edges"]]
