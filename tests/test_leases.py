"""Replica leases without a second process: expiry, takeover exactly once, fencing, start-up.

The records of a "lost" replica are made directly (its process never existed); two
survivors (``Leases`` objects) race to expire its lease and to end what it held.
The two-process SIGKILL run is tests/test_replica_failure.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg  # type: ignore[import-untyped]
import pytest
from starlette.applications import Starlette
from tortoise import Tortoise

from gql.settings import Settings, SettingsError
from models.claude import ClaudeRun, ClaudeRunStatus
from models.event import Event
from models.replica import Replica
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestRun, TestRunStatus
from resolvers.leases import (
    LeasePolicy,
    Leases,
    dead_on_this_host,
    lease_dsn,
    leases_running,
    parse_owner,
)
from resolvers.orphans import AGENT_LOST, REPLICA_LOST, TEST_RUN_LOST, step_down, take_over
from resolvers.reaper import RESTARTED, reconcile
from resolvers.sandboxes import Sandboxes
from tests.conftest import Account

QUICK = LeasePolicy(heartbeat_s=0.01, lease_s=0.05)


def test_owner_identities() -> None:
    host, pid = socket.gethostname(), os.getpid()
    assert parse_owner("h:12:ab") is not None
    assert parse_owner("h:12") is not None  # the older form
    assert parse_owner("test") is None
    me = f"{host}:{pid}:mine"
    assert dead_on_this_host(f"{host}:{pid}:before", me)  # my pid, another identity
    assert not dead_on_this_host(f"{host}:1:x", me)  # pid 1 runs
    assert dead_on_this_host(f"{host}:999999999", me)  # no such process
    assert not dead_on_this_host("elsewhere:999999999:x", me)  # not ours to judge
    assert not dead_on_this_host("test", me)
    assert not dead_on_this_host(me, me)


def test_lease_settings() -> None:
    settings = Settings.from_env({})
    assert (settings.replica_heartbeat_s, settings.replica_lease_s) == (5.0, 20.0)
    quick = Settings.from_env({"REPLICA_HEARTBEAT_SECONDS": "0.5", "REPLICA_LEASE_SECONDS": "2"})
    assert (quick.replica_heartbeat_s, quick.replica_lease_s) == (0.5, 2.0)
    with pytest.raises(SettingsError, match="REPLICA_LEASE_SECONDS"):
        Settings.from_env({"REPLICA_HEARTBEAT_SECONDS": "5", "REPLICA_LEASE_SECONDS": "6"})


async def _survivor(name: str) -> Leases:
    leases = Leases(f"survivor-{name}:1:{uuid.uuid4().hex[:8]}", QUICK)
    await leases.register()
    await leases.beat()
    await asyncio.sleep(QUICK.lease_s)
    await leases.beat()
    assert leases.may_judge
    return leases


async def _held_by(owner: str, session: InterviewSession) -> dict[str, uuid.UUID]:
    now = datetime.now(UTC)
    sandbox = await SandboxRecord.create(
        account_id=session.account_id,
        session_id=session.id,
        backend="local",
        owner=owner,
        live_key=session.id,
        state=SandboxState.RUNNING,
        last_activity_at=now,
    )
    terminal = await TerminalRecord.create(
        session_id=session.id, sandbox_id=sandbox.id, owner=owner, cols=80, rows=24
    )
    run = await TestRun.create(
        session_id=session.id,
        language=session.language,
        owner=owner,
        live_key=session.id,
        status=TestRunStatus.RUNNING,
    )
    agent = await ClaudeRun.create(
        session_id=session.id,
        prompt="p",
        owner=owner,
        live_key=session.id,
        token_hash=uuid.uuid4().hex,
    )
    return {"sandbox": sandbox.id, "terminal": terminal.id, "run": run.id, "agent": agent.id}


async def _events(session_id: uuid.UUID, kind: str) -> list[Event]:
    return await Event.filter(session_id=session_id, type=kind).order_by("seq")


async def test_two_survivors_end_a_lost_replicas_records_once(
    app: Starlette, account: Account
) -> None:
    sandboxes = app.state.services.sandboxes
    session = await InterviewSession.get(id=account["sessionId"])
    lost = f"lost-{uuid.uuid4().hex[:6]}:4242:dead"
    past = datetime.now(UTC) - timedelta(minutes=1)
    await Replica.create(id=lost, started_at=past, heartbeat_at=past, expires_at=past)
    ids = await _held_by(lost, session)
    # A record of an owner with no lease row (written before leases) is not judged here.
    unjudged = await TerminalRecord.create(
        session_id=session.id, sandbox_id=ids["sandbox"], owner="test", cols=80, rows=24
    )
    first, second = await _survivor("a"), await _survivor("b")
    marked = await asyncio.gather(first.expire(), second.expire())
    # One of them marked it (their own short leases may lapse too: not the point here).
    assert sum(m.count(lost) for m in marked) == 1
    await asyncio.gather(take_over(sandboxes), take_over(sandboxes))

    sid = session.id
    closed = await _events(sid, "terminal.closed")
    assert [(e.payload["terminalId"], e.payload["reason"]) for e in closed] == [
        (str(ids["terminal"]), REPLICA_LOST)
    ]
    finished = await _events(sid, "testrun.finished")
    assert [(e.payload["status"], e.payload["error"]) for e in finished] == [
        ("ERROR", TEST_RUN_LOST)
    ]
    agent_done = await _events(sid, "claude.finished")
    assert [(e.payload["status"], e.payload["error"]) for e in agent_done] == [
        ("FAILED", AGENT_LOST)
    ]
    ended = await _events(sid, "sandbox.terminated")
    assert [e.payload["reason"] for e in ended] == [REPLICA_LOST]
    assert ended[0].seq > max(closed[0].seq, finished[0].seq, agent_done[0].seq)
    sandbox = await SandboxRecord.get(id=ids["sandbox"])
    assert (sandbox.state, sandbox.live_key) == (SandboxState.TERMINATED, None)
    run = await TestRun.get(id=ids["run"])
    assert (run.status, run.live_key) == (TestRunStatus.ERROR, None)
    agent = await ClaudeRun.get(id=ids["agent"])
    assert (agent.status, agent.live_key, agent.token_hash) == (ClaudeRunStatus.FAILED, None, None)
    assert (await TerminalRecord.get(id=unjudged.id)).state is TerminalState.OPEN

    # The lost replica, were it only paused, finds itself fenced off and registers again.
    paused = Leases(lost, QUICK)
    assert await paused.beat() is False
    await paused.register()
    assert await paused.beat() is True
    for leases in (first, second, paused):
        await leases.stop()


async def test_a_live_lease_is_not_taken_over(app: Starlette, account: Account) -> None:
    session = await InterviewSession.get(id=account["sessionId"])
    holder = Leases(f"holder:1:{uuid.uuid4().hex[:8]}", LeasePolicy(heartbeat_s=1, lease_s=60))
    await holder.register()
    ids = await _held_by(holder.me, session)
    survivor = await _survivor("c")
    assert holder.me not in await survivor.expire()
    await take_over(app.state.services.sandboxes)
    assert (await TerminalRecord.get(id=ids["terminal"])).state is TerminalState.OPEN
    assert (await SandboxRecord.get(id=ids["sandbox"])).state is SandboxState.RUNNING
    # A clean shutdown hands over at once (no lease to wait out).
    await holder.stop()
    await take_over(app.state.services.sandboxes)
    assert (await TerminalRecord.get(id=ids["terminal"])).state is TerminalState.CLOSED
    assert (await SandboxRecord.get(id=ids["sandbox"])).state is SandboxState.TERMINATED
    await survivor.stop()


async def test_startup_ends_what_an_earlier_process_with_my_pid_held(
    app: Starlette, account: Account
) -> None:
    """A restarted container's server has the same host and pid (1) as the one before."""
    sandboxes = app.state.services.sandboxes
    session = await InterviewSession.get(id=account["sessionId"])
    host, pid, _ = sandboxes.owner.split(":")
    before = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
    ids = await _held_by(before, session)
    await reconcile(sandboxes)
    terminal = await TerminalRecord.get(id=ids["terminal"])
    assert terminal.state is TerminalState.CLOSED
    sandbox = await SandboxRecord.get(id=ids["sandbox"])
    assert (sandbox.state, sandbox.end_reason) == (SandboxState.TERMINATED, RESTARTED)
    assert (await TestRun.get(id=ids["run"])).status is TestRunStatus.ERROR
    assert (await ClaudeRun.get(id=ids["agent"])).status is ClaudeRunStatus.FAILED


