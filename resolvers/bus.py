"""The event bus: broadcaster over Redis pub/sub (``redis://``) or in memory (``memory://``).

broadcaster gives fan-out to every replica but no durability: it does not
reconnect after a Redis drop and its queues are unbounded. The stored event
log is the source of truth; the bus is only the doorbell (see resolvers.events).
"""

from __future__ import annotations

from broadcaster import Broadcast
from redis import asyncio as aioredis


class EventBus:
    def __init__(self, url: str) -> None:
        self.url = url
        self.broadcast = Broadcast(url)
        self._redis: aioredis.Redis | None = None

    async def connect(self) -> None:
        await self.broadcast.connect()
        if self.url.startswith(("redis://", "rediss://")):
            self._redis = aioredis.Redis.from_url(self.url)

    async def disconnect(self) -> None:
        await self.broadcast.disconnect()
        if self._redis is not None:
            await self._redis.aclose()

    async def publish(self, channel: str, message: str) -> None:
        await self.broadcast.publish(channel=channel, message=message)

    async def ping(self) -> None:
        """Raise if the bus's server does not answer."""
        if self._redis is not None:
            await self._redis.ping()  # type: ignore[misc]  # redis-py types sync|async
