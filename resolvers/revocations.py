"""Long-lived connections (WebSockets) per token: closed when their token stops working.

A WebSocket authenticates once, at connect; the token is checked again at every
subscribe (gql.ws), and this registry closes open sockets promptly when:

- the token is revoked: ``revoke`` closes this process's sockets and publishes
  the token id on the bus, so every replica closes its own;
- the token expires: a timer per connection, at the token's ``expires_at``;
- the bus lost the message (it is not durable) or the token was revoked outside
  the API: every ``sweep_interval_s`` the tokens of open sockets are checked
  against the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from models.token import ApiToken, CandidateToken
from resolvers.bus import EventBus, follow_channel

logger = logging.getLogger("interviewlm.revocations")
CHANNEL = "interviewlm.tokens.revoked"
Closer = Callable[[str], Awaitable[None]]
"""Closes one connection; the argument is the reason shown to the client."""


@dataclass(eq=False)
class Registration:
    token_id: uuid.UUID
    close: Closer
    registry: Revocations
    timer: asyncio.TimerHandle | None = None
    closing: asyncio.Task[None] | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """The connection ended on its own: forget it."""
        if self.timer is not None:
            self.timer.cancel()
        self.registry._forget(self)

    def shut(self, reason: str) -> None:
        if self.closing is None:
            self.cancel()
            self.closing = asyncio.create_task(self._close(reason))

    async def _close(self, reason: str) -> None:
        try:
            await self.close(reason)
        except Exception:  # the socket may already be gone; nothing is left to do
            logger.debug("closing a connection of token %s failed", self.token_id, exc_info=True)


class Revocations:
    def __init__(self, bus: EventBus, *, sweep_interval_s: float = 30.0) -> None:
        self.bus = bus
        self.sweep_interval_s = sweep_interval_s
        self._open: dict[uuid.UUID, set[Registration]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def register(
        self, token_id: uuid.UUID, expires_at: datetime | None, close: Closer
    ) -> Registration:
        self._start()
        registration = Registration(token_id, close, self)
        self._open.setdefault(token_id, set()).add(registration)
        if expires_at is not None:
            delay = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
            registration.timer = asyncio.get_running_loop().call_later(
                delay, registration.shut, "token expired"
            )
        return registration

    async def revoke(self, token_id: uuid.UUID) -> None:
        """Close the token's sockets here and, through the bus, on every replica."""
        self._close_all(token_id, "token revoked")
        await self.bus.publish(CHANNEL, str(token_id))

    def open_count(self, token_id: uuid.UUID) -> int:
        return len(self._open.get(token_id, ()))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _forget(self, registration: Registration) -> None:
        registrations = self._open.get(registration.token_id)
        if registrations is not None:
            registrations.discard(registration)
            if not registrations:
                del self._open[registration.token_id]

    def _close_all(self, token_id: uuid.UUID, reason: str) -> None:
        for registration in list(self._open.get(token_id, ())):
            registration.shut(reason)

    def _start(self) -> None:
        # Lazily, on the first connection: a process without WebSockets needs neither.
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(follow_channel(self.bus, CHANNEL, self._on_message)),
                asyncio.create_task(self._sweep()),
            ]

    async def _on_message(self, message: str) -> None:
        try:
            token_id = uuid.UUID(message)
        except ValueError:
            return
        self._close_all(token_id, "token revoked")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # retried on the next tick
                logger.exception("checking the tokens of open connections failed")

    async def sweep(self) -> None:
        """Close the sockets of tokens revoked or expired in the database."""
        ids = list(self._open)
        if not ids:
            return
        now = datetime.now(UTC)
        alive: set[uuid.UUID] = set()
        for model in (ApiToken, CandidateToken):
            rows = await model.filter(id__in=ids).values_list("id", "revoked_at", "expires_at")
            for token_id, revoked_at, expires_at in rows:
                if revoked_at is None and (expires_at is None or expires_at > now):
                    alive.add(token_id)
        for token_id in set(ids) - alive:  # deleted tokens included
            self._close_all(token_id, "token revoked or expired")
