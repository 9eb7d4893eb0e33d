"""A circuit breaker for the sandbox backend: fail fast instead of piling up hung requests.

CLOSED: calls go through; ``threshold`` consecutive failures open it.
OPEN: calls fail at once with SandboxUnavailable until ``reset_after`` passes.
HALF-OPEN: one trial call goes through; success closes, failure re-opens.
Every call also gets a deadline, so a backend that hangs counts as failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from modal_app.base import BackendUnavailable
from resolvers.errors import SandboxUnavailable

T = TypeVar("T")

# Errors that say the runtime is unhealthy; others (bad path, not found,
# terminated) are answers about one sandbox and leave the breaker alone.
TRIPPING_ERRORS: tuple[type[BaseException], ...] = (
    BackendUnavailable,
    TimeoutError,
    OSError,
)


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        reset_after: float = 30.0,
        call_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self.call_timeout = call_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after:
            return "half-open"
        return "open"

    async def call(
        self, operation: Callable[[], Awaitable[T]], *, deadline_s: float | None = None
    ) -> T:
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            raise SandboxUnavailable(
                "the sandbox service is failing; try again in a few seconds",
                retryAfterSeconds=max(1, round(self.reset_after)),
            )
        self._trial_running = state == "half-open"
        try:
            async with asyncio.timeout(deadline_s or self.call_timeout):
                result = await operation()
        except TRIPPING_ERRORS as exc:
            self._record_failure()
            raise SandboxUnavailable(f"the sandbox service failed: {_describe(exc)}") from exc
        finally:
            self._trial_running = False
        self._failures = 0
        self._opened_at = None
        return result

    def _record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self.threshold or self._opened_at is not None:
            self._opened_at = self._clock()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "it did not answer in time"
    return str(exc) or type(exc).__name__
