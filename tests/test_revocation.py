"""Revoked and expired tokens lose their open WebSockets, on every replica.

Attack: a token revoked over the API kept working on an already open WebSocket
(new subscriptions on the same socket still streamed). Now the token is checked
at every subscribe (graphql-transport-ws and the legacy graphql-ws), and the
sockets of a revoked or expired token are closed (4403) promptly -- relayed to
every replica through the event bus. Real ``interviewlm serve`` processes, the
real database, real Redis for the replica test.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from models.token import ApiToken, CandidateToken, TokenScope
from resolvers.accounts import issue_token
from resolvers.auth import hash_token
from tests.conftest import REDIS_URL, Account
from tests.server import ServerProcess, start_server
from tests.support import wait_until
from tests.wsclient import SESSION_EVENTS, GraphQLWS

CREATE_TOKEN = """mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token apiToken { id } } }"""
REVOKE = "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }"


async def _graphql(server: ServerProcess, token: str, query: str, variables: Any) -> Any:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


async def _new_token(
    server: ServerProcess, account: Account, expires_at: datetime | None = None
) -> tuple[str, str]:
    payload: dict[str, Any] = {"name": "watcher", "scope": "INTERVIEWER"}
    if expires_at is not None:
        payload["expiresAt"] = expires_at.isoformat()
    data = await _graphql(server, account["interviewerToken"], CREATE_TOKEN, {"input": payload})
    return data["createApiToken"]["token"], data["createApiToken"]["apiToken"]["id"]


async def _closed_code(connection: ClientConnection, timeout: float) -> int | None:
    """Read until the server closes the socket; its close code (None: still open)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await connection.recv())
                if message["type"] == "ping":
                    await connection.send(json.dumps({"type": "pong"}))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return None


async def _first_batch(client: GraphQLWS) -> dict[str, Any]:
    message = await client.next_message()
    assert message["type"] == "next", message
    return message


