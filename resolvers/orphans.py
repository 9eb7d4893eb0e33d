"""Ending what a lost replica held: its terminals, test runs, agent runs and sandboxes.

Used by every replica's lease pass (``resolvers.leases``: owners whose lease ran
out) and by the start-up reconcile (``resolvers.reaper``: earlier processes of
this host). Each record ends by a conditional UPDATE (still open, still live, still
owned by the lost replica): of several replicas doing this at once, exactly one
ends each record and appends its events. Terminals and runs first, so a session's
recording says what stopped before it says the sandbox did.

Local sandboxes are only recorded here: their processes are on the lost replica's
machine (``reap_leftovers`` kills them when it comes back). Sandboxes of a backend
every replica reaches (Modal) keep running and are re-owned by the survivor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from modal_app.base import SandboxError, SandboxStatus
from models.claude import ClaudeRun, ClaudeRunStatus
from models.replica import Replica
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestRun, TestRunStatus
from resolvers import event_kinds as ek
from resolvers.errors import SandboxUnavailable
from resolvers.sandboxes import LIVE, Sandboxes
from resolvers.webhooks.events import enqueue_test_run_finished

logger = logging.getLogger("interviewlm.orphans")

# What the records of a replica declared lost by its lease say.
REPLICA_LOST = "replica lost: its server stopped"
TEST_RUN_LOST = "the test run was interrupted: its server stopped; please run the tests again"
AGENT_LOST = "the agent was interrupted: its server stopped; please ask again"


@dataclass(frozen=True, slots=True)
class Takeover:
    terminals: int = 0
    test_runs: int = 0
    agent_runs: int = 0
    sandboxes_ended: int = 0
    sandboxes_adopted: int = 0


def stopped_owners() -> Subquery:
    return Subquery(Replica.filter(stopped_at__isnull=False).values("id"))


async def take_over(
    sandboxes: Sandboxes,
    owners: Collection[str] | None = None,
    *,
    reason: str = REPLICA_LOST,
    test_run_error: str = TEST_RUN_LOST,
    agent_error: str = AGENT_LOST,
) -> Takeover:
    """End the records of ``owners`` (default: every replica marked stopped)."""

    lost: dict[str, Any] = {"owner__in": list(owners) if owners is not None else stopped_owners()}
    terminals = test_runs = agents = ended = adopted = 0
    for terminal in await TerminalRecord.filter(state=TerminalState.OPEN, **lost):
        changed = await TerminalRecord.filter(
            id=terminal.id, state=TerminalState.OPEN, owner=terminal.owner
        ).update(state=TerminalState.CLOSED, closed_at=datetime.now(UTC))
        if changed:
            terminals += 1
            await sandboxes.log.append(
                terminal.session_id, ek.TerminalClosed(str(terminal.id), reason=reason)
            )
    for run in await TestRun.filter(live_key__isnull=False, **lost):
        test_runs += await _end_test_run(sandboxes, run, test_run_error)
    for agent in await ClaudeRun.filter(live_key__isnull=False, **lost):
        changed = await ClaudeRun.filter(
            id=agent.id, live_key__isnull=False, owner=agent.owner
        ).update(
            status=ClaudeRunStatus.FAILED,
            error=agent_error,
            live_key=None,
            token_hash=None,  # its token dies with it
            token_expires_at=None,
            finished_at=datetime.now(UTC),
        )
        if changed:
            agents += 1
            await sandboxes.log.append(
                agent.session_id,
                ek.ClaudeFinished(str(agent.id), status=ClaudeRunStatus.FAILED, error=agent_error),
            )
    for record in await SandboxRecord.filter(state__in=LIVE, **lost):
        if await _adopt(sandboxes, record):
            adopted += 1
            continue
        if await sandboxes.end_lost(record, reason=reason):
            ended += 1
    report = Takeover(terminals, test_runs, agents, ended, adopted)
    if report != Takeover():
        logger.warning("took over what lost replicas held: %s", report)
    return report


async def _end_test_run(sandboxes: Sandboxes, run: TestRun, error: str) -> int:
    async with in_transaction() as conn:
        changed = await (
            TestRun.filter(id=run.id, live_key__isnull=False, owner=run.owner)
            .using_db(conn)
            .update(
                status=TestRunStatus.ERROR,
                live_key=None,
                error=error,
                finished_at=datetime.now(UTC),
            )
        )
        if not changed:
            return 0
        final = await TestRun.filter(id=run.id).using_db(conn).get()
        session = await InterviewSession.filter(id=run.session_id).using_db(conn).get()
        await enqueue_test_run_finished(session, final, using_db=conn)
    await sandboxes.log.append(
        run.session_id,
        ek.TestRunFinished(
            str(run.id),
            status=TestRunStatus.ERROR,
            passed=final.passed,
            failed=final.failed,
            total=final.total,
            error=error,
        ),
    )
    return 1


async def _adopt(sandboxes: Sandboxes, record: SandboxRecord) -> bool:
    """A running sandbox of a backend every replica reaches: this replica holds it now."""
    shared = sandboxes.backend.shares_sandboxes_across_replicas
    if not shared or record.backend != sandboxes.backend.name or not record.backend_id:
        return False
    if record.state is not SandboxState.RUNNING:
        return False  # its start died with the replica that was making it
    try:
        if await sandboxes.backend_status(record) is not SandboxStatus.RUNNING:
            return False
    except (SandboxError, SandboxUnavailable):
        return False
    adopted = await SandboxRecord.filter(
        id=record.id, owner=record.owner, state=SandboxState.RUNNING
    ).update(owner=sandboxes.owner)
    if adopted:
        logger.info("sandbox %s: adopted from lost replica %s", record.id, record.owner)
    return bool(adopted)


async def reap_leftovers(sandboxes: Sandboxes) -> int:
    """Kill the processes of local sandboxes on this machine whose record is no longer live.

    They belonged to a process of this host that died (or was declared lost): its
    records were ended by whoever noticed, but a killed server leaves its sandboxes'
    process trees behind. Their workspaces are kept (captured into the recording
    first) and removed after the retention period like any ended sandbox's.
    Sandboxes the registry does not know are left alone (one may be starting).
    """
    backend = sandboxes.backend
    if backend.shares_sandboxes_across_replicas:
        return 0
    running = [i for i in await backend.list({}) if i.status is SandboxStatus.RUNNING]
    if not running:
        return 0
    records = await SandboxRecord.filter(
        backend=backend.name, backend_id__in=[i.id for i in running]
    )
    killed = 0
    for record in records:
        if record.state in LIVE:
            continue
        with contextlib.suppress(SandboxError, SandboxUnavailable):
            await sandboxes.sync_workspace(record, thorough=True)
        try:
            await backend.terminate(record.backend_id or "")
        except SandboxError as exc:
            logger.warning("could not kill leftover sandbox %s: %s", record.id, exc)
            continue
        killed += 1
    return killed


async def step_down(
    sandboxes: Sandboxes, *, closers: Sequence[Callable[[], Awaitable[None]]]
) -> None:
    """This replica was declared lost (``resolvers.leases``): others ended its records.

    Whatever it still runs is stopped -- its terminals (a Modal sandbox outlives the
    survivor's takeover, and their output must not go on being recorded), its test
    and agent runs -- then what of its own is still live (made after the survivor's
    pass) is ended like a lost replica's, and its local sandboxes' processes killed.
    """
    for close in closers:
        try:
            await close()
        except Exception:  # the others must still be stopped
            logger.exception("stepping down: a close failed")
    await take_over(sandboxes, [sandboxes.owner])
    await reap_leftovers(sandboxes)
