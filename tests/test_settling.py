"""A request that finds its session's sandbox still starting waits for a signal, not by
polling the registry: an asyncio.Event when the start runs in this process, the session's
``sandbox.*`` event on the bus when it runs on another replica; the registry is read once
the wait starts, when a signal comes, and at the deadline.

Real local sandboxes, database and bus (Redis in the postgres pass). The one stand-in is
timing: a backend wrapper that holds the real backend's ``create`` until the test lets it
go, so that the start is reliably still in progress while the second request arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette

from modal_app.base import SandboxBackend, SandboxInfo, SandboxSpec
from models.sandbox import SandboxRecord, SandboxState
from resolvers.auth import authenticate
from resolvers.breaker import CircuitBreaker
from resolvers.errors import SandboxUnavailable
from resolvers.sandboxes import Sandboxes
from tests.conftest import Account
from tests.support import wait_until


class HeldCreate:
    """The real backend, whose ``create`` waits until ``release`` is set."""

    def __init__(self, backend: SandboxBackend) -> None:
        self._backend = backend
        self.release = asyncio.Event()
        self.creating = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        self.creating.set()
        await self.release.wait()
        return await self._backend.create(spec)


def replica(app: Starlette, backend: Any, owner: str, **breaker: float) -> Sandboxes:
    """A sandbox manager as another request path or replica has it: the app's log and bus."""
    base: Sandboxes = app.state.services.sandboxes
    return Sandboxes(
        backend,
        base.log,
        policy=base.policy,
        owner=owner,
        breaker=CircuitBreaker(**breaker) if breaker else None,
    )


@contextmanager
def counting_registry_reads() -> Iterator[list[int]]:
    """How many times the sandbox registry is read (the old wait read it every 50 ms)."""
    originals = {name: getattr(SandboxRecord, name) for name in ("get", "get_or_none")}
    count = [0]

    def counting(original: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            return original(*args, **kwargs)

        return counted

    for name, original in originals.items():
        setattr(SandboxRecord, name, counting(original))
    try:
        yield count
    finally:
        for name, original in originals.items():
            setattr(SandboxRecord, name, original)


async def waits_for_the_start(
    starter: Sandboxes, waiter: Sandboxes, held: HeldCreate, account: Account
) -> None:
    principal = await authenticate(account["interviewerToken"])
    first = asyncio.ensure_future(starter.start(principal, account["sessionId"]))
    await asyncio.wait_for(held.creating.wait(), 30)
    with counting_registry_reads() as reads:
        second = asyncio.ensure_future(waiter.start(principal, account["sessionId"]))
        # The waiter found the start in progress (its first read of the registry).
        await wait_until(lambda: reads[0] >= 1, what="the waiter's first registry read")
        # Held for a while: a poll every 50 ms would read the registry ~10 times.
        done, _ = await asyncio.wait({second}, timeout=0.5)
        assert not done, "the second start answered while the first was still starting"
        reads_while_held = reads[0]
        held.release.set()
        started, joined = await asyncio.wait_for(asyncio.gather(first, second), 30)
    # Finding the start, and (from another replica) one read once subscribed to the bus.
    assert reads_while_held <= 3, reads_while_held
    assert started.state is SandboxState.RUNNING
    assert joined.id == started.id
    assert joined.state is SandboxState.RUNNING


async def test_a_start_in_this_process_is_awaited_on_its_event(
    app: Starlette, account: Account
) -> None:
    base: Sandboxes = app.state.services.sandboxes
    held = HeldCreate(base.backend)
    sandboxes = replica(app, held, base.owner)
    await waits_for_the_start(sandboxes, sandboxes, held, account)


async def test_a_start_on_another_replica_is_awaited_on_the_bus(
    app: Starlette, account: Account
) -> None:
    base: Sandboxes = app.state.services.sandboxes
    held = HeldCreate(base.backend)
    starter = replica(app, held, base.owner)
    # Same backend, another manager: nothing in process tells it the start is over.
    waiter = replica(app, base.backend, base.owner)
    await waits_for_the_start(starter, waiter, held, account)


async def test_a_start_that_never_ends_is_unavailable_at_the_deadline(
    app: Starlette, account: Account
) -> None:
    base: Sandboxes = app.state.services.sandboxes
    held = HeldCreate(base.backend)
    starter = replica(app, held, base.owner)
    waiter = replica(app, base.backend, base.owner, call_timeout=0.5)
    principal = await authenticate(account["interviewerToken"])
    first = asyncio.ensure_future(starter.start(principal, account["sessionId"]))
    await asyncio.wait_for(held.creating.wait(), 30)
    try:
        with pytest.raises(SandboxUnavailable, match="still starting"):
            await waiter.start(principal, account["sessionId"])
    finally:
        held.release.set()
        assert (await first).state is SandboxState.RUNNING
