"""``/metrics``: scraped and parsed as Prometheus does, over the test app and a real server.

Every check is a difference between two scrapes around something the test does, so the
tests do not depend on what earlier tests left in the (per-process) registry.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette

from gql.metrics_endpoint import metrics_routes
from resolvers import metrics
from tests.conftest import Account, make_settings, sandbox_root
from tests.server import ServerProcess, start_server
from tests.support import Api, wait_until
from tests.test_claude import ASK, Client, claude_server, transcript  # noqa: F401 (fixture)
from tests.workspace_support import TERMINATE, start
from tests.wsclient import SESSION_EVENTS, GraphQLWS

Labels = dict[str, str]
VIEWER = "query Whatever { viewer { kind } }"
RUN_TESTS = "mutation($s: ID!) { runTests(sessionId: $s) { id } }"
TEST_RUN = "query($id: ID!) { testRun(id: $id) { status passed failed } }"
TWO_SUM = """
def two_sum(nums, target):
    seen = {}
    for i, n in enumerate(nums):
        if target - n in seen:
            return [seen[target - n], i]
        seen[n] = i
"""
WRITE = 'mutation($s: ID!, $c: String!) { writeFile(sessionId: $s, path: "solution.py",'
WRITE += " content: $c) { path } }"


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))

    def samples(self) -> Iterator[Sample]:
        for family in self.families:
            yield from family.samples

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels`` (0: none)."""
        return sum(
            s.value
            for s in self.samples()
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


def test_metric_names_follow_prometheus_conventions() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    families = list(text_string_to_metric_families(text))
    assert len(families) >= 16
    for family in families:
        assert family.name.startswith("interviewlm_"), family.name
        if family.type == "counter":
            # The parser names a counter's family without _total; its samples carry it.
            assert {s.name for s in family.samples} <= {
                f"{family.name}_total",
                f"{family.name}_created",
            }, family
        elif family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        else:
            assert family.type == "gauge", family
            assert not family.name.endswith("_total"), family.name


async def test_a_query_counts_for_its_operation(
    client: httpx.AsyncClient, account: Account
) -> None:
    before = await scrape(client)
    api = Api(client)
    for _ in range(3):
        (await api(VIEWER, token=account["interviewerToken"])).ok()
    after = await scrape(client)
    key = {"operation": "viewer", "kind": "query"}
    name = "interviewlm_graphql_requests_total"
    assert after.value(name, **key) - before.value(name, **key) == 3
    duration = "interviewlm_graphql_request_duration_seconds_count"
    assert after.value(duration, kind="query") - before.value(duration, kind="query") >= 3


async def test_errors_count_by_operation_and_code(
    client: httpx.AsyncClient, account: Account
) -> None:
    api = Api(client)
    before = await scrape(client)
    syntax = await api("query { viewer { kind }", token=account["interviewerToken"])
    assert syntax.codes == ["BAD_USER_INPUT"]
    missing = await api(
        "query($id: ID!) { session(id: $id) { id } }",
        {"id": "00000000-0000-0000-0000-000000000000"},
        token=account["interviewerToken"],
    )
    assert missing.codes == ["NOT_FOUND"]
    anonymous = await api("{ viewer { kind } }")
    assert anonymous.codes == ["UNAUTHENTICATED"]
    after = await scrape(client)
    name = "interviewlm_graphql_errors_total"
    for labels in (
        {"operation": "anonymous", "code": "BAD_USER_INPUT"},
        {"operation": "session", "code": "NOT_FOUND"},
        {"operation": "viewer", "code": "UNAUTHENTICATED"},
    ):
        assert after.value(name, **labels) - before.value(name, **labels) == 1, labels


async def test_requests_refused_before_graphql_count_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    name = "interviewlm_graphql_errors_total"
    before = await scrape(client)
    refused = await client.post(
        "/graphql",
        json={"query": "{ viewer { kind } }"},
        headers={"authorization": f"Bearer {account['candidateToken']}x"},
    )
    assert refused.status_code == 401
    over_get = await client.get(
        "/graphql",
        params={"query": "mutation { endSession(sessionId: 1) { id } }"},
        headers={"authorization": f"Bearer {account['interviewerToken']}"},
    )
    assert over_get.status_code == 405
    after = await scrape(client)
    unauthenticated = {"operation": "anonymous", "code": "UNAUTHENTICATED"}
    assert after.value(name, **unauthenticated) == before.value(name, **unauthenticated) + 1
    assert after.value(name, code="BAD_USER_INPUT") == before.value(name, code="BAD_USER_INPUT") + 1


async def test_the_operation_label_is_bounded(client: httpx.AsyncClient, account: Account) -> None:
    """A client names its operation anything: the label is a root field or a fixed word."""
    token = account["interviewerToken"]
    hostile = 'evil"\n} 1\ninterviewlm_graphql_requests_total{operation="x"} 1e9'
    before = await scrape(client)
    for body in (
        {"query": "query Evil { viewer { kind } }", "operationName": "Evil"},
        {"query": "query { languages { language } viewer { kind } }"},
        {"query": "query { __schema { queryType { name } } }"},
        {"query": "query A { viewer { kind } }", "operationName": hostile},
    ):
        await client.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})
    after = await scrape(client)
    labels = {s.labels["operation"] for s in after.samples() if "operation" in s.labels}
    assert hostile not in after.text
    assert "Evil" not in labels
    name = "interviewlm_graphql_requests_total"
    for operation in ("viewer", "multiple", "introspection", "anonymous"):
        assert after.value(name, operation=operation) > before.value(name, operation=operation)


