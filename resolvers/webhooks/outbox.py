"""The transactional outbox: ``enqueue`` writes an event's deliveries with the state change.

Call it with the transaction's connection (``using_db=conn``) in the transaction that
makes the change the event reports: the deliveries commit with the change or not at
all, and the worker (on any replica) sends them after the commit. That is what makes
delivery at-least-once: nothing is sent for a change that rolled back, and nothing is
lost when a process dies between the change and the send.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from models.webhook import WebhookDelivery, WebhookEndpoint
from resolvers.webhooks.signing import new_webhook_id

logger = logging.getLogger("interviewlm.webhooks")

EVENT_TYPES = (
    "session.created",
    "session.started",
    "session.completed",
    "session.cancelled",
    "session.expired",
    "testrun.finished",
    "scorecard.submitted",
    "webhook.disabled",
    "webhook.test",
)
SUBSCRIBABLE = tuple(t for t in EVENT_TYPES if t != "webhook.test")
"""What an endpoint may list in ``events``; ``webhook.test`` goes only where it is sent."""

Wake = Callable[[set[uuid.UUID]], None]
_wakers: list[Wake] = []


def on_enqueue(wake: Wake) -> Callable[[], None]:
    """Have ``wake`` called with the endpoints of every enqueue in this process (the
    local worker's doorbell, so a delivery leaves in milliseconds instead of at the next
    poll). Returns the function that unregisters it."""
    _wakers.append(wake)
    return lambda: _wakers.remove(wake)


def encode_body(event_type: str, data: Mapping[str, Any], at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    return json.dumps(
        {"type": event_type, "timestamp": at.isoformat(), "data": dict(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )


async def enqueue(
    account_id: uuid.UUID,
    event_type: str,
    data: Mapping[str, Any],
    *,
    using_db: BaseDBAsyncClient | None = None,
) -> int:
    """Queue the event for every endpoint of the account that subscribes to it; returns
    how many deliveries were queued. ``data`` must be JSON-serializable. Disabled
    endpoints get it too: it waits for them, in order, until they are enabled again."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = await WebhookEndpoint.filter(account_id=account_id).using_db(using_db)
    targets = [e for e in endpoints if event_type in e.events]
    if not targets:
        return 0
    await queue(targets, new_webhook_id(), event_type, encode_body(event_type, data), using_db)
    return len(targets)


async def queue(
    endpoints: Sequence[WebhookEndpoint],
    webhook_id: str,
    event_type: str,
    body: str,
    using_db: BaseDBAsyncClient | None,
) -> list[WebhookDelivery]:
    """One pending delivery per endpoint, due now; rings the local worker."""
    now = datetime.now(UTC)
    rows = [
        WebhookDelivery(
            account_id=endpoint.account_id,
            endpoint_id=endpoint.id,
            webhook_id=webhook_id,
            event_type=event_type,
            body=body,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    ]
    for row in rows:
        # One INSERT each: bulk_create would not give PostgreSQL's ids back.
        await row.save(using_db=using_db)
    ring({endpoint.id for endpoint in endpoints})
    return rows


def ring(endpoint_ids: set[uuid.UUID]) -> None:
    for wake in list(_wakers):
        wake(endpoint_ids)
