"""Following a session live: replay from the log, then the bus, with no gap and no duplicate.

Per process and session there is one ``SessionHub``: one bus subscription,
however many watchers. The hub forwards every event it learns of exactly once
and in order, from two sources:

- the bus (fast path): a batch whose first seq is past the next expected one
  means something was missed, and the gap is read from the log first. A batch
  published with ``local=`` in this very process comes as objects once Redis has
  it (``EventBus.on_local``), and its echo is dropped unread (the event log passes
  its committed records as ``local=``);
- the log itself, polled every ``poll_interval_s`` (faster while the bus is
  down): catches whatever the bus lost, across Redis restarts included.

Each watcher has a bounded queue. A watcher that falls behind (queue full) is
never waited for: it is flagged, and once its client catches up it resyncs
from the log. So one slow client costs itself a replay, and no one else
anything. A watcher tracks the last seq it delivered: replay seam, gap fills
and resyncs all skip what it has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

from resolvers import metrics
from resolvers.bus import EventBus, follow_channel
from resolvers.events import EventLog, EventRecord, channel_for, decode_batch

logger = logging.getLogger("interviewlm.live")
Batch = list[EventRecord]


@dataclass(eq=False)
class Watcher:
    queue: asyncio.Queue[Batch] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    lagging: bool = False

    def offer(self, batch: Batch) -> None:
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.lagging = True


class SessionHub:
    def __init__(
        self, session_id: uuid.UUID, bus: EventBus, log: EventLog, *, poll_interval_s: float
    ) -> None:
        self.session_id = session_id
        self.bus = bus
        self.log = log
        self.poll_interval_s = poll_interval_s
        self.watchers: set[Watcher] = set()
        self.max_seq = 0
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()  # local batches waiting for the lock
        self._channel = channel_for(session_id)
        self._stop_local: Callable[[], None] = lambda: None

    async def start(self) -> None:
        self._stop_local = self.bus.on_local(self._channel, self._on_local)
        self._tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._poll()),
        ]
        await self._ready.wait()

    async def stop(self) -> None:
        self._stop_local()
        for task in (*self._tasks, *self._pending):
            task.cancel()
        for task in (*self._tasks, *self._pending):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        await follow_channel(self.bus, self._channel, self._on_message, self._on_subscribed)

    async def _on_subscribed(self) -> None:
        if not self._ready.is_set():
            # Subscribed first, then read the high-water mark: anything
            # later arrives through the bus or the poll.
            self.max_seq = await self.log.last_seq(self.session_id)
            self._ready.set()
        else:
            await self.catch_up()

    async def _on_message(self, message: str) -> None:
        if self.bus.is_echo(self._channel, message):
            return  # appended here: delivered already, by _on_local
        _, records = decode_batch(message)
        await self.deliver(records)

    def _on_local(self, local: object) -> bool:
        """A batch this process appended, just committed (see EventBus.on_local)."""
        if not self._ready.is_set():
            return False  # the high-water mark is not known yet: let the bus bring it
        records = cast(Batch, local)
        if not records:
            return True
        if not self._lock.locked() and records[0].seq == self.max_seq + 1:
            self._forward(list(records))  # in order, nothing in between: at once
        else:
            task = asyncio.create_task(self._deliver_logged(list(records)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return True

    async def _deliver_logged(self, records: Batch) -> None:
        try:
            await self.deliver(records)
        except Exception:  # (a gap read failed) the poll brings it
            logger.exception("hub %s: delivering a local batch failed", self.session_id)

    async def _poll(self) -> None:
        await self._ready.wait()
        while True:
            fast = not self.bus.healthy
            await asyncio.sleep(self.poll_interval_s / 5 if fast else self.poll_interval_s)
            try:
                await self.catch_up()
            except Exception:  # a failed poll is retried on the next tick
                logger.exception("hub %s poll failed", self.session_id)

    async def catch_up(self) -> None:
        async with self._lock:
            async for page in self.log.read_range(self.session_id, after_seq=self.max_seq):
                self._forward(page)

    async def deliver(self, records: Batch) -> None:
        async with self._lock:
            fresh = [r for r in records if r.seq > self.max_seq]
            if not fresh:
                return
            if fresh[0].seq > self.max_seq + 1:
                async for page in self.log.read_range(
                    self.session_id, after_seq=self.max_seq, up_to=fresh[0].seq - 1
                ):
                    self._forward(page)
            self._forward([r for r in fresh if r.seq > self.max_seq])

    def _forward(self, batch: Batch) -> None:
        if not batch:
            return
        self.max_seq = batch[-1].seq
        for watcher in self.watchers:
            watcher.offer(batch)


class LiveHub:
    """All session hubs of this process; a hub lives while it has watchers."""

    def __init__(self, bus: EventBus, log: EventLog, *, poll_interval_s: float = 1.0) -> None:
        self.bus = bus
        self.log = log
        self.poll_interval_s = poll_interval_s
        self._hubs: dict[uuid.UUID, SessionHub] = {}
        self._starting: dict[uuid.UUID, asyncio.Task[SessionHub]] = {}

    async def _hub(self, session_id: uuid.UUID) -> SessionHub:
        hub = self._hubs.get(session_id)
        if hub is not None:
            return hub
        task = self._starting.get(session_id)
        if task is None:
            task = asyncio.ensure_future(self._start_hub(session_id))
            self._starting[session_id] = task
        return await asyncio.shield(task)

    async def _start_hub(self, session_id: uuid.UUID) -> SessionHub:
        hub = SessionHub(session_id, self.bus, self.log, poll_interval_s=self.poll_interval_s)
        try:
            await hub.start()
            self._hubs[session_id] = hub
        finally:
            self._starting.pop(session_id, None)
        return hub

    @contextlib.asynccontextmanager
    async def watch(self, session_id: uuid.UUID) -> AsyncIterator[Watcher]:
        hub = await self._hub(session_id)
        watcher = Watcher()
        hub.watchers.add(watcher)
        try:
            yield watcher
        finally:
            hub.watchers.discard(watcher)
            if not hub.watchers and self._hubs.get(session_id) is hub:
                del self._hubs[session_id]
                await hub.stop()

    async def close(self) -> None:
        hubs, self._hubs = list(self._hubs.values()), {}
        for hub in hubs:
            await hub.stop()

    async def follow(
        self,
        session_id: uuid.UUID,
        *,
        after_seq: int,
        keep: Callable[[EventRecord], EventRecord | None] = lambda r: r,
    ) -> AsyncIterator[Batch]:
        """Stored events after ``after_seq``, then live ones; each seq exactly once, in order.

        ``keep`` filters or redacts each event for the watcher (None drops it);
        dropped events still advance the watcher's position.
        """
        async with self.watch(session_id) as watcher:
            last = after_seq

            async def replay(up_to: int | None = None) -> AsyncIterator[Batch]:
                nonlocal last
                async for page in self.log.read_range(session_id, after_seq=last, up_to=up_to):
                    last = page[-1].seq
                    yield page

            async for page in replay():
                if shown := _kept(page, keep):
                    yield shown
            while True:
                if watcher.lagging:
                    watcher.lagging = False
                    while not watcher.queue.empty():
                        watcher.queue.get_nowait()
                    async for page in replay():
                        if shown := _kept(page, keep):
                            yield shown
                    continue
                batch = _after(await watcher.queue.get(), last)
                if not batch:
                    continue
                if batch[0].seq > last + 1:
                    async for page in replay(up_to=batch[0].seq - 1):
                        if shown := _kept(page, keep):
                            yield shown
                    batch = _after(batch, last)
                    if not batch:
                        continue
                last = batch[-1].seq
                if shown := _kept(batch, keep):
                    yield shown
                    # Resumed: the consumer has sent it (Strawberry asks for the next
                    # only then). Once per batch and watcher, for its newest event.
                    metrics.FANOUT_LAG.observe(time.time() - shown[-1].at.timestamp())


def _after(batch: Batch, seq: int) -> Batch:
    """The events past ``seq``; the very list when all are (batches are in seq order)."""
    if batch and batch[0].seq > seq:
        return batch
    return [r for r in batch if r.seq > seq]


def _kept(batch: Batch, keep: Callable[[EventRecord], EventRecord | None]) -> Batch:
    kept = [r for r in (keep(record) for record in batch) if r is not None]
    # Unchanged, the hub's own list goes on: every watcher that sees the same
    # events then holds the same object, and the GraphQL layer renders it once.
    if len(kept) == len(batch) and all(a is b for a, b in zip(kept, batch, strict=True)):
        return batch
    return kept
