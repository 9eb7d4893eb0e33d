"""WebSocket protocol handlers that check the token at every subscribe, not only at connect;
and a bound on message sizes (``bounded_messages``).

Strawberry authenticates a WebSocket once (``on_ws_connect``). Here, for both
graphql-transport-ws and the legacy graphql-ws, every ``subscribe``/``start``
authenticates the connection's token again (revoked, expired or unknown: the
socket is closed with 4403 and the operation never runs), and the connection
is registered with ``resolvers.revocations`` so that revoking the token, or its
expiry, closes the socket promptly on whichever replica holds it.

Metrics (graphql-transport-ws): open connections, and running subscriptions by
their root field (only fields the schema has: a label set clients cannot grow).

Per-token bound (``SubscriptionQuota``): Strawberry caps subscriptions per
connection only, so one token with many connections could hold thousands on one
replica (each replays from the database and holds memory) and starve it. Each
replica counts the live subscriptions of each token in memory; past
``MAX_SUBSCRIPTIONS_PER_TOKEN`` (interviewers: ``MAX_SUBSCRIPTIONS_PER_STAFF_TOKEN``)
a new one gets an ``error`` message with ``extensions.code`` RATE_LIMITED. The
count is released in the operation task's ``finally``: completion, error, the
client's ``complete``/``stop`` and disconnection all end that task.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLFormattedError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from starlette.types import Message, Receive, Send
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    Operation as TransportOperation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage as TransportErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import ErrorMessage, StartMessage

from gql.context import Context
from resolvers import metrics
from resolvers.auth import Principal, PrincipalKind
from resolvers.errors import ApiError
from resolvers.revocations import Registration

CLOSE_CODE = 4403  # graphql-transport-ws: Forbidden


class SubscriptionQuota:
    """Live subscriptions per token on this replica (see the module docstring)."""

    def __init__(self, per_token: int, per_staff_token: int) -> None:
        self.per_token = per_token
        self.per_staff_token = per_staff_token
        self._counts: dict[uuid.UUID, int] = {}

    def limit_for(self, principal: Principal) -> int:
        staff = principal.kind is PrincipalKind.INTERVIEWER
        return self.per_staff_token if staff else self.per_token

    def acquire(self, principal: Principal) -> bool:
        held = self._counts.get(principal.token_id, 0)
        if held >= self.limit_for(principal):
            return False
        self._counts[principal.token_id] = held + 1
        return True

    def release(self, principal: Principal) -> None:
        held = self._counts.get(principal.token_id, 0) - 1
        if held > 0:
            self._counts[principal.token_id] = held
        else:
            self._counts.pop(principal.token_id, None)  # no entry per token ever seen

    def held(self, token_id: uuid.UUID) -> int:
        return self._counts.get(token_id, 0)

    def refusal(self, principal: Principal) -> GraphQLFormattedError:
        """The GraphQL error a refused subscription gets."""
        metrics.RATE_LIMITED.labels(limit="subscriptions").inc()
        limit = self.limit_for(principal)
        message = (
            f"Too many live subscriptions for this token on this server (limit {limit}); "
            "complete some before subscribing again."
        )
        return GraphQLError(message, extensions={"code": "RATE_LIMITED", "limit": limit}).formatted


def quota_of(view: Any) -> SubscriptionQuota:
    """The app's quota: kept on its GraphQL view (one per app, hence per replica),
    made on first use from the app's settings."""
    quota = getattr(view, "_subscription_quota", None)
    if not isinstance(quota, SubscriptionQuota):
        settings = view.services.settings
        quota = SubscriptionQuota(
            settings.max_subscriptions_per_token, settings.max_subscriptions_per_staff_token
        )
        view._subscription_quota = quota
    return quota


class _TokenChecks:
    """Shared by both protocol handlers (mixed in before Strawberry's class)."""

    context: Context
    websocket: Any
    connection_acknowledged: bool
    _registration: Registration | None = None
    # Who the connection is (its token), kept from the ack: the context's principal is
    # None while a later subscribe re-authenticates, and the token cannot change.
    _holder: Principal | None = None

    def _register(self) -> None:
        principal = self.context.connection_principal
        if self.connection_acknowledged and self._holder is None:
            self._holder = principal
        if self.connection_acknowledged and principal is not None and self._registration is None:
            self._registration = self.context.services.revocations.register(
                principal.token_id, principal.expires_at, self._close
            )

    def _unregister(self) -> None:
        if self._registration is not None:
            self._registration.cancel()

    async def _close(self, reason: str) -> None:
        await self.websocket.close(code=CLOSE_CODE, reason=f"Forbidden: {reason}")

    async def _token_still_valid(self) -> bool:
        if not self.connection_acknowledged:
            return True  # Strawberry refuses operations before the ack itself
        try:
            await self.context.authenticate_connection()
        except ApiError:
            self._unregister()
            await self._close("token revoked or expired")
            return False
        return True


