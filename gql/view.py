"""The GraphQL endpoint of this app: HTTP per the GraphQL-over-HTTP spec, plus WebSockets.

Refusing costs little: the bearer token is checked before the body is read. A
request with a bad one (malformed, unknown, revoked, expired) gets 401
UNAUTHENTICATED -- under either response media type, it is refused at the HTTP
layer -- and nothing is read or parsed. A request without a token may still ask
for introspection and ``languages`` (GraphiQL loads the schema that way), with a
small body limit (``ANON_MAX_BODY_BYTES``) and a small token limit
(``ANON_MAX_QUERY_TOKENS``, gql.parsing); with a valid token the limits are
``MAX_BODY_BYTES`` and ``MAX_QUERY_TOKENS``.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UnsetType

from gql.context import Context, Services
from gql.http import GraphQLHTTP, GraphQLHTTPError
from gql.ws import LegacyWSHandler, TransportWSHandler, bounded_messages
from resolvers.auth import Principal, authenticate, parse_bearer
from resolvers.database import DatabaseUnavailable, is_unavailable
from resolvers.errors import ApiError

_PRINCIPAL = "interviewlm_principal"  # request.state attribute: set by admit, read by get_context


class GraphQLView(GraphQLHTTP[Context, None]):
    services: Services
    checks_operation_name = False  # gql.parsing does it on the one parse
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            receive, send = bounded_messages(
                receive,
                send,
                before_ack=self.services.settings.anon_max_body_bytes,
                after_ack=self.max_body_bytes,
            )
        await super().__call__(scope, receive, send)

    async def admit(self, request: Request) -> int:
        header = request.headers.get("authorization")
        if not header:
            return self.services.settings.anon_max_body_bytes
        try:
            principal = await authenticate(parse_bearer(header) or "")
        except DatabaseUnavailable as exc:
            raise GraphQLHTTPError(503, exc.message, {"Retry-After": "1"}, code=exc.code) from None
        except ApiError as exc:
            raise GraphQLHTTPError(
                401, exc.message, {"WWW-Authenticate": "Bearer"}, code="UNAUTHENTICATED"
            ) from None
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # The token could not be checked: the database is down or restarting.
            unavailable = DatabaseUnavailable()
            raise GraphQLHTTPError(
                503, unavailable.message, {"Retry-After": "1"}, code=unavailable.code
            ) from None
        setattr(request.state, _PRINCIPAL, principal)
        return self.max_body_bytes

    def encode_json(self, data: object) -> str | bytes:
        """Serialize a subscription result once for all the watchers that share it.

        Watchers of one event batch share one result (gql.schema); only the
        operation id differs between their ``next`` messages. The JSON is kept by
        the app (``Services.renders``), keyed by the result's identity.
        """
        if isinstance(data, dict) and data.get("type") == "next" and len(data) == 3:
            payload = data.get("payload")
            if isinstance(payload, dict) and payload.keys() == {"data"}:
                value = payload["data"]
                encoded = self.services.renders.encoded
                body = encoded.get(value)
                if body is None:
                    body = encoded.put(value, json.dumps(value, separators=(",", ":")))
                return (
                    f'{{"id":{json.dumps(data["id"])},"type":"next","payload":{{"data":{body}}}}}'
                )
        return super().encode_json(data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        principal = getattr(request.state, _PRINCIPAL, None)
        return Context(
            services=self.services,
            request=request,
            response=response if isinstance(response, Response) else None,
            authorization=request.headers.get("authorization"),
            _principal=principal if isinstance(principal, Principal) else None,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        try:
            principal = await context.authenticate_connection()
        except ApiError as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            unavailable = DatabaseUnavailable()
            raise ConnectionRejectionError(
                {"message": unavailable.message, "code": unavailable.code}
            ) from None
        return {"kind": principal.kind.value}
