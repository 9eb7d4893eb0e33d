"""A replica killed with SIGKILL mid-stream (issue 13): nothing is lost, and what it held ends.

Two real servers (``interviewlm serve``) on the test database and the local Redis,
the real local sandbox, short leases. On replica A: a sandbox, a terminal running a
long command, a test run stuck in a slow solution, an agent run (the stand-in agent
of test_claude, told to hang), and a watcher on ``sessionEvents``. A is killed with
SIGKILL; the watcher reconnects to B with its last seq and gets every event once, in
order, with no gap; B (or the test app, also a replica) notices A's lease expire and
ends the terminal, the runs and the sandbox with reasons and events. A comes back (a
new process: a new identity): its start-up reconcile marks the sandbox terminated on
disk, kills its leftover processes (the sandbox's own trees die with bwrap; the test
plants one as the sandbox's uid, as an escaped process would be) and keeps the
workspace (retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from models.claude import ClaudeRun, ClaudeRunStatus
from models.question import TestCase
from models.replica import Replica
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestRun, TestRunStatus
from resolvers.orphans import AGENT_LOST, REPLICA_LOST, TEST_RUN_LOST
from tests.conftest import REDIS_URL, Account
from tests.server import ServerProcess, start_server
from tests.support import uid_processes, wait_until
from tests.test_claude import AGENT, ASK, KEY, STAND_IN, Client
from tests.test_live import add_notes
from tests.test_terminal import INPUT, OPEN
from tests.test_testruns import RUN_TESTS
from tests.workspace_support import START, WRITE
from tests.wsclient import GraphQLWS

# PostgreSQL pass only: on SQLite, three processes writing one file at this rate lock
# each other out ("database is locked", the suite's known multi-process flake); the
# SQLite pass covers the takeover itself in tests/test_leases.py.
pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HEARTBEAT_S, LEASE_S = 0.5, 3.0
# A lost replica's records end within its lease and one heartbeat of a survivor; the
# rest is room for a loaded machine (the survivor's pass, the event's way back).
BOUND_S = LEASE_S + HEARTBEAT_S + 8

EVENTS = """subscription($s: ID!, $a: Int!) {
  sessionEvents(sessionId: $s, afterSeq: $a) {
    events {
      seq type
      ... on TerminalEvent { terminalId terminalReason: reason exitCode }
      ... on TestRunEvent { runId runStatus runError: error }
      ... on ClaudeRunEvent { runId claudeStatus claudeError: error }
      ... on SandboxEvent { sandboxId sandboxReason: reason }
    }
  }
}"""
SLOW = "import time\n\ndef two_sum(nums, target):\n    time.sleep(300)\n    return [0, 1]\n"


@pytest.fixture
def replica_env(server_env: dict[str, str]) -> dict[str, str]:
    return {
        **server_env,
        "REDIS_URL": server_env.get("REDIS_URL", REDIS_URL),
        "REPLICA_HEARTBEAT_SECONDS": str(HEARTBEAT_S),
        "REPLICA_LEASE_SECONDS": str(LEASE_S),
        "ANTHROPIC_API_KEY": KEY,
        "CLAUDE_COMMAND": AGENT,
        "CLAUDE_TIME_LIMIT_SECONDS": "300",
        "TEST_RUN_TIMEOUT_SECONDS": "300",
    }


@pytest.fixture
def servers(replica_env: dict[str, str], tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started = [start_server(replica_env, tmp_path), start_server(replica_env, tmp_path)]
    yield started  # the test appends A's successor
    for server in started:
        if server.process.poll() is None:
            server.stop()


class Watcher:
    """A sessionEvents subscriber that keeps everything it got, across reconnects."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.events: list[dict[str, Any]] = []
        self.client: GraphQLWS | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    async def connect(self, server: ServerProcess) -> None:
        self.client = await GraphQLWS.connect(server.ws_url, self.account["interviewerToken"])
        await self.client.subscribe(EVENTS, {"s": self.account["sessionId"], "a": self.last_seq})
        self.task = asyncio.create_task(self._read(self.client))

    async def _read(self, client: GraphQLWS) -> None:
        with contextlib.suppress(ConnectionClosed):  # its server was killed
            async for message in client.messages():
                if message["type"] != "next":
                    return
                self.events += message["payload"]["data"]["sessionEvents"]["events"]

    async def disconnected(self) -> None:
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)  # the killed server's socket is closed

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.task is not None:
            self.task.cancel()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def _start_everything(a: Client, account: Account) -> dict[str, str]:
    """Sandbox, terminal with a long command, stuck test run, hanging agent: all on A."""
    s = account["sessionId"]
    await a.start(STAND_IN)
    session = await InterviewSession.get(id=s)
    # The slow solution must still be running when A dies: its cases wait long.
    await TestCase.filter(question_id=session.question_id).update(timeout_ms=300_000)
    wrote = await a(WRITE, {"s": s, "p": "solution.py", "c": SLOW})
    assert "errors" not in wrote, wrote
    opened = await a(OPEN, {"s": s, "c": 80, "r": 24})
    terminal_id = opened["data"]["openTerminal"]["id"]
    await a(INPUT, {"t": terminal_id, "d": "echo started; sleep 300\n"})
    ran = await a(RUN_TESTS, {"s": s, "l": None})
    run_id = ran["data"]["runTests"]["id"]
    asked = await a(ASK, {"s": s, "p": "sleep"})
    agent_id = asked["data"]["askClaude"]["id"]

    async def all_under_way() -> bool:
        run = await TestRun.get(id=run_id)
        agent = await ClaudeRun.get(id=agent_id)
        return run.status is TestRunStatus.RUNNING and agent.conversation_id is not None

    await wait_until(all_under_way, 60, what="the test run and the agent under way")
    sandbox = await SandboxRecord.get(session_id=s, state=SandboxState.RUNNING)
    return {"terminal": terminal_id, "run": run_id, "agent": agent_id, "sandbox": str(sandbox.id)}


