"""resolvers.bus on its own: delivery in memory, and on a real (private) Redis server that is
killed and restarted: publishing fails soft, the bus notices, reconnects with a new
generation, and ``follow_channel`` resubscribes and calls back so the caller can refill."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from resolvers import metrics
from resolvers.bus import EventBus, follow_channel
from tests.redis_server import RedisServer
from tests.support import wait_until


class Follower:
    """A ``follow_channel`` running in the background, recording what it is told."""

    def __init__(self, bus: EventBus, channel: str) -> None:
        self.messages: list[str] = []
        self.subscribed = 0
        self.task = asyncio.ensure_future(
            follow_channel(bus, channel, self._on_message, self._on_subscribed)
        )

    async def _on_message(self, message: str) -> None:
        self.messages.append(message)

    async def _on_subscribed(self) -> None:
        self.subscribed += 1

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def memory_bus() -> AsyncIterator[EventBus]:
    bus = EventBus("memory://")
    await bus.connect()
    yield bus
    await bus.disconnect()


async def test_memory_bus_delivers_to_every_subscriber_of_the_channel(
    memory_bus: EventBus,
) -> None:
    assert not memory_bus.is_redis
    a, b, other = (
        Follower(memory_bus, "ch"),
        Follower(memory_bus, "ch"),
        Follower(memory_bus, "other"),
    )
    await wait_until(lambda: a.subscribed == b.subscribed == other.subscribed == 1)
    for message in ("one", "two", "three"):
        assert await memory_bus.publish("ch", message)
    await wait_until(lambda: len(a.messages) == len(b.messages) == 3)
    assert a.messages == b.messages == ["one", "two", "three"], "in order"
    assert other.messages == []
    await memory_bus.ping()  # nothing to ask: always answers
    for follower in (a, b, other):
        await follower.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.mark.redis
async def test_redis_restart_is_noticed_reconnected_and_resubscribed(
    private_redis: RedisServer,
) -> None:
    bus = EventBus(private_redis.url, probe_interval_s=0.05)
    await bus.connect()
    assert connected() == 1
    reconnects = metrics.BUS_RECONNECTS._value.get()
    follower = Follower(bus, "ch")
    try:
        await wait_until(lambda: private_redis.subscribers("ch") == 1)
        assert await bus.publish("ch", "before")
        await wait_until(lambda: follower.messages == ["before"])

        private_redis.stop()
        assert not await bus.publish("ch", "lost"), "publishing fails soft"
        assert not bus.healthy
        assert connected() == 0, "the gauge says it is down"
        with pytest.raises((OSError, RedisError)):
            await bus.ping()

        private_redis.start()
        await wait_until(lambda: bus.healthy and bus.generation == 1, 20, what="reconnected")
        assert connected() == 1
        assert metrics.BUS_RECONNECTS._value.get() >= reconnects + 1
        await wait_until(lambda: private_redis.subscribers("ch") == 1, 20, what="resubscribed")
        # Every (re)subscription, and failed ones, gave the caller a chance to refill.
        assert follower.subscribed >= 2
        # Redis counts the subscription as soon as SUBSCRIBE is processed, a moment
        # before the resubscribed reader is consuming: publish until one arrives
        # (the event log's gap fill covers that moment in the product).

        async def delivered_after_restart() -> bool:
            assert await bus.publish("ch", "after")
            return "after" in follower.messages

        await wait_until(delivered_after_restart, 20, what="delivered after the restart")
        assert "lost" not in follower.messages
        await bus.ping()
    finally:
        await follower.stop()
        await bus.disconnect()
    assert connected() == 0


def connected() -> float:
    return metrics.BUS_CONNECTED._value.get()  # type: ignore[no-any-return]


async def test_the_connected_gauge_follows_connect_and_disconnect() -> None:
    bus = EventBus("memory://")
    await bus.connect()
    assert connected() == 1
    await bus.disconnect()
    assert connected() == 0
