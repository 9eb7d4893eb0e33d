"""Storing one group of events of one session: seqs handed out and rows written atomically.

On PostgreSQL a group is one statement, one round trip, in autocommit: a data-modifying
CTE bumps ``interview_session.last_seq`` (the row lock serializes appends to a session
across replicas, as ``SELECT ... FOR UPDATE`` did) and inserts every row from arrays
(``unnest``), so neither Tortoise's per-row model objects nor a BEGIN/COMMIT pair cost
anything. Elsewhere (SQLite) a transaction does the same in three statements.

``landed`` answers, after a connection failure, whether a group the database may have
committed before the reply was lost is there: all rows of a group share its ``at``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tortoise import Tortoise
from tortoise.exceptions import DoesNotExist
from tortoise.transactions import in_transaction

from models.event import Event
from models.session import InterviewSession

Row = tuple[str, dict[str, Any]]
"""An event's kind and its payload as stored (JSON)."""

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


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


async def insert_group(session_id: uuid.UUID, at: datetime, rows: Sequence[Row]) -> int:
    """Store ``rows`` as the session's next events, all at ``at``; the first one's seq.

    Raises ``DoesNotExist`` (nothing stored) when the session is gone.
    """
    client = Tortoise.get_connection("default")
    if client.capabilities.dialect == "postgres" and hasattr(client, "_pool"):
        async with client.acquire_connection() as conn:
            last = await conn.fetchval(
                _INSERT_GROUP,
                session_id,
                [kind for kind, _ in rows],
                at,
                [_dumps(data) for _, data in rows],
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
                for i, (kind, data) in enumerate(rows)
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
