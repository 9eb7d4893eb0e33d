"""askClaude end to end on a real server and the real local sandbox.

These tests pin the transcript parsing, conflicts and cancel with a stand-in
agent (``CLAUDE_COMMAND``) that replays a transcript in the CLI's documented
stream-json format. The main agent test, the real Claude Code CLI against a
stand-in Messages API through the server's proxy, is ``test_agent_cli``. The
failure path here runs the real CLI with an upstream that cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.claude import ClaudeRun
from tests.conftest import Account
from tests.server import ServerProcess, start_server
from tests.support import Api, sandbox_uid, uid_processes
from tests.workspace_support import RUN, START, WRITE
from tests.wsclient import GraphQLWS

KEY = "sk-ant-api03-canary-7f3e9a1b"
AGENT = "python3 .agent.py"  # CLAUDE_COMMAND of claude_server
ASK = "mutation($s: ID!, $p: String!) { askClaude(sessionId: $s, prompt: $p) { id status } }"
CANCEL = "mutation($r: ID!) { cancelClaude(runId: $r) { id status error } }"
CLAUDE_OUTPUT = """subscription($r: ID!) { claudeOutput(runId: $r) { lastSeq events {
  seq type
  ... on ClaudeRunEvent {
    claudeStatus error prompt costUsd numTurns inputTokens outputTokens apiRequests
  }
  ... on ClaudeInitEvent { conversationId model tools }
  ... on ClaudeTextEvent { text }
  ... on ClaudeToolUseEvent { toolName toolInput }
  ... on ClaudeToolResultEvent { content isError }
  ... on ClaudeResultEvent { subtype isError result costUsd numTurns }
  ... on ClaudeSystemEvent { subtype details }
  ... on ClaudeRawEvent { details }
  ... on ClaudeErrorEvent { message line }
} } }"""

STAND_IN = r"""
import json, os, sys, time
def out(o):
    print(json.dumps(o), flush=True)
    time.sleep(0.02)
sid = "conv-123"
conversations = os.environ["CLAUDE_CONFIG_DIR"] + "/projects"
os.makedirs(conversations, exist_ok=True)
with open(conversations + "/conv-123.jsonl", "a") as f:
    f.write(json.dumps({"prompt": os.environ["CLAUDE_PROMPT"],
                        "env": os.environ["ANTHROPIC_API_KEY"]}) + "\n")
out({"type": "system", "subtype": "init", "session_id": sid, "model": "stand-in",
     "tools": ["Bash", "Edit"]})
if os.environ.get("CLAUDE_PROMPT") == "sleep":  # started (its init is out), then hangs
    time.sleep(120)
out({"type": "assistant", "session_id": sid, "message": {"content": [
    {"type": "text", "text": "resume=" + os.environ.get("CLAUDE_RESUME", "")},
    {"type": "tool_use", "id": "t1", "name": "Edit", "input": {"file_path": "solution.py"}}]}})
with open("solution.py", "w") as f:
    f.write("def two_sum(nums, target):\n    return [0, 1]\n")
out({"type": "user", "session_id": sid, "message": {"content": [{"type": "tool_result",
     "tool_use_id": "t1", "content": "ok " + os.environ["ANTHROPIC_API_KEY"], "is_error": False}]}})
sys.stdout.write('{"type": "assistant", "message": {"content": [{"type": "text", "text": "sp')
sys.stdout.flush()
time.sleep(0.1)
print('lit"}]}}', flush=True)
out({"type": "future_line", "x": 1})
print("this is not json", flush=True)
out({"type": "result", "subtype": "success", "is_error": False, "result": "Done",
     "total_cost_usd": 0.0123, "duration_ms": 1500, "duration_api_ms": 1200, "num_turns": 2,
     "session_id": sid})
