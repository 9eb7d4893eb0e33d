"""Replica leases: noticing, within a bounded time, that a replica died, and ending what it held.

What a replica holds lives in its process: a terminal's PTY, a test run's harness,
an agent's exec, a local sandbox's process trees. Its records carry its identity
(``owner``: ``host:pid:token``; the token tells a restarted process from its
predecessor even when the pid is the same, as pid 1 in a container is).

Design:

- A ``replica`` row per process (``models.replica``). Registered before the
  replica creates any record; every ``heartbeat_s`` one UPDATE moves its
  ``heartbeat_at`` and its lease ``expires_at`` (now + the holder's own
  ``lease_s``, so observers configured differently agree). Times are the
  database's ``now()`` (PostgreSQL; a SQLite file has one machine, hence one
  clock): replicas' clocks may differ, the database's is the one compared.
- After each heartbeat a replica looks for rows whose lease has expired and
  marks them stopped (one conditional UPDATE each) -- once its own heartbeats
  have succeeded for a whole lease (``may_judge``): after a database outage,
  the first replica back must not declare all the others lost. Then it takes over the
  records of stopped replicas (``resolvers.orphans``): each record is ended by
  a conditional UPDATE (still open / still live), so of several survivors
  exactly one ends it and appends its events, exactly once. Terminals close,
  test runs and agent runs end as ERROR/FAILED, local sandboxes are recorded
  TERMINATED (their processes died with the replica, or are killed when it
  comes back: ``resolvers.reaper.reconcile``); Modal sandboxes keep running
  and are re-owned (any replica can reach them).
- Bound: a replica's records are ended at most ``lease_s + heartbeat_s`` (plus
  one pass) after its last heartbeat, while another replica has been up a lease.
- A clean shutdown marks the row stopped at once: survivors end its leftovers
  at their next pass rather than after the lease.
- Fencing: a replica that finds its own row stopped (it was paused or cut off
  from the database longer than its lease, and declared lost) has had its
  records ended by others. It stops what it still runs and ends what of its own
  is still live (``on_fenced``: ``resolvers.orphans.step_down``), then registers
  again; the runs' own endings are conditional, so nothing is recorded twice.
- Records whose owner has no row (written before this table, or by tests)
  are judged only at start-up, by the older same-host rule (``resolvers.reaper``).
- Rows stopped longer than ``PRUNE_AFTER`` are deleted (their records were
  taken over long before).
- The heartbeat cannot be held up by client load: on PostgreSQL it renews over a
  connection of its own (``LeaseConnection``, outside the pool: a pool saturated
  by subscription replays once kept a live replica's heartbeat waiting past its
  lease, and another replica ended its sandboxes), each renewal bounded by
  ``heartbeat_s``; and it runs in a loop of its own, apart from the passes that
  expire others and take over (those use the pool and may wait). A renewal that
  fails or times out drops that connection (the next one reconnects) and counts
  as a failed heartbeat: the lease runs out, and fencing applies as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
from tortoise import Tortoise

from models.replica import Replica

logger = logging.getLogger("interviewlm.leases")
PRUNE_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Owner:
    host: str
    pid: int
    token: str | None  # None: the older "host:pid" form


def parse_owner(owner: str) -> Owner | None:
    parts = owner.split(":")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        return None
    return Owner(parts[0], int(parts[1]), parts[2] if len(parts) == 3 else None)


def dead_on_this_host(owner: str, me: str) -> bool:
    """Whether ``owner`` was a process of this host that is gone (start-up rule)."""
    theirs, mine = parse_owner(owner), parse_owner(me)
    if theirs is None or mine is None or theirs.host != mine.host or owner == me:
        return False
    if theirs.pid == mine.pid:
        return True  # one process, one identity: an earlier process with my pid
    try:
        os.kill(theirs.pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


async def db_now() -> datetime:
    """The database's clock (PostgreSQL), or this machine's for a SQLite file."""
    conn = Tortoise.get_connection("default")
    if conn.capabilities.dialect == "postgres":
        rows = await conn.execute_query_dict("SELECT now() AS now")
        now = rows[0]["now"]
        assert isinstance(now, datetime)
        return now.astimezone(UTC)
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    heartbeat_s: float = 5.0
    lease_s: float = 20.0


# Tortoise's pool options in DATABASE_URL: asyncpg would send them to the server as settings.
_POOL_OPTIONS = {"minsize", "maxsize", "max_queries", "max_inactive_connection_lifetime"}
_RENEW = (
    "UPDATE replica SET heartbeat_at = now(), expires_at = now() + $2 * interval '1 second'"
    " WHERE id = $1 AND stopped_at IS NULL"
)
_STOP = "UPDATE replica SET stopped_at = now() WHERE id = $1"


def lease_dsn(database_url: str | None) -> str | None:
    """The DSN for the heartbeat's own connection: PostgreSQL only (a SQLite file is
    one writer at a time whatever the connection), without the pool's options."""
    if not database_url or not database_url.startswith(("postgres://", "postgresql://")):
        return None
    parts = urlsplit(database_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _POOL_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(query)))


