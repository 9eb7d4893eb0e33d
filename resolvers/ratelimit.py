"""Rate limits per token: a token bucket per (class, token), in Redis or in memory.

What is limited. Mutations that start a process or write, grouped in classes by what
they cost (``LIMITED``); each class has its own rate (``RATE_LIMIT_PROCESS``,
``RATE_LIMIT_WRITE``, ``RATE_LIMIT_WEBHOOK``, written ``<count>/<period>``, e.g.
``300/60s``: a bucket of ``count`` tokens refilled evenly over ``period``, so a burst
of ``count`` and ``count/period`` per second sustained; ``off`` disables the class).
The defaults -- process 300/60s, write 600/60s, webhook 60/60s -- are generous: they
stop scripts and floods, not people typing, saving and running tests:

- ``process``: starts a process or a sandbox -- startSandbox, runCommand, openTerminal,
  runTests, askClaude.
- ``write``: stores something -- writeFile, deleteFile, createSession, questions, notes,
  scorecards, API tokens, webhook endpoints.
- ``webhook``: makes the server send HTTP requests to a URL the caller chose --
  sendTestWebhook, redeliverWebhook.

Not limited (``EXEMPT``), on purpose: terminalInput and resizeTerminal (keystrokes and
window drags arrive tens per second while someone types or pastes; each is one write
into an already-open PTY of the caller's own, CPU- and memory-limited sandbox, and the
output it causes is capped per session; refusing them would drop keystrokes), and
everything that stops, cancels or revokes (terminateSandbox, closeTerminal,
cancelClaude, endSession, revokeApiToken, revokeReportLinks): stopping must always
work, above all when someone is misbehaving. Queries and subscriptions are not
limited here (they are bounded by the document limits of gql.parsing).
A test checks that every mutation is in ``LIMITED`` or ``EXEMPT``.

Keyed by the token's database id (never the token): ``<class>:<kind>:<token id>``.
Every token kind gets the same rates. A candidate token opens one session and cannot
mint another, so hammering runTests/startSandbox/askClaude from it drains its own
buckets and nothing else; "rotating sessions" needs a staff token to create them,
which spends that token's ``write`` bucket per session, and live sandboxes are capped
per account anyway (ACCOUNT_SANDBOX_QUOTA). Staff and ATS tokens get the same
buckets: an ATS importing a batch of interviews is within the ``write`` burst.

Stores. With ``REDIS_URL`` the buckets live in Redis, shared by every replica: one Lua
script per check reads, refills, takes and writes the bucket atomically, on Redis'
clock (replicas' clocks do not matter), and gives the key a TTL of the time it takes
to refill completely -- a key that expired is a full bucket, so nothing accumulates.
Without Redis they live in this process's memory (one replica), pruned likewise.

Refusal: ``RATE_LIMITED`` with ``extensions.retryAfterSeconds`` (whole seconds, at least
1: when the next token is there) and ``extensions.limit`` (the class); the metric
``interviewlm_rate_limited_total{limit=<class>}`` counts refusals.

Redis unreachable or slow (socket timeouts of 1 s): the check fails open -- the call is
allowed and a warning logged (once per outage); Redis is then not asked again for a
second, so an outage adds no latency to every mutation. A limit is a guard against
abuse, not an invariant worth refusing interviews over.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from redis import asyncio as aioredis

from resolvers import metrics
from resolvers.auth import Principal
from resolvers.errors import RateLimited

logger = logging.getLogger("interviewlm.ratelimit")

PROCESS, WRITE, WEBHOOK = "process", "write", "webhook"
CLASSES = (PROCESS, WRITE, WEBHOOK)

LIMITED: Mapping[str, str] = {
    # process: each starts a process (or a sandbox, or an agent) somewhere.
    "startSandbox": PROCESS,
    "runCommand": PROCESS,
    "openTerminal": PROCESS,
    "runTests": PROCESS,
    "askClaude": PROCESS,
    # write: each stores rows or files.
    "writeFile": WRITE,
    "deleteFile": WRITE,
    "createSession": WRITE,
    "createQuestion": WRITE,
    "updateQuestion": WRITE,
    "archiveQuestion": WRITE,
    "unarchiveQuestion": WRITE,
    "addNote": WRITE,
    "submitScorecard": WRITE,
    "createApiToken": WRITE,
    "createWebhookEndpoint": WRITE,
    "updateWebhookEndpoint": WRITE,
    "deleteWebhookEndpoint": WRITE,
    # webhook: each makes the server send requests to a URL the caller chose.
    "sendTestWebhook": WEBHOOK,
    "redeliverWebhook": WEBHOOK,
}
EXEMPT = frozenset(
    {
        "terminalInput",
        "resizeTerminal",
        "closeTerminal",
        "terminateSandbox",
        "cancelClaude",
        "endSession",
        "revokeApiToken",
        "revokeReportLinks",
    }
)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Rate:
    """A bucket of ``burst`` tokens, refilled at ``per_s`` tokens per second."""

    burst: int
    per_s: float

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"300/60s"`` (also ``/1m``, ``/h``, ``/30``: seconds); ``off`` or ``0``: None."""
        if text.strip().lower() in {"off", "0", "none"}:
            return None
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f"expected <count>/<period> such as 300/60s or 'off', got {text!r}")
        count, period = int(match[1]), float(match[2] or 1) * _UNITS[match[3] or "s"]
        if count < 1 or period <= 0:
            raise ValueError(f"count and period must be positive, got {text!r}")
        return cls(burst=count, per_s=count / period)

    @property
    def full_after_s(self) -> float:
        """How long an empty bucket takes to fill: after that, a bucket is as new."""
        return self.burst / self.per_s


