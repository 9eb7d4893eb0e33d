"""The Subscription root: live session events and terminal output, resumable by seq."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from gql.context import Info, principal_of
from gql.types.event import SessionEventBatch
from resolvers.watching import follow_session


async def _session_batches(
    info: Info, session_id: strawberry.ID, after_seq: int, *, terminal_only: bool
) -> AsyncGenerator[SessionEventBatch, None]:
    batches = await follow_session(
        info.context.live,
        await principal_of(info),
        session_id,
        after_seq=after_seq,
        terminal_only=terminal_only,
    )
    renders = info.context.renders
    async for batch in batches:
        yield renders.batch(session_id, batch)


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