async def test_sigkill_mid_stream_loses_nothing_and_ends_what_it_held(
    servers: list[ServerProcess], replica_env: dict[str, str], account: Account, tmp_path: Path
) -> None:
    a, b = servers
    watcher = Watcher(account)
    await watcher.connect(a)
    ids = await _start_everything(Client(a, account), account)
    sandbox = await SandboxRecord.get(id=ids["sandbox"])
    assert sandbox.backend_id is not None
    workspace = Path(replica_env["SANDBOX_ROOT"]) / sandbox.backend_id / "workspace"
    uid = workspace.stat().st_uid
    assert uid_processes(uid, "sleep 300"), "the terminal's command runs"

    # Mid-stream: notes keep coming (through B) while A dies.
    writer = asyncio.create_task(add_notes(b, account, 60, concurrency=2))
    await wait_until(lambda: len(watcher.of("note.added")) >= 5, 30, what="notes streaming")
    a.process.kill()
    a.process.wait()
    killed_at = time.monotonic()
    await watcher.disconnected()
    await watcher.connect(b)  # with its last seq
    written = await writer

    async def all_ended() -> bool:
        return bool(watcher.of("sandbox.terminated")) and len(watcher.of("note.added")) >= 60

    await wait_until(all_ended, BOUND_S + 30, what="the survivors end what A held")
    noticed = [e for e in watcher.events if e["type"] == "sandbox.terminated"]
    elapsed = time.monotonic() - killed_at
    print(f"A's sandbox ended {elapsed:.1f} s after its SIGKILL (lease {LEASE_S} s)")
    assert elapsed <= BOUND_S
    await asyncio.sleep(HEARTBEAT_S * 4)  # a second survivor's pass adds nothing
    await watcher.close()

    # Every event once, in order, no gap -- across the reconnect.
    seqs = [e["seq"] for e in watcher.events]
    assert seqs == list(range(1, seqs[-1] + 1))
    assert set(written) <= set(seqs)
    # Each of A's things ended once, with its reason.
    closed = watcher.of("terminal.closed")
    assert [(e["terminalId"], e["terminalReason"]) for e in closed] == [
        (ids["terminal"], REPLICA_LOST)
    ]
    finished = watcher.of("testrun.finished")
    assert [(e["runId"], e["runStatus"], e["runError"]) for e in finished] == [
        (ids["run"], "ERROR", TEST_RUN_LOST)
    ]
    agent_done = watcher.of("claude.finished")
    assert [(e["runId"], e["claudeStatus"], e["claudeError"]) for e in agent_done] == [
        (ids["agent"], "FAILED", AGENT_LOST)
    ]
    assert [(e["sandboxId"], e["sandboxReason"]) for e in noticed] == [
        (ids["sandbox"], REPLICA_LOST)
    ]
    ends = [watcher.events.index(e) for e in (closed[0], finished[0], agent_done[0], noticed[0])]
    assert ends[-1] == max(ends), "the sandbox ends after what ran in it"

    # The registry says the same; A's lease is stopped; the session's keys are free.
    assert (await TerminalRecord.get(id=ids["terminal"])).state is TerminalState.CLOSED
    run = await TestRun.get(id=ids["run"])
    assert (run.status, run.live_key, run.error) == (TestRunStatus.ERROR, None, TEST_RUN_LOST)
    agent = await ClaudeRun.get(id=ids["agent"])
    assert (agent.status, agent.live_key, agent.token_hash) == (ClaudeRunStatus.FAILED, None, None)
    sandbox = await SandboxRecord.get(id=ids["sandbox"])
    assert (sandbox.state, sandbox.end_reason) == (SandboxState.TERMINATED, REPLICA_LOST)
    lost = await Replica.get(id=sandbox.owner)
    assert lost.stopped_at is not None

    # The sandbox's process trees died with A (bwrap's --die-with-parent), but what a
    # killed server leaves is more: the sandbox is still RUNNING on disk, and a process
    # that escaped its tree (as the backend's kill-by-uid anticipates) would live on.
    assert not _terminated_on_disk(workspace)
    escaped = subprocess.Popen(["sleep", "300"], user=uid, group=uid)
    try:
        # A comes back: a new process (a new identity) cleans them up at start-up.
        servers.append(start_server(replica_env, tmp_path))
        assert escaped.wait(timeout=10) == -signal.SIGKILL
    finally:
        if escaped.poll() is None:
            escaped.kill()
            escaped.wait()
    assert uid_processes(uid) == []
    assert _terminated_on_disk(workspace)
    assert workspace.is_dir()  # kept for the retention period, like any ended sandbox's
    # The session goes on, on any replica: a new sandbox starts.
    restarted = await Client(b, account)(START, {"s": account["sessionId"]})
    assert restarted["data"]["startSandbox"]["state"] == "RUNNING", restarted


def _terminated_on_disk(workspace: Path) -> bool:
    meta = json.loads((workspace.parent / "sandbox.json").read_text())
    return bool(meta["status"] == "TERMINATED")