"""


@pytest.fixture
def claude_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        **server_env,
        "ANTHROPIC_API_KEY": KEY,
        "CLAUDE_COMMAND": AGENT,
        "CLAUDE_TIME_LIMIT_SECONDS": "30",
    }
    server = start_server(env, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def real_cli_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        **server_env,
        "ANTHROPIC_API_KEY": KEY,
        # Nothing listens there: the proxy answers 502 and the CLI retries.
        "ANTHROPIC_UPSTREAM_URL": "http://127.0.0.1:9",
        # Room for the CLI's start-up on a loaded machine.
        "CLAUDE_TIME_LIMIT_SECONDS": "20",
    }
    server = start_server(env, tmp_path)
    yield server
    server.stop()


class Client:
    def __init__(self, server: ServerProcess, account: Account) -> None:
        self.server, self.account = server, account
        self.http = httpx.AsyncClient(base_url=server.url, timeout=60)

    async def __call__(
        self, query: str, variables: dict[str, Any], token: str = "candidateToken"
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.account[token]}"}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        return response.json()  # type: ignore[no-any-return]

    async def start(self, agent: str | None = STAND_IN) -> None:
        s = self.account["sessionId"]
        await self(START, {"s": s})
        if agent is not None:
            await self(WRITE, {"s": s, "p": ".agent.py", "c": agent})


async def transcript(
    server: ServerProcess, account: Account, run_id: str, token: str = "interviewerToken"
) -> list[dict[str, Any]]:
    """claudeOutput from the start until it completes."""
    ws = await GraphQLWS.connect(server.ws_url, account[token])
    await ws.subscribe(CLAUDE_OUTPUT, {"r": run_id})
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        async for message in ws.messages():
            if message["type"] == "complete":
                break
            assert message["type"] == "next", message
            events += message["payload"]["data"]["claudeOutput"]["events"]
    await ws.close()
    return events


async def until_event(
    server: ServerProcess, account: Account, run_id: str, kind: str, timeout: float = 30
) -> None:
    """Follow claudeOutput until an event of ``kind``; fail if the run completes or times out
    without one (an agent that never started must fail the test, not pass it)."""
    ws = await GraphQLWS.connect(server.ws_url, account["interviewerToken"])
    await ws.subscribe(CLAUDE_OUTPUT, {"r": run_id})
    seen: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            async for message in ws.messages():
                assert message["type"] == "next", (message, seen)
                seen += [e["type"] for e in message["payload"]["data"]["claudeOutput"]["events"]]
                if kind in seen:
                    return
    except TimeoutError:
        raise AssertionError(f"no {kind} within {timeout}s; the run said {seen}") from None
    finally:
        await ws.close()
    raise AssertionError(f"the stream ended without {kind}: {seen}")


async def test_transcript_streams_typed_and_edits_are_recorded(
    claude_server: ServerProcess, account: Account, api: Api
) -> None:
    client = Client(claude_server, account)
    await client.start()
    asked = await client(ASK, {"s": account["sessionId"], "p": "fix my code"})
    run_id = asked["data"]["askClaude"]["id"]
    events = await transcript(claude_server, account, run_id)
    types = [e["type"] for e in events]
    assert types == [
        "claude.started",
        "claude.init",
        "claude.text",
        "claude.tool_use",
        "claude.tool_result",
        "claude.text",
        "claude.raw",
        "claude.error",
        "claude.result",
        "claude.finished",
    ]
    assert events[0]["prompt"] == "fix my code"
    assert events[1]["conversationId"] == "conv-123"
    assert events[2]["text"] == "resume="
    assert events[3] == {**events[3], "toolName": "Edit", "toolInput": {"file_path": "solution.py"}}
    # The agent held a run token, never the key.
    assert events[4]["content"].startswith("ok ilm-run-")
    assert events[5]["text"] == "split"
    assert events[6]["details"] == {"type": "future_line", "x": 1}
    assert events[7]["line"] == "this is not json"
    assert events[8]["costUsd"] == 0.0123
    assert events[-1]["claudeStatus"] == "SUCCEEDED"
    # The agent's edit is in the workspace and in the recording.
    file = await client(
        'query($s: ID!) { file(sessionId: $s, path: "solution.py") { content } }',
        {"s": account["sessionId"]},
    )
    assert file["data"]["file"]["content"].endswith("return [0, 1]\n")
    recording = await client(
        "query($s: ID!) { recording(sessionId: $s, first: 1000) { events { type"
        " ... on FileEvent { path source } } } }",
        {"s": account["sessionId"]},
        "atsToken",
    )
    edits = [
        e
        for e in recording["data"]["recording"]["events"]
        if e["type"] == "file.written" and e["path"] == "solution.py"
    ]
    assert edits[-1]["source"] == "agent"
    # The key is nowhere in what was recorded.
    everything = await client(
        "query($s: ID!) { recording(sessionId: $s, first: 1000) {"
        " events { __typename ... on ClaudeToolResultEvent { content } } } }",
        {"s": account["sessionId"]},
        "interviewerToken",
    )
    assert KEY not in str(everything)
    # A follow-up prompt resumes the conversation.
    again = await client(ASK, {"s": account["sessionId"], "p": "and now?"})
    follow_up = await transcript(claude_server, account, again["data"]["askClaude"]["id"])
    assert follow_up[2]["text"] == "resume=conv-123"
    # The agent's conversations survive a sandbox restart (secrets scrubbed).
    s = account["sessionId"]
    await client("mutation($s: ID!) { terminateSandbox(sessionId: $s) { state } }", {"s": s})
    await client(START, {"s": s})
    kept = await client(
        RUN, {"s": s, "c": "cat .interviewlm/claude/projects/conv-123.jsonl", "t": 10}
    )
    lines = kept["data"]["runCommand"]["stdout"].splitlines()
    kept_lines = [json.loads(line) for line in lines]
    assert [line["prompt"] for line in kept_lines] == ["fix my code", "and now?"]
    assert all(line["env"].startswith("ilm-run-") for line in kept_lines)
    assert kept_lines[0]["env"] != kept_lines[1]["env"], "one token per run"


async def test_candidate_commands_never_see_the_key(
    claude_server: ServerProcess, account: Account
) -> None:
    client = Client(claude_server, account)
    await client.start()
    env = await client(RUN, {"s": account["sessionId"], "c": "env; cat /proc/*/environ", "t": 10})
    assert KEY not in str(env)
    assert env.get("data"), env
    assert "ANTHROPIC" not in env["data"]["runCommand"]["stdout"]


async def test_second_ask_conflicts_and_cancel_kills_the_agent(
    claude_server: ServerProcess, account: Account, server_env: dict[str, str]
) -> None:
    client = Client(claude_server, account)
    await client.start()
    asked = await client(ASK, {"s": account["sessionId"], "p": "sleep"})
    run_id = asked["data"]["askClaude"]["id"]
    second = await client(ASK, {"s": account["sessionId"], "p": "hello"}, "interviewerToken")
    assert second["errors"][0]["extensions"]["code"] == "CONFLICT"
    # Started, as the run's own events tell (not a host-wide process search)...
    await until_event(claude_server, account, run_id, "claude.init")
    uid = await sandbox_uid(Path(server_env["SANDBOX_ROOT"]), account["sessionId"])
    # Only that sandbox's processes are searched, not the whole host.
    assert uid_processes(uid, AGENT), "the agent runs in the session's sandbox, as its uid"
    cancelled = await client(CANCEL, {"r": run_id}, "interviewerToken")
    assert cancelled["data"]["cancelClaude"]["status"] == "CANCELLED"
    events = await transcript(claude_server, account, run_id)
    assert [e["type"] for e in events][:2] == ["claude.started", "claude.init"]
    assert events[-1]["claudeStatus"] == "CANCELLED"
    assert uid_processes(uid, AGENT) == [], "cancel killed the agent"
    again = await client(CANCEL, {"r": run_id})
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_no_key_configured_is_a_clear_error(api: Api, account: Account) -> None:
    await api(START, {"s": account["sessionId"]}, token=account["candidateToken"])
    result = await api(ASK, {"s": account["sessionId"], "p": "hi"}, token=account["candidateToken"])
    assert result.codes == ["SANDBOX_UNAVAILABLE"]
    assert "ANTHROPIC_API_KEY" in result.errors[0]["message"]


async def test_real_cli_with_an_unreachable_upstream_fails_cleanly(
    real_cli_server: ServerProcess, account: Account
) -> None:
    client = Client(real_cli_server, account)
    await client.start(agent=None)
    asked = await client(ASK, {"s": account["sessionId"], "p": "hello"})
    run_id = asked["data"]["askClaude"]["id"]
    events = await transcript(real_cli_server, account, run_id, token="candidateToken")
    types = [e["type"] for e in events]
    assert "claude.init" in types, events  # the real CLI started...
    retries = [e for e in events if e["type"] == "claude.system"]
    assert retries, events
    assert retries[0]["subtype"] == "api_retry"  # ...and could not reach the API
    final = events[-1]
    assert final["type"] == "claude.finished"
    assert final["claudeStatus"] == "FAILED"
    assert final["error"] == "time limit of 20 s reached"
    assert KEY not in str(events)
    run = await client("query($r: ID!) { claudeRun(id: $r) { status error } }", {"r": run_id})
    assert run["data"]["claudeRun"]["status"] == "FAILED"
    # The time limit ended the run, and with it the agent's token.
    stored = await ClaudeRun.get(id=run_id)
    assert (stored.token_hash, stored.token_expires_at) == (None, None)


async def test_a_failed_run_says_what_happened_without_internals(
    claude_server: ServerProcess, account: Account
) -> None:
    """Old main put the process's stderr (paths, tracebacks) into ClaudeRun.error."""
    crash = (
        "import sys; sys.stderr.write('Traceback: /srv/interviewlm/internal.py line 3');"
        " sys.exit(3)"
    )
    client = Client(claude_server, account)
    await client.start(agent=crash)
    asked = await client(ASK, {"s": account["sessionId"], "p": "hello"})
    run_id = asked["data"]["askClaude"]["id"]
    events = await transcript(claude_server, account, run_id)
    assert events[-1]["error"] == "the agent stopped without an answer (exit code 3)"
    said = [e for e in events if e["type"] == "claude.system"]
    assert "internal.py" in json.dumps(said[0]["details"]), "kept as the agent's own output"
    run = await client("query($r: ID!) { claudeRun(id: $r) { status error } }", {"r": run_id})
    assert run["data"]["claudeRun"] == {
        "status": "FAILED",
        "error": "the agent stopped without an answer (exit code 3)",
    }
