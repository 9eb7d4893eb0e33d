"""Claiming deliveries across replicas, and recording how an attempt went.

A delivery is claimable when it is the *head* of its endpoint (the oldest pending
delivery: later ones wait, which is what keeps each endpoint's order), due, its
endpoint enabled, and not leased. Claiming sets a lease (owner and expiry) by a
conditional update, so of two replicas racing for it exactly one wins; on PostgreSQL the
candidate rows are also selected ``FOR UPDATE SKIP LOCKED``, so concurrent replicas pass
over each other's rows instead of queueing on them. A replica that dies mid-attempt
leaves its lease to expire, and another replica sends the delivery again, with the same
``webhook-id``: duplicates are possible, losses are not.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F, Q, Subquery
from tortoise.functions import Min
from tortoise.transactions import in_transaction

from models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from resolvers.webhooks.config import JITTER, WebhookConfig
from resolvers.webhooks.outbox import enqueue
from resolvers.webhooks.sender import Attempt, AttemptResult

logger = logging.getLogger("interviewlm.webhooks")


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    endpoint_id: uuid.UUID
    attempt_number: int
    attempt: Attempt
    lease_until: datetime


def _unleased(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lte=now)


def _heads() -> Subquery:
    """Each enabled endpoint's oldest pending delivery (a disabled one's queue, however
    long, costs the worker's look-ups nothing)."""
    return Subquery(
        WebhookDelivery.filter(status=DeliveryStatus.PENDING, endpoint__enabled=True)
        .group_by("endpoint_id")
        .annotate(head=Min("id"))
        .values("head")
    )


async def claim_heads(
    owner: str, config: WebhookConfig, *, limit: int, busy: Collection[uuid.UUID] = ()
) -> list[Claimed]:
    """Lease up to ``limit`` due heads, of endpoints other than ``busy``.

    Endpoints that answer go first, the oldest due first; then those in a failure streak
    (their retries). A receiver that is down, or hangs until the attempt's timeout, must
    not take a replica's delivery slots from endpoints that are up: its retries wait
    for a free slot, never the other way round."""
    now = datetime.now(UTC)
    query = WebhookDelivery.filter(
        _unleased(now), id__in=_heads(), next_attempt_at__lte=now, endpoint__enabled=True
    )
    if busy:
        query = query.exclude(endpoint_id__in=list(busy))
    async with in_transaction() as conn:
        candidates = await (
            query.using_db(conn)
            .order_by("endpoint__failure_streak", "next_attempt_at", "id")
            .limit(limit)
            .select_for_update(skip_locked=True, of=("webhook_delivery",))
        )
        won = []
        for row in candidates:
            if await _lease([row], owner, config, now, conn):
                won.append(row)
        return await _claimed(won, now + timedelta(seconds=config.lease_s), conn)


async def claim_run(
    owner: str, config: WebhookConfig, endpoint_id: uuid.UUID, *, limit: int
) -> list[Claimed]:
    """Lease the endpoint's head and the pending deliveries right behind it (up to
    ``limit``), to be sent one after another in this order: a backlog costs one claim per
    run instead of one per delivery. Nothing if the head is not due or is leased."""
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        rows = await (
            WebhookDelivery.filter(
                endpoint_id=endpoint_id, status=DeliveryStatus.PENDING, endpoint__enabled=True
            )
            .using_db(conn)
            .order_by("id")
            .limit(limit)
            .select_for_update(skip_locked=True, of=("webhook_delivery",))
        )
        head = await (
            WebhookDelivery.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING)
            .using_db(conn)
            .order_by("id")
            .first()
        )
        # SKIP LOCKED passes over a head another replica is claiming: then nothing.
        if not rows or head is None or rows[0].id != head.id:
            return []
        run = []
        for row in rows:
            if row.next_attempt_at > now or not (row.lease_until is None or row.lease_until <= now):
                break
            run.append(row)
        if not run or not await _lease(run, owner, config, now, conn):
            return []
        return await _claimed(run, now + timedelta(seconds=config.lease_s), conn)


async def _lease(
    rows: list[WebhookDelivery],
    owner: str,
    config: WebhookConfig,
    now: datetime,
    conn: BaseDBAsyncClient,
) -> bool:
    """Lease all of ``rows`` or none (a conditional update: of racing replicas one wins)."""
    leased = (
        await WebhookDelivery.filter(
            _unleased(now), id__in=[r.id for r in rows], status=DeliveryStatus.PENDING
        )
        .using_db(conn)
        .update(
            lease_owner=owner,
            lease_until=now + timedelta(seconds=config.lease_s),
            attempt=F("attempt") + 1,
        )
    )
    if leased == len(rows):
        return True
    if leased:  # another replica got some first: give back ours
        await (
            WebhookDelivery.filter(id__in=[r.id for r in rows], lease_owner=owner)
            .using_db(conn)
            .update(lease_owner=None, lease_until=None, attempt=F("attempt") - 1)
        )
    return False


