"""GraphQL over HTTP conformance of ``gql.http.GraphQLHTTP``, over real ASGI HTTP (httpx).

A tiny standalone schema is mounted in a Starlette app; no mocks. Audit ids in comments
refer to graphql/graphql-http's server audits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql import GraphQLError
from graphql.validation import ValidationRule
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.extensions import AddValidationRules, QueryDepthLimiter

from gql.app import create_app
from gql.http import GRAPHQL_RESPONSE_JSON, JSON, GraphQLHTTP, negotiate
from gql.settings import Settings

GRJ = GRAPHQL_RESPONSE_JSON
BOTH = pytest.mark.parametrize("accept", [GRJ, JSON])
MUTATIONS: list[int] = []


@strawberry.type
class Node:
    depth: int

    @strawberry.field
    def child(self) -> Node:
        return Node(depth=self.depth + 1)


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"

    @strawberry.field
    def maybe(self) -> str | None:
        raise ValueError("maybe failed")

    @strawberry.field
    def must(self) -> str:
        raise ValueError("must failed")

    @strawberry.field
    def coded(self) -> str | None:
        raise GraphQLError("gone", extensions={"code": "NOT_FOUND", "id": "x1"})

    @strawberry.field
    def node(self) -> Node:
        return Node(depth=1)

    @strawberry.field
    def whoami(self, info: strawberry.Info) -> str:
        return str(info.context["user"])


@strawberry.type
class Mutation:
    @strawberry.mutation
    def bump(self, by: int = 1) -> int:
        MUTATIONS.append(by)
        return len(MUTATIONS)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncIterator[int]:
        yield 1


class Forbid(ValidationRule):
    """Rejects any operation selecting `whoami`, with a pre-set contract code."""

    def enter_field(self, node: Any, *_args: Any) -> None:
        if node.name.value == "whoami":
            self.report_error(GraphQLError("no", node, extensions={"code": "FORBIDDEN"}))


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[lambda: QueryDepthLimiter(max_depth=4), lambda: AddValidationRules([Forbid])],
)
plain_schema = strawberry.Schema(query=Query, mutation=Mutation)


class AppView(GraphQLHTTP[dict[str, Any], None]):
    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> dict[str, Any]:
        return {"request": request, "response": response, "user": "ada"}


def app(view: GraphQLHTTP[Any, Any] | None = None) -> Starlette:
    view = view or GraphQLHTTP(schema, max_body_bytes=1024)
    return Starlette(routes=[Route("/graphql", view), WebSocketRoute("/graphql", view)])


def client(view: GraphQLHTTP[Any, Any] | None = None) -> httpx.AsyncClient:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app(view)), base_url="http://test")
    del c.headers["accept"]  # httpx sends `Accept: */*` unless told otherwise
    return c


async def post(body: Any, accept: str | None = GRJ, **kwargs: Any) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if accept is not None:
        headers["accept"] = accept
    headers.update(kwargs.pop("headers", {}))
    content = json.dumps(body) if isinstance(body, (dict, list)) else body
    async with client(kwargs.pop("view", None)) as c:
        return await c.post("/graphql", content=content, headers=headers, **kwargs)


async def get(params: dict[str, str], accept: str | None = GRJ) -> httpx.Response:
    headers = {} if accept is None else {"accept": accept}
    async with client() as c:
        return await c.get("/graphql", params=params, headers=headers)


def media(response: httpx.Response) -> str:
    return response.headers["content-type"]


def assert_request_error(
    response: httpx.Response, status: int, accept: str = GRJ
) -> dict[str, Any]:
    """A GraphQL-shaped error body: `errors` with codes, no `data`, the right media type."""
    assert response.status_code == status, response.text
    assert media(response) == f"{accept}; charset=utf-8"
    body: dict[str, Any] = response.json()
    assert "data" not in body
    assert body["errors"]
    assert all(e["extensions"]["code"] for e in body["errors"])
    return body


# -- Accept negotiation (Body; Legacy watershed) -----------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (GRJ, GRJ),  # 22EB
        (JSON, JSON),  # 4655
        (None, GRJ),  # no Accept: graphql-response+json after the watershed
        ("", GRJ),
        ("*/*", JSON),  # 47DE: a bare wildcard gets the legacy type
        ("application/*", JSON),
        (f"{GRJ}, */*", GRJ),
        (f"{GRJ}; charset=utf-8, {JSON}; charset=utf-8", GRJ),
        (f"{GRJ}, {JSON};q=0.9", GRJ),
        (f"{JSON}, {GRJ};q=0.5", JSON),
        (f"{JSON}, {GRJ}", JSON),  # equal q: the earlier listed
        (f"{JSON}, */*", JSON),  # equal q: the explicitly named one
        (f"{GRJ};q=0, */*", JSON),
        (f"{GRJ}; charset=iso-8859-1, {JSON}", JSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        ("text/html", None),
        (f"{GRJ}; charset=iso-8859-1", None),
        (f"{JSON};q=0", None),
        ("application/xml, image/*", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [(GRJ, GRJ), (JSON, JSON), (None, GRJ), ("*/*", JSON), (f"{GRJ}, {JSON};q=0.9", GRJ)],
)
async def test_post_query_uses_negotiated_media_type(accept: str | None, expected: str) -> None:
    response = await post({"query": "{ hello }"}, accept)
    assert response.request.headers.get("accept") == accept
    assert response.status_code == 200
    assert media(response) == f"{expected}; charset=utf-8"
    assert response.headers["vary"] == "Accept"
    assert response.json() == {"data": {"hello": "hello world"}}


@pytest.mark.parametrize("accept", ["text/plain", f"{GRJ}; charset=iso-8859-1"])
async def test_unacceptable_accept_is_406(accept: str) -> None:
    response = await post({"query": "{ hello }"}, accept)
    body = assert_request_error(response, 406, JSON)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_browser_get_without_query_renders_graphiql() -> None:
    response = await get({}, "text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_browser_get_with_query_executes() -> None:
    response = await get({"query": "{ hello }"}, "text/html,*/*;q=0.8")
    assert response.status_code == 200
    assert media(response) == f"{JSON}; charset=utf-8"
    assert response.json()["data"] == {"hello": "hello world"}


# -- Request: methods, content types, body --------------------------------------------------


@BOTH
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_other_methods_are_405(accept: str, method: str) -> None:
    async with client() as c:
        response = await c.request(method, "/graphql", headers={"accept": accept})
    assert_request_error(response, 405, accept)
    assert response.headers["allow"] == "GET, POST"


@BOTH
async def test_get_mutation_is_405_and_not_executed(accept: str) -> None:  # 9C48
    before = len(MUTATIONS)
    response = await get({"query": "mutation { bump }"}, accept)
    assert_request_error(response, 405, accept)
    assert response.headers["allow"] == "POST"
    assert len(MUTATIONS) == before


@BOTH
async def test_get_selects_query_operation_from_mixed_document(accept: str) -> None:
    doc = "query Q { hello } mutation M { bump }"
    response = await get({"query": doc, "operationName": "Q"}, accept)
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello world"}}
    response = await get({"query": doc, "operationName": "M"}, accept)
    assert response.status_code == 405


@BOTH
async def test_post_mutation_executes(accept: str) -> None:
    response = await post({"query": "mutation { bump(by: 2) }"}, accept)
    assert response.status_code == 200
    assert isinstance(response.json()["data"]["bump"], int)


async def test_queries_via_get_can_be_disabled() -> None:
    view = GraphQLHTTP(schema, allow_queries_via_get=False)
    async with client(view) as c:
        response = await c.get("/graphql", params={"query": "{ hello }"})
    assert_request_error(response, 405)
    assert response.headers["allow"] == "POST"


@BOTH
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/graphql", "application/json; charset=iso-8859-1"],
)
async def test_unsupported_content_type_is_415(accept: str, content_type: str | None) -> None:
    headers = {"accept": accept}
    if content_type:
        headers["content-type"] = content_type
    async with client() as c:
        response = await c.post("/graphql", content=b'{"query":"{ hello }"}', headers=headers)
    assert_request_error(response, 415, accept)


async def test_utf8_request_with_charset() -> None:  # BF61
    query = '{ hello(name: "Run🏃Swim🏊") }'
    headers = {"content-type": f"{JSON}; charset=utf-8"}
    response = await post({"query": query}, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello Run🏃Swim🏊"}}


@BOTH
@pytest.mark.parametrize(
    "body",
    [
        "",  # A5BF: missing body
        '{ "not a JSON',  # BCF8
        "NONSENSE",
        b'{"query": "\xff"}',  # not UTF-8
        json.dumps([{"query": "{ hello }"}]),  # batching is not offered
        json.dumps("{ hello }"),
        {"qeury": "{ hello }"},  # 423L / 3E3A
        {"query": None},
        *({"query": bad} for bad in ({"obj": "ect"}, 0, False, ["array"])),  # LKJx
        *({"query": "{ hello }", "operationName": bad} for bad in ({"a": 1}, 0, False, ["x"])),
        *({"query": "{ hello }", "variables": bad} for bad in ("string", 0, False, [7])),
        *({"query": "{ hello }", "extensions": bad} for bad in ("string", 0, False, [7])),
    ],
)
async def test_not_well_formed_requests_are_400(accept: str, body: Any) -> None:
    assert_request_error(await post(body, accept), 400, accept)


@BOTH
@pytest.mark.parametrize("key", ["variables", "operationName", "extensions"])
async def test_null_optional_parameters_are_allowed(accept: str, key: str) -> None:  # 94Bx 022x
    response = await post({"query": "{ hello }", key: None}, accept)
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello world"}}


@BOTH
async def test_map_variables_and_extensions(accept: str) -> None:  # 28B9 2EA1 1B7A 428F
    body = {
        "query": "query Q($n: String!) { hello(name: $n) }",
        "variables": {"n": "ada"},
        "extensions": {"some": "value"},
        "operationName": "Q",
    }
    response = await post(body, accept)
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello ada"}}


async def test_body_over_limit_with_content_length_is_413() -> None:
    response = await post({"query": "{ hello }", "pad": "x" * 2000})
    body = assert_request_error(response, 413)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_streamed_body_over_limit_is_413_without_reading_it_all() -> None:
    pulled: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b" " * 512

    response = await post(chunks(), JSON)  # no Content-Length: chunked
    assert_request_error(response, 413, JSON)
    assert len(pulled) <= 4


async def test_body_at_limit_is_accepted() -> None:
    body = json.dumps({"query": "{ hello }"}).ljust(1024)
    response = await post(body)
    assert response.status_code == 200


async def test_max_body_bytes_is_configurable() -> None:
    view = GraphQLHTTP(schema, max_body_bytes=10)
    assert_request_error(await post({"query": "{ hello }"}, view=view), 413)


# -- GET parameters -----------------------------------------------------------------------


@BOTH
async def test_get_with_variables_and_operation_name(accept: str) -> None:  # D6D5 6A70
    params = {
        "query": "query A { hello } query B($n: String!) { hello(name: $n) }",
        "variables": json.dumps({"n": "get"}),
        "operationName": "B",
        "extensions": json.dumps({"x": 1}),
    }
    response = await get(params, accept)
    assert response.status_code == 200
    assert media(response) == f"{accept}; charset=utf-8"
    assert response.json() == {"data": {"hello": "hello get"}}


async def test_get_empty_operation_name_means_absent() -> None:
    response = await get({"query": "{ hello }", "operationName": "", "variables": ""})
    assert response.status_code == 200


async def test_get_without_accept_uses_graphql_response_json() -> None:
    response = await get({"query": "{ hello }"}, None)
    assert response.status_code == 200
    assert media(response) == f"{GRJ}; charset=utf-8"


@BOTH
@pytest.mark.parametrize(
    "params",
    [
        {"query": "{ hello }", "variables": "{not json"},
        {"query": "{ hello }", "variables": "[1]"},
        {"query": "{ hello }", "variables": '"s"'},
        {"query": "{ hello }", "extensions": "{"},
        {"query": "{ hello }", "extensions": "3"},
        {"variables": "{}"},  # no query, not a browser
    ],
)
async def test_get_malformed_parameters_are_400(accept: str, params: dict[str, str]) -> None:
    assert_request_error(await get(params, accept), 400, accept)


# -- Status codes: GraphQL request errors vs executed operations -----------------------------

REQUEST_ERRORS = [
    {"query": "{"},  # document parsing failure (556A / 572B)
    {"query": ""},
    {"query": "{ 8f31403dfe404bccbb0e835f2629c6a7 }"},  # validation failure (74FF / FDE2)
    {"query": "query Q($id: ID!) { hello }", "variables": {"id": None}},  # coercion (86EE / 7B9B)
    {"query": "query Q($n: String!) { hello(name: $n) }", "variables": {"n": 5}},
    {"query": "query A { hello } query B { hello }"},  # operation cannot be determined
    {"query": "query A { hello }", "operationName": "Nope"},
    {"query": "{ node { child { child { child { child { depth } } } } } }"},  # depth limit
]


@pytest.mark.parametrize("body", REQUEST_ERRORS)
async def test_request_errors_are_400_under_graphql_response_json(body: dict[str, Any]) -> None:
    result = assert_request_error(await post(body, GRJ), 400)
    assert all(e["extensions"]["code"] == "BAD_USER_INPUT" for e in result["errors"])


@pytest.mark.parametrize("body", REQUEST_ERRORS)
async def test_request_errors_are_200_under_json(body: dict[str, Any]) -> None:
    result = assert_request_error(await post(body, JSON), 200, JSON)
    assert all(e["extensions"]["code"] == "BAD_USER_INPUT" for e in result["errors"])


async def test_parse_error_body_is_graphql_shaped() -> None:
    errors = (await post({"query": "{"})).json()["errors"]
    assert errors[0]["message"].startswith("Syntax Error")
    assert errors[0]["locations"] == [{"line": 1, "column": 2}]


async def test_depth_limit_allows_shallow_queries_and_introspection() -> None:
    response = await post({"query": "{ node { child { child { depth } } } }"})
    assert response.status_code == 200
    introspection = "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }"
    assert (await post({"query": introspection})).status_code == 200


async def test_depth_limit_message() -> None:
    query = "query Deep { node { child { child { child { child { depth } } } } } }"
    errors = (await post({"query": query})).json()["errors"]
    assert "exceeds maximum operation depth of 4" in errors[0]["message"]


async def test_request_error_with_contract_code_maps_status() -> None:
    response = await post({"query": "{ whoami }"}, GRJ)
    body = assert_request_error(response, 403)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert_request_error(await post({"query": "{ whoami }"}, JSON), 200, JSON)


@BOTH
async def test_field_error_with_data_is_200(accept: str) -> None:
    response = await post({"query": "{ hello maybe }"}, accept)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"hello": "hello world", "maybe": None}
    assert body["errors"][0]["path"] == ["maybe"]
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL"


@BOTH
async def test_null_data_from_field_error_is_200(accept: str) -> None:
    response = await post({"query": "{ must }"}, accept)
    assert response.status_code == 200
    body = response.json()
    assert "data" in body
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["must"]


async def test_existing_error_extensions_are_kept() -> None:
    body = (await post({"query": "{ coded }"})).json()
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "id": "x1"}


@BOTH
async def test_subscription_over_plain_http_is_400(accept: str) -> None:
    assert_request_error(await post({"query": "subscription { ticks }"}, accept), 400, accept)


# -- Application integration ---------------------------------------------------------------


async def test_overridden_context_reaches_resolvers() -> None:
    view = AppView(plain_schema)
    response = await post({"query": "{ whoami }"}, view=view)
    assert response.status_code == 200
    assert response.json() == {"data": {"whoami": "ada"}}


async def test_sub_response_headers_and_status_are_forwarded() -> None:
    @strawberry.type
    class Q:
        @strawberry.field
        def teapot(self, info: strawberry.Info) -> str:
            info.context["response"].headers["x-extra"] = "1"
            info.context["response"].status_code = 418
            return "tea"

    response = await post({"query": "{ teapot }"}, view=GraphQLHTTP(strawberry.Schema(query=Q)))
    assert response.status_code == 418
    assert response.headers["x-extra"] == "1"
    assert media(response) == f"{GRJ}; charset=utf-8"


async def test_ide_disabled_get_without_query_is_not_found() -> None:
    view = GraphQLHTTP(schema, graphql_ide=None)
    async with client(view) as c:
        response = await c.get("/graphql", headers={"accept": "text/html"})
    body = assert_request_error(response, 404, JSON)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_websocket_subscriptions_still_work() -> None:
    """The subclass leaves Strawberry's graphql-transport-ws handling intact (raw ASGI)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "websocket", "path": "/graphql", "headers": [], "query_string": b""}
    scope["subprotocols"] = ["graphql-transport-ws"]
    task = asyncio.create_task(app()(scope, inbox.get, outbox.put))

    async def send(message: dict[str, Any]) -> None:
        await inbox.put({"type": "websocket.receive", "text": json.dumps(message)})

    async def receive() -> Any:
        return json.loads((await asyncio.wait_for(outbox.get(), 5))["text"])

    await inbox.put({"type": "websocket.connect"})
    accepted = await asyncio.wait_for(outbox.get(), 5)
    assert accepted["type"] == "websocket.accept"
    assert accepted["subprotocol"] == "graphql-transport-ws"
    await send({"type": "connection_init"})
    assert (await receive())["type"] == "connection_ack"
    await send({"id": "1", "type": "subscribe", "payload": {"query": "subscription { ticks }"}})
    assert await receive() == {"id": "1", "type": "next", "payload": {"data": {"ticks": 1}}}
    assert await receive() == {"id": "1", "type": "complete"}
    await inbox.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, 5)


