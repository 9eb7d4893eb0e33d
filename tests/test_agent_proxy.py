"""The Messages API proxy on its own: tokens, limits, forwarding rules, usage.

Upstream is the Messages API stand-in on loopback (Anthropic cannot be reached
from tests); the proxy, its route and the database are real. The agent's side
of it (the real CLI in the sandbox) is ``test_agent_cli``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gql.anthropic_proxy import PROXY_PREFIX, SOCKET_NAME, ProxySocket, agent_link, proxy_routes
from gql.settings import Settings, SettingsError
from modal_app.base import NetworkPolicy
from modal_app.modal.refs import SandboxRef, SandboxRefs
from models.claude import ClaudeRun, ClaudeRunStatus
from resolvers.anthropic_proxy import AnthropicProxy, ProxyConfig, UsageMeter, mint_token
from tests.anthropic_standin import INPUT_TOKENS, OUTPUT_TOKENS, StandIn, sse_events
from tests.conftest import Account

KEY = "sk-ant-api03-proxy-test-key"
BODY = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def upstream() -> Iterator[StandIn]:
    server = StandIn(lambda body: [{"type": "text", "text": "hello"}]).start()
    yield server
    server.stop()


def proxy_client(upstream_url: str, **limits: int) -> httpx.AsyncClient:
    proxy = AnthropicProxy(ProxyConfig(api_key=KEY, upstream_url=upstream_url, **limits))
    app = Starlette(routes=proxy_routes(proxy))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")


@pytest.fixture
async def http(upstream: StandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with proxy_client(upstream.url, max_requests=3, max_tokens=10_000) as client:
        yield client


async def new_run(account: Account, **fields: Any) -> tuple[str, ClaudeRun]:
    token, hashed = mint_token()
    values: dict[str, Any] = {
        "token_expires_at": datetime.now(UTC) + timedelta(minutes=5),
        **fields,
    }
    run = await ClaudeRun.create(
        session_id=uuid.UUID(account["sessionId"]),
        prompt="p",
        owner="test",
        token_hash=hashed,
        **values,
    )
    return token, run


async def post(
    http: httpx.AsyncClient, token: str | None, path: str = "/v1/messages", **kw: Any
) -> httpx.Response:
    headers = {"x-api-key": token} if token else {}
    headers.update(kw.pop("headers", {}))
    return await http.post(
        PROXY_PREFIX + path, json=kw.pop("body", {**BODY, "stream": True}), headers=headers
    )


async def test_streams_and_meters_usage(
    app: Starlette, account: Account, http: httpx.AsyncClient, upstream: StandIn
) -> None:
    token, run = await new_run(account)
    answer = await post(http, token)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "event: message_start" in answer.text
    plain = await post(http, token, body=BODY)  # a JSON answer is metered too
    assert plain.json()["content"][0]["text"] == "hello"
    counted = await post(http, token, "/v1/messages/count_tokens", body=BODY)
    assert counted.json() == {"input_tokens": INPUT_TOKENS}
    run = await ClaudeRun.get(id=run.id)
    assert (run.api_requests, run.input_tokens, run.output_tokens) == (
        3,
        2 * INPUT_TOKENS,
        2 * OUTPUT_TOKENS,
    )
    assert {s.headers["x-api-key"] for s in upstream.seen} == {KEY}


async def test_dead_tokens_are_401(
    app: Starlette, account: Account, http: httpx.AsyncClient, upstream: StandIn
) -> None:
    expired, _ = await new_run(account, token_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    finished, _ = await new_run(account, status=ClaudeRunStatus.SUCCEEDED)
    cleared, run = await new_run(account)
    await ClaudeRun.filter(id=run.id).update(token_hash=None)
    for token in (expired, finished, cleared, None, KEY, "ilm-run-forged", ""):
        answer = await post(http, token)
        assert answer.status_code == 401, token
        assert answer.json()["error"]["type"] == "authentication_error"
    bearer = await post(http, None, headers={"authorization": f"Bearer {finished}"})
    assert bearer.status_code == 401
    assert upstream.seen == []


async def test_request_and_token_budgets(
    app: Starlette, account: Account, upstream: StandIn
) -> None:
    async with proxy_client(upstream.url, max_requests=2, max_tokens=10_000) as http:
        token, _ = await new_run(account)
        assert [(await post(http, token)).status_code for _ in range(3)] == [200, 200, 403]
    async with proxy_client(upstream.url, max_requests=50, max_tokens=INPUT_TOKENS) as http:
        token, _ = await new_run(account)
        first, second = await post(http, token), await post(http, token)
        assert (first.status_code, second.status_code) == (200, 403)
        assert second.json()["error"]["type"] == "permission_error"
    assert len(upstream.seen) == 3


async def test_only_the_messages_api_with_allowed_headers(
    app: Starlette, account: Account, http: httpx.AsyncClient, upstream: StandIn
) -> None:
    token, _ = await new_run(account)
    for path in ("/v1/models", "/v1/complete", "/v1/messages/batches", "/v1/files"):
        assert (await post(http, token, path)).status_code == 404
    assert (await http.get(PROXY_PREFIX + "/v1/messages")).status_code == 405
    assert upstream.seen == []
    sent = {
        "authorization": f"Bearer {token}",
        "cookie": "session=1",
        "x-forwarded-for": "10.0.0.1",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "tools-2024",
        "anthropic-dangerous-direct-browser-access": "true",
    }
    response = await http.post(
        PROXY_PREFIX + "/v1/messages?beta=true&extra=1",
        json=BODY,
        headers={"x-api-key": token, **sent},
    )
    assert response.status_code == 200
    (seen,) = upstream.seen
    assert seen.path == "/v1/messages?beta=true"
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-beta"] == "tools-2024"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    for dropped in (
        "authorization",
        "cookie",
        "x-forwarded-for",
        "anthropic-dangerous-direct-browser-access",
    ):
        assert dropped not in seen.headers
    assert token not in json.dumps(seen.headers)


async def test_unreachable_upstream_is_a_clean_502(app: Starlette, account: Account) -> None:
    async with proxy_client("http://127.0.0.1:9") as http:
        token, _ = await new_run(account)
        answer = await post(http, token)
    assert answer.status_code == 502
    assert answer.json()["error"] == {
        "type": "api_error",
        "message": "the upstream API could not be reached",
    }


def test_usage_meter_reads_split_event_streams() -> None:
    events = sse_events({}, [{"type": "text", "text": "x" * 50}])
    events[-2]["usage"] = {"output_tokens": 7, "input_tokens": 3}
    events[0]["message"]["usage"]["cache_read_input_tokens"] = 5
    stream = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    for size in (1, 7, 64, len(stream)):
        meter = UsageMeter(streaming=True)
        for i in range(0, len(stream), size):
            meter.feed(stream[i : i + size])
        meter.finish()
        assert (meter.input_tokens, meter.output_tokens) == (INPUT_TOKENS + 5, 7)


async def test_modal_agents_reach_the_proxy_at_public_url_only() -> None:
    link = await agent_link("https://ilm.example.com:8443", None)()
    assert link.network == NetworkPolicy(allow_hosts=("ilm.example.com",))
    assert link.base_url == "https://ilm.example.com:8443" + PROXY_PREFIX
    assert link.socket is None


def test_settings() -> None:
    settings = Settings.from_env({"ANTHROPIC_UPSTREAM_URL": "http://127.0.0.1:1234/"})
    assert settings.anthropic_upstream_url == "http://127.0.0.1:1234"
    assert Settings.from_env({}).anthropic_upstream_url == "https://api.anthropic.com"
    assert not hasattr(settings, "claude_allow_network")
    with pytest.raises(SettingsError):
        Settings.from_env({"ANTHROPIC_UPSTREAM_URL": "file:///etc/passwd"})


class _StandInSandbox:
    """Stand-in for a Modal Sandbox (Modal is unreachable here): records egress policies."""

    object_id = "sb-standin"

    def __init__(self) -> None:
        self.policies: list[tuple[list[str], list[str]]] = []

        async def set_policy(
            *, outbound_cidr_allowlist: list[str], outbound_domain_allowlist: list[str]
        ) -> None:
            self.policies.append((outbound_cidr_allowlist, outbound_domain_allowlist))

        self._experimental_set_outbound_network_policy = type("Call", (), {"aio": set_policy})


async def test_modal_egress_is_the_public_host_only_while_the_agent_runs() -> None:
    sandbox = _StandInSandbox()
    refs = SandboxRefs(client=lambda: None)  # type: ignore[arg-type, return-value]
    ref = SandboxRef(
        sandbox=sandbox,  # type: ignore[arg-type]
        tags={},
        created_at=0,
        volume_name=None,
        limits=None,
        network=NetworkPolicy(),
    )
    link = await agent_link("https://ilm.example.com", None)()
    release = await refs.widen(ref, link.network)
    assert sandbox.policies == [([], ["ilm.example.com"])]
    await release()  # what the exec handle does when the agent exits
    assert sandbox.policies[-1] == ([], [])


async def test_usage_counts_when_the_agent_hangs_up_mid_stream(
    app: Starlette, account: Account, upstream: StandIn
) -> None:
    """Through the real Unix-socket server the local sandboxes use."""
    upstream.pause_s = 0.5
    proxy = AnthropicProxy(ProxyConfig(api_key=KEY, upstream_url=upstream.url))
    socket = ProxySocket(proxy)
    directory = await socket.start()
    assert oct(directory.stat().st_mode & 0o777) == "0o711"
    token, run = await new_run(account)
    transport = httpx.AsyncHTTPTransport(uds=str(directory / SOCKET_NAME))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
            request = http.build_request(
                "POST",
                PROXY_PREFIX + "/v1/messages",
                json={**BODY, "stream": True},
                headers={"x-api-key": token},
            )
            response = await http.send(request, stream=True)
            first = await anext(response.aiter_bytes())
            assert b"message_start" in first
            await response.aclose()  # the agent was killed mid-answer
        for _ in range(100):
            run = await ClaudeRun.get(id=run.id)
            if run.input_tokens:
                break
            await asyncio.sleep(0.05)
        assert (run.api_requests, run.input_tokens) == (1, INPUT_TOKENS)
    finally:
        await socket.aclose()
        await proxy.aclose()
    assert not directory.exists()
