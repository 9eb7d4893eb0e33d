"""Questions edited, archived, tagged and paged (issue 11).

An update is a new revision under the same id: a session created before it keeps
its revision (its test run judges the old cases, its sandbox gets the old README),
a session created after gets the new one. Archived questions leave the list and
take no new sessions. Candidates reach only their own session's revision; other
accounts reach nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests import test_timeline_queries
from tests.conftest import Account, random_email
from tests.support import Api
from tests.test_testruns import SOLUTIONS, run_tests, write
from tests.workspace_support import FILE, start

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
count_queries = test_timeline_queries.count_queries  # the fixture, shared
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


# -- revisions ---------------------------------------------------------------------


async def test_a_session_keeps_the_revision_it_started_with(api: Api, account: Account) -> None:
    qid = account["questionId"]
    before = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert (before["revision"], before["title"], before["totalTestCount"]) == (1, "Two Sum", 5)

    updated = await update(api, account, qid, "Add two numbers", tags=["math"])
    assert (updated["id"], updated["revision"], updated["title"]) == (qid, 2, "Add two numbers")
    assert updated["totalTestCount"] == 2
    assert updated["createdAt"] == before["createdAt"]
    assert updated["updatedAt"] > before["updatedAt"]
    latest = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert latest == updated

    # The session created before the update still shows, and is judged on, revision 1.
    old = (await api(SESSION_QUESTION, {"id": account["sessionId"]}, token=staff(account))).ok()
    assert old["session"]["question"] == before
    seen = await api(QUESTION, {"id": qid}, token=account["candidateToken"])
    as_candidate = seen.ok()["question"]
    assert (as_candidate["id"], as_candidate["revision"]) == (qid, 1)
    assert as_candidate["hiddenTestCount"] == 2
    assert [c["hidden"] for c in as_candidate["testCases"]] == [False, False, False]
    await start(api, account)
    await write(api, account, "solution.py", SOLUTIONS["PYTHON"][1])
    old_run = await run_tests(api, account)
    assert (old_run["status"], old_run["total"], old_run["passed"]) == ("FINISHED", 5, 5)

    # A session created after it gets revision 2: its README, its cases.
    fresh = await new_session(api, account, qid)
    assert fresh["question"] == {"id": qid, "revision": 2, "title": "Add two numbers"}
    await start(api, fresh)
    readme = await api(
        FILE, {"s": fresh["sessionId"], "p": "README.md"}, token=fresh["candidateToken"]
    )
    assert readme.ok()["file"]["content"].startswith("# Add two numbers")
    await write(api, fresh, "solution.py", ADD)
    new_run = await run_tests(api, fresh)
    assert (new_run["status"], new_run["total"], new_run["passed"]) == ("FINISHED", 2, 2)
    assert [r["name"] for r in new_run["results"]] == ["one plus two", None]


async def test_a_refused_update_adds_no_revision(api: Api, account: Account) -> None:
    qid = account["questionId"]
    broken = question_input("No cases")
    broken["testCases"] = []
    refused = await api(UPDATE, {"id": qid, "in": broken}, token=staff(account))
    assert refused.codes == ["BAD_USER_INPUT"]
    assert refused.errors[0]["extensions"]["field"] == "input.testCases"
    bad_tag = await api(
        UPDATE, {"id": qid, "in": question_input("T", tags=["ok", 'a"b'])}, token=staff(account)
    )
    assert bad_tag.codes == ["BAD_USER_INPUT"]
    assert bad_tag.errors[0]["extensions"]["field"] == "input.tags[1]"
    too_many = await api(
        UPDATE,
        {"id": qid, "in": question_input("T", tags=[f"t{i}" for i in range(21)])},
        token=staff(account),
    )
    assert too_many.codes == ["BAD_USER_INPUT"]
    latest = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert (latest["revision"], latest["title"]) == (1, "Two Sum")
    for bad_id, code in (("not-an-id", "BAD_USER_INPUT"), (account["sessionId"], "NOT_FOUND")):
        missing = await api(UPDATE, {"id": bad_id, "in": question_input("T")}, token=staff(account))
        assert missing.codes == [code]


async def test_concurrent_updates_never_share_a_revision(api: Api, account: Account) -> None:
    qid = account["questionId"]
    results = await asyncio.gather(
        *(
            api(UPDATE, {"id": qid, "in": question_input(f"Edit {i}")}, token=staff(account))
            for i in range(4)
        )
    )
    done = [r.data["updateQuestion"] for r in results if not r.errors]
    assert all(r.codes == ["CONFLICT"] for r in results if r.errors)
    assert done
    revisions = sorted(edit["revision"] for edit in done)
    assert revisions == list(range(2, 2 + len(done)))
    latest = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert latest["revision"] == revisions[-1]
    assert await titles(api, account) == [latest["title"]]


# -- archiving ---------------------------------------------------------------------


async def test_archive_hides_and_blocks_new_sessions_not_old_ones(
    api: Api, account: Account
) -> None:
    qid = account["questionId"]
    archived = (await api(ARCHIVE, {"id": qid}, token=staff(account))).ok()["archiveQuestion"]
    assert archived["archivedAt"]
    again = (await api(ARCHIVE, {"id": qid}, token=staff(account))).ok()["archiveQuestion"]
    assert again == archived  # idempotent: the first archiving time stays
    assert await titles(api, account) == []
    assert await titles(api, account, all=True) == ["Two Sum"]
    read = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert read["archivedAt"] == archived["archivedAt"]

    blocked = await api(CREATE_SESSION % random_email(), {"q": qid}, token=staff(account))
    assert blocked.codes == ["CONFLICT"]
    edit = await api(UPDATE, {"id": qid, "in": question_input("T")}, token=staff(account))
    assert edit.codes == ["CONFLICT"]

    # The session that uses it carries on: its candidate reads it and starts a sandbox.
    mine = await api(QUESTION, {"id": qid}, token=account["candidateToken"])
    assert mine.ok()["question"]["title"] == "Two Sum"
    assert (await start(api, account))["state"] == "RUNNING"

    restored = (await api(UNARCHIVE, {"id": qid}, token=staff(account))).ok()
    assert restored["unarchiveQuestion"]["archivedAt"] is None
    assert await titles(api, account) == ["Two Sum"]
    assert (await new_session(api, account, qid))["question"]["revision"] == 1


# -- listing -----------------------------------------------------------------------


async def test_questions_page_newest_first_through_an_edit(api: Api, account: Account) -> None:
    first = await create(api, account, "Graph walk", tags=["Graphs", "bfs"], difficulty="MEDIUM")
    second = await create(api, account, "Knapsack", prompt="Pack; no graph.", difficulty="HARD")
    third = await create(api, account, "Fizz", tags=["system_design"], difficulty="EASY")
    fourth = await create(api, account, "Buzz", tags=["systemxdesign"], difficulty="EASY")
    await update(api, account, first["id"], "Graph walk v2", tags=["Graphs", "bfs"])
    newest_first = [fourth["id"], third["id"], second["id"], first["id"], account["questionId"]]

    seen: list[str] = []
    after: str | None = None
    while True:
        page = await api(LIST, {"first": 2, "after": after}, token=staff(account))
        connection = page.ok()["questions"]
        assert connection["totalCount"] == 5
        assert connection["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        if len(seen) == 2:
            # Revised while being paged: it keeps its place (sorted by creation).
            await update(
                api,
                account,
                second["id"],
                "Knapsack v2",
                prompt="Pack; no graph.",
                difficulty="HARD",
            )
    assert seen == newest_first

    listed = (await api(LIST, {"first": 100}, token=staff(account))).ok()["questions"]["edges"]
    nodes = {edge["node"]["id"]: edge["node"] for edge in listed}
    assert (nodes[first["id"]]["title"], nodes[first["id"]]["revision"]) == ("Graph walk v2", 2)
    assert nodes[first["id"]]["tags"] == ["graphs", "bfs"]
    assert nodes[second["id"]]["title"] == "Knapsack v2"
    assert nodes[first["id"]]["languages"] == [{"language": "PYTHON"}]
    assert [c["name"] for c in nodes[first["id"]]["testCases"]] == ["one plus two", "secret"]

    assert await titles(api, account, search="GRAPH") == ["Knapsack v2", "Graph walk v2"]
    assert await titles(api, account, search="  two sum ") == ["Two Sum"]
    assert await titles(api, account, tag="Graphs") == ["Graph walk v2"]
    assert await titles(api, account, tag="system_design") == ["Fizz"]  # "_" is no wildcard
    assert await titles(api, account, tag="design") == []  # whole tags only
    assert await titles(api, account, difficulty="EASY") == ["Buzz", "Fizz"]
    assert await titles(api, account, search="graph", difficulty="HARD") == ["Knapsack v2"]
    # An update replaces everything: what it leaves out is gone.
    assert await titles(api, account, difficulty="MEDIUM") == []


async def test_a_page_of_questions_costs_the_same_queries_as_one(
    api: Api, account: Account, count_queries: Callable[[], Any]
) -> None:
    for i in range(4):
        await create(api, account, f"Question {i}")
    costs = []
    for first in (1, 5):
        with count_queries() as queries:
            listed = await api(LIST, {"first": first}, token=staff(account))
        assert len(listed.ok()["questions"]["edges"]) == first
        costs.append(len(queries))
    assert costs[0] == costs[1], costs


async def test_listing_arguments_are_checked(api: Api, account: Account) -> None:
    for variables, field in (
        ({"first": 0}, "first"),
        ({"first": 101}, "first"),
        ({"first": 5, "after": "garbage"}, "after"),
        ({"first": 5, "tag": 'x"y'}, "tag"),
        ({"first": 5, "search": "s" * 201}, "search"),
    ):
        result = await api(LIST, variables, token=staff(account))
        assert result.codes == ["BAD_USER_INPUT"], variables
        assert result.errors[0]["extensions"]["field"] == field


# -- who reaches what ----------------------------------------------------------------


async def test_candidates_and_other_accounts_reach_nothing_else(
    api: Api, account: Account, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    qid = account["questionId"]
    candidate = account["candidateToken"]
    other_question = await create(api, account, "Not in your session")
    for operation, variables in (
        (LIST, {"first": 5}),
        (UPDATE, {"id": qid, "in": question_input("T")}),
        (ARCHIVE, {"id": qid}),
        (UNARCHIVE, {"id": qid}),
        (CREATE, {"in": question_input("T")}),
    ):
        assert (await api(operation, variables, token=candidate)).codes == ["FORBIDDEN"]
    unseen = await api(QUESTION, {"id": other_question["id"]}, token=candidate)
    assert unseen.codes == ["NOT_FOUND"]

    intruder = await account_factory()
    for token in (intruder["interviewerToken"], intruder["atsToken"]):
        for operation, variables in (
            (QUESTION, {"id": qid}),
            (UPDATE, {"id": qid, "in": question_input("Mine now")}),
            (ARCHIVE, {"id": qid}),
            (UNARCHIVE, {"id": qid}),
        ):
            result = await api(operation, variables, token=token)
            assert result.codes == ["NOT_FOUND"], (operation, result.body)
        listed = await api(LIST, {"first": 100, "all": True}, token=token)
        assert qid not in str(listed.body)
        taken = await api(CREATE_SESSION % random_email(), {"q": qid}, token=token)
        assert taken.codes == ["NOT_FOUND"]
    intruder_candidate = await api(QUESTION, {"id": qid}, token=intruder["candidateToken"])
    assert intruder_candidate.codes == ["NOT_FOUND"]
    untouched = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert (untouched["revision"], untouched["archivedAt"]) == (1, None)