@pytest.mark.parametrize(("graphiql", "ide"), [(None, False), ("false", False), ("true", True)])
async def test_the_app_serves_graphiql_only_when_the_setting_says_so(
    graphiql: str | None, ide: bool, tmp_path: Any
) -> None:
    """GRAPHIQL defaults to off (production); scripts/serve turns it on for development."""
    env = {"DATABASE_URL": f"sqlite://{tmp_path}/db.sqlite3", "SANDBOX_ROOT": str(tmp_path)}
    if graphiql is not None:
        env["GRAPHIQL"] = graphiql
    application = create_app(Settings.from_env(env))
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert ("graphiql" in response.text.lower()) is ide
    assert response.status_code == (200 if ide else 404)


def test_scripts_serve_enables_graphiql_for_development() -> None:
    script = (Path(__file__).resolve().parent.parent / "scripts" / "serve").read_text()
    assert 'export GRAPHIQL="${GRAPHIQL:-true}"' in script


@BOTH
async def test_absurdly_nested_json_is_not_well_formed(accept: str) -> None:
    """json.loads raises RecursionError (not ValueError) past ~1,000 levels: that was a 500."""
    deep = "[" * 5_000 + "]" * 5_000
    view = GraphQLHTTP(schema, max_body_bytes=1 << 20)
    response = await post(
        f'{{"query": "{{ hello }}", "variables": {{"a": {deep}}}}}', accept, view=view
    )
    assert_request_error(response, 400, accept)
    params = {"query": "{ hello }", "variables": f'{{"a": {deep}}}'}
    async with client(view) as c:
        response = await c.get("/graphql", params=params, headers={"accept": accept})
    assert_request_error(response, 400, accept)