async def test_websocket_operations_are_counted(live_server_url: str, account: Account) -> None:
    requests = "interviewlm_graphql_requests_total"
    ws_url = live_server_url.replace("http", "ws") + "/graphql"
    async with httpx.AsyncClient(base_url=live_server_url) as http:
        before = await scrape(http)
        ws = await GraphQLWS.connect(ws_url, account["interviewerToken"])
        try:
            op = await ws.subscribe("query { viewer { kind } }", {})
            assert (await ws.next_message())["id"] == op
            await ws.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
            # Counted as soon as it runs, not when it ends.
            watching = await grown(http, before, requests, operation="sessionEvents")
        finally:
            await ws.close()
        assert watching.value(requests, operation="viewer", kind="query") > before.value(
            requests, operation="viewer", kind="query"
        )
        assert watching.value(requests, kind="subscription", operation="sessionEvents") == (
            before.value(requests, kind="subscription", operation="sessionEvents") + 1
        )
        # Closing the connection ends the subscription without an error.
        after = await scrape(http)
        errors = "interviewlm_graphql_errors_total"
        assert after.value(errors, operation="sessionEvents") == before.value(
            errors, operation="sessionEvents"
        )


async def grown(
    http: httpx.AsyncClient, before: Scrape, name: str, timeout: float = 10, **labels: str
) -> Scrape:
    """The first scrape in which ``name{labels}`` is above its value in ``before``."""

    async def check() -> Scrape | None:
        now = await scrape(http)
        return now if now.value(name, **labels) > before.value(name, **labels) else None

    found: Scrape | None = await wait_until(check, timeout, what=f"{name} {labels} to grow")
    assert found is not None
    return found


async def test_a_sandbox_start_is_timed_and_counted_by_state(
    client: httpx.AsyncClient, account: Account
) -> None:
    api = Api(client)
    running = "interviewlm_sandboxes"
    before = await scrape(client)
    sandbox = await start(api, account)
    assert sandbox["state"] == "RUNNING"
    started = await scrape(client)
    count = "interviewlm_sandbox_start_duration_seconds_count"
    assert started.value(count, backend="local") - before.value(count, backend="local") == 1
    total = "interviewlm_sandbox_start_duration_seconds_sum"
    assert started.value(total) > before.value(total)
    assert started.value(running, state="running") == before.value(running, state="running") + 1
    assert started.value(running, state="starting") == 0
    (await api(TERMINATE, {"s": account["sessionId"]}, token=account["candidateToken"])).ok()
    ended = await scrape(client)
    assert ended.value(running, state="running") == before.value(running, state="running")


