"""The GraphQL endpoint of this app: HTTP per the GraphQL-over-HTTP spec, plus WebSockets."""

from __future__ import annotations

import json
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UnsetType

from gql.context import Context, Services
from gql.http import GraphQLHTTP
from gql.subscriptions import SHARED_RENDERINGS
from resolvers.errors import ApiError


class GraphQLView(GraphQLHTTP[Context, None]):
    services: Services

    def encode_json(self, data: object) -> str | bytes:
        """Serialize a subscription result once for all the watchers that share it.

        Watchers of one event batch share one result (gql.schema); only the
        operation id differs between their ``next`` messages.
        """
        if isinstance(data, dict) and data.get("type") == "next" and len(data) == 3:
            payload = data.get("payload")
            if isinstance(payload, dict) and payload.keys() == {"data"}:
                body = _encoded(payload["data"])
                return (
                    f'{{"id":{json.dumps(data["id"])},"type":"next","payload":{{"data":{body}}}}}'
                )
        return super().encode_json(data)

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


_ENCODED: OrderedDict[int, tuple[object, str]] = OrderedDict()


def _encoded(value: object) -> str:
    hit = _ENCODED.get(id(value))
    if hit is not None and hit[0] is value:  # held, so the id is not reused
        return hit[1]
    text = json.dumps(value, separators=(",", ":"))
    _ENCODED[id(value)] = (value, text)
    if len(_ENCODED) > SHARED_RENDERINGS:
        _ENCODED.popitem(last=False)
    return text
