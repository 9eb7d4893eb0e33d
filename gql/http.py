"""GraphQL over HTTP (current draft, graphql.github.io/graphql-over-http) for Strawberry.

``GraphQLHTTP`` subclasses ``strawberry.asgi.GraphQL``: WebSockets, GraphiQL, ``get_context``
and ``get_root_value`` are inherited. Spec decisions, by section:

- Body, Legacy watershed: the media type is negotiated from ``Accept`` (q-values, ``*/*``,
  ``application/*``; a range with a non-UTF-8 charset does not match): highest q, then the
  more specific range, then the earlier one. No ``Accept`` means
  ``application/graphql-response+json`` (the rule since 2025-01-01). A bare wildcard
  (``*/*``, ``application/*``) leaves the choice to us: ``application/json``, for legacy
  clients that send ``*/*`` (audit 47DE); clients wanting 4xx semantics name the new type.
  ``Content-Type`` always ends in ``; charset=utf-8``; responses carry ``Vary: Accept``.
- Body: an ``Accept`` allowing neither type gets 406 (the RECOMMENDED choice; no fallback
  to ``application/json``), except a browser GET without ``query``, which gets GraphiQL.
- Request Parameters, JSON Encoding: ``query`` a string, ``operationName`` a string or null
  (``""`` = absent), ``variables``/``extensions`` objects or null, a POST body one JSON
  object (no batching). Anything else is not well-formed: 400 under both media types.
- POST: ``application/json`` in UTF-8 only (multipart too if ``multipart_uploads_enabled``);
  another or no ``Content-Type`` gets 415 (``application/graphql`` is not recognised).
- GET: parameters in the query string, ``variables``/``extensions`` JSON-encoded. A mutation
  gets 405 with ``Allow: POST``, unexecuted; other methods 405 with ``Allow: GET, POST``.
  Subscriptions (outside the spec's scope) get 400 over plain HTTP.
- Status Codes, application/graphql-response+json: a request error (parse, validation incl.
  the depth limit, no determinable operation, variable coercion) gets 400 and
  ``{"errors": [...]}`` without ``data`` -- or the status of a contract code it already
  carries (UNAUTHENTICATED 401, FORBIDDEN 403, RATE_LIMITED 429, INTERNAL 500, ...). An
  executed operation gets 200, even with ``data: null``.
- Appendix A, application/json: 200 for every well-formed request, request errors included.
- Bodies over the request's limit get 413: on a larger ``Content-Length`` before reading,
  otherwise as soon as the counted stream passes the limit; a longer query string gets
  414 (GET parameters are bounded alike). The limit is what ``admit``
  returns (``max_body_bytes`` by default); ``admit`` runs before anything is read or
  parsed, so a subclass can authenticate there and refuse cheaply (see gql.view).
- Every error has ``extensions.code`` (an existing one is kept): request errors default to
  BAD_USER_INPUT (INTERNAL when caused by a non-GraphQL exception), field errors to INTERNAL.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType
from typing_extensions import TypeVar

from resolvers import metrics

__all__ = [
    "GRAPHQL_RESPONSE_JSON",
    "JSON",
    "GraphQLHTTP",
    "GraphQLHTTPError",
    "negotiate",
]

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
_UTF8 = ("utf-8", "utf8")
_STATUS_BY_CODE = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "RATE_LIMITED": 429,
    "INTERNAL": 500,
    "SANDBOX_UNAVAILABLE": 503,
}

ContextT = TypeVar("ContextT", default=None)
RootT = TypeVar("RootT", default=None)


class GraphQLHTTPError(Exception):
    """A request answered without executing it, with a GraphQL-shaped error body."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.code = code


def _parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    mime, *params = value.split(";")
    parsed = {}
    for param in params:
        name, _, param_value = param.partition("=")
        parsed[name.strip().lower()] = param_value.strip().strip('"').lower()
    return mime.strip().lower(), parsed


def negotiate(accept: str | None) -> str | None:
    """The response media type for an ``Accept`` header value; ``None`` means 406."""
    if accept is None or not accept.strip():
        return GRAPHQL_RESPONSE_JSON
    ranges: list[tuple[str, float, int]] = []
    for index, item in enumerate(accept.split(",")):
        mime, params = _parse_media_type(item)
        if params.get("charset", "utf-8") not in _UTF8:
            continue
        try:
            ranges.append((mime, float(params.get("q", "1")), index))
        except ValueError:
            continue
    best: tuple[tuple[float, int, int, int], str] | None = None
    for preference, media in enumerate((JSON, GRAPHQL_RESPONSE_JSON)):
        specificity = {media: 2, "application/*": 1, "*/*": 0}
        matches = [(specificity[m], -i, q) for m, q, i in ranges if m in specificity]
        if not matches:
            continue
        rank, position, q = max(matches)  # the most specific range decides
        if q > 0 and (best is None or (q, rank, position, -preference) > best[0]):
            best = ((q, rank, position, -preference), media)
    return best[1] if best else None