# The defaults (gql.settings): generous -- they stop floods and scripts, not people
# (nor the test suite, whose tests each use fresh tokens against one app).
DEFAULT_PROCESS_RATE = Rate(burst=300, per_s=5.0)  # 300/60s
DEFAULT_WRITE_RATE = Rate(burst=600, per_s=10.0)  # 600/60s
DEFAULT_WEBHOOK_RATE = Rate(burst=60, per_s=1.0)  # 60/60s


class Buckets(Protocol):
    async def take(self, key: str, rate: Rate) -> float:
        """Take one token: 0 when allowed, else the seconds until one is there."""
        ...

    async def aclose(self) -> None: ...


class MemoryBuckets:
    """One process's buckets (the embedded default: one replica, no Redis)."""

    PRUNE_EVERY = 1024

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float, float]] = {}  # tokens, at, full_after
        self._takes = 0

    async def take(self, key: str, rate: Rate) -> float:
        now = time.monotonic()
        tokens, at, _ = self._buckets.get(key, (float(rate.burst), now, 0.0))
        tokens = min(float(rate.burst), tokens + (now - at) * rate.per_s)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate.per_s
        self._buckets[key] = (tokens, now, rate.full_after_s)
        self._takes += 1
        if self._takes % self.PRUNE_EVERY == 0:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        # A bucket untouched for as long as it takes to fill is full: same as absent.
        stale = [k for k, (_, at, full) in self._buckets.items() if now - at >= full]
        for key in stale:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)

    async def aclose(self) -> None:
        self._buckets.clear()


# KEYS[1] the bucket; ARGV burst, refill per second. Redis' own clock (TIME; allowed
# before writes since Redis 5's effect replication), so replicas' clocks do not matter.
# Returns the wait in seconds as a string (a Lua number would be truncated to an integer).
_TAKE = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Buckets shared by every replica: one atomic script per check, keys with a TTL."""

    PREFIX = "interviewlm:ratelimit:"
    RETRY_AFTER_OUTAGE_S = 1.0

    def __init__(self, url: str, *, timeout_s: float = 1.0) -> None:
        # Bounded, so that a hung Redis costs a mutation at most this long (and then no
        # more for RETRY_AFTER_OUTAGE_S); not so short that a busy one fails open (0.25 s
        # did, on a loaded 2-core machine).
        self.redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self.redis.register_script(_TAKE)
        self._skip_until = 0.0
        self._down = False
        self.failures = 0
        """Checks allowed because Redis did not answer (fail open)."""

    async def take(self, key: str, rate: Rate) -> float:
        if time.monotonic() < self._skip_until:
            return 0.0
        try:
            answer = await self._script(keys=[self.PREFIX + key], args=[rate.burst, rate.per_s])
        except (OSError, TimeoutError, aioredis.RedisError) as exc:
            # Fail open: a limit is not worth refusing (or failing) an interview over.
            self.failures += 1
            if not self._down:
                logger.warning("rate limits unavailable, allowing everything (%r)", exc)
            self._down = True
            self._skip_until = time.monotonic() + self.RETRY_AFTER_OUTAGE_S
            return 0.0
        if self._down:
            logger.warning("rate limits available again")
            self._down = False
        return float(answer.decode() if isinstance(answer, bytes) else answer)

    async def aclose(self) -> None:
        await self.redis.aclose()


class RateLimiter:
    """Checks a root mutation field against its class's bucket for the caller's token."""

    def __init__(self, rates: Mapping[str, Rate | None], buckets: Buckets) -> None:
        self.rates = dict(rates)
        self.buckets = buckets

    @classmethod
    def build(cls, rates: Mapping[str, Rate | None], redis_url: str | None) -> RateLimiter:
        return cls(rates, RedisBuckets(redis_url) if redis_url else MemoryBuckets())

    async def check(self, principal: Principal, field: str) -> None:
        """Raise RateLimited when ``field`` (a root mutation's name) is over its rate."""
        limit = LIMITED.get(field)
        rate = self.rates.get(limit) if limit else None
        if limit is None or rate is None:
            return
        key = f"{limit}:{principal.kind.value.lower()}:{principal.token_id}"
        wait = await self.buckets.take(key, rate)
        if wait > 0:
            metrics.RATE_LIMITED.labels(limit=limit).inc()
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"too many {limit} operations for this token; retry in {retry} s",
                retryAfterSeconds=retry,
                limit=limit,
            )

    async def aclose(self) -> None:
        await self.buckets.aclose()
