"""The session event log: append with a gap-free per-session ``seq``, store, publish.

``seq`` comes from ``InterviewSession.last_seq``, bumped under a row lock in
the same transaction as the insert: concurrent appends from any number of
replicas serialize per session, and a rolled-back append leaves no gap.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from models.event import Event
from models.session import InterviewSession
from resolvers.bus import EventBus

MAX_READ = 1000


@dataclass(frozen=True, slots=True)
class EventRecord:
    session_id: uuid.UUID
    seq: int
    type: str
    at: datetime
    payload: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {
                "sessionId": str(self.session_id),
                "seq": self.seq,
                "type": self.type,
                "at": self.at.isoformat(),
                "payload": self.payload,
            },
            separators=(",", ":"),
        )


def channel_for(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


class EventLog:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def append(
        self, session_id: uuid.UUID, type_: str, payload: dict[str, Any]
    ) -> EventRecord:
        (record,) = await self.append_many(session_id, [(type_, payload)])
        return record

    async def append_many(
        self, session_id: uuid.UUID, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        if not items:
            return []
        now = datetime.now(UTC)
        async with in_transaction() as conn:
            session = (
                await InterviewSession.filter(id=session_id)
                .select_for_update()
                .using_db(conn)
                .only("id", "last_seq")
                .get()
            )
            first = session.last_seq + 1
            await (
                InterviewSession.filter(id=session_id)
                .using_db(conn)
                .update(last_seq=session.last_seq + len(items))
            )
            records = [
                EventRecord(session_id, first + i, type_, now, payload)
                for i, (type_, payload) in enumerate(items)
            ]
            await Event.bulk_create(
                [
                    Event(session_id=session_id, seq=r.seq, type=r.type, at=r.at, payload=r.payload)
                    for r in records
                ],
                using_db=conn,
            )
        for record in records:
            await self.bus.publish(channel_for(session_id), record.to_json())
        return records

    async def read(self, session_id: uuid.UUID, *, after_seq: int, limit: int) -> list[EventRecord]:
        rows = (
            await Event.filter(session_id=session_id, seq__gt=after_seq)
            .order_by("seq")
            .limit(min(limit, MAX_READ))
        )
        return [EventRecord(session_id, r.seq, r.type, r.at, r.payload) for r in rows]
