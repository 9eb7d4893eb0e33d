"""Webhooks across replicas: two real ``interviewlm serve`` processes share the outbox
(PostgreSQL and Redis in the PostgreSQL pass), and the one delivering is SIGKILLed in
the middle of an attempt. The receiver is a loopback stand-in (tests/webhook_receiver.py).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette

from models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from resolvers.webhooks.worker import DeliveryWorker
from tests.conftest import Account, random_email
from tests.server import ServerProcess, start_server
from tests.support import wait_until
from tests.test_webhooks import CREATE_ENDPOINT, CREATE_SESSION
from tests.webhook_receiver import Reply, running_receiver

pytestmark = pytest.mark.redis

REPLICA_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2,0.2,0.2",
    # A lease is 2 x timeout + 5 s: a killed replica's delivery is retried after 9 s.
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_POLL_INTERVAL_MS": "100",
    "WEBHOOK_CONCURRENCY": "16",
}


@pytest.fixture
def in_process_worker_paused(app: Starlette) -> Iterator[None]:
    """Only the two replicas deliver (the test's own app shares their database)."""
    worker: DeliveryWorker = app.state.webhooks
    worker.paused = True
    yield
    worker.paused = False


async def graphql(
    server: ServerProcess, token: str, query: str, variables: dict[str, object]
) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
    body = response.json()
    assert not body.get("errors"), body
    return dict(body["data"])


async def test_a_replica_killed_mid_delivery_loses_nothing(
    server_env: dict[str, str],
    account: Account,
    in_process_worker_paused: None,
    tmp_path: Path,
) -> None:
    # Endpoints earlier tests left behind (their receivers gone, some at names that do not
    # resolve here) would take the fresh replicas' delivery slots for their retries first.
    await WebhookEndpoint.filter(enabled=True).update(enabled=False)
    env = {**server_env, **REPLICA_ENV}
    replicas = [start_server(env, tmp_path), start_server(env, tmp_path)]
    try:
        async with running_receiver() as receiver:
            in_flight = asyncio.Event()
            receiver.replies = [Reply(hold=in_flight)]  # the first attempt never gets an answer
            token = account["atsToken"]
            created = await graphql(
                replicas[0],
                token,
                CREATE_ENDPOINT,
                {"i": {"url": receiver.url, "events": ["session.created"]}},
            )
            secret = created["createWebhookEndpoint"]["secret"]  # type: ignore[index]
            for _ in range(5):
                await graphql(
                    replicas[0],
                    token,
                    CREATE_SESSION,
                    {"q": account["questionId"], "e": random_email()},
                )
            await wait_until(lambda: receiver.received, 20, what="the first attempt")
            held = await WebhookDelivery.get(webhook_id=receiver.received[0].webhook_id)
            assert held.lease_owner is not None
            owner_pid = int(held.lease_owner.split(":")[1])
            victim = next(r for r in replicas if r.process.pid == owner_pid)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            in_flight.set()

            endpoint_rows = WebhookDelivery.filter(endpoint_id=held.endpoint_id)
            expected = [row.webhook_id for row in await endpoint_rows.order_by("id")]
            assert len(expected) == 5

            async def all_delivered() -> bool:
                statuses = await endpoint_rows.values_list("status", flat=True)
                return all(s == DeliveryStatus.SUCCEEDED for s in statuses)

            await wait_until(all_delivered, 60, what="every event delivered by the survivor")
            got = [r.webhook_id for r in receiver.received]
            assert set(got) == set(expected)  # nothing lost, nothing foreign
            assert list(dict.fromkeys(got)) == expected  # in order
            assert got.count(expected[0]) >= 2  # the interrupted one, sent again...
            for received in receiver.received:  # ...under the same id, and signed
                assert Webhook(secret).verify(received.body, received.headers)
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop()
