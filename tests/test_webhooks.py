"""Webhooks end to end: the real app's outbox and delivery worker, sending over real HTTP
to a receiver on loopback (tests/webhook_receiver.py, a stand-in for an ATS's endpoint:
private addresses are allowed here as WEBHOOK_ALLOW_PRIVATE_NETWORKS=true allows them),
signatures checked with the reference ``standardwebhooks`` package.

The session's app is shared by the whole run; these tests give its worker a fast retry
schedule and a short timeout (``fast_worker``), and put its policy back afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

from models.webhook import WebhookDelivery, WebhookEndpoint
from resolvers.webhooks import claims, enqueue
from resolvers.webhooks.config import WebhookConfig
from resolvers.webhooks.endpoints import remove_endpoints
from resolvers.webhooks.worker import DeliveryWorker
from tests.conftest import Account, random_email
from tests.support import Api, wait_until
from tests.webhook_receiver import Receiver, Reply, running_receiver

FAST = WebhookConfig(
    allow_private_networks=True,
    retry_schedule_s=(0.05, 0.05, 0.05),
    timeout_s=1,
    poll_interval_s=0.02,
)

CREATE_ENDPOINT = """mutation($i: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $i) { secret endpoint { id url events enabled description } } }"""
UPDATE_ENDPOINT = """mutation($id: ID!, $i: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(id: $id, input: $i) { id url events enabled disabledReason } }"""
DELETE_ENDPOINT = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }"
ENDPOINTS = "{ webhookEndpoints { id url events enabled disabledReason failureStreak } }"
DELIVERIES = """query($e: ID!, $first: Int! = 50, $after: String) {
  webhookDeliveries(endpointId: $e, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id webhookId eventType status attempt httpStatus durationMs
                   responseExcerpt error nextAttemptAt body } } } }"""
SEND_TEST = "mutation($e: ID!) { sendTestWebhook(endpointId: $e) { id webhookId status } }"
REDELIVER = "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) { id webhookId status } }"
CREATE_SESSION = """mutation($q: ID!, $e: String!, $x: String) {
  createSession(input: {questionId: $q, candidateName: "Ada", candidateEmail: $e,
                        externalId: $x}) { session { id } } }"""
END_SESSION = "mutation($s: ID!, $c: Boolean!) { endSession(sessionId: $s, cancel: $c) { id } }"


@pytest.fixture
def fast_worker(app: Starlette) -> Iterator[DeliveryWorker]:
    worker: DeliveryWorker = app.state.webhooks
    saved = worker.config
    worker.config = FAST
    yield worker
    worker.config = saved


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running
    # Nothing of this test may go on being retried against a receiver that is gone.
    mine = WebhookEndpoint.filter(url__startswith=running.url.rsplit("/", 1)[0])
    await remove_endpoints(await mine.values_list("id", flat=True))


async def create_endpoint(
    api: Api, token: str, url: str, events: list[str], **more: Any
) -> tuple[str, str]:
    """(endpoint id, secret)."""
    data = (
        await api(CREATE_ENDPOINT, {"i": {"url": url, "events": events, **more}}, token=token)
    ).ok()
    created = data["createWebhookEndpoint"]
    return created["endpoint"]["id"], created["secret"]


async def deliveries(api: Api, token: str, endpoint_id: str) -> list[dict[str, Any]]:
    data = (await api(DELIVERIES, {"e": endpoint_id}, token=token)).ok()
    return [edge["node"] for edge in data["webhookDeliveries"]["edges"]]


def verified(secret: str, received: Any) -> dict[str, Any]:
    """The payload, verified as a receiver would (raises if the signature is wrong)."""
    return dict(Webhook(secret).verify(received.body, received.headers))


async def test_session_events_arrive_signed_by_the_standard(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["atsToken"]
    events = ["session.created", "session.completed", "session.cancelled"]
    endpoint_id, secret = await create_endpoint(api, token, receiver.url, events)
    assert secret.startswith("whsec_")
    assert len(secret) > 40

    variables = {"q": account["questionId"], "e": random_email(), "x": "app-42"}
    created = await api(CREATE_SESSION, variables, token=token)
    session_id = created.ok()["createSession"]["session"]["id"]
    await api(END_SESSION, {"s": session_id, "c": False}, token=token)
    await wait_until(lambda: len(receiver.received) >= 2, what="two deliveries")

    first, second = receiver.received[:2]
    payloads = [verified(secret, first), verified(secret, second)]
    assert [p["type"] for p in payloads] == ["session.created", "session.completed"]
    assert all(p["data"]["sessionId"] == session_id for p in payloads)
    assert all(p["data"]["externalId"] == "app-42" for p in payloads)
    assert [p["data"]["status"] for p in payloads] == ["SCHEDULED", "COMPLETED"]
    completed = payloads[1]["data"]
    assert "/reports/ilmr_" in completed["reportUrl"]
    assert completed["summary"]["score"] is None  # no test run yet
    assert set(completed["summary"]) >= {"visible", "hidden", "agent", "activity"}
    datetime.fromisoformat(payloads[0]["timestamp"])
    assert first.webhook_id != second.webhook_id

    # A signature under another secret, or over another body, does not verify.
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook("whsec_" + "A" * 43 + "=").verify(first.body, first.headers)
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(secret).verify(first.body.replace(b"app-42", b"app-43"), first.headers)

    log = await wait_until(
        lambda: _all_succeeded(api, token, endpoint_id, 2), what="the log says succeeded"
    )
    assert {d["attempt"] for d in log} == {1}
    assert {d["httpStatus"] for d in log} == {200}
    assert all(d["responseExcerpt"] == "ok" and d["nextAttemptAt"] is None for d in log)


async def _all_succeeded(
    api: Api, token: str, endpoint_id: str, count: int
) -> list[dict[str, Any]] | None:
    log = await deliveries(api, token, endpoint_id)
    done = len(log) == count and all(d["status"] == "SUCCEEDED" for d in log)
    return log if done else None


async def test_retries_after_500s_and_a_timeout_keep_the_webhook_id(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["interviewerToken"]
    receiver.replies = [Reply(500, "boom"), Reply(503), Reply(delay_s=3)]  # 3 s > the 1 s timeout
    endpoint_id, secret = await create_endpoint(api, token, receiver.url, ["session.created"])
    await api(CREATE_SESSION, {"q": account["questionId"], "e": random_email()}, token=token)

    log = await wait_until(
        lambda: _all_succeeded(api, token, endpoint_id, 1), 20, what="delivered on the 4th try"
    )
    assert len(receiver.received) == 4
    assert len({r.webhook_id for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    for attempt in receiver.received:
        assert verified(secret, attempt)["type"] == "session.created"
    assert log[0]["attempt"] == 4
    assert log[0]["httpStatus"] == 200


async def test_failed_attempts_are_logged_with_the_next_attempt(
    api: Api, account: Account, app: Starlette, receiver: Receiver
) -> None:
    worker: DeliveryWorker = app.state.webhooks
    saved = worker.config
    # The first retry far away: the log is read while the delivery waits for it.
    worker.config = dataclasses.replace(FAST, retry_schedule_s=(3600,))
    try:
        receiver.replies = [Reply(500, "x" * 10_000)]
        token = account["interviewerToken"]
        endpoint_id, _ = await create_endpoint(api, token, receiver.url, ["webhook.disabled"])
        await api(SEND_TEST, {"e": endpoint_id}, token=token)
        log = await wait_until(
            lambda: _with(api, token, endpoint_id, httpStatus=500), what="a failed attempt"
        )
    finally:
        worker.config = saved
    failed = log[0]
    assert failed["status"] == "PENDING"
    assert failed["attempt"] == 1
    assert len(failed["responseExcerpt"]) == 4096  # capped
    retry_at = datetime.fromisoformat(failed["nextAttemptAt"])
    assert timedelta(minutes=45) < retry_at - datetime.now(UTC) < timedelta(minutes=75)


async def _with(api: Api, token: str, endpoint_id: str, **fields: Any) -> list[dict[str, Any]]:
    log = await deliveries(api, token, endpoint_id)
    return log if log and all(log[0].get(k) == v for k, v in fields.items()) else []


async def test_a_replica_with_no_delivery_slots_delivers_nothing(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    """WEBHOOK_CONCURRENCY=0: the replica serves the API and leaves deliveries to others."""
    token = account["interviewerToken"]
    endpoint_id, _ = await create_endpoint(api, token, receiver.url, ["webhook.disabled"])
    fast_worker.config = dataclasses.replace(FAST, concurrency=0)
    await api(SEND_TEST, {"e": endpoint_id}, token=token)
    await asyncio.sleep(1)  # 50 of the worker's poll intervals
    assert receiver.received == []
    assert [d["attempt"] for d in await deliveries(api, token, endpoint_id)] == [0]

    fast_worker.config = FAST  # given slots, it delivers
    await wait_until(lambda: _all_succeeded(api, token, endpoint_id, 1), what="delivered")
    assert len(receiver.received) == 1


@pytest.mark.parametrize("failing", [0, 2])
async def test_each_endpoint_gets_its_events_in_order(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver, failing: int
) -> None:
    """The oldest undelivered event of an endpoint holds back the later ones, also when
    it fails in the middle of a backlog the worker leased as one run."""
    token = account["interviewerToken"]
    receiver.replies = [Reply()] * failing + [Reply(500), Reply(500)]  # fails twice
    endpoint_id, secret = await create_endpoint(api, token, receiver.url, ["session.created"])
    fast_worker.paused = True  # the six queue up, then go as a backlog
    try:
        sent = [(await api(SEND_TEST, {"e": endpoint_id}, token=token)).ok() for _ in range(6)]
    finally:
        fast_worker.paused = False
    fast_worker.wake()
    ids = [s["sendTestWebhook"]["webhookId"] for s in sent]

    await wait_until(lambda: len(receiver.succeeded()) >= 6, 20, what="all six delivered")
    retried = [ids[failing]] * 2
    assert [r.webhook_id for r in receiver.received] == [*ids[:failing], *retried, *ids[failing:]]
    assert [r.webhook_id for r in receiver.succeeded()] == ids
    assert all(verified(secret, r)["type"] == "webhook.test" for r in receiver.received)


async def test_an_endpoint_failing_every_retry_is_disabled_and_others_are_told(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["interviewerToken"]
    receiver.replies = [Reply(500)] * 4  # every attempt of the first delivery
    failing, _ = await create_endpoint(api, token, receiver.url, ["session.created"])
    watcher_url = receiver.url.replace("/hook", "/watcher")
    _watcher, secret = await create_endpoint(api, token, watcher_url, ["webhook.disabled"])
    first = (await api(SEND_TEST, {"e": failing}, token=token)).ok()["sendTestWebhook"]
    second = (await api(SEND_TEST, {"e": failing}, token=token)).ok()["sendTestWebhook"]

    notice = await wait_until(lambda: receiver.at("/watcher"), 20, what="webhook.disabled")
    event = verified(secret, notice[0])
    assert event["type"] == "webhook.disabled"
    assert event["data"]["endpointId"] == failing
    listed = {e["id"]: e for e in (await api(ENDPOINTS, token=token)).ok()["webhookEndpoints"]}
    assert listed[failing]["enabled"] is False
    assert "4 failed attempts in a row" in listed[failing]["disabledReason"]
    assert "HTTP 500" in listed[failing]["disabledReason"]
    log = {d["webhookId"]: d for d in await deliveries(api, token, failing)}
    assert log[first["webhookId"]]["status"] == "FAILED"
    assert log[first["webhookId"]]["attempt"] == 4
    assert log[second["webhookId"]]["status"] == "PENDING"  # waits for the endpoint
    assert [r.webhook_id for r in receiver.at("/hook")] == [first["webhookId"]] * 4

    enabled = await api(UPDATE_ENDPOINT, {"id": failing, "i": {"enabled": True}}, token=token)
    assert enabled.ok()["updateWebhookEndpoint"]["disabledReason"] is None
    await wait_until(lambda: len(receiver.at("/hook")) == 5, what="the queue resumed")
    assert receiver.at("/hook")[-1].webhook_id == second["webhookId"]


async def test_redelivery_sends_the_same_message_again(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["atsToken"]
    endpoint_id, secret = await create_endpoint(api, token, receiver.url, ["session.created"])
    await api(SEND_TEST, {"e": endpoint_id}, token=token)
    log = await wait_until(lambda: _all_succeeded(api, token, endpoint_id, 1), what="delivered")

    again = (await api(REDELIVER, {"d": log[0]["id"]}, token=token)).ok()["redeliverWebhook"]
    assert again["id"] != log[0]["id"]
    assert again["webhookId"] == log[0]["webhookId"]
    await wait_until(lambda: len(receiver.received) == 2, what="redelivered")
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body
    assert verified(secret, second) == verified(secret, first)
    await wait_until(lambda: _all_succeeded(api, token, endpoint_id, 2), what="both logged")


async def test_nothing_is_queued_when_the_change_rolls_back(account: Account) -> None:
    endpoint = await WebhookEndpoint.create(
        account_id=account["accountId"],
        url="https://example.com/hook",
        events=["scorecard.submitted"],
        secret="whsec_" + "A" * 44,
        enabled=False,  # nothing is sent: this test looks at the outbox only
    )

    async def change_that_fails() -> None:
        async with in_transaction() as conn:
            assert await enqueue(
                uuid.UUID(account["accountId"]), "scorecard.submitted", {"x": 1}, using_db=conn
            )
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert not await WebhookDelivery.filter(endpoint_id=endpoint.id).exists()
    queued = await enqueue(uuid.UUID(account["accountId"]), "scorecard.submitted", {"x": 2})
    assert queued == 1
    assert await WebhookDelivery.filter(endpoint_id=endpoint.id).count() == 1
    # Not subscribed, nothing queued; and unknown types are a programming error.
    assert await enqueue(uuid.UUID(account["accountId"]), "session.created", {}) == 0
    with pytest.raises(ValueError, match="unknown"):
        await enqueue(uuid.UUID(account["accountId"]), "session.exploded", {})
    await endpoint.delete()


async def test_delivery_log_pages(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["interviewerToken"]
    endpoint_id, _ = await create_endpoint(api, token, receiver.url, ["session.created"])
    sent = [(await api(SEND_TEST, {"e": endpoint_id}, token=token)).ok() for _ in range(5)]
    ids = [s["sendTestWebhook"]["id"] for s in sent]
    seen: list[str] = []
    after = None
    while True:
        page = (
            await api(DELIVERIES, {"e": endpoint_id, "first": 2, "after": after}, token=token)
        ).ok()["webhookDeliveries"]
        assert page["totalCount"] == 5
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids[::-1]  # newest first
    bad = await api(DELIVERIES, {"e": endpoint_id, "after": "nonsense"}, token=token)
    assert bad.codes == ["BAD_USER_INPUT"]


async def test_endpoints_that_answer_are_served_before_failing_ones(
    account: Account, fast_worker: DeliveryWorker
) -> None:
    """A receiver in a failure streak (down, or hanging until each attempt times out)
    must not take the delivery slots of endpoints that answer, even with its retries due
    first: the claim takes healthy endpoints' heads first."""
    account_id = uuid.UUID(account["accountId"])
    failing, healthy = [
        await WebhookEndpoint.create(
            account_id=account_id,
            url=f"https://{name}.example.com/hook",
            events=["webhook.disabled"],
            secret="whsec_x",
            failure_streak=streak,
        )
        for name, streak in (("down", 3), ("up", 0))
    ]
    fast_worker.paused = True  # the test claims, not the worker
    owner = f"test-{uuid.uuid4().hex[:8]}"
    try:
        await enqueue(account_id, "webhook.disabled", {"n": 1})  # both: the failing one older
        await WebhookDelivery.filter(endpoint_id=failing.id).update(
            next_attempt_at=datetime.now(UTC) - timedelta(minutes=5)
        )
        claimed = await claims.claim_heads(owner, FAST, limit=1000)
        mine = [c.endpoint_id for c in claimed if c.endpoint_id in {failing.id, healthy.id}]
        assert mine == [healthy.id, failing.id]
    finally:
        await claims.release(owner)
        await remove_endpoints([failing.id, healthy.id])
        fast_worker.paused = False
