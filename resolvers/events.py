"""The session event log: append with a gap-free per-session ``seq``, store, publish.

``seq`` comes from ``InterviewSession.last_seq``, bumped under a row lock in
the same transaction as the insert: concurrent appends from any number of
replicas serialize per session, and a rolled-back append leaves no gap.

Appends are group-committed: while a flush is storing groups, further appends
queue up and go together in the next one -- one statement for the waiting
appends of every session that has none in flight (``resolvers.event_store``),
one published message per session -- so a burst of terminal output costs a
handful of round trips rather than one per chunk, and many sessions appending
at once share one commit (one WAL flush) instead of one each. A session is in
at most one flush at a time: its seqs follow the order of the calls, and its
messages are published in seq order. An append with nothing in flight is
stored at once. Up to ``max_flushes`` flushes run at a time.

An unreachable database is retried within a budget, a lost reply never stores
a group twice (``resolvers.event_commit``).

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
from datetime import datetime
from typing import Any

from models.event import Event
from models.session import InterviewSession
from resolvers import event_commit
from resolvers.bus import EventBus
from resolvers.database import DatabaseUnavailable
from resolvers.event_commit import BACKOFF_S, RETRY_S, Encoded
from resolvers.event_kinds import Payload, parse_stored
from resolvers.storage import OutputQuota, StorageLimits

MAX_READ = 1000
MAX_BATCH = 500
"""Events in one flush (one statement); a larger single append goes alone."""
MAX_FLUSHES = 4
"""Flushes in flight at a time (each holds a database connection while it stores)."""
PUBLISHING = 16
"""Sessions' messages of one flush published at a time."""
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


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _encode(payload: Payload) -> Encoded:
    """The payload and its stored JSON; re-parsed in the rare case NULs were replaced."""
    data = payload.to_json()
    text = _dumps(data)
    if "\\u0000" in text:  # JSON escapes NUL so: only then is there one to look for
        clean = without_nul(data)
        if clean is not data:
            payload, data, text = parse_stored(payload.kind, clean), clean, _dumps(clean)
    return Encoded(payload, data, text)


def _message(
    session_id: uuid.UUID, records: Sequence[EventRecord], group: Sequence[Encoded]
) -> str:
    """``encode_batch(session_id, records)``, from the payloads' JSON made for storing."""
    at = _dumps(records[0].at.isoformat()) if records else ""
    kinds = {r.type: _dumps(r.type) for r in records}
    events = ",".join(
        f'{{"seq":{r.seq},"type":{kinds[r.type]},"at":{at},"payload":{e.text}}}'
        for r, e in zip(records, group, strict=True)
    )
    return f'{{"sessionId":"{session_id}","events":[{events}]}}'


def _records(
    session_id: uuid.UUID, group: Sequence[Encoded], first: int, at: datetime
) -> list[EventRecord]:
    return [
        EventRecord(session_id, first + i, e.payload.kind, at, e.payload, e.data)
        for i, e in enumerate(group)
    ]


def _answer(
    group: list[_Pending], outcome: list[EventRecord] | BaseException
) -> list[EventRecord] | None:
    """Each waiter gets its own records, or the failure; the records, if stored."""
    if isinstance(outcome, BaseException):
        for p in group:
            if not p.done.done():
                p.done.set_exception(outcome)
        return None
    offset = 0
    for p in group:
        mine = outcome[offset : offset + len(p.items)]
        offset += len(p.items)
        if not p.done.done():
            p.done.set_result(mine)
    return outcome


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
    encoded: list[Encoded] = field(default_factory=list)


