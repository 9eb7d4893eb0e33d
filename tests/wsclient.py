"""A small graphql-transport-ws client on ``websockets``, speaking the protocol from outside."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


class ProtocolError(Exception):
    pass


class GraphQLWS:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, url: str, token: str) -> GraphQLWS:
        connection = await websockets.connect(
            url,
            subprotocols=["graphql-transport-ws"],
            max_size=None,  # type: ignore[list-item]
        )
        await connection.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await connection.recv())
        if ack["type"] != "connection_ack":
            raise ProtocolError(f"expected connection_ack, got {ack}")
        return cls(connection)

    async def close(self) -> None:
        await self.connection.close()

    async def subscribe(self, query: str, variables: dict[str, Any]) -> str:
        op_id = str(next(self._ids))
        message = {
            "id": op_id,
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        }
        await self.connection.send(json.dumps(message))
        return op_id

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Protocol messages; answers pings on the way."""
        async for raw in self.connection:
            message = json.loads(raw)
            if message["type"] == "ping":
                await self.connection.send(json.dumps({"type": "pong"}))
                continue
            yield message

    async def next_message(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            async for message in self.messages():
                return message
        raise ProtocolError("connection closed")


SESSION_EVENTS = """subscription($s: ID!, $a: Int!) {
  sessionEvents(sessionId: $s, afterSeq: $a) {
    lastSeq events { seq type ... on NoteEvent { text } ... on CommandOutputEvent { data } }
  }
}"""


async def collect_events(
    client: GraphQLWS, *, until_seq: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """Every event delivered on the (one) subscription until ``until_seq`` arrives."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages():
            if message["type"] != "next":
                raise ProtocolError(f"unexpected {message}")
            events += message["payload"]["data"]["sessionEvents"]["events"]
            if events and events[-1]["seq"] >= until_seq:
                break
    return events


async def collect_seqs(client: GraphQLWS, *, until_seq: int, timeout: float = 30) -> list[int]:
    return [e["seq"] for e in await collect_events(client, until_seq=until_seq, timeout=timeout)]
