"""resolvers.events on its own: gap-free seqs under concurrency (one process and several),
group commit, a failed append leaving no gap, publishing failures not failing the writer,
NUL bytes, paging, the bus encoding, and an unreachable database (retried within a budget,
a lost reply not stored twice, UNAVAILABLE past the budget). The real test database
(SQLite or PostgreSQL); the outages are simulated at the store (tests/test_postgres_restart.py
stops a real server)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime

import pytest
from starlette.applications import Starlette
from tortoise.exceptions import DoesNotExist

from resolvers import event_store, events, metrics
from resolvers.bus import EventBus
from resolvers.database import DatabaseUnavailable
from resolvers.event_kinds import FileWritten, NoteAdded
from resolvers.events import EventLog, channel_for, decode_batch, encode_batch
from tests.conftest import Account


class RecordingBus(EventBus):
    """Records what the log publishes (or fails every publish), without a server."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__("memory://")
        self.fail = fail
        self.published: list[tuple[str, str]] = []

    async def publish(self, channel: str, message: str, *, local: object = None) -> bool:
        if self.fail:
            raise RuntimeError("the bus exploded")
        self.published.append((channel, message))
        return True


@pytest.fixture
def session_id(account: Account, app: Starlette) -> uuid.UUID:
    return uuid.UUID(account["sessionId"])


async def test_concurrent_appends_are_group_committed_gap_free_and_published_in_order(
    session_id: uuid.UUID, app: Starlette
) -> None:
    bus = RecordingBus()
    log = EventLog(bus)
    start = await log.last_seq(session_id)
    records = await asyncio.gather(*(log.append(session_id, NoteAdded(f"n{i}")) for i in range(40)))
    assert [r.seq for r in records] == list(range(start + 1, start + 41)), "in call order"
    assert [r.payload for r in records] == [NoteAdded(f"n{i}") for i in range(40)]
    assert await log.last_seq(session_id) == start + 40
    assert 1 <= len(bus.published) < 40, "appends queued behind a commit go together"
    assert {channel for channel, _ in bus.published} == {channel_for(session_id)}
    published = [r.seq for _, message in bus.published for r in decode_batch(message)[1]]
    assert published == [r.seq for r in records]


async def test_two_writers_on_one_session_never_share_or_skip_a_seq(
    session_id: uuid.UUID, app: Starlette
) -> None:
    """Two logs stand for two replicas: only the database row lock orders them."""
    one, two = EventLog(RecordingBus()), EventLog(RecordingBus())
    start = await one.last_seq(session_id)
    written = await asyncio.gather(
        *(
            log.append(session_id, NoteAdded(f"{n}-{i}"))
            for i in range(15)
            for n, log in (("one", one), ("two", two))
        )
    )
    assert sorted(r.seq for r in written) == list(range(start + 1, start + 31))
    stored = await one.read(session_id, after_seq=start, limit=100)
    assert [(r.seq, r.payload) for r in stored] == sorted((r.seq, r.payload) for r in written)


async def test_a_failed_append_raises_to_its_caller_and_leaves_no_gap(
    session_id: uuid.UUID, app: Starlette
) -> None:
    log = EventLog(RecordingBus())
    before = await log.append(session_id, NoteAdded("before"))
    with pytest.raises(TypeError):  # bytes are not JSON: the insert fails, the txn rolls back
        await log.append(session_id, NoteAdded(b"not json"))  # type: ignore[arg-type]
    after = await log.append(session_id, NoteAdded("after"))
    assert after.seq == before.seq + 1
    with pytest.raises(DoesNotExist):
        await log.append(uuid.uuid4(), NoteAdded("nobody's"))