async def _claimed(
    rows: list[WebhookDelivery], lease_until: datetime, conn: BaseDBAsyncClient
) -> list[Claimed]:
    endpoints = {
        e.id: e
        for e in await WebhookEndpoint.filter(id__in=[r.endpoint_id for r in rows]).using_db(conn)
    }
    return [
        Claimed(
            delivery_id=row.id,
            endpoint_id=row.endpoint_id,
            attempt_number=row.attempt + 1,
            attempt=Attempt(
                url=endpoints[row.endpoint_id].url,
                secret=endpoints[row.endpoint_id].secret,
                webhook_id=row.webhook_id,
                body=row.body,
                kind=endpoints[row.endpoint_id].kind,
            ),
            lease_until=lease_until,
        )
        for row in rows
    ]


def backoff_s(config: WebhookConfig, attempts_made: int) -> float:
    """The wait after the ``attempts_made``-th failed attempt, jittered."""
    base = config.retry_schedule_s[min(attempts_made, len(config.retry_schedule_s)) - 1]
    return base * random.uniform(*JITTER)  # noqa: S311 -- jitter, not a secret


async def record(
    claimed: Claimed, result: AttemptResult, *, owner: str, config: WebhookConfig
) -> None:
    """Record the attempt, if this replica still holds the lease (one that lost it to
    another replica leaves the record to that one's attempt)."""
    now = datetime.now(UTC)
    outcome = _outcome(result)
    final = not result.ok and claimed.attempt_number >= config.max_attempts
    if result.ok:
        outcome |= {"status": DeliveryStatus.SUCCEEDED, "delivered_at": now}
    elif final:
        outcome |= {"status": DeliveryStatus.FAILED}
    else:
        outcome["next_attempt_at"] = now + timedelta(
            seconds=backoff_s(config, claimed.attempt_number)
        )
    async with in_transaction() as conn:
        mine = (
            await WebhookDelivery.filter(
                id=claimed.delivery_id, lease_owner=owner, status=DeliveryStatus.PENDING
            )
            .using_db(conn)
            .update(**outcome)
        )
        if not mine:
            return
        endpoints = WebhookEndpoint.filter(id=claimed.endpoint_id).using_db(conn)
        if result.ok:
            await endpoints.filter(failure_streak__gt=0).update(failure_streak=0)
            return
        await endpoints.update(failure_streak=F("failure_streak") + 1)
        if final:
            await _disable(claimed, result, conn=conn, now=now)


async def record_successes(
    done: list[tuple[Claimed, AttemptResult]], *, owner: str, endpoint_id: uuid.UUID
) -> None:
    """Record successful attempts to one endpoint together, in one transaction."""
    if not done:
        return
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        for claimed, result in done:
            await (
                WebhookDelivery.filter(
                    id=claimed.delivery_id, lease_owner=owner, status=DeliveryStatus.PENDING
                )
                .using_db(conn)
                .update(**_outcome(result), status=DeliveryStatus.SUCCEEDED, delivered_at=now)
            )
        await (
            WebhookEndpoint.filter(id=endpoint_id, failure_streak__gt=0)
            .using_db(conn)
            .update(failure_streak=0)
        )


def _outcome(result: AttemptResult) -> dict[str, Any]:
    return {
        "http_status": result.http_status,
        "duration_ms": result.duration_ms,
        "response_excerpt": result.excerpt,
        "error": result.error,
        "lease_owner": None,
        "lease_until": None,
    }


async def _disable(
    claimed: Claimed, result: AttemptResult, *, conn: BaseDBAsyncClient, now: datetime
) -> None:
    endpoint = await WebhookEndpoint.filter(id=claimed.endpoint_id).using_db(conn).get()
    last = f"HTTP {result.http_status}" if result.http_status else (result.error or "no answer")
    reason = (
        f"{endpoint.failure_streak} failed attempts in a row; delivery {claimed.attempt.webhook_id}"
        f" gave up after its last retry ({last})"
    )
    await (
        WebhookEndpoint.filter(id=endpoint.id, enabled=True)
        .using_db(conn)
        .update(enabled=False, disabled_at=now, disabled_reason=reason)
    )
    logger.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)
    await enqueue(
        endpoint.account_id,
        "webhook.disabled",
        {"endpointId": str(endpoint.id), "url": endpoint.url, "reason": reason},
        using_db=conn,
    )


async def release(owner: str, delivery_ids: Collection[int] | None = None) -> int:
    """Give back this replica's leases (all of them at a shutdown; or the unsent rest of
    a run, which then do not count as attempts): others may take them at once."""
    query = WebhookDelivery.filter(lease_owner=owner, status=DeliveryStatus.PENDING)
    if delivery_ids is None:
        return await query.update(lease_owner=None, lease_until=None)
    query = query.filter(id__in=list(delivery_ids))
    return await query.update(lease_owner=None, lease_until=None, attempt=F("attempt") - 1)