class EventLog:
    def __init__(
        self,
        bus: EventBus,
        *,
        limits: StorageLimits | None = None,
        retry_s: float = RETRY_S,
        max_flushes: int = MAX_FLUSHES,
    ) -> None:
        self.bus = bus
        self.retry_s = retry_s
        self.max_flushes = max(1, max_flushes)
        # What one session may store in the recording (resolvers.storage).
        self.limits = limits or StorageLimits()
        self.output_quota = OutputQuota(self.limits)
        self._queued: dict[uuid.UUID, list[_Pending]] = {}  # in arrival order
        self._busy: set[uuid.UUID] = set()  # sessions whose group is being stored
        self._flushing: set[asyncio.Task[None]] = set()

    async def append(self, session_id: uuid.UUID, payload: Payload) -> EventRecord:
        (record,) = await self.append_many(session_id, [payload])
        return record

    async def append_many(
        self, session_id: uuid.UUID, items: Sequence[Payload]
    ) -> list[EventRecord]:
        if not items:
            return []
        pending = _Pending(items, asyncio.get_running_loop().create_future())
        self._queued.setdefault(session_id, []).append(pending)
        self._kick()
        # A caller cancelled meanwhile cancels only its wait: the append is stored anyway.
        return await pending.done

    def _kick(self) -> None:
        while len(self._flushing) < self.max_flushes:
            batch = self._take()
            if not batch:
                return
            task = asyncio.create_task(self._flushes(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _flushes(self, batch: dict[uuid.UUID, list[_Pending]]) -> None:
        while batch:
            await self._flush(batch)
            # The callers just answered append again at once: one turn of the loop lets
            # them queue, so the next batch carries them all (taken at once, it would
            # carry the few already waiting, and the rest would wait another round).
            await asyncio.sleep(0)
            batch = self._take()

    def _take(self) -> dict[uuid.UUID, list[_Pending]]:
        """Waiting appends of sessions with none in flight, oldest first, up to MAX_BATCH."""
        batch: dict[uuid.UUID, list[_Pending]] = {}
        count = 0
        for session_id in list(self._queued):
            if session_id in self._busy:
                continue
            queue = self._queued[session_id]
            group: list[_Pending] = []
            while queue and (count == 0 or count + len(queue[0].items) <= MAX_BATCH):
                group.append(queue.pop(0))
                count += len(group[-1].items)
            if not group:
                break  # the batch is full
            if not queue:
                del self._queued[session_id]
            self._busy.add(session_id)
            batch[session_id] = group
        return batch

    async def _flush(self, batch: dict[uuid.UUID, list[_Pending]]) -> None:
        try:
            groups: dict[uuid.UUID, list[Encoded]] = {}
            for session_id, pendings in batch.items():
                kept = []
                for p in pendings:
                    try:  # an append that cannot be stored fails alone
                        p.encoded = [_encode(payload) for payload in p.items]
                        kept.append(p)
                    except (TypeError, ValueError) as exc:
                        if not p.done.done():
                            p.done.set_exception(exc)
                batch[session_id] = kept
                if kept:
                    groups[session_id] = [e for p in kept for e in p.encoded]
            results = await self._store(groups)
            done = [
                (session_id, records, [e for p in batch[session_id] for e in p.encoded])
                for session_id, outcome in results.items()
                if (records := _answer(batch[session_id], outcome)) is not None
            ]
            # Each session has one message in this flush and no next flush until it is
            # out, so its messages keep seq order; sessions' messages go out a few at a
            # time (one after another, each waits a round trip to Redis).
            for i in range(0, len(done), PUBLISHING):
                await asyncio.gather(*(self._publish(*one) for one in done[i : i + PUBLISHING]))
        except BaseException as exc:  # cancelled at shutdown: no caller waits forever
            for p in (p for pendings in batch.values() for p in pendings):
                if not p.done.done():
                    p.done.set_exception(exc)
            raise
        finally:
            self._busy.difference_update(batch)

    async def _store(
        self, groups: dict[uuid.UUID, list[Encoded]]
    ) -> dict[uuid.UUID, list[EventRecord] | BaseException]:
        if len(groups) > 1:
            try:
                stored = await event_commit.commit_many(
                    groups, retry_s=self.retry_s, backoff=BACKOFF_S
                )
                return {
                    sid: _records(sid, groups[sid], *where) if isinstance(where, tuple) else where
                    for sid, where in stored.items()
                }
            except DatabaseUnavailable as exc:
                return dict.fromkeys(groups, exc)
            except Exception:  # one session's rows were refused: find it, store the others
                logger.exception("storing %d sessions' events together failed", len(groups))
        results: dict[uuid.UUID, list[EventRecord] | BaseException] = {}
        for session_id, group in groups.items():
            try:
                results[session_id] = await self._commit(session_id, group)
            except Exception as exc:
                results[session_id] = exc
        return results

    async def _publish(
        self, session_id: uuid.UUID, records: list[EventRecord], encoded: list[Encoded]
    ) -> None:
        try:
            # ``local``: this replica's own hubs take the records as they are once Redis
            # has the message, and drop its echo unread (resolvers.bus, resolvers.live).
            await self.bus.publish(
                channel_for(session_id), _message(session_id, records, encoded), local=records
            )
        except Exception:  # stored is what counts: listeners also poll the log
            logger.exception("publishing events of %s failed", session_id)

    async def _commit(self, session_id: uuid.UUID, group: Sequence[Encoded]) -> list[EventRecord]:
        """Store one session's group alone (retrying an unreachable database)."""
        first, at = await event_commit.commit_one(
            session_id, group, retry_s=self.retry_s, backoff=BACKOFF_S
        )
        return _records(session_id, group, first, at)

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
