"""Helpers for driving the API the way clients do (GraphQL over real HTTP semantics),
and ``wait_until``: waiting on a condition, never sleeping, to synchronize with the server."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from models.sandbox import SandboxRecord, SandboxState


@dataclass
class Result:
    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.body.get("errors") or [])

    @property
    def codes(self) -> list[str]:
        return [e.get("extensions", {}).get("code") for e in self.errors]

    def ok(self) -> Any:
        assert not self.errors, self.errors
        return self.data


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        accept: str = "application/graphql-response+json",
    ) -> Result:
        headers = {"accept": accept}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        return Result(response.status_code, response.json())


T = TypeVar("T")


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 10.0, *, what: str = ""
) -> T:
    """The first truthy ``predicate()``; fail the test after ``timeout`` seconds.

    The synchronization tests use instead of sleeping: a sleep is too short on a
    loaded machine (flaky) and too long everywhere else (slow), and when the
    condition never comes it lets the test carry on as if it had. The predicate
    may be sync or async; it is checked right away, then every few milliseconds.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.005
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return outcome
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def sandbox_uid(sandbox_root: Path, session_id: str) -> int:
    """The host uid the session's running local sandbox runs as (its workspace's owner)."""
    record = await SandboxRecord.get(session_id=session_id, state=SandboxState.RUNNING)
    assert record.backend_id is not None
    return (sandbox_root / record.backend_id / "workspace").stat().st_uid


def uid_processes(uid: int, pattern: str = "") -> list[int]:
    """Host pids whose real uid is ``uid`` (and whose command line contains ``pattern``):
    one sandbox's processes, without searching the rest of the host."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
        if int(uids[1]) == uid and pattern in cmdline:
            found.append(int(proc.name))
    return found


FORK_COUNTER = """
import errno, os, signal
made, stopped, children = 0, "never", []
try:
    while made < {cap}:
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        children.append(pid)
        made += 1
except OSError as e:
    stopped = errno.errorcode[e.errno]
for pid in children:
    os.kill(pid, signal.SIGKILL)
for pid in children:
    os.waitpid(pid, 0)
print(made, stopped)
"""


def fork_counter(cap: int) -> str:
    """Python that forks (children wait) until refused or ``cap``; prints count and errno."""
    return FORK_COUNTER.format(cap=cap)
