"""A session's timeline fields: testRuns, claudeRuns, lastTestRun, terminals, notes.

Content, order and pagination; who sees what (candidates: no notes, nothing of another
session; another account: nothing); and the number of SQL queries a page of sessions
costs with every field asked, which must not grow with the page.

Runs, terminals and sandboxes are inserted as model rows here (``seed_timeline``):
the fields read rows, and producing them for real -- sandboxes, a judged run, the
agent -- would add minutes and nothing these tests check. One test judges a real
run end to end to show the field lists what ``runTests`` made; notes go through
``addNote``.
"""

from __future__ import annotations

import contextvars
import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from strawberry.dataloader import DataLoader
from tortoise import connections

import gql.loaders
from models.claude import ClaudeRun, ClaudeRunStatus
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestCaseResult, TestRun, TestRunStatus, Verdict
from resolvers import timeline
from resolvers.auth import authenticate
from tests.conftest import Account, random_email
from tests.support import Api, wait_until
from tests.workspace_support import START, WRITE

NOTE = "mutation($s: ID!, $t: String!) { addNote(sessionId: $s, text: $t) { seq } }"
CREATE = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) { session { id } candidateToken } }"""
TIMELINE_FIELDS = """
  id
  question { id title }
  sandbox { id state }
  lastTestRun { id status passed results { index name passed } }
  testRuns(first: 2) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id status passed createdAt results { index passed } } }
  }
  claudeRuns(first: 2) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id prompt status } }
  }
  terminals { id state createdAt }
  notes { seq text author }