class LeaseConnection:
    """One asyncpg connection, outside Tortoise's pool, used only for this replica's own
    lease row; (re)opened on demand, dropped after any failure."""

    def __init__(self, dsn: str, timeout_s: float) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._conn: Any = None

    async def execute(self, sql: str, *args: object) -> int:
        """Rows the statement changed; raises on failure or after ``timeout_s``."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn)
                status = await self._conn.execute(sql, *args)
        except BaseException:
            await self.close()
            raise
        return int(str(status).rsplit(" ", 1)[-1])

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # never waits: it may be the connection that hung


class Leases:
    """This replica's row: register, heartbeat, stop; and finding the lost ones."""

    def __init__(self, me: str, policy: LeasePolicy, *, database_url: str | None = None) -> None:
        self.me = me
        self.policy = policy
        # PostgreSQL: the heartbeat's own connection (see the module docstring).
        dsn = lease_dsn(database_url)
        self.own: LeaseConnection | None = None
        if dsn is not None:
            self.own = LeaseConnection(dsn, timeout_s=max(policy.heartbeat_s, 0.5))
        # Since when (monotonic) this replica's heartbeats have been succeeding: it judges
        # others only after a whole lease of them (below).
        self._renewing_since: float | None = None
        # Declared lost and not registered again yet: no passes meanwhile (run_leases).
        self.fenced = False

    async def register(self) -> None:
        now = await db_now()
        expires = now + timedelta(seconds=self.policy.lease_s)
        updated = await Replica.filter(id=self.me).update(
            heartbeat_at=now, expires_at=expires, stopped_at=None
        )
        if not updated:
            await Replica.create(id=self.me, started_at=now, heartbeat_at=now, expires_at=expires)

    async def beat(self) -> bool:
        """Renew the lease; False: this replica was declared lost (fenced off)."""
        try:
            if self.own is not None:
                renewed = await self.own.execute(_RENEW, self.me, self.policy.lease_s)
            else:
                now = await db_now()
                renewed = await Replica.filter(id=self.me, stopped_at__isnull=True).update(
                    heartbeat_at=now, expires_at=now + timedelta(seconds=self.policy.lease_s)
                )
        except BaseException:
            self._renewing_since = None
            raise
        if self._renewing_since is None:
            self._renewing_since = time.monotonic()
        return bool(renewed)

    @property
    def may_judge(self) -> bool:
        """Whether this replica has renewed its own lease for a whole lease period.

        After a database outage (or at start-up) every live replica's lease may have
        run out meanwhile; each renews it within a heartbeat of the database coming
        back. Judging others only after a lease of our own renewals keeps the first
        replica back from declaring all the others lost.
        """
        since = self._renewing_since
        return since is not None and time.monotonic() - since >= self.policy.lease_s

    async def expire(self) -> list[str]:
        """Mark replicas whose lease ran out as stopped; returns those this call marked."""
        if not self.may_judge:
            return []
        now = await db_now()
        marked = []
        for row in await Replica.filter(stopped_at__isnull=True, expires_at__lt=now).only("id"):
            if row.id == self.me:
                continue  # a late heartbeat of mine: the next beat renews it
            # Conditional: of two survivors, one marks it (and logs it).
            if await Replica.filter(id=row.id, stopped_at__isnull=True).update(stopped_at=now):
                marked.append(row.id)
        await Replica.filter(stopped_at__lt=now - PRUNE_AFTER).delete()
        return marked

    async def stop(self) -> None:
        if self.own is None:
            await Replica.filter(id=self.me).update(stopped_at=await db_now())
            return
        try:
            await self.own.execute(_STOP, self.me)
        finally:
            await self.own.close()


async def run_leases(
    leases: Leases,
    *,
    take_over: Callable[[], Awaitable[object]],
    on_fenced: Callable[[], Awaitable[object]],
    stopping: asyncio.Event,
) -> None:
    """Heartbeat; and, in a loop of its own, look for lost replicas and take over what
    they held. Apart, so that a pass waiting for the pool never delays a heartbeat."""
    await asyncio.gather(
        _heartbeats(leases, on_fenced=on_fenced, stopping=stopping),
        _passes(leases, take_over=take_over, stopping=stopping),
    )


async def _heartbeats(
    leases: Leases, *, on_fenced: Callable[[], Awaitable[object]], stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        try:
            if not await leases.beat():
                logger.error("replica %s was declared lost; stepping down", leases.me)
                leases.fenced = True
                await on_fenced()
                await leases.register()
                leases.fenced = False
        except Exception:  # the heartbeat must outlive a database outage
            logger.exception("lease heartbeat failed")
        await _pause(leases, stopping)


async def _passes(
    leases: Leases, *, take_over: Callable[[], Awaitable[object]], stopping: asyncio.Event
) -> None:
    while not stopping.is_set():
        try:
            if leases.fenced:  # stepping down first: its own row is stopped meanwhile
                await _pause(leases, stopping)
                continue
            for lost in await leases.expire():
                logger.warning("replica %s lost: its lease expired", lost)
            await take_over()
        except Exception:
            logger.exception("lease pass failed")
        await _pause(leases, stopping)


async def _pause(leases: Leases, stopping: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(leases.policy.heartbeat_s):
            await stopping.wait()


# A pass in hand this long after shutdown began is cancelled.
STOP_GRACE_S = 5.0


@contextlib.asynccontextmanager
async def leases_running(
    leases: Leases,
    *,
    take_over: Callable[[], Awaitable[object]],
    on_fenced: Callable[[], Awaitable[object]],
) -> AsyncIterator[asyncio.Task[None]]:
    stopping = asyncio.Event()
    task = asyncio.create_task(
        run_leases(leases, take_over=take_over, on_fenced=on_fenced, stopping=stopping)
    )
    try:
        yield task
    finally:
        # Stopped between passes, not cancelled inside one (see resolvers.reaper).
        stopping.set()
        _, overrun = await asyncio.wait([task], timeout=STOP_GRACE_S)
        for late in overrun:
            late.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