async def test_a_test_run_is_timed_by_outcome(client: httpx.AsyncClient, account: Account) -> None:
    api = Api(client)
    token = account["candidateToken"]
    await start(api, account)
    (await api(WRITE, {"s": account["sessionId"], "c": TWO_SUM}, token=token)).ok()
    name = "interviewlm_test_run_duration_seconds_count"
    before = await scrape(client)
    run_id = (await api(RUN_TESTS, {"s": account["sessionId"]}, token=token)).ok()["runTests"]["id"]
    after = await grown(client, before, name, timeout=60, outcome="passed")
    run = (await api(TEST_RUN, {"id": run_id}, token=token)).ok()["testRun"]
    assert (run["status"], run["failed"]) == ("FINISHED", 0), run
    assert after.value(name, outcome="passed") - before.value(name, outcome="passed") == 1
    for outcome in ("failed", "error", "compile_error"):
        assert after.value(name, outcome=outcome) == before.value(name, outcome=outcome)


async def test_an_agent_run_is_timed_by_outcome(
    claude_server: ServerProcess,  # noqa: F811 (the fixture imported above)
    account: Account,
) -> None:
    """The stand-in agent of tests.test_claude, on a real server: one succeeded run."""
    name = "interviewlm_agent_run_duration_seconds_count"
    async with httpx.AsyncClient(base_url=claude_server.url) as http:
        before = await scrape(http)
        client = Client(claude_server, account)
        await client.start()
        asked = await client(ASK, {"s": account["sessionId"], "p": "hello"})
        events = await transcript(claude_server, account, asked["data"]["askClaude"]["id"])
        assert events[-1]["claudeStatus"] == "SUCCEEDED", events[-1]
        after = await scrape(http)
    assert after.value(name, outcome="succeeded") == before.value(name, outcome="succeeded") + 1
    assert after.value(name, outcome="failed") == before.value(name, outcome="failed")


async def test_event_loop_lag_is_sampled(client: httpx.AsyncClient) -> None:
    name = "interviewlm_event_loop_lag_seconds_count"
    before = await scrape(client)
    await asyncio.sleep(0.6)  # the sampler wakes every 0.25 s
    after = await scrape(client)
    assert after.value(name) >= before.value(name) + 1
    # A loop blocked for 0.6 s: the sampler wakes at least 0.35 s late.
    bucket = "interviewlm_event_loop_lag_seconds_bucket"
    slow_before = after.value(name) - after.value(bucket, le="0.25")
    time.sleep(0.6)
    await asyncio.sleep(0.3)
    later = await scrape(client)
    assert later.value(name) - later.value(bucket, le="0.25") > slow_before


def test_metrics_can_be_turned_off(app: Starlette) -> None:
    sandboxes = app.state.services.sandboxes
    settings = make_settings("sqlite://:memory:", sandbox_root(), metrics=False)
    assert metrics_routes(settings, sandboxes) == []
    assert [r.path for r in metrics_routes(app.state.services.settings, sandboxes)] == ["/metrics"]


@pytest.fixture(scope="module")
def live_server_url(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    server = start_server(server_env, tmp_path_factory.mktemp("metrics-server"))
    yield server.url
    server.stop()


def test_a_metrics_token_guards_the_page(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, app: Starlette
) -> None:
    token = secrets.token_urlsafe(24)
    server = start_server(
        {**server_env, "METRICS_TOKEN": token}, tmp_path_factory.mktemp("metrics-token")
    )
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert httpx.get(f"{server.url}/metrics", headers=wrong).status_code == 401
        right = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {token}"})
        assert right.status_code == 200
        names = {f.name for f in text_string_to_metric_families(right.text)}
        assert "interviewlm_event_loop_lag_seconds" in names
    finally:
        server.stop()
