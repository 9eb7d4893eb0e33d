"""The session event log: append with a gap-free per-session ``seq``, store, publish.

``seq`` comes from ``InterviewSession.last_seq``, bumped under a row lock in
the same transaction as the insert: concurrent appends from any number of
replicas serialize per session, and a rolled-back append leaves no gap.

Appends to one session are group-committed: while a group is being stored,
further appends queue up and go together in the next one (one statement on
PostgreSQL, ``resolvers.event_store``; one published message), so a burst of
terminal output costs a handful of round trips rather than one per chunk.

A database that cannot be reached (restarting, a dropped connection) is
retried with backoff for ``retry_s``: appends wait rather than fail, and a
caller gets its records only once they are stored. A group whose reply was
lost may have been stored: before storing it again the writer looks for it
(``event_store.landed``), so nothing is stored twice. Past the budget the
caller gets ``DatabaseUnavailable`` (UNAVAILABLE) and nothing of it is stored.

Payloads are typed (``resolvers.event_kinds``): an append serializes each one
once, and that JSON is both the stored row and what the bus carries; readers
(``read``, ``decode_batch``) parse it back into the typed payload.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.event import Event
from models.session import InterviewSession
from resolvers import event_store, metrics
from resolvers.bus import EventBus
from resolvers.database import DatabaseUnavailable, is_unavailable
from resolvers.event_kinds import Payload, parse_stored
from resolvers.storage import OutputQuota, StorageLimits

MAX_READ = 1000
MAX_BATCH = 500
RETRY_S = 30.0
"""How long an append keeps trying a database it cannot reach before failing."""
BACKOFF_S = (0.05, 1.0)
"""First and longest pause between tries (doubling)."""
logger = logging.getLogger("interviewlm.events")


@dataclass(frozen=True, slots=True)
class EventRecord:
    session_id: uuid.UUID
    seq: int
    type: str
    at: datetime
    payload: Payload
    data: dict[str, Any] = field(compare=False, repr=False)
    """``payload`` as JSON, as stored: serialized once, at the append."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "at": self.at.isoformat(),
            "payload": self.data,
        }

    @classmethod
    def stored(
        cls, session_id: uuid.UUID, seq: int, type_: str, at: datetime, data: dict[str, Any]
    ) -> EventRecord:
        """A record read back: its payload parsed (an old row may name a newer kind)."""
        payload = parse_stored(type_, data)
        return cls(session_id, seq, payload.kind, at, payload, data)

    @classmethod
    def from_dict(cls, session_id: uuid.UUID, data: dict[str, Any]) -> EventRecord:
        return cls.stored(
            session_id,
            data["seq"],
            data["type"],
            datetime.fromisoformat(data["at"]),
            data["payload"],
        )


