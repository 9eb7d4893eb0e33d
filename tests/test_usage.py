"""``usage(from, to)``: an account's sandbox seconds, test runs and agent runs (staff only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from models.claude import ClaudeRun, ClaudeRunStatus
from models.sandbox import SandboxRecord, SandboxState
from tests.conftest import Account, random_email
from tests.support import Api
from tests.test_testruns import run_tests
from tests.workspace_support import TERMINATE, start

USAGE = """query($from: DateTime!, $to: DateTime!) {
  usage(from: $from, to: $to) {
    from to sessionsCreated
    sandboxes { started seconds }
    testRuns { total durationSeconds byStatus { status count } }
    agentRuns { runs turns apiRequests inputTokens outputTokens costUsd }
  }
}"""

Factory = Callable[[], Awaitable[Account]]


async def usage(api: Api, token: str, start: datetime, end: datetime) -> dict[str, Any]:
    window = {"from": start.isoformat(), "to": end.isoformat()}
    return (await api(USAGE, window, token=token)).ok()["usage"]  # type: ignore[no-any-return]


async def agent_run(account: Account, **fields: Any) -> ClaudeRun:
    """A finished run with the proxy's metering, as the agent would leave it."""
    return await ClaudeRun.create(
        session_id=account["sessionId"],
        prompt="p",
        owner="test",
        status=ClaudeRunStatus.SUCCEEDED,
        finished_at=datetime.now(UTC),
        **fields,
    )


async def sandbox(account: Account, created: datetime, ended: datetime | None) -> None:
    record = await SandboxRecord.create(
        account_id=account["accountId"],
        session_id=account["sessionId"],
        backend="local",
        owner="usage-test:0",
        state=SandboxState.RUNNING if ended is None else SandboxState.TERMINATED,
        last_activity_at=created,
        ended_at=ended,
    )
    # created_at is set on insert; a test places it in time.
    await SandboxRecord.filter(id=record.id).update(created_at=created)


async def test_usage_counts_what_the_account_did(api: Api, account_factory: Factory) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    account = await account_factory()
    other = await account_factory()
    await start(api, account)
    run = await run_tests(api, account, token="interviewerToken")
    (await api(TERMINATE, {"s": account["sessionId"]}, token=account["candidateToken"])).ok()
    await agent_run(
        account, num_turns=3, api_requests=4, input_tokens=1_000_000, output_tokens=200_000
    )
    # Another account's activity is never counted in this one's usage.
    await start(api, other)
    await agent_run(other, num_turns=9, api_requests=9, input_tokens=9, output_tokens=9)

    until = datetime.now(UTC) + timedelta(minutes=1)
    used = await usage(api, account["interviewerToken"], since, until)
    record = await SandboxRecord.get(session_id=account["sessionId"])
    assert record.ended_at is not None
    lived = (record.ended_at - record.created_at).total_seconds()
    assert used["sessionsCreated"] == 1
    assert used["sandboxes"]["started"] == 1
    assert used["sandboxes"]["seconds"] == pytest.approx(lived, abs=0.01)
    assert used["testRuns"]["total"] == 1
    statuses = {s["status"]: s["count"] for s in used["testRuns"]["byStatus"]}
    assert statuses == {"QUEUED": 0, "RUNNING": 0, "FINISHED": 0, "ERROR": 0} | {run["status"]: 1}
    # 1M input tokens at $3/MTok + 0.2M output tokens at $15/MTok (the defaults).
    assert used["agentRuns"] == {
        "runs": 1,
        "turns": 3,
        "apiRequests": 4,
        "inputTokens": 1_000_000,
        "outputTokens": 200_000,
        "costUsd": 6.0,
    }
    # The ATS token of the account sees the same; the other account only its own.
    assert await usage(api, account["atsToken"], since, until) == used
    theirs = await usage(api, other["interviewerToken"], since, until)
    assert theirs["sessionsCreated"] == 1
    assert theirs["testRuns"]["total"] == 0
    assert theirs["sandboxes"]["started"] == 1
    assert theirs["agentRuns"]["runs"] == 1
    assert theirs["agentRuns"]["inputTokens"] == 9
    await api(TERMINATE, {"s": other["sessionId"]}, token=other["candidateToken"])