@lru_cache(maxsize=256)  # watchers send the same few documents
def subscription_field(query: str, operation_name: str | None) -> str | None:
    """The root field of the document's subscription operation, if it is one."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            if definition.operation is not OperationType.SUBSCRIPTION:
                return None
            first = definition.selection_set.selections[0]
            name = getattr(first, "name", None)
            return name.value if name is not None else None
    return None


class TransportWSHandler(_TokenChecks, BaseGraphQLTransportWSHandler[Context, None]):
    async def handle(self) -> None:
        metrics.WEBSOCKET_CONNECTIONS.inc()
        try:
            await super().handle()
        finally:
            metrics.WEBSOCKET_CONNECTIONS.dec()

    async def run_operation(self, operation: TransportOperation[Context, None]) -> None:
        field = subscription_field(operation.query, operation.operation_name)
        core: GraphQLSchema | None = getattr(self.schema, "_schema", None)  # graphql-core's
        root = core.subscription_type if core is not None else None
        if field is None or root is None or field not in root.fields:
            await super().run_operation(operation)
            return
        principal = self._holder
        quota = quota_of(self.view)
        if principal is not None and not quota.acquire(principal):
            refused = TransportErrorMessage(
                id=operation.id, type="error", payload=[quota.refusal(principal)]
            )
            await operation.send_operation_message(refused)
            return
        running = metrics.SUBSCRIPTIONS.labels(field=field)
        running.inc()
        try:
            await super().run_operation(operation)
        finally:
            running.dec()
            if principal is not None:
                quota.release(principal)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        self._register()

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if await self._token_still_valid():
            await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        self._unregister()
        await super().shutdown()


class LegacyWSHandler(_TokenChecks, BaseGraphQLWSHandler[Context, None]):
    async def handle_connection_init(self, message: LegacyInitMessage) -> None:
        await super().handle_connection_init(message)
        self._register()

    async def handle_start(self, message: StartMessage) -> None:
        if await self._token_still_valid():
            await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        principal = self._holder
        if principal is None or subscription_field(query, operation_name) is None:
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        quota = quota_of(self.view)
        if not quota.acquire(principal):
            self.tasks.pop(operation_id, None)
            await self.send_message(
                ErrorMessage(type="error", id=operation_id, payload=quota.refusal(principal))
            )
            return
        try:
            await super().handle_async_results(operation_id, query, operation_name, variables)
        finally:
            quota.release(principal)

    async def cleanup(self) -> None:
        self._unregister()
        await super().cleanup()


def bounded_messages(
    receive: Receive, send: Send, *, before_ack: int, after_ack: int
) -> tuple[Receive, Send]:
    """Cap incoming WebSocket messages: ``before_ack`` bytes until the server has
    acknowledged the connection (the token is checked by then), ``after_ack`` after.
    A larger message closes the socket (1009) before it is decoded: without this, an
    unauthenticated client had its 16 MiB messages JSON-decoded on the event loop."""
    state = {"acked": False, "closed": False}

    async def bounded_send(message: Message) -> None:
        if state["closed"]:
            return  # we closed the socket ourselves; the handler does not know yet
        if not state["acked"] and message["type"] == "websocket.send":
            state["acked"] = "connection_ack" in (message.get("text") or "")
        await send(message)

    async def bounded_receive() -> Message:
        message = await receive()
        if message["type"] != "websocket.receive":
            return message
        size = len(message.get("text") or "") or len(message.get("bytes") or b"")
        limit = after_ack if state["acked"] else before_ack
        if size <= limit:
            return message
        await send({"type": "websocket.close", "code": 1009, "reason": "message too big"})
        state["closed"] = True
        return {"type": "websocket.disconnect", "code": 1009}

    return bounded_receive, bounded_send