async def test_a_fenced_replica_steps_down(app: Starlette, account: Account) -> None:
    """Declared lost while alive: it stops what it runs and ends what of its own is live."""
    base = app.state.services.sandboxes
    fenced = Sandboxes(
        base.backend, base.log, policy=base.policy, owner=f"fenced:1:{uuid.uuid4().hex[:8]}"
    )
    session = await InterviewSession.get(id=account["sessionId"])
    ids = await _held_by(fenced.owner, session)  # made after the survivors' pass
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)
        if name == "terminals":
            raise RuntimeError("one close failing does not keep the others from running")

    await step_down(fenced, closers=[partial(close, n) for n in ("terminals", "tests", "agent")])
    assert closed == ["terminals", "tests", "agent"]
    assert (await TerminalRecord.get(id=ids["terminal"])).state is TerminalState.CLOSED
    assert (await TestRun.get(id=ids["run"])).status is TestRunStatus.ERROR
    assert (await ClaudeRun.get(id=ids["agent"])).status is ClaudeRunStatus.FAILED
    assert (await SandboxRecord.get(id=ids["sandbox"])).state is SandboxState.TERMINATED
    assert len(await _events(session.id, "sandbox.terminated")) == 1


async def _expires_at(dsn: str, me: str) -> datetime:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval("SELECT expires_at FROM replica WHERE id = $1", me)
        assert isinstance(value, datetime)
        return value
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_heartbeat_renews_while_the_pool_is_saturated(
    app: Starlette, database_url: str
) -> None:
    """Every pooled connection held (client queries, replays): the heartbeat renews over
    its own connection, within its interval; the judging passes wait for the pool apart."""
    assert lease_dsn(database_url + "?maxsize=3&ssl=disable") == database_url + "?ssl=disable"
    assert lease_dsn("sqlite:///x.db") is None
    policy = LeasePolicy(heartbeat_s=0.2, lease_s=1.0)
    me = f"saturated:1:{uuid.uuid4().hex[:8]}"
    leases = Leases(me, policy, database_url=database_url)
    await leases.register()
    pool = Tortoise.get_connection("default")._pool
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    passes = 0

    async def take_over() -> None:  # like the real one: it needs a pooled connection
        nonlocal passes
        await Replica.filter(id=me).count()
        passes += 1

    try:
        # The pool is saturated indeed: a renewal through it does not get through.
        pooled = Leases(f"pooled:1:{uuid.uuid4().hex[:8]}", policy)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await pooled.beat()
        seen = [await _expires_at(database_url, me)]
        async with leases_running(leases, take_over=take_over, on_fenced=_never):
            for _ in range(6):  # three leases long
                await asyncio.sleep(0.5)
                seen.append(await _expires_at(database_url, me))
            lag = datetime.now(UTC) - seen[-1] + timedelta(seconds=policy.lease_s)
            passes_while_saturated = passes
            for conn in held:
                await pool.release(conn)
            held.clear()
        assert all(later > earlier for earlier, later in itertools.pairwise(seen))
        assert lag < timedelta(seconds=0.5)  # renewed within about a heartbeat
        assert passes_while_saturated == 0  # the judging pass waited on the pool all along
    finally:
        for conn in held:
            await pool.release(conn)
    row = await Replica.get(id=me)
    assert row.stopped_at is None  # leases_running only stops the loops; stop() marks it
    await leases.stop()
    assert (await Replica.get(id=me)).stopped_at is not None


async def _never() -> None:
    raise AssertionError("not fenced")
