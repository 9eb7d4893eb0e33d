"""What a subscription costs in memory: nothing more per event (the graphql-core memo
workaround holds), and no compression state per connection."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from websockets.typing import Subprotocol

from gql.schema import PerEventMemoExecutionContext
from tests.server import ServerProcess


@strawberry.type
class Item:
    name: str
    tags: list[str]


@strawberry.type
class Batch:
    items: list[Item]


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def batches(self, count: int) -> AsyncGenerator[Batch, None]:
        for i in range(count):
            yield Batch(items=[Item(name=f"i{i}", tags=["a", "b"])])


def probe(base: type[StrawberryGraphQLCoreExecutionContext]) -> type[Any]:
    class Probe(base):  # type: ignore[valid-type,misc]
        parents: list[Any] = []

        def build_per_event_executor(self, payload: Any) -> Any:
            Probe.parents.append(self)
            return super().build_per_event_executor(payload)

    return Probe


async def memo_size_after(events: int, context_class: type[Any]) -> int:
    schema = strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=context_class
    )
    stream = await schema.subscribe(
        "subscription($n: Int!) { batches(count: $n) { items { name tags } } }",
        variable_values={"n": events},
    )
    received = 0
    async for result in stream:  # type: ignore[union-attr]
        assert not result.errors
        received += 1
    assert received == events
    return len(context_class.parents[-1]._relevant_sub_fields)


async def test_memo_does_not_grow_per_event() -> None:
    assert await memo_size_after(300, probe(PerEventMemoExecutionContext)) <= 2


async def test_without_the_workaround_it_grows() -> None:
    # The control: proves the test above measures the real leak.
    assert await memo_size_after(300, probe(StrawberryGraphQLCoreExecutionContext)) >= 300


async def test_served_websockets_negotiate_no_compression(live_server: ServerProcess) -> None:
    """A browser offers permessage-deflate; `interviewlm serve` declines it: its zlib state
    was ~44 KB of every connection (bench/scale.py), more than the subscription itself."""
    from websockets.asyncio.client import connect

    async with connect(
        live_server.ws_url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        compression="deflate",
    ) as ws:
        assert ws.response is not None
        assert ws.subprotocol == "graphql-transport-ws"
        assert "sec-websocket-extensions" not in ws.response.headers
