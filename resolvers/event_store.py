"""Storing one group of events of one session: seqs handed out and rows written atomically.

On PostgreSQL a group is one statement, one round trip, in autocommit: a data-modifying
CTE bumps ``interview_session.last_seq`` (the row lock serializes appends to a session
across replicas, as ``SELECT ... FOR UPDATE`` did) and inserts every row from arrays
(``unnest``), so neither Tortoise's per-row model objects nor a BEGIN/COMMIT pair cost
anything. ``insert_groups`` does the same for the groups of several sessions at once: one
commit, so one WAL flush, for all of them (with fsync on, the flush is what an append
costs); it locks their rows in id order, so two replicas' statements cannot deadlock.
Elsewhere (SQLite) a transaction per session does the same in three statements.

``landed`` answers, after a connection failure, whether a group the database may have
committed before the reply was lost is there: all rows of a group share its ``at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tortoise import Tortoise
from tortoise.exceptions import DoesNotExist
from tortoise.transactions import in_transaction

from models.event import Event
from models.session import InterviewSession

Row = tuple[str, dict[str, Any], str]
"""An event's kind, its payload as stored (JSON) and that JSON's text."""

_INSERT_GROUP = """
WITH s AS (
    UPDATE interview_session SET last_seq = last_seq + cardinality($2::text[])
    WHERE id = $1
    RETURNING last_seq
), i AS (
    INSERT INTO session_event (session_id, seq, type, at, payload)
    SELECT $1, s.last_seq - cardinality($2::text[]) + e.n, e.type, $3, e.payload::jsonb
    FROM s, unnest($2::text[], $4::text[]) WITH ORDINALITY AS e(type, payload, n)
)
SELECT last_seq FROM s
"""

_INSERT_GROUPS = """
WITH g AS (
    SELECT * FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS g(id, n, gi)
), l AS MATERIALIZED (
    SELECT t.id FROM interview_session t JOIN g ON g.id = t.id ORDER BY t.id FOR UPDATE OF t
), s AS (
    UPDATE interview_session t SET last_seq = t.last_seq + g.n
    FROM g JOIN l ON l.id = g.id
    WHERE t.id = g.id
    RETURNING t.id, t.last_seq, g.n, g.gi
), i AS (
    INSERT INTO session_event (session_id, seq, type, at, payload)
    SELECT s.id, s.last_seq - s.n + e.k, e.type, $3, e.payload::jsonb
    FROM unnest($4::int[], $5::int[], $6::text[], $7::text[]) AS e(gi, k, type, payload)
    JOIN s ON s.gi = e.gi
)
SELECT id, last_seq, n FROM s
"""

_LANDED = """
SELECT session_id, max(seq) AS last FROM session_event
WHERE session_id = ANY($1::uuid[]) AND at = $2
GROUP BY session_id
"""


def _on_postgres() -> Any:
    """Tortoise's asyncpg client when the database is PostgreSQL (else None)."""
    client = Tortoise.get_connection("default")
    if client.capabilities.dialect == "postgres" and hasattr(client, "_pool"):
        return client
    return None


async def insert_group(session_id: uuid.UUID, at: datetime, rows: Sequence[Row]) -> int:
    """Store ``rows`` as the session's next events, all at ``at``; the first one's seq.

    Raises ``DoesNotExist`` (nothing stored) when the session is gone.
    """
    client = _on_postgres()
    if client is not None:
        async with client.acquire_connection() as conn:
            last = await conn.fetchval(
                _INSERT_GROUP,
                session_id,
                [kind for kind, _, _ in rows],
                at,
                [text for _, _, text in rows],
            )
        if last is None:
            raise DoesNotExist(f"session {session_id} not found")
        return int(last) - len(rows) + 1
    return await _insert_in_transaction(session_id, at, rows)


async def _insert_in_transaction(session_id: uuid.UUID, at: datetime, rows: Sequence[Row]) -> int:
    async with in_transaction() as conn:
        session = (
            await InterviewSession.filter(id=session_id)
            .select_for_update()
            .using_db(conn)
            .only("id", "last_seq")
            .get()
        )
        first = int(session.last_seq) + 1
        await (
            InterviewSession.filter(id=session_id)
            .using_db(conn)
            .update(last_seq=session.last_seq + len(rows))
        )
        await Event.bulk_create(
            [
                Event(session_id=session_id, seq=first + i, type=kind, at=at, payload=data)
                for i, (kind, data, _) in enumerate(rows)
            ],
            using_db=conn,
        )
    return first


async def landed(session_id: uuid.UUID, at: datetime, count: int) -> int | None:
    """The first seq of the group stored at ``at`` (``count`` rows), or None if it is not.

    Groups of one session are stored one after another by one writer, each with its own
    ``at``, so rows at exactly this instant are that group's. The newest rows come first
    in the (session, seq) index: a group that landed is found near the end of the log.
    """
    newest = (
        await Event.filter(session_id=session_id, at=at).order_by("-seq").only("id", "seq").first()
    )
    return int(newest.seq) - count + 1 if newest is not None else None


async def insert_groups(
    groups: Mapping[uuid.UUID, Sequence[Row]], at: datetime
) -> dict[uuid.UUID, int]:
    """Each session's rows as its next events, all at ``at``: each one's first seq.
    A session that is gone is left out of the answer (nothing stored for it)."""
    client = _on_postgres()
    if client is None:
        firsts: dict[uuid.UUID, int] = {}
        for session_id, rows in groups.items():
            try:
                firsts[session_id] = await _insert_in_transaction(session_id, at, rows)
            except DoesNotExist:
                continue
        return firsts
    ids, sizes = list(groups), [len(rows) for rows in groups.values()]
    # Rows name their session by its place in ``ids`` (an int encodes faster than a UUID).
    place = [gi for gi, n in enumerate(sizes, 1) for _ in range(n)]
    nth = [k for n in sizes for k in range(1, n + 1)]
    rows = [row for group in groups.values() for row in group]
    async with client.acquire_connection() as conn:
        stored = await conn.fetch(
            _INSERT_GROUPS,
            ids,
            sizes,
            at,
            place,
            nth,
            [row[0] for row in rows],
            [row[2] for row in rows],
        )
    return {r["id"]: int(r["last_seq"]) - int(r["n"]) + 1 for r in stored}


async def landed_many(counts: Mapping[uuid.UUID, int], at: datetime) -> dict[uuid.UUID, int]:
    """``landed`` for the groups of several sessions stored at ``at``: the ones found."""
    client = _on_postgres()
    found: dict[uuid.UUID, int] = {}
    if client is None:
        for session_id, n in counts.items():
            first = await landed(session_id, at, n)
            if first is not None:
                found[session_id] = first
        return found
    async with client.acquire_connection() as conn:
        rows = await conn.fetch(_LANDED, list(counts), at)
    return {r["session_id"]: int(r["last"]) - counts[r["session_id"]] + 1 for r in rows}