def without_nul(value: Any) -> Any:
    """PostgreSQL text and JSON cannot hold NUL: program output can. U+FFFD stands in."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    # Containers come back as the very object when nothing in them changed.
    if isinstance(value, dict):
        cleaned = {k: without_nul(v) for k, v in value.items()}
        return value if all(cleaned[k] is v for k, v in value.items()) else cleaned
    if isinstance(value, list):
        items = [without_nul(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _encoded(payload: Payload) -> tuple[Payload, dict[str, Any]]:
    """The payload and its stored JSON; re-parsed in the rare case NULs were replaced."""
    data = payload.to_json()
    clean = without_nul(data)
    if clean is data:
        return payload, data
    return parse_stored(payload.kind, clean), clean


def channel_for(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


def encode_batch(session_id: uuid.UUID, records: Sequence[EventRecord]) -> str:
    return json.dumps(
        {"sessionId": str(session_id), "events": [r.to_dict() for r in records]},
        separators=(",", ":"),
    )


def decode_batch(message: str) -> tuple[uuid.UUID, list[EventRecord]]:
    data = json.loads(message)
    session_id = uuid.UUID(data["sessionId"])
    return session_id, [EventRecord.from_dict(session_id, e) for e in data["events"]]


@dataclass
class _Pending:
    items: Sequence[Payload]
    done: asyncio.Future[list[EventRecord]]


@dataclass
class _SessionWriter:
    queue: list[_Pending] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class EventLog:
    def __init__(
        self, bus: EventBus, *, limits: StorageLimits | None = None, retry_s: float = RETRY_S
    ) -> None:
        self.bus = bus
        self.retry_s = retry_s
        # What one session may store in the recording (resolvers.storage).
        self.limits = limits or StorageLimits()
        self.output_quota = OutputQuota(self.limits)
        self._writers: dict[uuid.UUID, _SessionWriter] = {}

    async def append(self, session_id: uuid.UUID, payload: Payload) -> EventRecord:
        (record,) = await self.append_many(session_id, [payload])
        return record

    async def append_many(
        self, session_id: uuid.UUID, items: Sequence[Payload]
    ) -> list[EventRecord]:
        if not items:
            return []
        writer = self._writers.setdefault(session_id, _SessionWriter())
        pending = _Pending(items, asyncio.get_running_loop().create_future())
        writer.queue.append(pending)
        if writer.task is None:
            writer.task = asyncio.create_task(self._drain(session_id, writer))
        return await asyncio.shield(pending.done)

    async def _drain(self, session_id: uuid.UUID, writer: _SessionWriter) -> None:
        try:
            while writer.queue:
                group: list[_Pending] = []
                count = 0
                while writer.queue and (
                    not group or count + len(writer.queue[0].items) <= MAX_BATCH
                ):
                    group.append(writer.queue.pop(0))
                    count += len(group[-1].items)
                try:
                    records = await self._commit(session_id, [i for p in group for i in p.items])
                except Exception as exc:  # each waiter gets the failure of its own append
                    for p in group:
                        if not p.done.done():
                            p.done.set_exception(exc)
                    continue
                offset = 0
                for p in group:
                    mine = records[offset : offset + len(p.items)]
                    offset += len(p.items)
                    if not p.done.done():
                        p.done.set_result(mine)
                try:
                    # local=: this replica's own watchers get the records as they are.
                    await self.bus.publish(
                        channel_for(session_id), encode_batch(session_id, records), local=records
                    )
                except Exception:  # stored is what counts: listeners also poll the log
                    logger.exception("publishing events of %s failed", session_id)
        finally:
            writer.task = None
            if not writer.queue:
                self._writers.pop(session_id, None)

    async def _commit(self, session_id: uuid.UUID, items: Sequence[Payload]) -> list[EventRecord]:
        """Store one group, retrying an unreachable database for ``retry_s``."""
        now = datetime.now(UTC)  # also the group's mark: see event_store.landed
        encoded = [_encoded(payload) for payload in items]
        rows = [(payload.kind, data) for payload, data in encoded]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_s
        delay, longest = BACKOFF_S
        tries = 0
        while True:
            try:
                # After a failure the group may have been stored with its reply lost.
                first = await event_store.landed(session_id, now, len(rows)) if tries else None
                if first is None:
                    first = await event_store.insert_group(session_id, now, rows)
                break
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                tries += 1
                if loop.time() + delay > deadline:
                    logger.error(
                        "events of %s not stored after %d tries: %s", session_id, tries, exc
                    )
                    raise DatabaseUnavailable(
                        "The event could not be stored: the database is unavailable."
                    ) from exc
                logger.warning("storing events of %s failed (%s); retrying", session_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
        kinds: dict[str, int] = {}
        for payload in items:
            kinds[payload.kind] = kinds.get(payload.kind, 0) + 1
        for kind, count in kinds.items():
            metrics.EVENTS_APPENDED.labels(kind=kind).inc(count)
        return [
            EventRecord(session_id, first + i, payload.kind, now, payload, data)
            for i, (payload, data) in enumerate(encoded)
        ]

    async def read(self, session_id: uuid.UUID, *, after_seq: int, limit: int) -> list[EventRecord]:
        rows = (
            await Event.filter(session_id=session_id, seq__gt=after_seq)
            .order_by("seq")
            .limit(min(limit, MAX_READ))
        )
        return [EventRecord.stored(session_id, r.seq, r.type, r.at, r.payload) for r in rows]

    async def read_range(
        self, session_id: uuid.UUID, *, after_seq: int, up_to: int | None = None
    ) -> AsyncIterator[list[EventRecord]]:
        """Stored events after ``after_seq`` (through ``up_to``), page by page."""
        while True:
            page = await self.read(session_id, after_seq=after_seq, limit=MAX_READ)
            if up_to is not None:
                page = [r for r in page if r.seq <= up_to]
            if not page:
                return
            yield page
            after_seq = page[-1].seq
            if len(page) < MAX_READ or (up_to is not None and after_seq >= up_to):
                return

    async def last_seq(self, session_id: uuid.UUID) -> int:
        session = await InterviewSession.filter(id=session_id).only("id", "last_seq").get()
        return int(session.last_seq)
