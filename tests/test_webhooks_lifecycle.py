"""Every session event reaches a subscribed endpoint, with the state it reports: a real
sandbox start, a real test run, completion (with the run's summary), cancellation and
expiry. The receiver is a loopback stand-in (tests/webhook_receiver.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from models.session import InterviewSession
from resolvers.sessions import expire_due
from resolvers.webhooks.outbox import SUBSCRIBABLE
from resolvers.webhooks.worker import DeliveryWorker
from tests.conftest import Account, random_email
from tests.support import Api, wait_until
from tests.test_webhooks import (
    CREATE_SESSION,
    END_SESSION,
    create_endpoint,
    fast_worker,
    receiver,
    verified,
)
from tests.webhook_receiver import Receiver
from tests.workspace_support import START

__all__ = ["fast_worker", "receiver"]  # fixtures, used by name
RUN_TESTS = "mutation($s: ID!) { runTests(sessionId: $s) { id } }"
TEST_RUN = "query($id: ID!) { testRun(id: $id) { status passed total } }"


async def test_a_session_reports_its_whole_life(
    app: Starlette,
    api: Api,
    account: Account,
    fast_worker: DeliveryWorker,
    receiver: Receiver,
) -> None:
    staff = account["interviewerToken"]
    session_events = [t for t in SUBSCRIBABLE if t.startswith(("session.", "testrun."))]
    _, secret = await create_endpoint(api, staff, receiver.url, session_events)

    def of_type(kind: str) -> list[dict[str, Any]]:
        events = [verified(secret, r) for r in receiver.received]
        return [e for e in events if e["type"] == kind]

    sid = account["sessionId"]
    (await api(START, {"s": sid}, token=account["candidateToken"])).ok()
    started = await wait_until(lambda: of_type("session.started"), what="session.started")
    assert started[0]["data"]["sessionId"] == sid
    assert started[0]["data"]["status"] == "ACTIVE"

    run_id = (await api(RUN_TESTS, {"s": sid}, token=staff)).ok()["runTests"]["id"]
    finished = await wait_until(lambda: of_type("testrun.finished"), 60, what="testrun.finished")
    run = (await api(TEST_RUN, {"id": run_id}, token=staff)).ok()["testRun"]
    assert finished[0]["data"]["testRun"]["id"] == run_id
    assert finished[0]["data"]["testRun"]["passed"] == run["passed"]
    assert finished[0]["data"]["testRun"]["total"] == run["total"] > 0

    await api(END_SESSION, {"s": sid, "c": False}, token=account["candidateToken"])
    completed = await wait_until(lambda: of_type("session.completed"), what="completed")
    data = completed[0]["data"]
    assert data["status"] == "COMPLETED"
    summary = data["summary"]
    assert summary["finalTestRunId"] == run_id
    cases = summary["visible"]["passed"] + summary["hidden"]["passed"]
    assert cases == run["passed"]
    assert summary["visible"]["total"] + summary["hidden"]["total"] == run["total"]
    # The report's link, minted in the completing transaction, opens without a token.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as browser:
        page = await browser.get(httpx.URL(data["reportUrl"]).path)
    assert page.status_code == 200
    assert "<html" in page.text

    variables = {"q": account["questionId"], "e": random_email()}
    cancelled_id = (await api(CREATE_SESSION, variables, token=staff)).ok()["createSession"]
    await api(END_SESSION, {"s": cancelled_id["session"]["id"], "c": True}, token=staff)
    cancelled = await wait_until(lambda: of_type("session.cancelled"), what="cancelled")
    assert cancelled[0]["data"]["sessionId"] == cancelled_id["session"]["id"]
    assert cancelled[0]["data"]["status"] == "CANCELLED"

    expiring = (await api(CREATE_SESSION, variables | {"e": random_email()}, token=staff)).ok()
    expiring_id = expiring["createSession"]["session"]["id"]
    past = datetime.now(UTC) - timedelta(seconds=1)
    await InterviewSession.filter(id=expiring_id).update(expires_at=past)
    await expire_due(app.state.services.log, now=datetime.now(UTC))
    expired = await wait_until(lambda: of_type("session.expired"), what="expired")
    assert [e["data"]["sessionId"] for e in expired] == [expiring_id]
    assert expired[0]["data"]["status"] == "EXPIRED"
    created = [e["data"]["sessionId"] for e in of_type("session.created")]
    assert created == [cancelled_id["session"]["id"], expiring_id]
