"""Rendering a live event batch once for every watcher that is given it.

Every watcher of a session whose view of a batch is the same gets the very same
list from the hub (``resolvers.live``). Its GraphQL value, the execution result of
a given document and variables, and that result's JSON then only need computing
once: ``SharedRenders`` remembers them, keyed by the identity of the object they
were computed from. Each entry holds that object, so its ``id`` cannot be reused
while the entry lives.

One ``SharedRenders`` per app, made by the app factory and reached through the
request context (``Context.renders``): nothing is shared between two apps in one
process, and nothing outlives the app.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import strawberry
from graphql import ExecutionResult

from gql.types.event import SessionEventBatch, event_of
from resolvers.live import Batch

V = TypeVar("V")

# Watchers render a batch within moments of each other, so a few recent batches
# are all that sharing needs; more would pin large output in memory.
SHARED_RENDERINGS = 16


class IdentityCache(Generic[V]):
    """The last ``size`` values computed from objects, by object identity (and ``key``).

    First in, first out: a batch's watchers all ask within moments, so recency of
    use says nothing that insertion order does not.
    """

    __slots__ = ("_entries", "size")

    def __init__(self, size: int = SHARED_RENDERINGS) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int, Hashable], tuple[object, V]] = OrderedDict()

    def get(self, source: object, key: Hashable = None) -> V | None:
        hit = self._entries.get((id(source), key))
        # The entry holds its source, so an equal id is the same object.
        if hit is not None and hit[0] is source:
            return hit[1]
        return None

    def put(self, source: object, value: V, key: Hashable = None) -> V:
        self._entries[(id(source), key)] = (source, value)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


class SharedRenders:
    """The app's three caches of one batch's renderings (see the module docstring)."""

    __slots__ = ("batches", "encoded", "results")

    def __init__(self, size: int = SHARED_RENDERINGS) -> None:
        self.batches: IdentityCache[SessionEventBatch] = IdentityCache(size)
        """A hub batch -> its GraphQL value (gql.subscriptions)."""
        self.results: IdentityCache[ExecutionResult] = IdentityCache(size)
        """A GraphQL value, by (document, variables) -> its execution result (gql.schema)."""
        self.encoded: IdentityCache[str] = IdentityCache(size)
        """A result's data -> its JSON text (gql.view)."""

    def batch(self, session_id: strawberry.ID, batch: Batch) -> SessionEventBatch:
        """The GraphQL value of a batch, built once for every watcher given the same list."""
        value = self.batches.get(batch)
        if value is None:
            value = self.batches.put(
                batch,
                SessionEventBatch(
                    session_id=session_id,
                    events=[event_of(r) for r in batch],
                    last_seq=batch[-1].seq,
                ),
            )
        return value
