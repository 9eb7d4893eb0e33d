"""Subscriptions must not grow per event: the graphql-core memo workaround holds."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gql.schema import PerEventMemoExecutionContext


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
