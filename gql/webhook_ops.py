"""Webhooks in GraphQL: endpoints, their delivery log, test events and redelivery."""

from __future__ import annotations

from typing import cast

import strawberry

from gql.context import Info, principal_of
from gql.types.common import Connection, connection_of
from gql.types.webhook import (
    CreateWebhookEndpointInput,
    CreateWebhookEndpointPayload,
    UpdateWebhookEndpointInput,
    WebhookDelivery,
    WebhookEndpoint,
)
from resolvers.webhooks import endpoints
from resolvers.webhooks.worker import DeliveryWorker


def _allow_private(info: Info) -> bool:
    """The running worker's policy (the one deliveries are checked with)."""
    worker = cast(DeliveryWorker, info.context.request.app.state.webhooks)
    return worker.config.allow_private_networks


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The account's webhook endpoints, oldest first.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        rows = await endpoints.list_endpoints(await principal_of(info))
        return [WebhookEndpoint.of(row) for row in rows]

    @strawberry.field(description="An endpoint's deliveries, newest first.")
    async def webhook_deliveries(
        self, info: Info, endpoint_id: strawberry.ID, first: int = 20, after: str | None = None
    ) -> Connection[WebhookDelivery]:
        page = await endpoints.list_deliveries(
            await principal_of(info), endpoint_id, first=first, after=after
        )
        return connection_of(page, WebhookDelivery.of)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="Register an https endpoint for the given event types. The answer "
        "holds its signing secret, shown only this once."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        created = await endpoints.create_endpoint(
            await principal_of(info),
            endpoints.EndpointSpec(
                url=input.url, events=input.events, description=input.description
            ),
            allow_private=_allow_private(info),
        )
        return CreateWebhookEndpointPayload.of(created)

    @strawberry.mutation
    async def update_webhook_endpoint(
        self, info: Info, id: strawberry.ID, input: UpdateWebhookEndpointInput
    ) -> WebhookEndpoint:
        endpoint = await endpoints.update_endpoint(
            await principal_of(info),
            id,
            endpoints.EndpointChanges(
                url=input.url,
                events=input.events,
                description=input.description,
                enabled=input.enabled,
            ),
            allow_private=_allow_private(info),
        )
        return WebhookEndpoint.of(endpoint)

    @strawberry.mutation(description="Delete the endpoint, its delivery log and its queue.")
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        deleted = await endpoints.delete_endpoint(await principal_of(info), id)
        return strawberry.ID(str(deleted))

    @strawberry.mutation(description="Queue a `webhook.test` event for the endpoint.")
    async def send_test_webhook(self, info: Info, endpoint_id: strawberry.ID) -> WebhookDelivery:
        delivery = await endpoints.send_test(await principal_of(info), endpoint_id)
        return WebhookDelivery.of(delivery)

    @strawberry.mutation(
        description="Send a delivery's event again: a new delivery with the same "
        "`webhook-id` and body, queued behind the endpoint's pending ones."
    )
    async def redeliver_webhook(self, info: Info, delivery_id: strawberry.ID) -> WebhookDelivery:
        delivery = await endpoints.redeliver(await principal_of(info), delivery_id)
        return WebhookDelivery.of(delivery)
