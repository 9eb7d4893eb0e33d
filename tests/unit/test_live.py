"""resolvers.live on its own: the session hub's gap fill and dedup, the watcher resync when
its queue overflows, and ``follow``'s filtering. Real event log (the test database) and the
app's bus; each hub here polls the log only hourly, so what reaches a watcher came through
the path under test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette

from resolvers import live
from resolvers.bus import EventBus
from resolvers.event_kinds import FileWritten, NoteAdded
from resolvers.events import EventLog, EventRecord, channel_for, decode_batch, encode_batch
from resolvers.live import Batch, LiveHub, SessionHub, Watcher
from tests.conftest import Account
from tests.support import wait_until

NEVER = 3600.0  # poll interval: the log poll does not run during a test


def seqs(batches: list[Batch]) -> list[int]:
    return [r.seq for batch in batches for r in batch]


async def note(log: EventLog, session_id: uuid.UUID, text: str) -> EventRecord:
    return await log.append(session_id, NoteAdded(text=text))


def queued(watcher: Watcher) -> list[Batch]:
    batches = []
    while not watcher.queue.empty():
        batches.append(watcher.queue.get_nowait())
    return batches


@pytest.fixture
def log(app: Starlette) -> EventLog:
    """An event log of its own (same database and bus), free to spy on."""
    return EventLog(app.state.services.bus)


@pytest.fixture
async def quiet_hub(log: EventLog, account: Account) -> AsyncIterator[SessionHub]:
    """A hub on a private in-memory bus: it hears nothing the log publishes."""
    bus = EventBus("memory://")
    await bus.connect()
    hub = SessionHub(uuid.UUID(account["sessionId"]), bus, log, poll_interval_s=NEVER)
    await hub.start()
    yield hub
    await hub.stop()
    await bus.disconnect()


async def test_hub_starts_at_the_stored_high_water_mark(
    quiet_hub: SessionHub, log: EventLog
) -> None:
    assert quiet_hub.max_seq == await log.last_seq(quiet_hub.session_id) > 0


async def test_a_batch_past_a_gap_is_preceded_by_the_gap_from_the_log(
    quiet_hub: SessionHub, log: EventLog
) -> None:
    sid = quiet_hub.session_id
    watcher = Watcher()
    quiet_hub.watchers.add(watcher)
    first, second, third = [await note(log, sid, f"n{i}") for i in range(3)]
    await quiet_hub.deliver([third])  # the bus lost the first two
    assert [[r.seq for r in b] for b in queued(watcher)] == [
        [first.seq, second.seq],
        [third.seq],
    ]
    await quiet_hub.deliver([first, second, third])  # late duplicates are dropped
    assert queued(watcher) == []
    fourth = await note(log, sid, "n3")
    await quiet_hub.catch_up()  # the poll's path: whatever is stored past max_seq
    assert seqs(queued(watcher)) == [fourth.seq]
    assert quiet_hub.max_seq == fourth.seq


async def test_a_full_queue_flags_the_watcher_and_never_blocks(quiet_hub: SessionHub) -> None:
    slow, fast = Watcher(queue=asyncio.Queue(maxsize=1)), Watcher()
    record = EventRecord.stored(
        quiet_hub.session_id, quiet_hub.max_seq + 1, "note.added", datetime.now(UTC), {"text": "x"}
    )
    slow.offer([record])
    assert not slow.lagging
    slow.offer([record])
    assert slow.lagging
    assert slow.queue.qsize() == 1
    fast.offer([record])
    assert not fast.lagging


async def test_a_slow_watcher_resyncs_from_the_log_and_sees_every_seq_once(
    log: EventLog, account: Account, monkeypatch: pytest.MonkeyPatch, app: Starlette
) -> None:
    """Queues of 2 batches: one appended event is one batch, so the third unread one overflows.
    Without the resync the watcher would lose every event from the overflow on."""
    sid = uuid.UUID(account["sessionId"])
    monkeypatch.setattr(live, "Watcher", lambda: Watcher(queue=asyncio.Queue(maxsize=2)))
    reads: list[tuple[int, int | None]] = []
    read_range = log.read_range

    def spy(session_id: uuid.UUID, *, after_seq: int, up_to: int | None = None) -> Any:
        reads.append((after_seq, up_to))
        return read_range(session_id, after_seq=after_seq, up_to=up_to)

    monkeypatch.setattr(log, "read_range", spy)
    hubs = LiveHub(app.state.services.bus, log, poll_interval_s=NEVER)
    start = await log.last_seq(sid)
    stream = hubs.follow(sid, after_seq=start)
    first = asyncio.ensure_future(anext(stream))  # replays nothing, then waits on its queue
    await wait_until(lambda: sid in hubs._hubs and bool(hubs._hubs[sid].watchers))
    hub = hubs._hubs[sid]
    (watcher,) = hub.watchers
    written = [(await note(log, sid, f"n{i}")).seq for i in range(8)]
    await wait_until(lambda: hub.max_seq == written[-1], what="the hub heard every append")
    assert watcher.lagging, "the queue overflowed"
    reads.clear()

    got = [await asyncio.wait_for(first, 10)]
    while seqs(got)[-1] < written[-1]:
        got.append(await asyncio.wait_for(anext(stream), 10))
    assert seqs(got) == written, "every seq once, in order"
    assert reads == [(got[0][-1].seq, None)], "resynced from the log after what it had shown"
    assert not watcher.lagging
    # Resynced, it is live again.
    later = await note(log, sid, "after")
    assert seqs([await asyncio.wait_for(anext(stream), 10)]) == [later.seq]
    await stream.aclose()
    assert sid not in hubs._hubs, "the last watcher gone, the hub stops"
    await hubs.close()


async def test_follow_replays_then_goes_live_filtering_per_watcher(
    log: EventLog, account: Account, app: Starlette
) -> None:
    sid = uuid.UUID(account["sessionId"])
    hubs = LiveHub(app.state.services.bus, log, poll_interval_s=NEVER)
    stored = await note(log, sid, "before")
    everyone = hubs.follow(sid, after_seq=stored.seq - 1)
    also = hubs.follow(sid, after_seq=stored.seq)

    def no_notes(record: EventRecord) -> EventRecord | None:
        return None if record.type == "note.added" else record

    filtered = hubs.follow(sid, after_seq=stored.seq - 1, keep=no_notes)
    assert seqs([await anext(everyone)]) == [stored.seq], "replayed from the log"
    waiting = [asyncio.ensure_future(anext(s)) for s in (everyone, also, filtered)]
    await wait_until(lambda: sid in hubs._hubs and len(hubs._hubs[sid].watchers) == 3)
    batch = await log.append_many(sid, [NoteAdded(text="live"), FileWritten(path="a", size=1)])
    a, b, c = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert seqs([a]) == [r.seq for r in batch]
    assert a is b, "unfiltered watchers share the hub's list (rendered once)"
    assert [r.type for r in c] == ["file.written"], "the dropped note still advanced it"
    for stream in (everyone, also, filtered):
        await stream.aclose()
    await hubs.close()


async def test_concurrent_watchers_of_a_new_session_share_one_hub(
    log: EventLog, account: Account, app: Starlette
) -> None:
    sid = uuid.UUID(account["sessionId"])
    hubs = LiveHub(app.state.services.bus, log, poll_interval_s=NEVER)
    async with hubs.watch(sid) as one, hubs.watch(sid) as two:
        assert len(hubs._hubs) == 1
        assert hubs._hubs[sid].watchers == {one, two}
    assert hubs._hubs == {}
    await hubs.close()


async def test_the_appending_replica_delivers_its_own_batches_at_once_and_drops_the_echo(
    log: EventLog, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = uuid.UUID(account["sessionId"])
    bus = EventBus("memory://")  # the hub's: appends below publish on the app's bus
    await bus.connect()
    hub = SessionHub(sid, bus, log, poll_interval_s=NEVER)
    await hub.start()
    decoded: list[str] = []

    def spy(message: str) -> Any:
        decoded.append(message)
        return decode_batch(message)

    try:
        watcher = Watcher()
        hub.watchers.add(watcher)
        monkeypatch.setattr(live, "decode_batch", spy)
        records = await log.append_many(sid, [NoteAdded(text="one"), NoteAdded(text="two")])
        # Published as the appending replica would (EventLog does not hand its batches
        # over yet: see bench/README.md, issue 13).
        assert await bus.publish(channel_for(sid), encode_batch(sid, records), local=records)
        await wait_until(lambda: not watcher.queue.empty())
        (batch,) = queued(watcher)
        # The very objects the append returned: handed over, not decoded from JSON.
        assert all(a is b for a, b in zip(batch, records, strict=True))
        three = await note(log, sid, "three")
        assert await bus.publish(channel_for(sid), encode_batch(sid, [three]), local=[three])
        await wait_until(
            lambda: not watcher.queue.empty() and not bus._echoes, what="delivered, echo seen"
        )
        assert decoded == [], "the echoes from the bus were dropped unread"
        assert seqs(queued(watcher)) == [records[-1].seq + 1], "each seq once"
        # Another replica's batch (no local copy) still comes through the bus.
        foreign = await log.append(sid, NoteAdded(text="elsewhere"))
        assert await bus.publish(channel_for(sid), encode_batch(sid, [foreign]))
        await wait_until(lambda: hub.max_seq == foreign.seq)
        assert len(decoded) == 1
    finally:
        await hub.stop()
        await bus.disconnect()
