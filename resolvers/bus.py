"""The event bus: broadcaster over Redis pub/sub (``redis://``) or in memory (``memory://``).

broadcaster fans messages out to every replica but is not durable: it never
reconnects after a Redis drop, and a dead connection just goes quiet. So the
bus watches Redis itself (a PING every ``probe_interval_s``); when Redis comes
back it builds a fresh ``Broadcast`` and bumps ``generation``, and listeners
(see resolvers.live) resubscribe and refill any gap from the stored log.
Publishing while Redis is down does not fail the writer: the event is already
stored, and listeners poll the log faster while ``healthy`` is false.

Local delivery: the replica that publishes a message usually has listeners of
its own for it (watchers on the replica holding the sandbox). ``publish(...,
local=obj)`` hands ``obj`` (the publisher's own objects: nothing to decode) to
the channel's local listeners (``on_local``) as soon as Redis has the message,
and the copy Redis echoes back is recognised (``is_echo``) and dropped unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

from broadcaster import Broadcast
from broadcaster._base import Unsubscribed
from redis import asyncio as aioredis

from resolvers import metrics

logger = logging.getLogger("interviewlm.bus")
LocalListener = Callable[[object], bool]
MAX_ECHOES = 1024  # echoes expected at once: a few per live session (more when Redis lags)


class EventBus:
    def __init__(self, url: str, *, probe_interval_s: float = 0.5) -> None:
        self.url = url
        self.is_redis = url.startswith(("redis://", "rediss://"))
        self.probe_interval_s = probe_interval_s
        self.broadcast = Broadcast(url)
        self.generation = 0
        self.healthy = True
        self._changed = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._local: dict[str, set[LocalListener]] = {}
        # Messages delivered locally whose Redis echo is still to come: (channel,
        # length, hash), not the text (a batch may be megabytes). A false match
        # costs a listener one message, which its log poll then recovers.
        self._echoes: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    async def connect(self) -> None:
        await self.broadcast.connect()
        metrics.BUS_CONNECTED.set(1)
        if self.is_redis:
            self._redis = aioredis.Redis.from_url(
                self.url, socket_timeout=2, socket_connect_timeout=2
            )
            self._monitor = asyncio.create_task(self._watch_redis())

    async def disconnect(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await _quietly_disconnect(self.broadcast)
        metrics.BUS_CONNECTED.set(0)
        if self._redis is not None:
            await self._redis.aclose()

    def on_local(self, channel: str, listener: LocalListener) -> Callable[[], None]:
        """Call ``listener(local)`` for every ``publish(channel, ..., local=...)`` made in
        this process; it answers whether it took the message (then the echo is dropped).
        Returns the function that stops it."""
        self._local.setdefault(channel, set()).add(listener)

        def remove() -> None:
            listeners = self._local.get(channel)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._local[channel]

        return remove

    def is_echo(self, channel: str, message: str) -> bool:
        """Whether ``message`` is one this process already delivered locally (forgotten now)."""
        if not self._echoes:
            return False
        key = (channel, len(message), hash(message))
        if key in self._echoes:
            del self._echoes[key]
            return True
        return False

    async def publish(self, channel: str, message: str, *, local: object = None) -> bool:
        """Publish; False (logged, not raised) when the bus is down.

        ``local``: the message as objects, for this process's own listeners (``on_local``).
        They get it once Redis has it (even when Redis is down), not before: other
        replicas' watchers must not wait for this replica's own fan-out."""
        listeners = list(self._local.get(channel, ())) if local is not None else []
        # Known as an echo before Redis can send it back (the listener reads it meanwhile).
        echo = (channel, len(message), hash(message)) if listeners else None
        if echo is not None:
            self._echoes[echo] = None
            if len(self._echoes) > MAX_ECHOES:
                self._echoes.popitem(last=False)
        try:
            await self.broadcast.publish(channel=channel, message=message)
        except (OSError, aioredis.RedisError) as exc:
            self._mark_down(exc)
            return False
        finally:
            if echo is not None and not any([listener(local) for listener in listeners]):
                self._echoes.pop(echo, None)  # nobody took it: the echo is the delivery
        return True

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        """Messages on ``channel`` until the bus reconnects (then subscribe again)."""
        async with self.broadcast.subscribe(channel) as subscriber:

            async def messages() -> AsyncIterator[str]:
                while True:
                    try:
                        event = await subscriber.get()
                    except Unsubscribed:
                        return
                    yield event.message

            yield messages()

    async def changed(self) -> None:
        """Wait until the connection is replaced (or health changes)."""
        await self._changed.wait()

    async def ping(self) -> None:
        """Raise if the bus's server does not answer."""
        if self._redis is not None:
            await self._redis.ping()  # type: ignore[misc]  # redis-py types sync|async

    def _mark_down(self, exc: BaseException) -> None:
        if self.healthy:
            logger.warning("event bus unavailable (%s); listeners fall back to the log", exc)
            self.healthy = False
            metrics.BUS_CONNECTED.set(0)
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _watch_redis(self) -> None:
        backoff = self.probe_interval_s
        while True:
            await asyncio.sleep(backoff if not self.healthy else self.probe_interval_s)
            try:
                await self.ping()
            except (OSError, aioredis.RedisError) as exc:
                self._mark_down(exc)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.healthy or self._listener_died():
                await self._reconnect()
                backoff = self.probe_interval_s

    def _listener_died(self) -> bool:
        task = getattr(self.broadcast, "_listener_task", None)
        backend_task = getattr(getattr(self.broadcast, "_backend", None), "_listener", None)
        return any(t is not None and t.done() for t in (task, backend_task))

    async def _reconnect(self) -> None:
        fresh = Broadcast(self.url)
        try:
            await fresh.connect()
        except (OSError, aioredis.RedisError) as exc:
            self._mark_down(exc)
            return
        stale, self.broadcast = self.broadcast, fresh
        self.generation += 1
        self.healthy = True
        metrics.BUS_CONNECTED.set(1)
        metrics.BUS_RECONNECTS.inc()
        logger.warning("event bus reconnected (generation %d)", self.generation)
        self._notify()
        await _quietly_disconnect(stale)


async def _quietly_disconnect(broadcast: Broadcast) -> None:
    # A broadcaster whose connection died raises from disconnect(); it is
    # being thrown away either way, so the error is only worth a log line.
    try:
        async with asyncio.timeout(2):
            await broadcast.disconnect()
    except Exception as exc:
        logger.info("closing a discarded bus connection failed: %r", exc)


async def follow_channel(
    bus: EventBus,
    channel: str,
    on_message: Callable[[str], Awaitable[None]],
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Deliver ``channel``'s messages forever, resubscribing whenever the bus reconnects.

    ``on_subscribed`` runs after every (re)subscription (and after a failed one,
    so callers can fall back to their own source of truth): whatever was sent
    while unsubscribed must be recovered there.
    """
    while True:
        changed = asyncio.ensure_future(bus.changed())
        try:
            async with bus.subscribe(channel) as messages:
                if on_subscribed is not None:
                    await on_subscribed()

                async def pump() -> None:
                    async for message in messages:
                        await on_message(message)

                reader = asyncio.ensure_future(pump())
                await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
                reader.cancel()
                try:
                    await reader
                except asyncio.CancelledError:
                    pass
                except Exception:
                    # A handler that raised: logged, and the channel is followed on
                    # (one bad message must not end the subscription).
                    logger.exception("handling a message on %s failed", channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bus is down: wait for it to come back
            logger.info("subscription to %s lost: %s", channel, exc)
            if on_subscribed is not None:
                await on_subscribed()
            await changed
        finally:
            changed.cancel()