async def test_a_failing_bus_does_not_fail_the_append(
    session_id: uuid.UUID, app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog(RecordingBus(fail=True))
    record = await log.append(session_id, NoteAdded("stored anyway"))
    (stored,) = await log.read(session_id, after_seq=record.seq - 1, limit=10)
    assert stored == record
    assert "publishing events of" in caplog.text


async def test_nul_bytes_are_replaced_before_storing(session_id: uuid.UUID, app: Starlette) -> None:
    log = EventLog(RecordingBus())
    record = await log.append(session_id, NoteAdded("a\x00b"))
    assert record.payload == NoteAdded("a\ufffdb")
    (stored,) = await log.read(session_id, after_seq=record.seq - 1, limit=10)
    assert stored.payload == NoteAdded("a\ufffdb")


async def test_read_range_pages_and_stops_at_up_to(
    session_id: uuid.UUID, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "MAX_READ", 3)
    log = EventLog(RecordingBus())
    start = await log.last_seq(session_id)
    await log.append_many(session_id, [NoteAdded(f"n{i}") for i in range(8)])

    async def pages(after: int, up_to: int | None = None) -> list[list[int]]:
        return [
            [r.seq for r in page]
            async for page in log.read_range(session_id, after_seq=after, up_to=up_to)
        ]

    s = start
    assert await pages(s) == [[s + 1, s + 2, s + 3], [s + 4, s + 5, s + 6], [s + 7, s + 8]]
    assert await pages(s, up_to=s + 5) == [[s + 1, s + 2, s + 3], [s + 4, s + 5]]
    assert await pages(s + 2, up_to=s + 3) == [[s + 3]]
    assert await pages(s + 8) == []
    assert len(await log.read(session_id, after_seq=s, limit=10)) == 3, "capped at MAX_READ"


async def test_a_batch_survives_the_bus_encoding(session_id: uuid.UUID, app: Starlette) -> None:
    log = EventLog(RecordingBus())
    records = await log.append_many(
        session_id, [NoteAdded("hi"), FileWritten(path="a.py", size=3, source="candidate")]
    )
    message = encode_batch(session_id, records)
    assert decode_batch(message) == (session_id, records)
    wire = json.loads(message)["events"]
    assert wire[1]["type"] == "file.written"
    assert wire[1]["payload"] == {"path": "a.py", "size": 3, "source": "candidate"}
    assert await log.append_many(session_id, []) == []


def _appended(kind: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("interviewlm_events_appended_total", {"kind": kind}) or 0
    )


async def test_an_outage_within_the_budget_is_waited_out_and_counted(
    session_id: uuid.UUID, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, refusals = event_store.insert_group, [3]

    async def flaky(sid: uuid.UUID, at: datetime, rows: Sequence[event_store.Row]) -> int:
        if refusals[0]:
            refusals[0] -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        return await real(sid, at, rows)

    monkeypatch.setattr(event_store, "insert_group", flaky)
    monkeypatch.setattr(events, "BACKOFF_S", (0.01, 0.02))
    log = EventLog(RecordingBus())
    start, counted = await log.last_seq(session_id), _appended("note.added")
    records = await log.append_many(session_id, [NoteAdded("a"), NoteAdded("b")])
    assert refusals == [0]
    assert [r.seq for r in records] == [start + 1, start + 2]
    stored = await log.read(session_id, after_seq=start, limit=10)
    assert stored == records
    assert _appended("note.added") == counted + 2


async def test_a_group_whose_reply_was_lost_is_found_not_stored_twice(
    session_id: uuid.UUID, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database committed, the connection dropped before the answer: the retry
    finds the group by its instant instead of storing it again (a watcher would see
    the output twice, under new seqs)."""
    real, calls = event_store.insert_group, []

    async def reply_lost(sid: uuid.UUID, at: datetime, rows: Sequence[event_store.Row]) -> int:
        calls.append(at)
        first = await real(sid, at, rows)
        if len(calls) == 1:
            raise ConnectionResetError("connection reset by peer")
        return first

    monkeypatch.setattr(event_store, "insert_group", reply_lost)
    monkeypatch.setattr(events, "BACKOFF_S", (0.01, 0.02))
    log = EventLog(RecordingBus())
    start = await log.last_seq(session_id)
    records = await log.append_many(session_id, [NoteAdded("once"), NoteAdded("only")])
    assert len(calls) == 1, "found where it landed: not inserted again"
    assert [r.seq for r in records] == [start + 1, start + 2]
    assert await log.read(session_id, after_seq=start, limit=10) == records
    assert await log.last_seq(session_id) == start + 2
    after = await log.append(session_id, NoteAdded("next"))
    assert after.seq == start + 3


async def test_past_the_budget_the_append_fails_unavailable_and_nothing_is_stored(
    session_id: uuid.UUID, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(sid: uuid.UUID, at: datetime, rows: Sequence[event_store.Row]) -> int:
        raise ConnectionRefusedError(111, "Connect call failed")

    log = EventLog(RecordingBus(), retry_s=0.2)
    start = await log.last_seq(session_id)
    monkeypatch.setattr(events, "BACKOFF_S", (0.01, 0.05))
    with monkeypatch.context() as patched:
        patched.setattr(event_store, "insert_group", refused)
        with pytest.raises(DatabaseUnavailable) as failed:
            await log.append(session_id, NoteAdded("lost, and its caller knows"))
    assert failed.value.code == "UNAVAILABLE"
    assert await log.last_seq(session_id) == start
    assert (await log.append(session_id, NoteAdded("back"))).seq == start + 1


@pytest.fixture
async def sessions(
    account_factory: Callable[[], Awaitable[Account]], app: Starlette
) -> list[uuid.UUID]:
    return [uuid.UUID((await account_factory())["sessionId"]) for _ in range(4)]


Groups = Mapping[uuid.UUID, Sequence[event_store.Row]]


async def _append_everywhere(
    log: EventLog, sessions: list[uuid.UUID], n: int
) -> dict[uuid.UUID, list[int]]:
    calls = [(sid, i) for i in range(n) for sid in sessions]
    records = await asyncio.gather(*(log.append(sid, NoteAdded(f"{i}")) for sid, i in calls))
    seqs: dict[uuid.UUID, list[int]] = {sid: [] for sid in sessions}
    for (sid, i), record in zip(calls, records, strict=True):
        assert record.payload == NoteAdded(f"{i}")
        seqs[sid].append(record.seq)
    return seqs


async def test_sessions_appending_at_once_share_a_statement_each_gap_free_in_call_order(
    sessions: list[uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    real, shared = event_store.insert_groups, []

    async def spy(groups: Groups, at: datetime) -> dict[uuid.UUID, int]:
        shared.append(len(groups))
        return await real(groups, at)

    monkeypatch.setattr(event_store, "insert_groups", spy)
    bus = RecordingBus()
    log = EventLog(bus, max_flushes=1)
    starts = {sid: await log.last_seq(sid) for sid in sessions}
    seqs = await _append_everywhere(log, sessions, 25)
    assert max(shared) == len(sessions), "one statement carried every session's group"
    for sid in sessions:
        assert seqs[sid] == list(range(starts[sid] + 1, starts[sid] + 26)), "in call order"
        stored = await log.read(sid, after_seq=starts[sid], limit=100)
        assert [(r.seq, r.payload) for r in stored] == [
            (s, NoteAdded(f"{i}")) for i, s in enumerate(seqs[sid])
        ]
        published = [
            r.seq
            for channel, message in bus.published
            if channel == channel_for(sid)
            for r in decode_batch(message)[1]
        ]
        assert published == seqs[sid], "each session's messages in seq order"


async def test_a_shared_statement_whose_reply_was_lost_is_found_not_stored_twice(
    sessions: list[uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = event_store.insert_groups, []

    async def reply_lost(groups: Groups, at: datetime) -> dict[uuid.UUID, int]:
        calls.append(len(groups))
        firsts = await real(groups, at)
        if len(groups) > 1 and calls.count(len(groups)) == 1:
            raise ConnectionResetError("connection reset by peer")
        return firsts

    monkeypatch.setattr(event_store, "insert_groups", reply_lost)
    monkeypatch.setattr(events, "BACKOFF_S", (0.01, 0.02))
    log = EventLog(RecordingBus(), max_flushes=1)
    starts = {sid: await log.last_seq(sid) for sid in sessions}
    seqs = await _append_everywhere(log, sessions, 10)
    for sid in sessions:
        assert seqs[sid] == list(range(starts[sid] + 1, starts[sid] + 11))
        assert await log.last_seq(sid) == starts[sid] + 10, "nothing stored twice"
        assert len(await log.read(sid, after_seq=starts[sid], limit=100)) == 10


async def test_a_session_refused_in_a_shared_statement_fails_alone(
    sessions: list[uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = sessions[0]
    real_many, real_one = event_store.insert_groups, event_store.insert_group

    async def many(groups: Groups, at: datetime) -> dict[uuid.UUID, int]:
        if poisoned in groups:
            raise ValueError("refused")
        return await real_many(groups, at)

    async def one(sid: uuid.UUID, at: datetime, rows: Sequence[event_store.Row]) -> int:
        if sid == poisoned:
            raise ValueError("refused")
        return await real_one(sid, at, rows)

    monkeypatch.setattr(event_store, "insert_groups", many)
    monkeypatch.setattr(event_store, "insert_group", one)
    log = EventLog(RecordingBus(), max_flushes=1)
    starts = {sid: await log.last_seq(sid) for sid in sessions}
    calls = [(sid, i) for i in range(10) for sid in sessions]
    outcomes = await asyncio.gather(
        *(log.append(sid, NoteAdded(f"{i}")) for sid, i in calls), return_exceptions=True
    )
    for (sid, _), outcome in zip(calls, outcomes, strict=True):
        assert isinstance(outcome, ValueError) == (sid == poisoned), outcome
    assert await log.last_seq(poisoned) == starts[poisoned]
    for sid in sessions[1:]:
        assert await log.last_seq(sid) == starts[sid] + 10