def _replay(body: bytes, receive: Receive) -> Receive:
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _request_data(data: object, protocol: GraphQLRequestProtocol) -> GraphQLRequestData:
    if not isinstance(data, dict):
        raise GraphQLHTTPError(400, "The request must be a JSON object (no batching).")
    query, name = data.get("query"), data.get("operationName")
    variables, extensions = data.get("variables"), data.get("extensions")
    if not isinstance(query, str):
        raise GraphQLHTTPError(400, "`query` is required and must be a string.")
    if name is not None and not isinstance(name, str):
        raise GraphQLHTTPError(400, "`operationName` must be a string or null.")
    for key, value in (("variables", variables), ("extensions", extensions)):
        if value is not None and not isinstance(value, dict):
            raise GraphQLHTTPError(400, f"`{key}` must be an object or null.")
    return GraphQLRequestData(query, variables, name or None, extensions, protocol)


def _lacks_operation_name(query: str) -> bool:
    """GetOperation() needs ``operationName`` for several operations; Strawberry would
    silently run the first one, so such documents are parsed once more here."""
    try:
        definitions = parse(query, no_location=True).definitions
    except GraphQLError:
        return False  # Strawberry reports the syntax error
    return sum(isinstance(d, OperationDefinitionNode) for d in definitions) > 1


def _with_code(formatted: object, error: GraphQLError, request_error: bool) -> object:
    if not isinstance(formatted, dict):
        return formatted
    original = error.original_error
    internal = original is not None and not isinstance(original, GraphQLError)
    code = "BAD_USER_INPUT" if request_error and not internal else "INTERNAL"
    return {**formatted, "extensions": {"code": code, **(formatted.get("extensions") or {})}}


def _request_error_status(errors: object) -> int:
    first = errors[0] if isinstance(errors, list) and errors else None
    extensions = first.get("extensions") if isinstance(first, dict) else None
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return _STATUS_BY_CODE.get(code, 400) if isinstance(code, str) else 400


