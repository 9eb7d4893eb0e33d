"""Every backend call goes through the circuit breaker: ``runCommand`` and the test-run
harness included (both used to call the backend directly, so an open breaker did not
stop them). Real local sandbox, real database.

The app is shared by the whole test session, so each test gives the app's sandboxes a
breaker of its own for its duration, opened by a real backend-wide failure, and puts
the app's own back afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette

from modal_app.base import BackendUnavailable
from models.testrun import TestRun, TestRunStatus
from resolvers.auth import authenticate
from resolvers.breaker import CircuitBreaker
from resolvers.errors import SandboxUnavailable
from resolvers.sandboxes import Sandboxes
from tests.conftest import Account
from tests.support import Api, wait_until
from tests.workspace_support import RUN, events, run, start


@contextmanager
def own_breaker(sandboxes: Sandboxes) -> Iterator[CircuitBreaker]:
    original = sandboxes.breaker
    sandboxes.breaker = CircuitBreaker(threshold=1, reset_after=3600)
    try:
        yield sandboxes.breaker
    finally:
        sandboxes.breaker = original


async def open_breaker(breaker: CircuitBreaker) -> None:
    """Open it the way production does: the backend says it is unhealthy (an unscoped call)."""

    async def down() -> None:
        raise BackendUnavailable("the sandbox runtime is down")

    with pytest.raises(SandboxUnavailable):
        await breaker.call(down)
    assert breaker.state == "open"


async def test_open_breaker_refuses_run_command(app: Starlette, api: Api, account: Account) -> None:
    await start(api, account)
    sandboxes: Sandboxes = app.state.services.sandboxes
    with own_breaker(sandboxes) as breaker:
        # Positive control: with the breaker closed the same command runs.
        assert (await run(api, account, "echo through-the-breaker"))["exitCode"] == 0
        await open_breaker(breaker)
        refused = await api(
            RUN,
            {"s": account["sessionId"], "c": "echo through-the-breaker", "t": 5},
            token=account["candidateToken"],
        )
    assert refused.codes == ["SANDBOX_UNAVAILABLE"]
    assert refused.errors[0]["extensions"]["retryAfterSeconds"] >= 1
    recorded = await events(api, account)
    failed = [e for e in recorded if e["type"] == "command.failed"]
    assert len(failed) == 1
    assert "try again" in failed[0]["payload"]["error"]
    # The refused command never ran: no output and no exit besides the control's.
    exited = [e for e in recorded if e["type"] == "command.exited"]
    assert len(exited) == 1


async def test_open_breaker_refuses_the_test_run_harness(
    app: Starlette, api: Api, account: Account
) -> None:
    await start(api, account)
    services = app.state.services
    principal = await authenticate(account["candidateToken"])
    with own_breaker(services.sandboxes) as breaker:
        # The run is accepted (its workspace snapshot goes through the closed breaker);
        # the breaker opens before its background task reaches the harness.
        queued = await services.test_runs.start(principal, account["sessionId"], None)
        await open_breaker(breaker)

        async def finished() -> bool:
            run = await TestRun.get(id=queued.id)
            return run.status not in {TestRunStatus.QUEUED, TestRunStatus.RUNNING}

        await wait_until(finished, 30, what="the test run to end")
    run = await TestRun.get(id=queued.id)
    assert run.status is TestRunStatus.ERROR
    assert run.error is not None
    assert "sandbox service is unavailable" in run.error
    assert run.live_key is None  # the session can run its tests again
    recorded = await events(api, account)
    assert not [e for e in recorded if e["type"] == "testrun.case"]  # no case ran
    ends = [e for e in recorded if e["type"] == "testrun.finished"]
    assert [e["payload"]["runId"] for e in ends] == [str(queued.id)]
    # Positive control: with the app's breaker back, the session runs its tests.
    again = await services.test_runs.start(principal, account["sessionId"], None)

    async def done() -> bool:
        return (await TestRun.get(id=again.id)).status is TestRunStatus.FINISHED

    await wait_until(done, 60, what="the second test run to finish")
    assert again.id != queued.id


async def test_a_long_call_never_holds_the_half_open_trial_slot() -> None:
    """A command or test run lasts as long as the candidate's program: were it the one
    trial call, every other account's calls would be refused until it ended."""
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_after=10, clock=lambda: now[0])
    await open_breaker(breaker)
    now[0] = 11
    assert breaker.state == "half-open"
    started, release = asyncio.Event(), asyncio.Event()

    async def program() -> str:
        started.set()
        await release.wait()
        return "exited"

    async def fine() -> str:
        return "ok"

    running = asyncio.ensure_future(breaker.call(program, scope="a", long_running=True))
    await started.wait()
    assert await breaker.call(fine) == "ok"  # the trial slot was free
    assert breaker.state == "closed"
    release.set()
    assert await running == "exited"
    # Control: a short trial does hold the slot while it runs.
    await open_breaker(breaker)
    now[0] = 22
    held = asyncio.ensure_future(breaker.call(program))
    started.clear()
    release.clear()
    await started.wait()
    with pytest.raises(SandboxUnavailable, match="try again"):
        await breaker.call(fine)
    release.set()
    assert await held == "exited"
    assert breaker.state == "closed"
