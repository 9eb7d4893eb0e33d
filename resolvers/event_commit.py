"""Committing groups of events (resolvers.events' writer): retries, lost replies, metrics.

A database that cannot be reached (restarting, a dropped connection) is retried with
backoff for ``retry_s``: appends wait rather than fail, and a caller gets its records
only once they are stored. A statement whose reply was lost may have been committed:
before storing its groups again the writer looks for them by their instant
(``event_store.landed``), so nothing is stored twice. Past the budget the callers get
``DatabaseUnavailable`` (UNAVAILABLE) and nothing of theirs is stored.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from tortoise.exceptions import DoesNotExist

from resolvers import event_store, metrics
from resolvers.database import DatabaseUnavailable, is_unavailable
from resolvers.event_kinds import Payload

RETRY_S = 30.0
"""How long an append keeps trying a database it cannot reach before failing."""
BACKOFF_S = (0.05, 1.0)
"""First and longest pause between tries (doubling)."""

logger = logging.getLogger("interviewlm.events")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Encoded:
    """An event ready to store: its typed payload, the payload as JSON, and that JSON's text."""

    payload: Payload
    data: dict[str, Any]
    text: str

    @property
    def row(self) -> event_store.Row:
        return (self.payload.kind, self.data, self.text)


Stored = tuple[int, datetime]
"""Where a group landed: its first seq and its instant."""


def count(groups: Sequence[Sequence[Encoded]]) -> None:
    kinds: dict[str, int] = {}
    for group in groups:
        for item in group:
            kinds[item.payload.kind] = kinds.get(item.payload.kind, 0) + 1
    for kind, n in kinds.items():
        metrics.EVENTS_APPENDED.labels(kind=kind).inc(n)


async def retrying(
    attempt: Callable[[bool], Awaitable[T]],
    *,
    retry_s: float,
    what: str,
    backoff: tuple[float, float],
) -> T:
    """``attempt(again)`` until it succeeds, while its failures are transient and the
    budget lasts; ``again``: an earlier attempt failed (its work may have been done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    delay, longest = backoff
    tries = 0
    while True:
        try:
            return await attempt(tries > 0)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            tries += 1
            if loop.time() + delay > deadline:
                logger.error("events of %s not stored after %d tries: %s", what, tries, exc)
                raise DatabaseUnavailable(
                    "The event could not be stored: the database is unavailable."
                ) from exc
            logger.warning("storing events of %s failed (%s); retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)


async def commit_one(
    session_id: uuid.UUID, group: Sequence[Encoded], *, retry_s: float, backoff: tuple[float, float]
) -> Stored:
    at = datetime.now(UTC)  # also the group's mark: see event_store.landed
    rows = [item.row for item in group]

    async def attempt(again: bool) -> int:
        # After a failure the group may have been stored with its reply lost.
        first = await event_store.landed(session_id, at, len(rows)) if again else None
        return first if first is not None else await event_store.insert_group(session_id, at, rows)

    first = await retrying(attempt, retry_s=retry_s, what=str(session_id), backoff=backoff)
    count([group])
    return first, at


async def commit_many(
    groups: Mapping[uuid.UUID, Sequence[Encoded]],
    *,
    retry_s: float,
    backoff: tuple[float, float],
) -> dict[uuid.UUID, Stored | BaseException]:
    """Groups of several sessions in one statement (one commit: one WAL flush for all)."""
    at = datetime.now(UTC)
    firsts: dict[uuid.UUID, int] = {}

    async def attempt(again: bool) -> None:
        remaining = {sid: [i.row for i in g] for sid, g in groups.items() if sid not in firsts}
        if again:
            firsts.update(
                await event_store.landed_many({s: len(r) for s, r in remaining.items()}, at)
            )
            remaining = {sid: rows for sid, rows in remaining.items() if sid not in firsts}
        if remaining:
            firsts.update(await event_store.insert_groups(remaining, at))

    what = f"{len(groups)} sessions"
    await retrying(attempt, retry_s=retry_s, what=what, backoff=backoff)
    count([g for sid, g in groups.items() if sid in firsts])
    return {
        sid: (firsts[sid], at) if sid in firsts else DoesNotExist(f"session {sid} not found")
        for sid in groups
    }
