"""The server's Prometheus metrics: every series defined here, observed where it happens.

Served at ``/metrics`` in the Prometheus text format (``gql.http``). The names follow
Prometheus' conventions: an ``interviewlm_`` prefix, base units in the name (``_seconds``,
``_bytes``), ``_total`` on counters, and labels only of small, bounded sets (an
operation's name, an error code, a state, an outcome, an event kind), never ids.

The series live in one registry per process (``REGISTRY``), not prometheus_client's
global one, so that what a replica exposes is exactly this list.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models.claude import ClaudeRun
from models.testrun import TestRun, TestRunStatus

REGISTRY = CollectorRegistry(auto_describe=True)

# Latencies of the live path are milliseconds; runs and starts are seconds to minutes.
_LIVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# GraphQL over HTTP and WebSocket.
REQUESTS = Counter(
    "interviewlm_graphql_requests_total",
    "GraphQL operations executed, by operation name and kind",
    ["operation", "kind"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "interviewlm_graphql_errors_total",
    "GraphQL errors answered, by operation name and extensions.code",
    ["operation", "code"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "interviewlm_graphql_request_duration_seconds",
    "Time to execute a GraphQL query or mutation",
    ["kind"],
    buckets=_LIVE_BUCKETS,
    registry=REGISTRY,
)
WEBSOCKET_CONNECTIONS = Gauge(
    "interviewlm_websocket_connections",
    "Open graphql-transport-ws connections",
    registry=REGISTRY,
)
SUBSCRIPTIONS = Gauge(
    "interviewlm_subscriptions",
    "Active GraphQL subscriptions, by subscription field",
    ["field"],
    registry=REGISTRY,
)

# The event log and its fan-out.
EVENTS_APPENDED = Counter(
    "interviewlm_events_appended_total",
    "Session events committed to the log, by event kind",
    ["kind"],
    registry=REGISTRY,
)
FANOUT_LAG = Histogram(
    "interviewlm_fanout_lag_seconds",
    "From an event's commit time (its 'at') to its being sent to a watcher",
    buckets=_LIVE_BUCKETS,
    registry=REGISTRY,
)
BUS_CONNECTED = Gauge(
    "interviewlm_bus_connected",
    "1 while the event bus (Redis pub/sub, or the in-memory bus) is connected",
    registry=REGISTRY,
)
BUS_RECONNECTS = Counter(
    "interviewlm_bus_reconnects_total",
    "Times the event bus reconnected after losing Redis",
    registry=REGISTRY,
)

# Sandboxes, test runs, agent runs.
SANDBOXES = Gauge(
    "interviewlm_sandboxes",
    "Sandboxes this replica holds, by state",
    ["state"],
    registry=REGISTRY,
)
SANDBOX_START_DURATION = Histogram(
    "interviewlm_sandbox_start_duration_seconds",
    "From asking the backend for a sandbox to its being ready",
    ["backend"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
TEST_RUN_DURATION = Histogram(
    "interviewlm_test_run_duration_seconds",
    "Test runs from start to finish, by outcome",
    ["outcome"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
AGENT_RUN_DURATION = Histogram(
    "interviewlm_agent_run_duration_seconds",
    "Claude agent runs from start to finish, by outcome",
    ["outcome"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)

# The process.
EVENT_LOOP_LAG = Histogram(
    "interviewlm_event_loop_lag_seconds",
    "How late the event loop runs a callback scheduled for now (sampled)",
    buckets=_LIVE_BUCKETS,
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "interviewlm_rate_limited_total",
    "Operations refused with RATE_LIMITED, by rate-limit class",
    ["limit"],
    registry=REGISTRY,
)


def since(start: datetime | None) -> float:
    """Seconds from ``start`` (a stored, timezone-aware time) to now; 0 when unknown."""
    if start is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - start).total_seconds())


def test_run_outcome(run: TestRun) -> str:
    """A bounded outcome: passed, failed, compile_error or error."""
    if run.status is not TestRunStatus.FINISHED:
        return "error"
    if run.compile_error is not None:
        return "compile_error"
    return "passed" if run.failed == 0 and run.error is None else "failed"


def observe_test_run(run: TestRun) -> None:
    """A finished test run: from its claim (queued) to now, by outcome."""
    TEST_RUN_DURATION.labels(test_run_outcome(run)).observe(since(run.created_at))


def observe_agent_run(run: ClaudeRun) -> None:
    """A finished agent run: from its start to now, by status (succeeded, failed, cancelled)."""
    AGENT_RUN_DURATION.labels(run.status.value.lower()).observe(since(run.created_at))
