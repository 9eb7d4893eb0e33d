"""Per-token subscription limits on one replica (gql.ws.SubscriptionQuota): one token's
many connections cannot pile up subscriptions; refusals are RATE_LIMITED errors, another
token is unaffected, and closing subscriptions (complete, disconnect) frees room."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from gql.settings import Settings
from tests.conftest import Account
from tests.server import ServerProcess, start_server
from tests.wsclient import SESSION_EVENTS, GraphQLWS

STAFF_LIMIT = 3
TOKEN_LIMIT = 2


@pytest.fixture(scope="module")
def limited_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {
        **server_env,
        "MAX_SUBSCRIPTIONS_PER_STAFF_TOKEN": str(STAFF_LIMIT),
        "MAX_SUBSCRIPTIONS_PER_TOKEN": str(TOKEN_LIMIT),
    }
    server = start_server(env, tmp_path_factory.mktemp("limits"))
    yield server
    server.stop()


def test_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.max_subscriptions_per_token, defaults.max_subscriptions_per_staff_token) == (
        50,
        500,
    )
    low = Settings.from_env({"MAX_SUBSCRIPTIONS_PER_TOKEN": "0"})
    assert low.max_subscriptions_per_token == 1  # 0 would refuse every subscription


async def _subscribe(client: GraphQLWS, account: Account) -> str:
    return await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})


async def _outcomes(*ops: tuple[GraphQLWS, list[str]]) -> list[list[str]]:
    """For each (connection, its new operation ids): per operation, "next" (it is live: it
    replays the session's first event) or the refusal's error code."""

    async def read(client: GraphQLWS, ids: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        while set(ids) - set(seen):
            message: dict[str, Any] = await client.next_message(timeout=10)
            if message["id"] not in ids or message["id"] in seen:
                continue  # a later batch of a subscription already judged
            if message["type"] == "error":
                errors = message["payload"]
                assert "limit" in errors[0]["message"]
                seen[message["id"]] = errors[0]["extensions"]["code"]
            else:
                assert message["type"] == "next", message
                seen[message["id"]] = "next"
        return [seen[op] for op in ids]

    return list(await asyncio.gather(*(read(client, ids) for client, ids in ops)))


async def test_per_token_limit_across_connections(
    limited_server: ServerProcess, account: Account
) -> None:
    url, staff = limited_server.ws_url, account["interviewerToken"]
    first, second = await GraphQLWS.connect(url, staff), await GraphQLWS.connect(url, staff)
    other = await GraphQLWS.connect(url, account["atsToken"])
    try:
        a = [await _subscribe(first, account), await _subscribe(first, account)]
        assert await _outcomes((first, a)) == [["next", "next"]]  # then the second's
        b = [await _subscribe(second, account), await _subscribe(second, account)]
        o = [await _subscribe(other, account) for _ in range(TOKEN_LIMIT + 1)]
        got_b, got_o = await _outcomes((second, b), (other, o))
        # Three live on two connections, the fourth refused: the bound is the token's.
        assert got_b == ["next", "RATE_LIMITED"]
        # Another token has its own count (and the non-staff limit).
        assert got_o == ["next"] * TOKEN_LIMIT + ["RATE_LIMITED"]

        # A client's complete frees its place...
        await second.connection.send(f'{{"id": "{b[0]}", "type": "complete"}}')
        await asyncio.sleep(0.3)
        again = [await _subscribe(second, account), await _subscribe(second, account)]
        assert await _outcomes((second, again)) == [["next", "RATE_LIMITED"]]

        # ...and so does disconnecting: the first connection's two go.
        await first.close()
        await asyncio.sleep(0.5)
        fresh = await GraphQLWS.connect(url, staff)
        try:
            new = [await _subscribe(fresh, account) for _ in range(STAFF_LIMIT)]
            assert await _outcomes((fresh, new)) == [["next", "next", "RATE_LIMITED"]]
        finally:
            await fresh.close()
        # The ATS token's refused subscription did not take a place either.
        other_more = [await _subscribe(other, account)]
        assert await _outcomes((other, other_more)) == [["RATE_LIMITED"]]
    finally:
        for client in (first, second, other):
            await client.close()


async def test_legacy_protocol_is_bounded_too(
    limited_server: ServerProcess, account: Account
) -> None:
    """graphql-ws (the older protocol) counts against the same per-token limit."""
    async with websockets.connect(
        limited_server.ws_url, subprotocols=[Subprotocol("graphql-ws")]
    ) as ws:
        init = {"authorization": f"Bearer {account['atsToken']}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        variables = {"s": account["sessionId"], "a": 0}
        for op in range(TOKEN_LIMIT + 1):
            payload = {"query": SESSION_EVENTS, "variables": variables}
            await ws.send(json.dumps({"id": str(op), "type": "start", "payload": payload}))
        outcomes: dict[str, str] = {}
        async with asyncio.timeout(10):
            while len(outcomes) < TOKEN_LIMIT + 1:
                message = json.loads(await ws.recv())
                if message.get("id") is None or message["id"] in outcomes:
                    continue  # connection_ack, keep-alives, later batches
                if message["type"] == "error":
                    outcomes[message["id"]] = message["payload"]["extensions"]["code"]
                else:
                    outcomes[message["id"]] = message["type"]
        assert [outcomes[str(op)] for op in range(TOKEN_LIMIT + 1)] == ["data"] * TOKEN_LIMIT + [
            "RATE_LIMITED"
        ]
