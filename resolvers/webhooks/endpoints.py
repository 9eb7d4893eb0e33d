"""Webhook endpoints and their delivery log: staff of the account only.

Candidates are FORBIDDEN; another account's endpoint or delivery is NOT_FOUND.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.webhook import EndpointKind, WebhookDelivery, WebhookEndpoint
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.errors import BadUserInput, NotFound, RateLimited
from resolvers.pagination import Page
from resolvers.webhooks.outbox import SUBSCRIBABLE, encode_body, queue
from resolvers.webhooks.signing import new_secret, new_webhook_id
from resolvers.webhooks.ssrf import TargetRefused, parse_target, resolve

MAX_ENDPOINTS_PER_ACCOUNT = 20
# Greenhouse's callback endpoints (EndpointKind) belong to its interviews, not to the API.
STANDARD = EndpointKind.STANDARD_WEBHOOKS


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    url: str
    events: list[str]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str
    """Shown once: the key receivers verify signatures with."""


async def create_endpoint(
    principal: Principal, spec: EndpointSpec, *, allow_private: bool
) -> CreatedEndpoint:
    principal.require_staff()
    url = await checked_url("input.url", spec.url, allow_private=allow_private)
    events = _checked_events("input.events", spec.events)
    description = _checked_description(spec.description)
    if await WebhookEndpoint.filter(account_id=principal.account_id, kind=STANDARD).count() >= (
        MAX_ENDPOINTS_PER_ACCOUNT
    ):
        raise RateLimited(f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints")
    secret = new_secret()
    endpoint = await WebhookEndpoint.create(
        account_id=principal.account_id,
        url=url,
        events=events,
        description=description,
        secret=secret,
    )
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


async def update_endpoint(
    principal: Principal, endpoint_id: str, changes: EndpointChanges, *, allow_private: bool
) -> WebhookEndpoint:
    """Change what is given. Enabling a disabled endpoint clears why it was disabled and
    resumes its queue where it stopped, in order."""
    endpoint = await get_endpoint(principal, endpoint_id)
    fields: dict[str, Any] = {}
    if changes.url is not None:
        fields["url"] = await checked_url("input.url", changes.url, allow_private=allow_private)
    if changes.events is not None:
        fields["events"] = _checked_events("input.events", changes.events)
    if changes.description is not None:
        fields["description"] = _checked_description(changes.description)
    if changes.enabled is True and not endpoint.enabled:
        fields |= {"enabled": True, "disabled_at": None, "disabled_reason": None}
        fields["failure_streak"] = 0
    elif changes.enabled is False and endpoint.enabled:
        fields |= {"enabled": False, "disabled_reason": "disabled through the API"}
        fields["disabled_at"] = datetime.now(UTC)
    if fields:
        await WebhookEndpoint.filter(id=endpoint.id).update(**fields, updated_at=datetime.now(UTC))
    return await WebhookEndpoint.get(id=endpoint.id)


async def delete_endpoint(principal: Principal, endpoint_id: str) -> uuid.UUID:
    """Delete the endpoint with its delivery log and whatever it had not received."""
    endpoint = await get_endpoint(principal, endpoint_id)
    await remove_endpoints([endpoint.id])
    return endpoint.id


async def remove_endpoints(endpoint_ids: list[uuid.UUID]) -> None:
    """Delete endpoints and their deliveries: the deliveries first, the order in which
    the worker locks them (a delivery, then its endpoint), so that a delete racing an
    attempt's record waits for it instead of deadlocking with it (PostgreSQL)."""
    async with in_transaction() as conn:
        await WebhookDelivery.filter(endpoint_id__in=endpoint_ids).using_db(conn).delete()
        await WebhookEndpoint.filter(id__in=endpoint_ids).using_db(conn).delete()


async def get_endpoint(principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    principal.require_staff()
    eid = check.object_id("endpointId", endpoint_id)
    endpoint = await WebhookEndpoint.get_or_none(
        id=eid, account_id=principal.account_id, kind=STANDARD
    )
    if endpoint is None:
        raise NotFound("webhook endpoint")
    return endpoint


async def list_endpoints(principal: Principal) -> list[WebhookEndpoint]:
    principal.require_staff()
    return await WebhookEndpoint.filter(account_id=principal.account_id, kind=STANDARD).order_by(
        "created_at"
    )


async def list_deliveries(
    principal: Principal, endpoint_id: str, *, first: int, after: str | None
) -> Page[WebhookDelivery]:
    """The endpoint's deliveries, newest first (keyset pages over the outbox's order)."""
    endpoint = await get_endpoint(principal, endpoint_id)
    check.int_range("first", first, low=1, high=100)
    query = WebhookDelivery.filter(endpoint_id=endpoint.id)
    total = await query.count()
    if after is not None:
        query = query.filter(id__lt=_decode_cursor(after))
    rows = await query.order_by("-id").limit(first + 1)
    return Page(
        items=[(_cursor(row.id), row) for row in rows[:first]],
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
        total_count=total,
    )


async def send_test(principal: Principal, endpoint_id: str) -> WebhookDelivery:
    """Queue a ``webhook.test`` event for the endpoint (behind anything it has pending)."""
    endpoint = await get_endpoint(principal, endpoint_id)
    data = {"endpointId": str(endpoint.id), "message": "a test event from InterviewLM"}
    async with in_transaction() as conn:
        rows = await queue(
            [endpoint],
            new_webhook_id(),
            "webhook.test",
            encode_body("webhook.test", data),
            conn,
        )
    return rows[0]


async def redeliver(principal: Principal, delivery_id: str) -> WebhookDelivery:
    """Send a delivery again as a new one (same ``webhook-id``, same body, new attempts)."""
    original = await get_delivery(principal, delivery_id)
    endpoint = await WebhookEndpoint.get(id=original.endpoint_id)
    async with in_transaction() as conn:
        rows = await queue(
            [endpoint], original.webhook_id, original.event_type, original.body, conn
        )
    return rows[0]


async def get_delivery(principal: Principal, delivery_id: str) -> WebhookDelivery:
    principal.require_staff()
    did = check.object_id("deliveryId", delivery_id)
    delivery = await WebhookDelivery.get_or_none(
        public_id=did, account_id=principal.account_id, endpoint__kind=STANDARD
    )
    if delivery is None:
        raise NotFound("webhook delivery")
    return delivery


async def checked_url(field: str, url: str, *, allow_private: bool) -> str:
    url = check.text(field, url, max_length=2048)
    try:
        await resolve(parse_target(url, allow_private=allow_private), allow_private=allow_private)
    except TargetRefused as exc:
        if "does not resolve" not in str(exc):
            raise BadUserInput(field, str(exc)) from None
        # A receiver whose name is not live yet may be saved; every attempt checks again.
    return url


def _checked_events(field: str, events: list[str]) -> list[str]:
    if not events:
        raise BadUserInput(field, "must name at least one event type")
    unknown = sorted(set(events) - set(SUBSCRIBABLE))
    if unknown:
        raise BadUserInput(
            field, f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(SUBSCRIBABLE)}"
        )
    return [t for t in SUBSCRIBABLE if t in events]


def _checked_description(description: str | None) -> str:
    if description is None:
        return ""
    return check.text("input.description", description, max_length=500, allow_empty=True)


def _cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(f"d{delivery_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith("d"):
            return int(raw[1:])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise BadUserInput("after", "is not a valid cursor")
