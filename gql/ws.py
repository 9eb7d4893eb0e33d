"""WebSocket protocol handlers that check the token at every subscribe, not only at connect.

Strawberry authenticates a WebSocket once (``on_ws_connect``). Here, for both
graphql-transport-ws and the legacy graphql-ws, every ``subscribe``/``start``
authenticates the connection's token again (revoked, expired or unknown: the
socket is closed with 4403 and the operation never runs), and the connection
is registered with ``resolvers.revocations`` so that revoking the token, or its
expiry, closes the socket promptly on whichever replica holds it.
"""

from __future__ import annotations

from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage

from gql.context import Context
from resolvers.errors import ApiError
from resolvers.revocations import Registration

CLOSE_CODE = 4403  # graphql-transport-ws: Forbidden


class _TokenChecks:
    """Shared by both protocol handlers (mixed in before Strawberry's class)."""

    context: Context
    websocket: Any
    connection_acknowledged: bool
    _registration: Registration | None = None

    def _register(self) -> None:
        principal = self.context.connection_principal
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


class TransportWSHandler(_TokenChecks, BaseGraphQLTransportWSHandler[Context, None]):
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

    async def cleanup(self) -> None:
        self._unregister()
        await super().cleanup()
