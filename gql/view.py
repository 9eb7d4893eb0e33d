"""The GraphQL endpoint of this app: HTTP per the GraphQL-over-HTTP spec, plus WebSockets."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UnsetType

from gql.context import Context, Services
from gql.http import GraphQLHTTP
from resolvers.errors import ApiError


class GraphQLView(GraphQLHTTP[Context, None]):
    services: Services

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            services=self.services,
            request=request,
            response=response if isinstance(response, Response) else None,
            authorization=request.headers.get("authorization"),
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        try:
            principal = await context.authenticate_connection()
        except ApiError as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
        return {"kind": principal.kind.value}