class GraphQLHTTP(GraphQL[ContextT, RootT]):
    """Strawberry's ASGI view, conforming to GraphQL over HTTP (see the module docstring).

    Takes the keyword arguments of ``strawberry.asgi.GraphQL`` plus ``max_body_bytes``.
    Override ``get_context(request, response)`` / ``get_root_value(request)`` as usual,
    and ``admit(request)`` to refuse requests before their body is read.
    """

    checks_operation_name = True
    """Parse a document once more to refuse several operations without ``operationName``
    (Strawberry would run the first). False when the schema does it on its own parse."""

    def __init__(self, schema: BaseSchema, *, max_body_bytes: int = 1 << 20, **options: Any):
        super().__init__(schema, **options)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        media = negotiate(request.headers.get("accept"))
        try:
            response = await self._handle(request, media)
        except GraphQLHTTPError as error:
            response = self._error_response(error, media)
        except HTTPException as error:
            response = self._error_response(
                GraphQLHTTPError(error.status_code, error.reason), media
            )
        except ClientDisconnect:
            return  # nobody is left to answer
        await response(scope, receive, send)

    async def _handle(self, request: Request, media: str | None) -> Response:
        if request.method not in ("GET", "POST"):
            message = f"{request.method} is not supported; use GET or POST."
            raise GraphQLHTTPError(405, message, {"Allow": "GET, POST"})
        if (
            media is None
            and not self.should_render_graphql_ide(self.request_adapter_class(request))
            and self._get_stream_transport_from_headers(request.headers) is None
        ):
            message = f"Acceptable response media types: {GRAPHQL_RESPONSE_JSON}, {JSON}."
            raise GraphQLHTTPError(406, message)
        limit = await self.admit(request)
        if len(request.scope.get("query_string") or b"") > limit:
            raise GraphQLHTTPError(414, f"The query string exceeds {limit} bytes.")
        if request.method == "POST":
            body = await self._read_body(request, limit)
            request = Request(request.scope, _replay(body, request.receive))
        return await self.run(request)

    async def admit(self, request: Request) -> int:
        """Runs before the body is read: raise GraphQLHTTPError to refuse the request,
        or return the body size limit for it."""
        return self.max_body_bytes

    async def _read_body(self, request: Request, limit: int) -> bytes:
        too_large = GraphQLHTTPError(413, f"The request body exceeds {limit} bytes.")
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise GraphQLHTTPError(400, "Invalid Content-Length header.")
        if declared is not None and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        return b"".join(chunks)

    def _json_response(
        self, data: object, status: int, media: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        response = Response(
            self.encode_json(data), status, headers, media_type=f"{media}; charset=utf-8"
        )
        response.headers["Vary"] = "Accept"
        return response

    def _error_response(self, error: GraphQLHTTPError, media: str | None) -> Response:
        code = error.code or {404: "NOT_FOUND", 500: "INTERNAL"}.get(error.status, "BAD_USER_INPUT")
        # Refused before any operation ran (a bad token, a body too large...). A GET
        # mutation did reach the schema: gql.observability counted it.
        if not isinstance(error.__cause__, InvalidOperationTypeError):
            metrics.REQUESTS.labels("anonymous", "unknown").inc()
            metrics.ERRORS.labels("anonymous", code).inc()
        body = {"errors": [{"message": error.message, "extensions": {"code": code}}]}
        return self._json_response(body, error.status, media or JSON, error.headers)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        transport = self._get_stream_transport_from_headers(request.headers)
        protocol: GraphQLRequestProtocol = transport.protocol if transport else "http"
        if request.method != "GET":
            return _request_data(await self._parse_post_body(request), protocol)
        params = request.query_params
        data = {
            "query": params.get("query"),
            "operationName": params.get("operationName") or None,
            "variables": self._json_param(params, "variables"),
            "extensions": self._json_param(params, "extensions"),
        }
        return _request_data(data, protocol)

    def _json_param(self, params: Mapping[str, object], name: str) -> object:
        value = params.get(name)
        if not isinstance(value, str) or not value:
            return value or None
        try:
            return self.decode_json(value)
        except (ValueError, RecursionError) as error:
            raise GraphQLHTTPError(400, f"`{name}` must be JSON-encoded.") from error

    async def _parse_post_body(self, request: AsyncHTTPRequestAdapter) -> object:
        mime, params = _parse_media_type(request.content_type or "")
        if mime == "multipart/form-data" and self.multipart_uploads_enabled:
            return await self.parse_multipart(request)
        if mime != JSON or params.get("charset", "utf-8") not in _UTF8:
            raise GraphQLHTTPError(415, "POST bodies must be application/json in UTF-8.")
        try:
            return self.decode_json((await request.get_body()).decode("utf-8"))
        except (ValueError, RecursionError) as error:  # Unicode/JSONDecodeError, deep nesting
            raise GraphQLHTTPError(400, "The request body is not valid JSON.") from error

    async def execute_single(  # noqa: PLR0917
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: RootT | None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        method = request_adapter.method
        allowed = {OperationType.QUERY, OperationType.MUTATION}
        if method == "GET":
            allowed = {OperationType.QUERY} if self.allow_queries_via_get else set()
        if (
            self.checks_operation_name
            and request_data.operation_name is None
            and _lacks_operation_name(request_data.query or "")
        ):
            message = "Must provide operation name if query contains multiple operations."
            return PreExecutionError(None, [GraphQLError(message)])
        try:
            return await self.schema.execute(
                request_data.query,
                variable_values=request_data.variables,
                context_value=context,
                root_value=root_value,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as error:
            return PreExecutionError(None, [GraphQLError(error.as_http_error_reason())])
        except MissingQueryError:
            return PreExecutionError(None, [GraphQLError("The GraphQL document is empty.")])
        except InvalidOperationTypeError as error:
            if error.operation_type is OperationType.SUBSCRIPTION:
                message = "Subscriptions are served over WebSocket, not plain HTTP."
                raise GraphQLHTTPError(400, message) from error
            message = f"A {error.operation_type.value} cannot be executed over GET; use POST."
            raise GraphQLHTTPError(405, message, {"Allow": "POST"}) from error

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        errors = result.errors or []
        request_error = isinstance(result, PreExecutionError) or (
            result.data is None and bool(errors) and all(e.path is None for e in errors)
        )
        if request_error:
            response.pop("data", None)  # GraphQL spec: no `data` when execution never began
        if errors:  # Strawberry's body holds `e.formatted` for each of these errors
            response["errors"] = [_with_code(e.formatted, e, request_error) for e in errors]
        return response

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        # carries the negotiated media type to create_response
        sub_response.media_type = negotiate(request.headers.get("accept")) or JSON
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        media = sub_response.media_type or GRAPHQL_RESPONSE_JSON
        status = 200
        if (
            media == GRAPHQL_RESPONSE_JSON
            and not isinstance(response_data, list)
            and "data" not in response_data
        ):
            status = _request_error_status(response_data.get("errors"))
        response = self._json_response(response_data, sub_response.status_code or status, media)
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response
