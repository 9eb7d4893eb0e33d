"""A session's timeline fields: testRuns, claudeRuns, lastTestRun, terminals, notes.

Content, order and pagination, and who sees what (candidates: no notes, nothing of
another session; another account: nothing). The timeline is made of model rows
(tests/timeline_support.py says why); one test judges a real run end to end to show
``lastTestRun`` lists what ``runTests`` made. The number of queries a page of
sessions costs is in test_timeline_queries.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from models.testrun import TestRun
from resolvers import timeline
from resolvers.auth import authenticate
from tests.conftest import Account
from tests.support import Api, wait_until
from tests.timeline_support import PAGE, SESSION, new_session, seed_timeline
from tests.workspace_support import START, WRITE

RUNS_PAGE = """query($id: ID!, $n: Int!, $after: String) { session(id: $id) {
  testRuns(first: $n, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id } }
  }
  claudeRuns(first: $n, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id } }
  }
} }"""


# -- content, order, pagination ------------------------------------------------------


async def test_the_timeline_of_a_session(api: Api, account: Account) -> None:
    ids = await seed_timeline(api, account, account["sessionId"])
    data = await api(SESSION, {"id": account["sessionId"]}, token=account["interviewerToken"])
    session = data.ok()["session"]

    assert session["question"] == {"id": account["questionId"], "title": "Two Sum"}
    assert session["sandbox"] == {"id": ids["sandbox"][0], "state": "RUNNING"}
    assert session["lastTestRun"] == {
        "id": ids["runs"][0],
        "status": "FINISHED",
        "passed": 2,
        "results": [
            {"index": 0, "name": "case 0", "passed": True},
            {"index": 1, "name": "case 1", "passed": False},
        ],
    }

    runs = session["testRuns"]
    assert runs["totalCount"] == 3
    assert [e["node"]["id"] for e in runs["edges"]] == ids["runs"][:2]
    assert [e["node"]["passed"] for e in runs["edges"]] == [2, 1]
    assert all(len(e["node"]["results"]) == 2 for e in runs["edges"])
    assert runs["pageInfo"]["hasNextPage"] is True
    assert runs["pageInfo"]["hasPreviousPage"] is False
    assert runs["pageInfo"]["startCursor"] == runs["edges"][0]["cursor"]
    assert runs["pageInfo"]["endCursor"] == runs["edges"][-1]["cursor"]

    agents = session["claudeRuns"]
    assert agents["totalCount"] == 3
    assert [e["node"]["prompt"] for e in agents["edges"]] == ["prompt 2", "prompt 1"]

    assert [t["id"] for t in session["terminals"]] == ids["terminals"]
    assert [t["state"] for t in session["terminals"]] == ["OPEN", "CLOSED", "CLOSED"]

    notes = session["notes"]
    assert [n["text"] for n in notes] == ["first impression", "solid tests"]
    assert notes[0]["seq"] < notes[1]["seq"]
    assert notes[0]["author"] == "Demo Admin"


async def test_runs_page_with_cursors(api: Api, account: Account) -> None:
    ids = await seed_timeline(api, account, account["sessionId"])
    seen: dict[str, list[str]] = {"testRuns": [], "claudeRuns": []}
    for field in seen:
        after = None
        for _ in range(3):
            page = await api(
                RUNS_PAGE,
                {"id": account["sessionId"], "n": 1, "after": after},
                token=account["interviewerToken"],
            )
            connection = page.ok()["session"][field]
            assert connection["totalCount"] == 3
            assert connection["pageInfo"]["hasPreviousPage"] is (after is not None)
            seen[field] += [e["node"]["id"] for e in connection["edges"]]
            after = connection["pageInfo"]["endCursor"]
        assert connection["pageInfo"]["hasNextPage"] is False
    assert seen == {"testRuns": ids["runs"], "claudeRuns": ids["agents"]}

    bad = await api(
        RUNS_PAGE,
        {"id": account["sessionId"], "n": 1, "after": "not-a-cursor"},
        token=account["interviewerToken"],
    )
    assert set(bad.codes) == {"BAD_USER_INPUT"}
    too_many = await api(
        RUNS_PAGE, {"id": account["sessionId"], "n": 101}, token=account["interviewerToken"]
    )
    assert set(too_many.codes) == {"BAD_USER_INPUT"}


async def test_a_new_session_has_an_empty_timeline(api: Api, account: Account) -> None:
    data = await api(SESSION, {"id": account["sessionId"]}, token=account["interviewerToken"])
    session = data.ok()["session"]
    assert session["sandbox"] is None
    assert session["lastTestRun"] is None
    assert session["testRuns"]["totalCount"] == 0
    assert session["testRuns"]["edges"] == []
    assert session["testRuns"]["pageInfo"]["startCursor"] is None
    assert session["claudeRuns"]["totalCount"] == 0
    assert session["terminals"] == []
    assert session["notes"] == []


LAST_RUN = """query($id: ID!) { session(id: $id) {
  lastTestRun { id status passed total results { hidden name passed } }
  testRuns { totalCount edges { node { id } } }
} }"""


async def test_a_judged_run_is_the_last_test_run(api: Api, account: Account) -> None:
    """End to end: the run ``runTests`` made, judged in the real sandbox, is listed."""
    sid, candidate = account["sessionId"], account["candidateToken"]
    (await api(START, {"s": sid}, token=candidate)).ok()
    solution = "def two_sum(nums, target):\n    return [0, 1]\n"  # passes 2 of 5
    (await api(WRITE, {"s": sid, "p": "solution.py", "c": solution}, token=candidate)).ok()
    started = await api(
        "mutation($s: ID!) { runTests(sessionId: $s) { id } }", {"s": sid}, token=candidate
    )
    run_id = started.ok()["runTests"]["id"]

    async def finished() -> dict[str, Any] | None:
        data = (await api(LAST_RUN, {"id": sid}, token=candidate)).ok()["session"]
        return data if data["lastTestRun"]["status"] == "FINISHED" else None

    session = await wait_until(finished, timeout=60)
    assert session["lastTestRun"]["id"] == run_id
    assert session["lastTestRun"]["total"] == 5
    assert session["testRuns"] == {"totalCount": 1, "edges": [{"node": {"id": run_id}}]}
    # The candidate's view of a hidden case through the new field: no name.
    hidden = [r for r in session["lastTestRun"]["results"] if r["hidden"]]
    assert hidden
    assert all(r["name"] is None for r in hidden)


# -- who sees what -------------------------------------------------------------------


async def test_candidates_see_their_runs_but_no_notes(api: Api, account: Account) -> None:
    ids = await seed_timeline(api, account, account["sessionId"])
    data = await api(SESSION, {"id": account["sessionId"]}, token=account["candidateToken"])
    session = data.ok()["session"]
    assert session["notes"] == []
    assert session["lastTestRun"]["id"] == ids["runs"][0]
    # Hidden cases through the batched results as through testRun(id): no name.
    assert session["lastTestRun"]["results"] == [
        {"index": 0, "name": "case 0", "passed": True},
        {"index": 1, "name": None, "passed": False},
    ]
    assert [t["id"] for t in session["terminals"]] == ids["terminals"]
    viewer = await api(
        "{ viewer { session { notes { text } testRuns { totalCount } } } }",
        token=account["candidateToken"],
    )
    assert viewer.ok()["viewer"]["session"] == {"notes": [], "testRuns": {"totalCount": 3}}


async def test_another_session_or_account_reaches_nothing(
    api: Api, account: Account, account_factory: Any
) -> None:
    await seed_timeline(api, account, account["sessionId"])
    other_session, other_candidate = await new_session(api, account)
    stranger = await account_factory()

    # Through the API: the session itself is NOT_FOUND, so none of its fields.
    for token in (other_candidate, stranger["interviewerToken"], stranger["candidateToken"]):
        reached = await api(SESSION, {"id": account["sessionId"]}, token=token)
        assert reached.codes == ["NOT_FOUND"]
        assert reached.data is None
    listed = await api(PAGE, {"n": 20}, token=stranger["interviewerToken"])
    assert account["sessionId"] not in {e["node"]["id"] for e in listed.ok()["sessions"]["edges"]}

    # Underneath: the batch queries themselves are scoped by the caller, whatever ids
    # they are handed.
    sid = uuid.UUID(account["sessionId"])
    for token in (other_candidate, stranger["interviewerToken"], stranger["candidateToken"]):
        principal = await authenticate(token)
        for query in (
            timeline.test_runs,
            timeline.claude_runs,
            timeline.terminals,
            timeline.notes,
            timeline.latest_sandboxes,
        ):
            assert await query(principal, [sid]) == {}, query.__name__
        run_ids = [r.id for r in await TestRun.filter(session_id=sid)]
        assert await timeline.case_results(principal, run_ids) == {}
    stranger_principal = await authenticate(stranger["interviewerToken"])
    assert await timeline.questions(stranger_principal, [uuid.UUID(account["questionId"])]) == {}
    # Positive control: the owners get them.
    owner = await authenticate(account["interviewerToken"])
    assert len((await timeline.test_runs(owner, [sid]))[sid]) == 3
    assert len((await timeline.notes(owner, [sid]))[sid]) == 2
    assert len(await timeline.case_results(owner, run_ids)) == 3
    candidate = await authenticate(account["candidateToken"])
    assert len((await timeline.test_runs(candidate, [sid, uuid.UUID(other_session)]))[sid]) == 3
    assert await timeline.notes(candidate, [sid]) == {}
