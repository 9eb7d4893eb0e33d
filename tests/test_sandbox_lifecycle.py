"""Quota, circuit breaker, reaper and start-up reconciliation of the sandbox registry."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette

from modal_app.base import BackendUnavailable, InvalidPath
from models.sandbox import SandboxRecord, SandboxState
from resolvers.auth import Principal, authenticate
from resolvers.breaker import CircuitBreaker
from resolvers.errors import RateLimited, SandboxUnavailable
from resolvers.reaper import reap_once, reconcile
from resolvers.sandboxes import Sandboxes, SandboxPolicy
from tests.conftest import Account
from tests.support import Api
from tests.workspace_support import FILE, START, events, run, start


def sandboxes_with(app: Starlette, **policy: float) -> Sandboxes:
    """A second manager on the app's backend and log, with its own policy."""
    base: Sandboxes = app.state.services.sandboxes
    return Sandboxes(base.backend, base.log, policy=SandboxPolicy(**policy), owner=base.owner)  # type: ignore[arg-type]


async def principal(account: Account, key: str = "interviewerToken") -> Principal:
    return await authenticate(account[key])


async def test_quota_answers_rate_limited(
    app: Starlette, api: Api, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    account = await account_factory()
    limited = sandboxes_with(app, quota=1)
    me = await principal(account)
    await limited.start(me, account["sessionId"])
    second = await api(
        "mutation($i: CreateSessionInput!) { createSession(input: $i) { session { id } } }",
        {
            "i": {
                "questionId": account["questionId"],
                "candidateName": "B",
                "candidateEmail": "b@example.com",
            }
        },
        token=account["atsToken"],
    )
    other_session = second.ok()["createSession"]["session"]["id"]
    with pytest.raises(RateLimited, match="quota 1"):
        await limited.start(me, other_session)
    through_api = await api(START, {"s": other_session}, token=account["interviewerToken"])
    assert through_api.ok()  # the app's own quota (10) still has room
    assert (await limited.start(me, account["sessionId"])).state is SandboxState.RUNNING


async def test_breaker_opens_fails_fast_and_recovers() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset_after=10, clock=lambda: now[0])
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise BackendUnavailable("modal is down")

    async def fine() -> str:
        return "ok"

    for _ in range(2):
        with pytest.raises(SandboxUnavailable, match="modal is down"):
            await breaker.call(failing)
    assert breaker.state == "open"
    with pytest.raises(SandboxUnavailable, match="try again"):
        await breaker.call(failing)
    assert calls == 2  # failed fast, the backend was not called
    now[0] = 11
    assert breaker.state == "half-open"
    assert await breaker.call(fine) == "ok"
    assert breaker.state == "closed"

    async def bad_path() -> None:
        raise InvalidPath("..")

    with pytest.raises(InvalidPath):  # an answer about one sandbox does not trip it
        await breaker.call(bad_path)
    assert breaker.state == "closed"


async def test_breaker_deadline_turns_a_hang_into_sandbox_unavailable() -> None:
    import asyncio

    breaker = CircuitBreaker(threshold=1, call_timeout=0.05)
    with pytest.raises(SandboxUnavailable, match="in time"):
        await breaker.call(lambda: asyncio.sleep(5))
    assert breaker.state == "open"


async def test_reaper_stops_idle_old_and_ended_sandboxes(
    app: Starlette, api: Api, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    idle, old, ended, fresh = [await account_factory() for _ in range(4)]
    for account in (idle, old, ended, fresh):
        await start(api, account)
    now = datetime.now(UTC)
    await SandboxRecord.filter(session_id=idle["sessionId"]).update(
        last_activity_at=now - timedelta(hours=1)
    )
    await SandboxRecord.filter(session_id=old["sessionId"]).update(
        created_at=now - timedelta(hours=5)
    )
    await api(
        "mutation($s: ID!) { endSession(sessionId: $s) { id } }",
        {"s": ended["sessionId"]},
        token=ended["atsToken"],
    )
    reaper = sandboxes_with(app, idle_timeout_s=1800, max_lifetime_s=4 * 3600)
    await reap_once(reaper, now=now)
    for account, reason in (
        (idle, "idle timeout"),
        (old, "maximum lifetime reached"),
        (ended, "the session ended"),
    ):
        record = await SandboxRecord.get(session_id=account["sessionId"])
        assert (record.state, record.end_reason) == (SandboxState.TERMINATED, reason)
        logged = [e for e in await events(api, account) if e["type"] == "sandbox.terminated"]
        assert logged[0]["payload"]["reason"] == reason
    record = await SandboxRecord.get(session_id=fresh["sessionId"])
    assert record.state is SandboxState.RUNNING


async def test_reaper_removes_workspaces_after_retention_keeping_the_recording(
    app: Starlette, api: Api, account: Account
) -> None:
    await start(api, account)
    await run(api, account, "echo kept > notes.txt")
    await api(
        "mutation($s: ID!) { terminateSandbox(sessionId: $s) { id } }",
        {"s": account["sessionId"]},
        token=account["candidateToken"],
    )
    record = await SandboxRecord.get(session_id=account["sessionId"])
    backend = app.state.services.sandboxes.backend
    assert await backend.list_files(record.backend_id, "")
    reaper = sandboxes_with(app, retention_s=3600)
    await reap_once(reaper, now=datetime.now(UTC) + timedelta(hours=2))
    record = await SandboxRecord.get(id=record.id)
    assert record.workspace_removed_at is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - gone, whatever the backend calls it
        await backend.list_files(record.backend_id, "")
    notes = await api(
        FILE, {"s": account["sessionId"], "p": "notes.txt"}, token=account["interviewerToken"]
    )
    assert notes.ok()["file"]["content"] == "kept\n"


async def test_reconcile_marks_sandboxes_of_dead_replicas_terminated(
    app: Starlette, api: Api, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    dead_here, elsewhere = await account_factory(), await account_factory()
    for account in (dead_here, elsewhere):
        await start(api, account)
    await SandboxRecord.filter(session_id=dead_here["sessionId"]).update(
        owner=f"{socket.gethostname()}:999999999"
    )
    await SandboxRecord.filter(session_id=elsewhere["sessionId"]).update(owner="other-host:1")
    lost = await reconcile(app.state.services.sandboxes)
    assert lost >= 1
    dead = await SandboxRecord.get(session_id=dead_here["sessionId"])
    assert dead.state is SandboxState.TERMINATED
    assert dead.end_reason == "lost when its server restarted"
    kept = await SandboxRecord.get(session_id=elsewhere["sessionId"])
    assert kept.state is SandboxState.RUNNING
    restarted = await start(api, dead_here)
    assert restarted["state"] == "RUNNING"
