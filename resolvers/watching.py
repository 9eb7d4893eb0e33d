"""Subscriptions' side of the log: authorize, then follow a session for one principal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial

from models.claude import ClaudeRun
from models.testrun import TestRun
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.event_kinds import run_id_of
from resolvers.events import EventRecord
from resolvers.live import Batch, LiveHub
from resolvers.sessions import get_session
from resolvers.visibility import visible

TERMINAL_TYPES = ("terminal.", "command.")


def _only_terminal(principal: Principal, record: EventRecord) -> EventRecord | None:
    if not record.type.startswith(TERMINAL_TYPES):
        return None
    return visible(principal, record)


async def follow_session(
    live: LiveHub,
    principal: Principal,
    session_id: str,
    *,
    after_seq: int,
    terminal_only: bool = False,
) -> AsyncIterator[Batch]:
    """Authorize now (at subscribe time), then replay and follow."""
    check.int_range("afterSeq", after_seq, low=0, high=2**62)
    session = await get_session(principal, session_id)
    keep: Callable[[EventRecord], EventRecord | None] = partial(
        _only_terminal if terminal_only else visible, principal
    )
    return live.follow(session.id, after_seq=after_seq, keep=keep)


async def _follow_run(
    live: LiveHub,
    principal: Principal,
    session_id: uuid.UUID,
    run_id: uuid.UUID,
    *,
    prefix: str,
    after_seq: int,
) -> AsyncIterator[Batch]:
    """A run's events (type ``prefix*``) after ``after_seq``; ends with ``{prefix}finished``."""
    wanted = str(run_id)

    def keep(record: EventRecord) -> EventRecord | None:
        if not record.type.startswith(prefix) or run_id_of(record.payload) != wanted:
            return None
        return visible(principal, record)

    async for batch in live.follow(session_id, after_seq=after_seq, keep=keep):
        yield batch
        if any(r.type == prefix + "finished" for r in batch):
            return


def follow_test_run(live: LiveHub, principal: Principal, run: TestRun) -> AsyncIterator[Batch]:
    return _follow_run(
        live, principal, run.session_id, run.id, prefix="testrun.", after_seq=run.log_seq
    )


def follow_claude_run(
    live: LiveHub, principal: Principal, run: ClaudeRun, after_seq: int
) -> AsyncIterator[Batch]:
    check.int_range("afterSeq", after_seq, low=0, high=2**62)
    return _follow_run(
        live,
        principal,
        run.session_id,
        run.id,
        prefix="claude.",
        after_seq=max(after_seq, run.log_seq),
    )
