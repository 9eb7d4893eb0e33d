"""A circuit breaker for the sandbox backend: fail fast instead of piling up hung requests.

CLOSED: calls go through; ``threshold`` consecutive failures open it.
OPEN: calls fail at once with SandboxUnavailable until ``reset_after`` passes.
HALF-OPEN: one trial call goes through; success closes, failure re-opens.
Every call also gets a deadline, so a backend that hangs counts as failing.

Calls that run as long as a candidate's program does (``long_running``: a
command, a test run) never hold the one trial slot -- a ten-minute command must
not make every other call wait out its end: in HALF-OPEN they go through, and
their outcome closes or re-opens the breaker like a trial's.

The breaker is one per process and shared by every account, so what counts
as a failure is narrow: the backend saying it is unhealthy
(``BackendUnavailable``) or not answering in time. Everything else -- a
missing file, a socket or FIFO a candidate planted, a full workspace, a
terminated sandbox -- is an answer about one sandbox: it passes through
unchanged and never moves the breaker. Backends turn OS errors about a
candidate's files into ``SandboxFileError``s for exactly this reason.

Failures of calls about one sandbox carry a ``scope`` (its id). A streak of
failures only opens the breaker once it spans ``min_scopes`` different
sandboxes (or includes an unscoped, backend-wide call such as ``create``):
one candidate who makes their own sandbox slow or broken must not take
sandboxes away from every other account on the replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from modal_app.base import BackendUnavailable
from resolvers.errors import SandboxUnavailable

T = TypeVar("T")

# Errors that say the runtime is unhealthy. TimeoutError is the backend's own
# deadline (an SDK's RPC timeout) or ours (``call_timeout``).
TRIPPING_ERRORS: tuple[type[BaseException], ...] = (BackendUnavailable, TimeoutError)
_BACKEND_WIDE = ""


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        reset_after: float = 30.0,
        call_timeout: float = 60.0,
        min_scopes: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self.call_timeout = call_timeout
        self.min_scopes = min_scopes
        self._clock = clock
        self._failures = 0
        self._scopes: set[str] = set()
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
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline_s: float | None = None,
        scope: str | None = None,
        long_running: bool = False,
    ) -> T:
        """Run ``operation`` under the breaker; ``scope`` names the one sandbox it is about."""
        state = self.state
        trial = state == "half-open"
        holds_slot = trial and not long_running
        if state == "open" or (holds_slot and self._trial_running):
            raise SandboxUnavailable(
                "the sandbox service is failing; try again in a few seconds",
                retryAfterSeconds=max(1, round(self.reset_after)),
            )
        if holds_slot:
            self._trial_running = True
        try:
            async with asyncio.timeout(deadline_s or self.call_timeout):
                result = await operation()
        except TRIPPING_ERRORS as exc:
            self._record_failure(scope, trial=trial)
            raise SandboxUnavailable(f"the sandbox service failed: {_describe(exc)}") from exc
        finally:
            if holds_slot:
                self._trial_running = False
        self._failures = 0
        self._scopes.clear()
        self._opened_at = None
        return result

    def _record_failure(self, scope: str | None, *, trial: bool) -> None:
        self._failures += 1
        self._scopes.add(_BACKEND_WIDE if scope is None else scope)
        broad = _BACKEND_WIDE in self._scopes or len(self._scopes) >= self.min_scopes
        # A failed trial re-opens at once (the streak that opened it is still held).
        if trial or self._opened_at is not None or (self._failures >= self.threshold and broad):
            self._opened_at = self._clock()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "it did not answer in time"
    return str(exc) or type(exc).__name__
