"""Session expiry: reading a session never writes it; the reaper records the expiry
(``session.expired``, once, whichever replica's reaper gets there); listings filter by
expiry in the query, so ``sessions(status: SCHEDULED)`` never lists an expired session.
Real database and bus, real sandbox for the sandbox the reaper stops."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette

from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession, SessionStatus
from resolvers.reaper import reap_once
from resolvers.sessions import expire_due
from tests.conftest import Account, random_email
from tests.support import Api
from tests.workspace_support import events, start

SESSION = "query($id: ID!) { session(id: $id) { status endedAt expiresAt } }"
END = "mutation($id: ID!) { endSession(sessionId: $id) { id status } }"
PAGE = """query($status: SessionStatus, $ext: String) {
  sessions(first: 50, status: $status, externalId: $ext) {
    totalCount edges { node { id status } }
  }
}"""
CREATE = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) { session { id status } }
}"""


async def expire_now(session_id: str) -> datetime:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await InterviewSession.filter(id=session_id).update(expires_at=past)
    return past


def kinds(recorded: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in recorded]


async def test_reading_an_expired_session_writes_nothing(api: Api, account: Account) -> None:
    sid = account["sessionId"]
    before = await InterviewSession.get(id=sid)
    await expire_now(sid)
    for token in ("atsToken", "interviewerToken", "candidateToken"):
        seen = (await api(SESSION, {"id": sid}, token=account[token])).ok()["session"]
        assert seen["status"] == "EXPIRED"
        assert seen["endedAt"] == seen["expiresAt"]  # it ended when it expired
    assert (await api(END, {"id": sid}, token=account["atsToken"])).codes == ["CONFLICT"]
    recorded = await events(api, account)
    after = await InterviewSession.get(id=sid)
    # The reads appended nothing (the old code wrote EXPIRED and a session.ended).
    assert "session.ended" not in kinds(recorded)
    if after.status is SessionStatus.EXPIRED:
        # Only the app's own reaper (every 30 s) may have got there meanwhile.
        assert kinds(recorded).count("session.expired") == 1
    else:
        assert after.status is before.status
        assert after.last_seq == before.last_seq
        assert "session.expired" not in kinds(recorded)


async def test_the_reaper_records_an_expiry_once_and_stops_its_sandbox(
    app: Starlette, api: Api, account: Account
) -> None:
    sid = account["sessionId"]
    await start(api, account)
    expired_at = await expire_now(sid)
    sandboxes = app.state.services.sandboxes
    # Two replicas' reapers at once: one records it.
    counts = await asyncio.gather(
        expire_due(sandboxes.log, now=datetime.now(UTC)),
        expire_due(sandboxes.log, now=datetime.now(UTC)),
    )
    assert sum(counts) >= 1
    report = await reap_once(sandboxes)
    assert report.session_ended >= 1
    session = await InterviewSession.get(id=sid)
    assert session.status is SessionStatus.EXPIRED
    assert session.ended_at == expired_at
    recorded = await events(api, account)
    expiries = [e for e in recorded if e["type"] == "session.expired"]
    assert [e["payload"]["status"] for e in expiries] == ["EXPIRED"]
    sandbox = await SandboxRecord.get(session_id=sid)
    assert (sandbox.state, sandbox.end_reason) == (SandboxState.TERMINATED, "the session ended")
    # Later passes change nothing for it.
    await reap_once(sandboxes)
    assert kinds(await events(api, account)).count("session.expired") == 1


async def test_listings_filter_by_expiry_in_the_query(api: Api, account: Account) -> None:
    ext = f"ats-{uuid.uuid4().hex[:8]}"

    async def create() -> str:
        data = {
            "questionId": account["questionId"],
            "candidateName": "Ada",
            "candidateEmail": random_email(),
            "externalId": ext,
        }
        result = await api(CREATE, {"input": data}, token=account["atsToken"])
        return str(result.ok()["createSession"]["session"]["id"])

    expired = await create()
    await expire_now(expired)
    # The expired one no longer holds the externalId: a new session may take it.
    fresh = await create()

    async def listed(status: str | None) -> tuple[int, dict[str, str]]:
        page = (await api(PAGE, {"status": status, "ext": ext}, token=account["atsToken"])).ok()[
            "sessions"
        ]
        return page["totalCount"], {e["node"]["id"]: e["node"]["status"] for e in page["edges"]}

    assert await listed("SCHEDULED") == (1, {fresh: "SCHEDULED"})
    assert await listed("ACTIVE") == (0, {})
    assert await listed("EXPIRED") == (1, {expired: "EXPIRED"})
    assert await listed(None) == (2, {fresh: "SCHEDULED", expired: "EXPIRED"})