class LegacyWS:
    """The legacy graphql-ws protocol (subscriptions-transport-ws), from outside."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def connect(cls, url: str, token: str) -> LegacyWS:
        connection = await websockets.connect(url, subprotocols=["graphql-ws"])  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await connection.send(json.dumps(init))
        assert json.loads(await connection.recv())["type"] == "connection_ack"
        return cls(connection)

    async def start(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.connection.send(json.dumps({"id": op_id, "type": "start", "payload": payload}))

    async def next_data(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.connection.recv())
                if message["type"] != "ka":
                    return dict(message)


async def test_revoking_a_token_closes_its_open_sockets(
    live_server: ServerProcess, account: Account
) -> None:
    token, token_id = await _new_token(live_server, account)
    client = await GraphQLWS.connect(live_server.ws_url, token)
    await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    await _first_batch(client)
    await _graphql(live_server, account["interviewerToken"], REVOKE, {"id": token_id})
    assert await _closed_code(client.connection, timeout=5) == 4403


@pytest.mark.parametrize("kind", ["interviewer", "candidate"])
async def test_the_token_is_checked_at_every_subscribe(
    live_server: ServerProcess, account: Account, kind: str
) -> None:
    """Revoked in the database behind the API's back (no bus message): the next
    subscribe on the open socket is refused and the socket closed."""
    if kind == "interviewer":
        token, token_id = await _new_token(live_server, account)
    else:
        token = account["candidateToken"]
    client = await GraphQLWS.connect(live_server.ws_url, token)
    await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    await _first_batch(client)
    now = datetime.now(UTC)
    if kind == "interviewer":
        await ApiToken.filter(id=token_id).update(revoked_at=now)
    else:
        await CandidateToken.filter(token_hash=hash_token(token)).update(revoked_at=now)
    await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    assert await _closed_code(client.connection, timeout=5) == 4403


async def test_legacy_graphql_ws_checks_the_token_at_every_start(
    live_server: ServerProcess, account: Account
) -> None:
    token, token_id = await _new_token(live_server, account)
    client = await LegacyWS.connect(live_server.ws_url, token)
    await client.start("1", SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    assert (await client.next_data())["type"] == "data"
    await ApiToken.filter(id=token_id).update(revoked_at=datetime.now(UTC))
    await client.start("2", SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    assert await _closed_code(client.connection, timeout=5) == 4403


async def test_legacy_graphql_ws_sockets_close_on_revocation(
    live_server: ServerProcess, account: Account
) -> None:
    token, token_id = await _new_token(live_server, account)
    client = await LegacyWS.connect(live_server.ws_url, token)
    await client.start("1", SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    assert (await client.next_data())["type"] == "data"
    await _graphql(live_server, account["interviewerToken"], REVOKE, {"id": token_id})
    assert await _closed_code(client.connection, timeout=5) == 4403


async def test_a_socket_closes_when_its_token_expires(
    live_server: ServerProcess, account: Account
) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=3)
    token, _ = await _new_token(live_server, account, expires_at=expires)
    client = await GraphQLWS.connect(live_server.ws_url, token)
    await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
    await _first_batch(client)
    assert await _closed_code(client.connection, timeout=10) == 4403
    assert datetime.now(UTC) >= expires


@pytest.mark.redis
async def test_revocation_closes_sockets_on_every_replica(
    server_env: dict[str, str], account: Account, tmp_path: Path
) -> None:
    """Two real server processes on one database and one Redis: the token is revoked
    through replica A, its socket on replica B is closed."""
    env = {**server_env, "REDIS_URL": server_env.get("REDIS_URL", REDIS_URL)}
    first, second = start_server(env, tmp_path), start_server(env, tmp_path)
    try:
        token, token_id = await _new_token(first, account)
        clients = [await GraphQLWS.connect(second.ws_url, token) for _ in range(2)]
        for client in clients:
            await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
            await _first_batch(client)
        await _graphql(first, account["interviewerToken"], REVOKE, {"id": token_id})
        codes = [await _closed_code(c.connection, timeout=5) for c in clients]
        assert codes == [4403, 4403]
    finally:
        first.stop()
        second.stop()


async def test_the_sweep_closes_connections_of_tokens_revoked_behind_its_back(
    app: Any, account: Account
) -> None:
    """The bus is not durable (a message published while Redis is down is lost) and a
    token can be revoked in the database directly: the periodic sweep catches both.
    The registry of the running app, the real database; the sweep is called directly
    instead of waiting for its 30-second tick."""
    registry = app.state.services.revocations
    token_id = await issue_token_for(account)
    closed: list[str] = []

    async def close(reason: str) -> None:
        closed.append(reason)

    registration = registry.register(token_id, None, close)
    try:
        await registry.sweep()
        await asyncio.sleep(0)
        assert closed == []
        await ApiToken.filter(id=token_id).update(revoked_at=datetime.now(UTC))
        await registry.sweep()
        await wait_until(lambda: bool(closed), 5, what="the sweep closed the connection")
        assert closed == ["token revoked or expired"]
        assert registry.open_count(token_id) == 0
    finally:
        registration.cancel()


async def issue_token_for(account: Account) -> Any:
    created = await issue_token(account["accountId"], name="swept", scope=TokenScope.INTERVIEWER)
    return created.api_token.id


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_oversized_messages_before_the_ack_are_not_decoded(
    live_server: ServerProcess, account: Account, protocol: str
) -> None:
    """Before its token is checked, a client may send ANON_MAX_BODY_BYTES per message
    (it used to be uvicorn's 16 MiB, JSON-decoded on the event loop): 1009, closed."""
    connection = await websockets.connect(
        live_server.ws_url, subprotocols=[protocol], max_size=None
    )
    pad = "x" * (1 << 20)
    init = {"type": "connection_init", "payload": {"authorization": "Bearer x", "pad": pad}}
    await connection.send(json.dumps(init))
    assert await _closed_code(connection, timeout=5) == 1009
    client = await GraphQLWS.connect(live_server.ws_url, account["interviewerToken"])
    await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0, "pad": pad})
    await _first_batch(client)  # after the ack, MAX_BODY_BYTES applies
    await client.close()
