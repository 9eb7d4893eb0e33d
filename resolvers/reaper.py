"""Keeping the sandbox registry true: reconcile at start-up, reap on a timer.

Reconcile (``reconcile``): what earlier processes of this host held is ended,
and the leftover process trees of local sandboxes no longer live are killed.
Replicas lost elsewhere are noticed while running, by their leases
(``resolvers.leases``), and their records ended the same way (``resolvers.orphans``).

Reap: record sessions past their expiry as EXPIRED (``session.expired``: reading
a session never writes it); terminate sandboxes idle past ``idle_timeout_s``,
older than ``max_lifetime_s``, or whose session has ended; remove workspaces of ended
sandboxes after ``retention_s``; now and then delete file blobs no session
refers to (``resolvers.storage.collect_blobs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from modal_app.base import SandboxError, SandboxStatus
from models.claude import ClaudeRun
from models.replica import Replica
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestRun
from resolvers.errors import SandboxUnavailable
from resolvers.leases import Leases, dead_on_this_host
from resolvers.orphans import reap_leftovers, take_over
from resolvers.sandboxes import LIVE, Sandboxes
from resolvers.sessions import as_of, expire_due
from resolvers.storage import collect_blobs_now_and_then

logger = logging.getLogger("interviewlm.reaper")
RESTARTED = "lost when its server restarted"


@dataclass(frozen=True, slots=True)
class ReapReport:
    sessions_expired: int = 0
    idle: int = 0
    expired: int = 0
    session_ended: int = 0
    removed: int = 0
    blobs_collected: int = 0


async def reconcile(sandboxes: Sandboxes, leases: Leases | None = None) -> int:
    """Make the registry agree with what survived; returns how many sandboxes were lost.

    Run at start-up; registers this replica's lease first. Earlier processes of
    this host (pid gone, or this very pid under another identity: a restarted
    container) are known dead without waiting for their lease: what they held is
    ended (``resolvers.orphans``; Modal sandboxes still running are adopted), their
    leases marked stopped. Then the process trees of local sandboxes whose record is
    no longer live -- whoever ended it, this replica or a survivor that noticed the
    lost lease -- are killed; their workspaces follow the retention rule.
    """
    if leases is not None:
        await leases.register()  # before any record carries this replica's name
    dead = [o for o in await _live_owners() if dead_on_this_host(o, sandboxes.owner)]
    lost = 0
    if dead:
        await Replica.filter(id__in=dead, stopped_at__isnull=True).update(
            stopped_at=datetime.now(UTC)
        )
        ended = await take_over(
            sandboxes,
            dead,
            reason=RESTARTED,
            test_run_error="interrupted: its server stopped",
            agent_error="interrupted: its server stopped",
        )
        lost += ended.sandboxes_ended
    lost += await _end_vanished_shared(sandboxes)
    killed = await reap_leftovers(sandboxes)
    if killed:
        logger.info("killed the processes of %d leftover local sandboxes", killed)
    return lost


async def _live_owners() -> set[str]:
    owners: set[str] = set()
    for query in (
        TerminalRecord.filter(state=TerminalState.OPEN),
        TestRun.filter(live_key__isnull=False),
        ClaudeRun.filter(live_key__isnull=False),
        SandboxRecord.filter(state__in=LIVE),
    ):
        owners.update(await query.distinct().values_list("owner", flat=True))  # type: ignore[arg-type]
    return owners


async def _end_vanished_shared(sandboxes: Sandboxes) -> int:
    """Sandboxes of a backend every replica reaches: ended if the backend lost them."""
    if not sandboxes.backend.shares_sandboxes_across_replicas:
        return 0
    ended = 0
    for record in await SandboxRecord.filter(state__in=LIVE, backend=sandboxes.backend.name):
        if record.owner == sandboxes.owner or not record.backend_id:
            continue
        try:
            alive = await sandboxes.backend_status(record) is SandboxStatus.RUNNING
        except (SandboxError, SandboxUnavailable):
            alive = False
        if not alive:
            await sandboxes.stop(record, reason=RESTARTED)
            ended += 1
    return ended


async def reap_once(sandboxes: Sandboxes, *, now: datetime | None = None) -> ReapReport:
    now = now or datetime.now(UTC)
    policy = sandboxes.policy
    # First, so that the sandboxes of sessions that have just expired stop in this pass.
    sessions_expired = await expire_due(sandboxes.log, now=now)
    idle = expired = session_ended = removed = 0
    for record in await SandboxRecord.filter(state__in=LIVE, owner=sandboxes.owner):
        session = as_of(await InterviewSession.get(id=record.session_id), now)
        if not session.status.is_open:
            reason, session_ended = "the session ended", session_ended + 1
        elif now - record.created_at > timedelta(seconds=policy.max_lifetime_s):
            reason, expired = "maximum lifetime reached", expired + 1
        elif now - record.last_activity_at > timedelta(seconds=policy.idle_timeout_s):
            reason, idle = "idle timeout", idle + 1
        else:
            continue
        await sandboxes.stop(record, reason=reason)
    cutoff = now - timedelta(seconds=policy.retention_s)
    stale = await SandboxRecord.filter(
        state__in=[SandboxState.TERMINATED, SandboxState.ERROR],
        workspace_removed_at__isnull=True,
        ended_at__lt=cutoff,
        backend=sandboxes.backend.name,
    )
    for record in stale:
        if record.backend_id:
            try:
                await sandboxes.call(
                    partial(sandboxes.backend.remove, record.backend_id), scope=record.backend_id
                )
            except (SandboxError, SandboxUnavailable) as exc:
                logger.warning("could not remove workspace of %s: %s", record.id, exc)
                continue
        record.workspace_removed_at = now
        await record.save(update_fields=["workspace_removed_at"])
        removed += 1
    # File contents no session refers to any more (deleted sessions).
    collected = await collect_blobs_now_and_then()
    return ReapReport(
        sessions_expired=sessions_expired,
        idle=idle,
        expired=expired,
        session_ended=session_ended,
        removed=removed,
        blobs_collected=collected,
    )


async def run_reaper(
    sandboxes: Sandboxes, *, interval_s: float, stopping: asyncio.Event | None = None
) -> None:
    stopping = stopping or asyncio.Event()
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stopping.wait()
        if stopping.is_set():
            return
        try:
            report = await reap_once(sandboxes)
            if report != ReapReport():
                logger.info("reaper: %s", report)
        except Exception:  # the reaper must outlive a bad pass
            logger.exception("reaper pass failed")


# A pass in hand this long after shutdown began is cancelled.
STOP_GRACE_S = 10.0


@contextlib.asynccontextmanager
async def reaper_running(
    sandboxes: Sandboxes, *, interval_s: float
) -> AsyncIterator[asyncio.Task[None]]:
    stopping = asyncio.Event()
    task = asyncio.create_task(run_reaper(sandboxes, interval_s=interval_s, stopping=stopping))
    try:
        yield task
    finally:
        # Stopped between passes rather than cancelled inside one: a task cancelled while
        # a transaction starts leaves Tortoise's SQLite connection lock taken for good.
        stopping.set()
        _, overrun = await asyncio.wait([task], timeout=STOP_GRACE_S)
        for late in overrun:
            late.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
