"""Making a session's timeline for tests/test_timeline*.py: runs, terminals and
sandboxes as model rows (the timeline fields read rows; producing them for real --
sandboxes, judged runs, the agent -- would add minutes and nothing those tests
check), notes through ``addNote``; and the queries that read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.claude import ClaudeRun, ClaudeRunStatus
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestCaseResult, TestRun, TestRunStatus, Verdict
from tests.conftest import Account, random_email
from tests.support import Api

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
  scorecards { id recommendation }
"""
PAGE = "query($n: Int!) { sessions(first: $n) { edges { node {" + TIMELINE_FIELDS + "} } } }"
SESSION = "query($id: ID!) { session(id: $id) {" + TIMELINE_FIELDS + "} }"

BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


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
