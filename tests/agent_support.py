"""Shared pieces of the real-CLI agent tests: the scripted stand-in model and servers.

Anthropic's API cannot be reached from tests, so upstream is a stand-in on
loopback (``tests.anthropic_standin``) speaking the Messages API's wire
protocol; everything between (server, proxy, sandbox, CLI) is real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.anthropic_standin import StandIn, has_tool_result, last_user_text, tool_results
from tests.server import ServerProcess, start_server
from tests.test_claude import ASK, Client, transcript

REAL_KEY = "sk-ant-api03-REALKEY-4b1d9c2e7f"
RUN_QUERY = """query($r: ID!) { claudeRun(id: $r) {
  status error costUsd numTurns inputTokens outputTokens apiRequests } }"""
TOOLCHAIN = Path(__file__).resolve().parent.parent / "toolchain/node_modules/.bin/claude"
needs_cli = pytest.mark.skipif(not TOOLCHAIN.exists(), reason="bash scripts/setup not run")
ENV_DUMP = "env; cat /proc/*/environ | tr '\\0' '\\n'; ps -ef; cat /proc/*/cmdline | tr '\\0' ' '"
SCRIPTED: dict[str, str] = {"print the environment": ENV_DUMP}
"""prompt keyword -> the Bash command the 'model' runs for it (tests add their own)."""


def model(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The scripted 'model': a tool use first, a final text after its result."""
    prompt = last_user_text(body)
    if has_tool_result(body):
        return [{"type": "text", "text": "Done: " + tool_results(body)[-1][:200]}]
    if "write" in prompt:
        return [
            {"type": "text", "text": "I will write the solution."},
            {
                "type": "tool_use",
                "id": "toolu_write",
                # --bare offers Bash, Edit and Read; Edit with an empty
                # old_string creates the file.
                "name": "Edit",
                "input": {
                    "file_path": "/workspace/two_sum.py",
                    "old_string": "",
                    "new_string": "def two_sum(nums, target):\n    return [0, 1]\n",
                },
            },
        ]
    for keyword, command in SCRIPTED.items():
        if keyword in prompt:
            bash = {"command": command, "timeout": 60000}
            return [{"type": "tool_use", "id": "toolu_bash", "name": "Bash", "input": bash}]
    return [{"type": "text", "text": "You said: " + prompt[:200]}]


@pytest.fixture(name="standin")
def standin_fixture() -> Iterator[StandIn]:
    server = StandIn(model).start()
    yield server
    server.stop()


@pytest.fixture(name="agent_server")
def agent_server_fixture(
    server_env: dict[str, str], tmp_path: Path, standin: StandIn
) -> Iterator[ServerProcess]:
    env = {
        **server_env,
        "ANTHROPIC_API_KEY": REAL_KEY,
        "ANTHROPIC_UPSTREAM_URL": standin.url,
        "CLAUDE_TIME_LIMIT_SECONDS": "60",
    }
    server = start_server(env, tmp_path)
    yield server
    server.stop()


async def ask(client: Client, prompt: str) -> tuple[str, list[dict[str, Any]]]:
    asked = await client(ASK, {"s": client.account["sessionId"], "p": prompt})
    run_id = asked["data"]["askClaude"]["id"]
    return run_id, await transcript(client.server, client.account, run_id)