async def test_windows_clip_sandbox_lifetimes(api: Api, account: Account) -> None:
    now = datetime.now(UTC)
    t = now - timedelta(hours=1)
    await sandbox(account, t - timedelta(hours=2), t - timedelta(hours=1))  # A
    await sandbox(account, t - timedelta(minutes=30), t + timedelta(minutes=30))  # B
    await sandbox(account, now - timedelta(minutes=10), None)  # C, still running
    old = await agent_run(account, input_tokens=5)
    await ClaudeRun.filter(id=old.id).update(created_at=t - timedelta(hours=2))
    token = account["interviewerToken"]

    # [t, now + 1h): half of B, and C up to now (the request's time).
    before = datetime.now(UTC)
    recent = await usage(api, token, t, now + timedelta(hours=1))
    after = datetime.now(UTC)
    running = (before - (now - timedelta(minutes=10))).total_seconds()
    assert 1800 + running - 0.01 <= recent["sandboxes"]["seconds"]
    assert recent["sandboxes"]["seconds"] <= 1800 + running + (after - before).total_seconds()
    assert recent["sandboxes"]["started"] == 1  # C; B started before the window
    assert recent["agentRuns"]["runs"] == 0  # asked before the window

    # [t - 90 min, t - 60 min): the last half hour of A; B had not started.
    early = await usage(api, token, t - timedelta(minutes=90), t - timedelta(minutes=60))
    assert early["sandboxes"] == {"started": 0, "seconds": pytest.approx(1800, abs=0.01)}
    # [t - 3 h, t - 2 h): A had not started yet.
    earliest = await usage(api, token, t - timedelta(hours=3), t - timedelta(hours=2))
    assert earliest["sandboxes"] == {"started": 0, "seconds": 0}
    assert earliest["agentRuns"]["runs"] == 0  # created exactly at the end: [from, to)
    # An empty window, and one ending in the future with nothing in it.
    assert (await usage(api, token, t, t))["sandboxes"]["seconds"] == 0
    future = await usage(api, token, now + timedelta(days=1), now + timedelta(days=2))
    assert future["sandboxes"] == {"started": 0, "seconds": 0}
    # Offsets are honoured: the same instants written in another time zone.
    plus2 = timezone(timedelta(hours=2))
    shifted = await usage(
        api,
        token,
        (t - timedelta(minutes=90)).astimezone(plus2),
        (t - timedelta(minutes=60)).astimezone(plus2),
    )
    assert shifted["sandboxes"] == early["sandboxes"]


async def test_bad_windows_and_candidates_are_refused(api: Api, account: Account) -> None:
    now = datetime.now(UTC)
    staff = account["interviewerToken"]
    for since, until in ((now, now - timedelta(seconds=1)), (now - timedelta(days=367), now)):
        window = {"from": since.isoformat(), "to": until.isoformat()}
        answer = await api(USAGE, window, token=staff)
        assert answer.codes == ["BAD_USER_INPUT"], answer.body
        assert answer.errors[0]["extensions"]["field"] == "to"
    window = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    assert (await api(USAGE, window, token=account["candidateToken"])).codes == ["FORBIDDEN"]
    assert (await api(USAGE, window)).codes == ["UNAUTHENTICATED"]
    assert (await api(USAGE, {"from": "yesterday", "to": now.isoformat()}, token=staff)).codes == [
        "BAD_USER_INPUT"
    ]


CREATE_SESSION = """mutation($q: ID!, $e: String!) {
  createSession(input: {questionId: $q, candidateName: "x", candidateEmail: $e}) {
    session { id }
  }
}"""


async def test_usage_queries_do_not_grow_with_sessions(
    api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aggregated in the database: a few queries however many sessions ran things."""
    connection = SandboxRecord._meta.db
    counted: list[str] = []
    for name in ("execute_query", "execute_query_dict"):
        original = getattr(connection, name)

        def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            counted.append(str(args[0]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(connection, name, counting)
    staff = account["interviewerToken"]
    now = datetime.now(UTC)
    await usage(api, staff, now - timedelta(days=1), now + timedelta(days=1))  # warm-up
    counted.clear()
    await usage(api, staff, now - timedelta(days=1), now + timedelta(days=1))
    one_session = len(counted)
    for _ in range(4):
        created = await api(
            CREATE_SESSION, {"q": account["questionId"], "e": random_email()}, token=staff
        )
        session_id = created.ok()["createSession"]["session"]["id"]
        await agent_run({**account, "sessionId": session_id}, input_tokens=1)
        await sandbox({**account, "sessionId": session_id}, now, now + timedelta(seconds=2))
    counted.clear()
    used = await usage(api, staff, now - timedelta(days=1), now + timedelta(days=1))
    assert (used["sessionsCreated"], used["agentRuns"]["runs"]) == (5, 4)
    assert used["sandboxes"]["seconds"] == pytest.approx(8, abs=0.01)
    assert 4 <= len(counted) == one_session <= 6, counted
