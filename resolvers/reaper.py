"""Keeping the sandbox registry true: reconcile at start-up, reap on a timer.

Reconcile: each live record this backend owns is checked against the backend.
Modal sandboxes that still run are kept (any replica can reach them); local
sandboxes whose owning process is gone died with it and are marked terminated
(their workspace is kept for the recording).

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
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from modal_app.base import SandboxError, SandboxStatus
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestRun, TestRunStatus
from resolvers.errors import SandboxUnavailable
from resolvers.event_kinds import TerminalClosed, TestRunFinished
from resolvers.sandboxes import LIVE, Sandboxes
from resolvers.sessions import as_of, expire_due
from resolvers.storage import collect_blobs_now_and_then

logger = logging.getLogger("interviewlm.reaper")


@dataclass(frozen=True, slots=True)
class ReapReport:
    sessions_expired: int = 0
    idle: int = 0
    expired: int = 0
    session_ended: int = 0
    removed: int = 0
    blobs_collected: int = 0


def _owner_alive(owner: str, me: str) -> bool:
    host, _, pid = owner.rpartition(":")
    my_host = me.rpartition(":")[0]
    if host != my_host:
        return True  # another machine's process: not ours to judge
    if owner == me:
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


async def reconcile(sandboxes: Sandboxes) -> int:
    """Make the registry agree with what survived; returns how many sandboxes were lost."""
    await _close_orphaned_terminals(sandboxes)
    await _fail_interrupted_runs(sandboxes)
    return await _end_lost_sandboxes(sandboxes)


async def _close_orphaned_terminals(sandboxes: Sandboxes) -> None:
    for terminal in await TerminalRecord.filter(state=TerminalState.OPEN):
        if not _owner_alive(terminal.owner, sandboxes.owner):
            # Its PTY died with its process: say so in the recording too.
            terminal.state = TerminalState.CLOSED
            terminal.closed_at = datetime.now(UTC)
            await terminal.save(update_fields=["state", "closed_at"])
            await sandboxes.log.append(terminal.session_id, TerminalClosed(str(terminal.id)))


async def _fail_interrupted_runs(sandboxes: Sandboxes) -> None:
    for run in await TestRun.filter(live_key__isnull=False):
        if not _owner_alive(run.owner, sandboxes.owner):
            run.status, run.live_key = TestRunStatus.ERROR, None
            run.error = "interrupted: its server stopped"
            await run.save(update_fields=["status", "live_key", "error"])
            await sandboxes.log.append(
                run.session_id,
                TestRunFinished(str(run.id), status=TestRunStatus.ERROR, error=run.error),
            )


async def _end_lost_sandboxes(sandboxes: Sandboxes) -> int:
    ended = 0
    records = await SandboxRecord.filter(state__in=LIVE, backend=sandboxes.backend.name)
    for record in records:
        shared = sandboxes.backend.shares_sandboxes_across_replicas
        if not shared and _owner_alive(record.owner, sandboxes.owner):
            continue
        alive = False
        if shared and record.backend_id:
            try:
                alive = await sandboxes.backend_status(record) is SandboxStatus.RUNNING
            except (SandboxError, SandboxUnavailable):
                alive = False
        if not alive:
            await sandboxes.stop(record, reason="lost when its server restarted")
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
