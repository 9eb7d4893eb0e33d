"""Waiting for work that another request or replica is doing, without polling the database.

A request that must wait for something in progress elsewhere (a sandbox another
request is starting, an agent run a cancel has just killed) waits for a signal:

- in this process, an ``asyncio.Event`` that the work sets when it is over;
- on another replica, the session's events on the bus: whatever ends the wait
  also appends an event to the session's log, and every append is published.

Either way the database stays the truth: the answer is always read from it --
once subscribed (so nothing sent between the read and the wait is missed),
after each event that may be the one, when the bus reconnects or goes down
(what was published meanwhile may be lost: ``resolvers.bus.follow_channel``),
and once more at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from resolvers.bus import EventBus, follow_channel
from resolvers.events import EventRecord, channel_for, decode_batch

T = TypeVar("T")
Check = Callable[[], Awaitable[T | None]]


async def settled_here(done: asyncio.Event, check: Check[T], *, timeout_s: float) -> T | None:
    """Wait for ``done`` (set by work in this process), then read the answer."""
    with contextlib.suppress(TimeoutError):  # the deadline: the database answers anyway
        async with asyncio.timeout(timeout_s):
            await done.wait()
    return await check()


async def settled_elsewhere(
    bus: EventBus,
    session_id: uuid.UUID,
    check: Check[T],
    *,
    relevant: Callable[[EventRecord], bool],
    timeout_s: float,
) -> T | None:
    """Wait for a ``relevant`` event of the session (the work may be on any replica),
    reading the answer from the database whenever it may have changed; ``None`` when
    there is still none at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    wake = asyncio.Event()

    async def on_message(message: str) -> None:
        _, records = decode_batch(message)
        if any(relevant(record) for record in records):
            wake.set()

    async def on_subscribed() -> None:
        # After each (re)subscription, and after a failed one: read the database.
        wake.set()

    follower = asyncio.ensure_future(
        follow_channel(bus, channel_for(session_id), on_message, on_subscribed)
    )
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    await wake.wait()
            except TimeoutError:
                break
            wake.clear()
            if (answer := await check()) is not None:
                return answer
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    return await check()
