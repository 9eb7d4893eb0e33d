"""``usage(from, to)`` in GraphQL: an account's consumption over a window (resolvers.usage)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models.testrun import TestRunStatus
from resolvers import usage


@strawberry.type(description="Sandboxes of the account in the window.")
class SandboxUsage:
    started: int = strawberry.field(description="Sandboxes started in the window.")
    seconds: float = strawberry.field(
        description="Sandbox lifetimes clipped to the window, summed; running ones up to now."
    )


@strawberry.type
class TestRunStatusCount:
    __test__ = False  # not a pytest class

    status: TestRunStatus
    count: int


@strawberry.type(description="Test runs started in the window.")
class TestRunUsage:
    __test__ = False  # not a pytest class

    total: int
    by_status: list[TestRunStatusCount] = strawberry.field(description="Every status, zeros too.")
    duration_seconds: float = strawberry.field(description="Summed durations of ended runs.")

    @classmethod
    def of(cls, runs: usage.TestRunUsage) -> TestRunUsage:
        return cls(
            total=runs.total,
            by_status=[TestRunStatusCount(status=s, count=n) for s, n in runs.by_status.items()],
            duration_seconds=runs.duration_seconds,
        )


@strawberry.type(description="Claude agent runs asked in the window (each counted whole).")
class AgentRunUsage:
    runs: int
    turns: int = strawberry.field(description="Turns as the agent counted them.")
    api_requests: int = strawberry.field(description="Messages API requests, metered by the proxy.")
    input_tokens: int = strawberry.field(
        description="Metered by the proxy; cache reads and writes included."
    )
    output_tokens: int = strawberry.field(description="Metered by the proxy.")
    cost_usd: float = strawberry.field(
        description="The metered tokens at the server's configured prices"
        " (CLAUDE_INPUT_USD_PER_MTOK, CLAUDE_OUTPUT_USD_PER_MTOK), as in session reports."
    )


@strawberry.type(description="What the caller's account used in [from, to).")
class Usage:
    from_: datetime = strawberry.field(name="from")
    to: datetime
    sessions_created: int
    sandboxes: SandboxUsage
    test_runs: TestRunUsage
    agent_runs: AgentRunUsage

    @classmethod
    def of(cls, used: usage.AccountUsage) -> Usage:
        agent = used.agent
        return cls(
            from_=used.start,
            to=used.end,
            sessions_created=used.sessions_created,
            sandboxes=SandboxUsage(started=used.sandboxes.started, seconds=used.sandboxes.seconds),
            test_runs=TestRunUsage.of(used.test_runs),
            agent_runs=AgentRunUsage(
                runs=agent.runs,
                turns=agent.turns,
                api_requests=agent.api_requests,
                input_tokens=agent.input_tokens,
                output_tokens=agent.output_tokens,
                cost_usd=agent.cost_usd,
            ),
        )
