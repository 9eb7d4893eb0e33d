"""The report's agent usage and transcript from a real agent run: a stand-in agent
(``CLAUDE_COMMAND``) in the real sandbox calls the Messages API through the server's
proxy, which meters the tokens that the stand-in Anthropic (on loopback) answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.anthropic_standin import INPUT_TOKENS, OUTPUT_TOKENS, StandIn
from tests.conftest import Account
from tests.report_support import REPORT
from tests.server import ServerProcess, start_server
from tests.test_claude import ASK, Client, transcript

KEY = "sk-ant-api03-report-5c2d8e"
AGENT = r"""
import json, os, urllib.request

def out(o):
    print(json.dumps(o), flush=True)

def ask_model():
    body = {"model": "stand-in", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hello"}]}
    request = urllib.request.Request(
        os.environ["ANTHROPIC_BASE_URL"].rstrip("/") + "/v1/messages",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01",
                 "x-api-key": os.environ["ANTHROPIC_API_KEY"]})
    urllib.request.urlopen(request, timeout=20).read()

ask_model()
ask_model()
out({"type": "system", "subtype": "init", "session_id": "c1", "model": "stand-in",
     "tools": ["Bash"]})
out({"type": "assistant", "message": {"content": [
    {"type": "text", "text": "<script>alert('agent')</script> thinking"},
    {"type": "tool_use", "id": "t1", "name": "Bash",
     "input": {"command": "echo '<img src=x onerror=alert(6)>'"}}]}})
out({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
     "content": "<iframe src=//evil.example></iframe>", "is_error": False}]}})
out({"type": "result", "subtype": "success", "is_error": False, "result": "done",
     "total_cost_usd": 99.0, "duration_ms": 10, "num_turns": 3, "session_id": "c1"})
"""


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn(lambda body: [{"type": "text", "text": "hi"}]).start()
    yield server
    server.stop()


@pytest.fixture
def agent_server(
    server_env: dict[str, str], tmp_path: Path, standin: StandIn
) -> Iterator[ServerProcess]:
    env = {
        **server_env,
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_UPSTREAM_URL": standin.url,
        "CLAUDE_COMMAND": "python3 .agent.py",
        "CLAUDE_TIME_LIMIT_SECONDS": "60",
    }
    server = start_server(env, tmp_path)
    yield server
    server.stop()


async def test_agent_usage_is_metered_and_its_transcript_is_text(
    agent_server: ServerProcess, account: Account
) -> None:
    agent = Client(agent_server, account)
    await agent.start(AGENT)
    asked = await agent(ASK, {"s": account["sessionId"], "p": "<b>help</b> me"})
    run_id = asked["data"]["askClaude"]["id"]
    await transcript(agent_server, account, run_id)  # until the run has ended

    # Everything through the serving replica (its report, its page).
    answer = await agent(REPORT, {"s": account["sessionId"]}, token="interviewerToken")
    report = answer["data"]["session"]["report"]
    usage = report["agent"]
    assert usage["runs"] == 1
    assert usage["turns"] == 3
    # The proxy's metering, not the agent's own claim of $99.
    assert usage["apiRequests"] == 2
    assert (usage["inputTokens"], usage["outputTokens"]) == (2 * INPUT_TOKENS, 2 * OUTPUT_TOKENS)
    expected = (2 * INPUT_TOKENS * 3.0 + 2 * OUTPUT_TOKENS * 15.0) / 1_000_000
    assert usage["costUsd"] == pytest.approx(expected)

    path = "/reports/" + report["reportUrl"].rsplit("/reports/", 1)[1]
    html = (await agent.http.get(path)).text
    lowered = html.lower()
    for tag in ("<script", "<img", "<iframe", "<b>"):
        assert tag not in lowered, tag
    for shown in (
        "&lt;b&gt;help&lt;/b&gt; me",  # the prompt
        "&lt;script&gt;alert(&#39;agent&#39;)&lt;/script&gt; thinking",  # the agent's text
        "&lt;img src=x onerror=alert(6)&gt;",  # a tool's input
        "&lt;iframe src=//evil.example&gt;&lt;/iframe&gt;",  # a tool's output
    ):
        assert shown in html, shown
    assert "Run succeeded" in html
