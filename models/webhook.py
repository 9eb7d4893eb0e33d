"""Webhooks: an account's endpoints, and the outbox of deliveries to them.

The signing secret is stored as it is, unlike API tokens (stored hashed): the
server needs the key itself to compute each delivery's HMAC, and a hash of it
cannot sign. It is shown once at creation and never returned or logged again.

``WebhookDelivery`` is the transactional outbox: a row is written in the same
transaction as the state change it reports, one per subscribed endpoint, and
the delivery worker (``resolvers.webhooks.worker``) works through each
endpoint's rows in ``id`` order. ``id`` is a database sequence so that order
is the order the rows were written, whatever the replicas' clocks say;
``public_id`` is what the API shows.
"""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.account import Account


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    """Not delivered yet: due at ``next_attempt_at`` (or being attempted, under a lease)."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    """Every attempt of the retry schedule failed; the endpoint was disabled then."""


class EndpointKind(enum.StrEnum):
    STANDARD_WEBHOOKS = "standard_webhooks"
    """An account's endpoint: signed POSTs of the events it subscribes to."""
    GREENHOUSE_CALLBACK = "greenhouse_callback"
    """The ``url`` of one Greenhouse ``send_test`` (resolvers.greenhouse): an empty
    ``PATCH`` with HTTP Basic auth (``secret`` is the partner key, sealed under
    ``CREDENTIAL_KEY``: see resolvers.credentials) when its session completes.
    Subscribes to nothing and is not one of the account's endpoints in the API."""


class WebhookEndpoint(Model):
    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    url = fields.CharField(max_length=2048)
    description = fields.CharField(max_length=500, default="")
    events: fields.JSONField[list[str]] = fields.JSONField(default=list)
    secret = fields.CharField(max_length=300)
    # db_default too: the column is added to a table that may have rows (migration 0014).
    kind = fields.CharEnumField(
        EndpointKind,
        max_length=20,
        default=EndpointKind.STANDARD_WEBHOOKS,
        db_default=EndpointKind.STANDARD_WEBHOOKS,
        db_index=True,
    )
    enabled = fields.BooleanField(default=True)
    disabled_at = fields.DatetimeField(null=True)
    disabled_reason = fields.TextField(null=True)
    # Failed attempts in a row (any success resets it): what a disabling reports.
    failure_streak = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "webhook_endpoint"


class WebhookDelivery(Model):
    id = fields.BigIntField(primary_key=True)
    public_id = fields.UUIDField(unique=True, default=uuid.uuid4)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="webhook_deliveries", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    endpoint_id: uuid.UUID  # the FK's column, for typed access
    # The Standard Webhooks message id: the same on every attempt and redelivery.
    webhook_id = fields.CharField(max_length=64, db_index=True)
    event_type = fields.CharField(max_length=64)
    # The exact JSON body, serialized once: every attempt sends (and signs) these bytes.
    body = fields.TextField()
    status = fields.CharEnumField(DeliveryStatus, max_length=10, default=DeliveryStatus.PENDING)
    attempt = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    # While an attempt is in flight: until when, and which replica's worker holds it.
    lease_until = fields.DatetimeField(null=True)
    lease_owner = fields.CharField(max_length=200, null=True)
    http_status = fields.IntField(null=True)
    duration_ms = fields.IntField(null=True)
    response_excerpt = fields.TextField(null=True)
    error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        # The worker's lookups: an endpoint's oldest pending row, and due rows.
        indexes = (("endpoint_id", "status", "id"), ("status", "next_attempt_at"))
