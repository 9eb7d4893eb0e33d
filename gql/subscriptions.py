"""The Subscription root: live session events and terminal output, resumable by seq."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator

import strawberry

from gql.context import Info, principal_of
from gql.types.event import SessionEventBatch, event_of
from resolvers.live import Batch
from resolvers.watching import follow_session

_RENDERED: OrderedDict[int, tuple[Batch, SessionEventBatch]] = OrderedDict()
# Watchers render a batch within moments of each other, so a few recent
# batches are all that sharing needs; more would pin large output in memory.
SHARED_RENDERINGS = 16


def batch_of(session_id: strawberry.ID, batch: Batch) -> SessionEventBatch:
    """The GraphQL value of a batch, built once for every watcher given the same list."""
    hit = _RENDERED.get(id(batch))
    if hit is not None and hit[0] is batch:  # the list is held, so its id is not reused
        return hit[1]
    value = SessionEventBatch(
        session_id=session_id, events=[event_of(r) for r in batch], last_seq=batch[-1].seq
    )
    _RENDERED[id(batch)] = (batch, value)
    if len(_RENDERED) > SHARED_RENDERINGS:
        _RENDERED.popitem(last=False)
    return value


async def _session_batches(
    info: Info, session_id: strawberry.ID, after_seq: int, *, terminal_only: bool
) -> AsyncGenerator[SessionEventBatch, None]:
    batches = await follow_session(
        info.context.live,
        info.context.log,
        await principal_of(info),
        session_id,
        after_seq=after_seq,
        terminal_only=terminal_only,
    )
    async for batch in batches:
        yield batch_of(session_id, batch)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Stored events after `afterSeq`, then live ones: each exactly once, in order."
    )
    async def session_events(
        self, info: Info, session_id: strawberry.ID, after_seq: int = 0
    ) -> AsyncGenerator[SessionEventBatch, None]:
        async for batch in _session_batches(info, session_id, after_seq, terminal_only=False):
            yield batch

    @strawberry.subscription(description="Like sessionEvents, only terminal and command events.")
    async def terminal_output(
        self, info: Info, session_id: strawberry.ID, after_seq: int = 0
    ) -> AsyncGenerator[SessionEventBatch, None]:
        async for batch in _session_batches(info, session_id, after_seq, terminal_only=True):
            yield batch