"""
PAGE = "query($n: Int!) { sessions(first: $n) { edges { node {" + TIMELINE_FIELDS + "} } } }"
SESSION = "query($id: ID!) { session(id: $id) {" + TIMELINE_FIELDS + "} }"
RUNS_PAGE = """query($id: ID!, $n: Int!, $after: String) { session(id: $id) {
  testRuns(first: $n, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id } }
  }
  claudeRuns(first: $n, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id } }
  }
} }"""

BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


# -- counting SQL queries ------------------------------------------------------------

_counted: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("counted", default=None)
EXECUTE_METHODS = ("execute_query", "execute_query_dict", "execute_insert", "execute_script")


@pytest.fixture
def count_queries(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """``with count() as queries:`` -- the SQL statements this task (and the tasks it
    starts: the request under httpx's ASGI transport) sends to the database, counted at
    the Tortoise client's execute methods. Tasks started before -- the reaper, other
    requests' background work -- keep their own context and are not counted."""
    client_class = type(connections.get("default"))
    for name in EXECUTE_METHODS:
        original = getattr(client_class, name)

        @functools.wraps(original)
        async def counting(
            self: Any, query: str, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            queries = _counted.get()
            if queries is not None:
                queries.append(query)
            return await _original(self, query, *args, **kwargs)

        monkeypatch.setattr(client_class, name, counting)

    @contextmanager
    def count() -> Iterator[list[str]]:
        queries: list[str] = []
        token = _counted.set(queries)
        try:
            yield queries
        finally:
            _counted.reset(token)

    return count


# -- making a timeline ---------------------------------------------------------------


async def new_session(api: Api, account: Account) -> tuple[str, str]:
    made = await api(
        CREATE,
        {
            "input": {
                "questionId": account["questionId"],
                "candidateName": "Grace",
                "candidateEmail": random_email(),
            }
        },
        token=account["interviewerToken"],
    )
    created = made.ok()["createSession"]
    return created["session"]["id"], created["candidateToken"]


async def seed_timeline(api: Api, account: Account, session_id: str) -> dict[str, list[str]]:
    """Three test runs (each with a visible and a hidden case result), three Claude runs,
    two sandboxes, three terminals and two notes, created a minute apart (oldest first);
    returns their ids, newest first."""
    session = await InterviewSession.get(id=session_id)
    at = [BASE + timedelta(minutes=i) for i in range(6)]
    old_box, new_box = [
        await SandboxRecord.create(
            account_id=session.account_id,
            session=session,
            backend="local",
            owner="test",
            state=state,
            created_at=when,
            last_activity_at=when,
        )
        for state, when in ((SandboxState.TERMINATED, at[0]), (SandboxState.RUNNING, at[3]))
    ]
    runs = [
        await TestRun.create(
            session=session,
            language="PYTHON",
            owner="test",
            status=TestRunStatus.FINISHED,
            total=5,
            passed=i,
            failed=5 - i,
            created_at=at[i],
        )
        for i in range(3)
    ]
    await TestCaseResult.bulk_create(
        [
            TestCaseResult(
                run=run,
                position=position,
                name=f"case {position}",
                hidden=position == 1,
                verdict=Verdict.PASSED if position == 0 else Verdict.WRONG_ANSWER,
            )
            for run in runs
            for position in (0, 1)
        ]
    )
    agents = [
        await ClaudeRun.create(
            session=session,
            prompt=f"prompt {i}",
            owner="test",
            status=ClaudeRunStatus.SUCCEEDED,
            created_at=at[i],
        )
        for i in range(3)
    ]
    # Open first whatever its age, then newest first: closed(at 2), open(at 1), closed(at 0).
    terminals = [
        await TerminalRecord.create(
            session=session,
            sandbox=new_box,
            owner="test",
            state=state,
            cols=80,
            rows=24,
            created_at=at[i],
        )
        for i, state in enumerate((TerminalState.CLOSED, TerminalState.OPEN, TerminalState.CLOSED))
    ]
    for text in ("first impression", "solid tests"):
        (await api(NOTE, {"s": session_id, "t": text}, token=account["interviewerToken"])).ok()
    return {
        "runs": [str(r.id) for r in reversed(runs)],
        "agents": [str(r.id) for r in reversed(agents)],
        "terminals": [str(terminals[i].id) for i in (1, 2, 0)],
        "sandbox": [str(new_box.id), str(old_box.id)],
    }


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


# -- the number of queries -----------------------------------------------------------


async def page_with_timelines(api: Api, account: Account, sessions: int) -> None:
    """``sessions`` sessions in the account (the seeded one included), each with a timeline."""
    await seed_timeline(api, account, account["sessionId"])
    for _ in range(sessions - 1):
        session_id, _token = await new_session(api, account)
        await seed_timeline(api, account, session_id)


async def queries_for_page(
    api: Api, account: Account, count: Callable[[], Any], size: int
) -> list[str]:
    with count() as queries:
        page = (await api(PAGE, {"n": size}, token=account["interviewerToken"])).ok()
    # The token check writes last_used_at at most once a minute: whether a request
    # does depends on the clock, not on the page.
    queries = [q for q in queries if "api_token" not in q]
    edges = page["sessions"]["edges"]
    assert len(edges) == size
    # Every field of every session was answered, with its data.
    assert all(e["node"]["testRuns"]["totalCount"] == 3 for e in edges)
    assert all(len(e["node"]["terminals"]) == 3 for e in edges)
    assert all(len(e["node"]["notes"]) == 2 for e in edges)
    assert all(len(e["node"]["lastTestRun"]["results"]) == 2 for e in edges)
    assert all(e["node"]["question"]["title"] == "Two Sum" for e in edges)
    return queries


async def test_a_page_of_sessions_costs_the_same_queries_whatever_its_size(
    api: Api, account: Account, count_queries: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await page_with_timelines(api, account, 20)

    small = await queries_for_page(api, account, count_queries, 5)
    large = await queries_for_page(api, account, count_queries, 20)
    assert len(small) == len(large), (small, large)
    # The page and its count, then one query per field (the question's in three; the
    # runs' results in one for all runs); lastTestRun shares testRuns' query.
    assert len(large) <= 14, large

    # Positive control: loaders that load one session at a time -- what the fields did
    # before -- make the count grow with the page, and this test sees it.
    monkeypatch.setattr(gql.loaders, "DataLoader", functools.partial(DataLoader, max_batch_size=1))
    unbatched_small = await queries_for_page(api, account, count_queries, 5)
    unbatched_large = await queries_for_page(api, account, count_queries, 20)
    assert len(unbatched_large) - len(unbatched_small) >= 15 * 6
