"""Usage per account over a window: ``usage(from, to)``, for the account's staff.

What counts, for the caller's account only, in ``[from, to)``:

- **Sessions created**: sessions whose ``created_at`` is in the window.
- **Sandboxes**: ``started`` counts sandboxes created in the window; ``seconds`` is
  each sandbox's life (created → ended) clipped to the window and summed, so a sandbox
  that spans midnight is split between two daily windows and never counted twice. A
  sandbox still running counts up to now (to the request's time). A sandbox a lost
  replica held counts until the survivors or the reaper end it.
- **Test runs**: runs created in the window, by status, and their summed durations.
- **Agent runs**: Claude runs created in the window (a run is attributed to when it was
  asked, whole): turns (the agent's count), Messages API requests and tokens (metered
  by the server's proxy), and their cost at the configured prices -- computed as the
  session report computes it (``resolvers.report.Pricing``).

Four aggregate queries whatever the number of sessions: the sandbox seconds are
summed by the database (SQL per dialect: interval arithmetic is not portable), the
rest through the ORM. A window is at most ``MAX_SPAN`` long and ``to`` is not before
``from`` (BAD_USER_INPUT); candidates get FORBIDDEN, as for every staff-only field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Subquery
from tortoise.functions import Count, Sum

from models.claude import ClaudeRun
from models.sandbox import SandboxRecord
from models.session import InterviewSession
from models.testrun import TestRun, TestRunStatus
from resolvers.auth import Principal
from resolvers.errors import BadUserInput
from resolvers.report import AgentUsage, Pricing, agent_usage

MAX_SPAN = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class SandboxUsage:
    started: int
    seconds: float


@dataclass(frozen=True, slots=True)
class TestRunUsage:
    __test__ = False  # not a pytest class

    by_status: dict[TestRunStatus, int]
    duration_seconds: float

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True, slots=True)
class AccountUsage:
    start: datetime
    end: datetime
    sessions_created: int
    sandboxes: SandboxUsage
    test_runs: TestRunUsage
    agent: AgentUsage


def _utc(value: datetime) -> datetime:
    """A window bound without an offset is UTC (the API's times are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def account_usage(
    principal: Principal,
    start: datetime,
    end: datetime,
    *,
    pricing: Pricing,
    now: datetime | None = None,
) -> AccountUsage:
    principal.require_staff()
    start, end = _utc(start), _utc(end)
    if end < start:
        raise BadUserInput("to", "must not be before `from`")
    if end - start > MAX_SPAN:
        raise BadUserInput("to", f"the window is at most {MAX_SPAN.days} days")
    now = _utc(now or datetime.now(UTC))
    account_id = principal.account_id
    return AccountUsage(
        start=start,
        end=end,
        sessions_created=await InterviewSession.filter(
            account_id=account_id, created_at__gte=start, created_at__lt=end
        ).count(),
        sandboxes=await _sandboxes(account_id, start, end, now),
        test_runs=await _test_runs(account_id, start, end),
        agent=await _agent(account_id, start, end, pricing),
    )


# Sandboxes overlapping the window; each one's life clipped to it. Parameters:
# 1 from, 2 to, 3 now (the end of a sandbox still running), 4 the account.
_SANDBOX_SQL = {
    "postgres": """
        SELECT
            COUNT(*) FILTER (WHERE created_at >= $1) AS started,
            COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM
                LEAST(COALESCE(ended_at, $3), $2) - GREATEST(created_at, $1)
            )::float8)), 0)::float8 AS seconds
        FROM sandbox
        WHERE account_id = $4 AND created_at < $2 AND (ended_at IS NULL OR ended_at > $1)
    """,
    # SQLite keeps times as text: julianday() reads them (any offset) as days.
    "sqlite": """
        SELECT
            COALESCE(SUM(julianday(created_at) >= julianday(?1)), 0) AS started,
            COALESCE(SUM(MAX(0.0, (
                MIN(julianday(COALESCE(ended_at, ?3)), julianday(?2))
                - MAX(julianday(created_at), julianday(?1))
            ) * 86400.0)), 0.0) AS seconds
        FROM sandbox
        WHERE account_id = ?4 AND julianday(created_at) < julianday(?2)
            AND (ended_at IS NULL OR julianday(ended_at) > julianday(?1))
    """,
}


async def _sandboxes(
    account_id: uuid.UUID, start: datetime, end: datetime, now: datetime
) -> SandboxUsage:
    db = SandboxRecord._meta.db
    dialect = str(db.capabilities.dialect)
    params: list[object]
    if dialect == "sqlite":
        params = [*(t.isoformat(sep=" ") for t in (start, end, now)), str(account_id)]
    else:
        params = [start, end, now, account_id]
    rows = await db.execute_query_dict(_SANDBOX_SQL[dialect], params)
    row = rows[0] if rows else {}
    return SandboxUsage(
        started=int(row.get("started") or 0),
        seconds=round(float(row.get("seconds") or 0.0), 3),
    )


def _sessions_of(account_id: uuid.UUID) -> Subquery:
    """The account's sessions as a subquery: filtering through the relation instead
    (``session__account_id``) makes Tortoise group an aggregate by every column."""
    return Subquery(InterviewSession.filter(account_id=account_id).values("id"))


async def _test_runs(account_id: uuid.UUID, start: datetime, end: datetime) -> TestRunUsage:
    rows = (
        await TestRun.filter(
            session_id__in=_sessions_of(account_id), created_at__gte=start, created_at__lt=end
        )
        .annotate(n=Count("id"), ms=Sum("duration_ms"))
        .group_by("status")
        .values("status", "n", "ms")
    )
    by_status = dict.fromkeys(TestRunStatus, 0)
    total_ms = 0
    for row in rows:
        by_status[TestRunStatus(row["status"])] = int(row["n"] or 0)
        total_ms += int(row["ms"] or 0)
    return TestRunUsage(by_status=by_status, duration_seconds=total_ms / 1000)


async def _agent(
    account_id: uuid.UUID, start: datetime, end: datetime, pricing: Pricing
) -> AgentUsage:
    runs = ClaudeRun.filter(
        session_id__in=_sessions_of(account_id), created_at__gte=start, created_at__lt=end
    )
    return await agent_usage(runs, pricing)
