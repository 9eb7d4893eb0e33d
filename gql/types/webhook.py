"""Webhook endpoints and deliveries in GraphQL. An endpoint's secret appears only in
``CreateWebhookEndpointPayload``, once."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models.webhook import DeliveryStatus
from models.webhook import WebhookDelivery as DeliveryModel
from models.webhook import WebhookEndpoint as EndpointModel
from resolvers.webhooks.endpoints import CreatedEndpoint

WebhookDeliveryStatus = strawberry.enum(DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str
    events: list[str] = strawberry.field(description="The event types it receives.")
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None = strawberry.field(
        description="Why it was disabled: after a run of failed deliveries, or through the API."
    )
    failure_streak: int = strawberry.field(description="Failed attempts in a row.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, model: EndpointModel) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(str(model.id)),
            url=model.url,
            description=model.description,
            events=list(model.events),
            enabled=model.enabled,
            disabled_at=model.disabled_at,
            disabled_reason=model.disabled_reason,
            failure_streak=model.failure_streak,
            created_at=model.created_at,
            updated_at=model.updated_at,
        )


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(
        description="The signing secret (`whsec_...`, Standard Webhooks). Shown only once."
    )

    @classmethod
    def of(cls, created: CreatedEndpoint) -> CreateWebhookEndpointPayload:
        return cls(endpoint=WebhookEndpoint.of(created.endpoint), secret=created.secret)


@strawberry.type(description="One event sent (or to be sent) to one endpoint.")
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    webhook_id: str = strawberry.field(
        description="The `webhook-id` header: the same on every retry and redelivery."
    )
    event_type: str
    status: WebhookDeliveryStatus  # type: ignore[valid-type]
    attempt: int = strawberry.field(description="Attempts made so far.")
    http_status: int | None = strawberry.field(description="Of the last attempt's answer.")
    duration_ms: int | None
    response_excerpt: str | None = strawberry.field(
        description="The first 4 KiB of the last answer's body."
    )
    error: str | None = strawberry.field(
        description="Why the last attempt failed short of a 2xx (refused, timeout, redirect)."
    )
    next_attempt_at: datetime | None = strawberry.field(description="While PENDING.")
    created_at: datetime
    delivered_at: datetime | None
    body: str = strawberry.field(description="The JSON body, exactly as sent.")

    @classmethod
    def of(cls, model: DeliveryModel) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(str(model.public_id)),
            endpoint_id=strawberry.ID(str(model.endpoint_id)),
            webhook_id=model.webhook_id,
            event_type=model.event_type,
            status=model.status,
            attempt=model.attempt,
            http_status=model.http_status,
            duration_ms=model.duration_ms,
            response_excerpt=model.response_excerpt,
            error=model.error,
            next_attempt_at=(
                model.next_attempt_at if model.status is DeliveryStatus.PENDING else None
            ),
            created_at=model.created_at,
            delivered_at=model.delivered_at,
            body=model.body,
        )


@strawberry.input
class CreateWebhookEndpointInput:
    url: str
    events: list[str]
    description: str | None = None


@strawberry.input(description="Only the fields given change.")
class UpdateWebhookEndpointInput:
    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: bool | None = strawberry.field(
        default=None,
        description="true re-enables a disabled endpoint: its queue resumes, in order.",
    )
