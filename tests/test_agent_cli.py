"""The real, pinned Claude Code CLI end to end: real server, real local sandbox, the proxy.

Anthropic's API cannot be reached from tests, so upstream is a stand-in on
loopback (``tests.anthropic_standin``) speaking the Messages API's wire
protocol (server-sent events with usage, text and tool-use blocks). Everything
between is real: the server (child process), askClaude, the agent launcher,
the CLI 2.1.112 from ``toolchain/`` inside the bubblewrap sandbox (no network;
it reaches the proxy through the socket bound in for its command), the proxy
adding the real key, and the recording.
"""

from __future__ import annotations

import json

import httpx

from tests.agent_support import (  # noqa: F401 - fixtures
    REAL_KEY,
    RUN_QUERY,
    agent_server_fixture,
    ask,
    needs_cli,
    standin_fixture,
)
from tests.anthropic_standin import INPUT_TOKENS, OUTPUT_TOKENS, StandIn
from tests.conftest import Account
from tests.server import ServerProcess
from tests.test_claude import Client
from tests.workspace_support import RUN

pytestmark = needs_cli


async def test_real_cli_edits_through_the_proxy(
    agent_server: ServerProcess, account: Account, standin: StandIn
) -> None:
    client = Client(agent_server, account)
    await client.start(agent=None)
    run_id, events = await ask(client, "please write the solution")
    types = [e["type"] for e in events]
    assert types[0] == "claude.started", types
    assert types[-1] == "claude.finished", types
    assert "claude.init" in types
    uses = [e for e in events if e["type"] == "claude.tool_use"]
    assert uses[0]["toolName"] == "Edit"
    results = [e for e in events if e["type"] == "claude.tool_result"]
    assert results
    assert not results[0]["isError"], results
    texts = [e["text"] for e in events if e["type"] == "claude.text"]
    assert texts[0] == "I will write the solution."
    assert texts[-1].startswith("Done: ")
    assert events[-1]["claudeStatus"] == "SUCCEEDED", events[-1]
    # The edit is in the workspace and in the recording, made by the agent.
    file = await client(
        'query($s: ID!) { file(sessionId: $s, path: "two_sum.py") { content } }',
        {"s": account["sessionId"]},
    )
    assert file["data"]["file"]["content"].endswith("return [0, 1]\n")
    # Usage, as the proxy read it from the stand-in's event streams.
    run = (await client(RUN_QUERY, {"r": run_id}))["data"]["claudeRun"]
    messages = [s for s in standin.seen if s.path.startswith("/v1/messages?")]
    assert run["apiRequests"] >= len(messages) >= 2
    assert run["inputTokens"] == INPUT_TOKENS * len(messages)
    assert run["outputTokens"] == OUTPUT_TOKENS * len(messages)
    assert events[-1]["inputTokens"] == run["inputTokens"]
    assert events[-1]["outputTokens"] == run["outputTokens"]
    # Upstream got the real key; the sandbox only ever had the run token.
    assert {s.headers.get("x-api-key") for s in standin.seen} == {REAL_KEY}
    assert not any("authorization" in s.headers for s in standin.seen)
    # The session's conversation continues on the next prompt (--resume).
    _, follow_up = await ask(client, "and now?")
    assert follow_up[-1]["claudeStatus"] == "SUCCEEDED"
    last = standin.seen[-1].body["messages"]
    assert any("please write the solution" in json.dumps(m) for m in last)
    # ...also after the sandbox was stopped and started again.
    s = account["sessionId"]
    await client("mutation($s: ID!) { terminateSandbox(sessionId: $s) { state } }", {"s": s})
    await client.start(agent=None)
    _, restarted = await ask(client, "still there?")
    assert restarted[-1]["claudeStatus"] == "SUCCEEDED"
    history = json.dumps(standin.seen[-1].body["messages"])
    assert "please write the solution" in history
    assert "and now?" in history


async def test_a_prompt_is_never_an_option(
    agent_server: ServerProcess, account: Account, standin: StandIn
) -> None:
    """Today's main ran ``claude --version`` for askClaude(prompt: "--version")."""
    client = Client(agent_server, account)
    await client.start(agent=None)
    for prompt in ("--version", "-p --help", "--settings {}"):
        _, events = await ask(client, prompt)
        texts = [e["text"] for e in events if e["type"] == "claude.text"]
        assert texts == [f"You said: {prompt}"], events
        assert events[-1]["claudeStatus"] == "SUCCEEDED"


async def test_the_run_token_dies_with_the_run(
    agent_server: ServerProcess, account: Account, standin: StandIn
) -> None:
    client = Client(agent_server, account)
    await client.start(agent=None)
    await ask(client, "hello")
    # What the sandbox held as its key (the CLI sends it as x-api-key).
    proxy = f"{agent_server.url}/agent/anthropic/v1/messages"
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    tokens = {json.loads(line)["token"] for line in (await token_lines(client))}
    assert tokens
    assert all(t.startswith("ilm-run-") for t in tokens)
    async with httpx.AsyncClient() as http:
        for token in tokens:
            late = await http.post(proxy, json=body, headers={"x-api-key": token})
            assert late.status_code == 401, late.text
            bearer = await http.post(proxy, json=body, headers={"authorization": f"Bearer {token}"})
            assert bearer.status_code == 401
        nothing = await http.post(proxy, json=body)
        assert nothing.status_code == 401
        assert nothing.json()["error"]["type"] == "authentication_error"


async def token_lines(client: Client) -> list[str]:
    """The run token the agent used, as the sandbox's environment dump showed it."""
    _, events = await ask(client, "print the environment")
    found: list[str] = []
    for event in events:
        if event["type"] == "claude.tool_result":
            for line in event["content"].splitlines():
                if line.startswith("ANTHROPIC_API_KEY="):
                    found.append(json.dumps({"token": line.split("=", 1)[1]}))
    return found


async def test_commands_do_not_reach_the_proxy(
    agent_server: ServerProcess, account: Account
) -> None:
    """The proxy's socket is bound into the agent's command only: no network, no socket."""
    client = Client(agent_server, account)
    await client.start(agent=None)
    probe = "ls /run/interviewlm 2>&1; cat /proc/net/tcp | wc -l"
    out = await client(RUN, {"s": account["sessionId"], "c": probe, "t": 10})
    stdout = out["data"]["runCommand"]["stdout"]
    assert "proxy.sock" not in stdout
