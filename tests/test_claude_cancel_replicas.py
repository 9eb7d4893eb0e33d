"""cancelClaude through a replica that does not run the agent: the cancel goes over the
bus to the run's replica, and the answer waits for the run's ``claude.finished`` on the
bus (no polling of the database), so it already says CANCELLED.

Two real servers (``interviewlm serve``) sharing the test database and the local Redis,
the real local sandbox; the agent is the stand-in of test_claude (``CLAUDE_COMMAND``)
told to hang after its init line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.claude import ClaudeRun, ClaudeRunStatus
from tests.conftest import REDIS_URL, Account
from tests.server import ServerProcess, start_server
from tests.support import wait_until
from tests.test_claude import AGENT, ASK, CANCEL, KEY, STAND_IN, Client

pytestmark = pytest.mark.redis


@pytest.fixture
def replicas(server_env: dict[str, str], tmp_path: Path) -> Iterator[list[ServerProcess]]:
    env = {
        **server_env,
        "REDIS_URL": REDIS_URL,
        "ANTHROPIC_API_KEY": KEY,
        "CLAUDE_COMMAND": AGENT,
        "CLAUDE_TIME_LIMIT_SECONDS": "120",
    }
    servers = [start_server(env, tmp_path), start_server(env, tmp_path)]
    yield servers
    for server in servers:
        server.stop()


async def test_cancel_from_another_replica_answers_cancelled(
    replicas: list[ServerProcess], account: Account
) -> None:
    runner, other = (Client(server, account) for server in replicas)
    await runner.start(STAND_IN)
    asked = await runner(ASK, {"s": account["sessionId"], "p": "sleep"})
    run_id = asked["data"]["askClaude"]["id"]

    async def agent_started() -> bool:
        run = await ClaudeRun.get(id=run_id)
        return run.conversation_id is not None  # its init line was recorded

    await wait_until(agent_started, 60, what="the stand-in agent's init line")
    cancelled = await other(CANCEL, {"r": run_id}, "interviewerToken")
    assert cancelled["data"]["cancelClaude"]["status"] == "CANCELLED", cancelled
    assert cancelled["data"]["cancelClaude"]["error"] == "cancelled"
    assert (await ClaudeRun.get(id=run_id)).status is ClaudeRunStatus.CANCELLED
