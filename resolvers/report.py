"""The result of a session: ``InterviewSession.report``, its webhook summary.

- The **final test run** is the newest FINISHED run in the session's language. Runs
  that ended in ERROR (the sandbox failed, the server restarted) judged nothing and
  do not count; runs in another language of the question do not either. A FINISHED
  run that did not compile counts (every case failed).
- The **score** is ``100 * passed // total`` over every case of that run, visible and
  hidden alike (rounded down, so 100 means every case passed); null before the first
  finished run, or for a question without cases.
- **Duration**: from the session's start to its end (to now while it is active).
- **Agent usage** sums the session's Claude runs. Tokens and API requests are what
  the server's Anthropic proxy metered (the agent cannot understate them); turns are
  the agent's own count. The cost is those tokens at ``CLAUDE_INPUT_USD_PER_MTOK`` /
  ``CLAUDE_OUTPUT_USD_PER_MTOK``; cache reads and writes are metered as input tokens,
  so it is an upper bound.
- **Activity** counts events of the recording in one aggregate query: commands are
  ``runCommand`` calls (what is typed in an interactive terminal is keystrokes, not
  parsed into commands), file changes are ``file.written`` + ``file.deleted``.

The report is staff only: for a candidate it is FORBIDDEN (their own test runs, hidden
cases as pass/fail only, are theirs through ``testRuns``; scores, agent cost and the
interviewers' recommendations are the employer's).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Count, Sum
from tortoise.queryset import QuerySet

from models.claude import ClaudeRun
from models.event import Event
from models.question import TestCase
from models.session import InterviewSession
from models.testrun import TestCaseResult, TestRun, TestRunStatus, Verdict
from resolvers.auth import Principal
from resolvers.event_kinds import (
    CommandStarted,
    FileDeleted,
    FileWritten,
    WorkspaceExported,
    WorkspaceExportFailed,
    parse_stored,
)
from resolvers.report_links import ReportLinks
from resolvers.scorecards import ScorecardView, session_scorecards
from resolvers.sessions import as_of, get_session


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per million tokens, input and output."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        usd = input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok
        return round(usd / 1_000_000, 6)


@dataclass(frozen=True, slots=True)
class CaseTally:
    passed: int
    total: int


@dataclass(frozen=True, slots=True)
class AgentUsage:
    runs: int
    turns: int
    api_requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Activity:
    commands: int
    file_changes: int
    test_runs: int


@dataclass(frozen=True, slots=True)
class SessionReport:
    session: InterviewSession
    score: int | None
    visible: CaseTally
    hidden: CaseTally
    final_run: TestRun | None
    duration_s: int | None
    agent: AgentUsage
    activity: Activity
    scorecards: list[ScorecardView]
    """Oldest first; the report shows their recommendations, the page all of them."""

    def summary(self) -> dict[str, Any]:
        """The report as JSON (camelCase, as in GraphQL), without its URL."""
        return {
            "score": self.score,
            "visible": {"passed": self.visible.passed, "total": self.visible.total},
            "hidden": {"passed": self.hidden.passed, "total": self.hidden.total},
            "finalTestRunId": str(self.final_run.id) if self.final_run else None,
            "durationSeconds": self.duration_s,
            "agent": {
                "runs": self.agent.runs,
                "turns": self.agent.turns,
                "apiRequests": self.agent.api_requests,
                "inputTokens": self.agent.input_tokens,
                "outputTokens": self.agent.output_tokens,
                "costUsd": self.agent.cost_usd,
            },
            "activity": {
                "commands": self.activity.commands,
                "fileChanges": self.activity.file_changes,
                "testRuns": self.activity.test_runs,
            },
            "recommendations": [
                {
                    "interviewer": card.author.name,
                    "recommendation": card.recommendation.value,
                    "submittedAt": card.updated_at.isoformat(),
                }
                for card in self.scorecards
            ],
        }


async def session_report(
    principal: Principal, session_id: str, *, pricing: Pricing
) -> SessionReport:
    """``InterviewSession.report``: staff of the session's account only."""
    principal.require_staff()
    return await build_report(await get_session(principal, session_id), pricing=pricing)


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """What a report needs of the server's settings (built in gql from them)."""

    links: ReportLinks
    pricing: Pricing


async def report_payload(
    session: InterviewSession, *, config: ReportConfig, db: BaseDBAsyncClient | None = None
) -> dict[str, Any]:
    """``{"summary": ..., "reportUrl": ...}`` for a server-side caller that has established
    which session it speaks for (the ``session.completed`` webhook, Greenhouse's
    ``test_status``); ``db``: its transaction, if any. Mints or reuses a report link."""
    report = await build_report(as_of(session), pricing=config.pricing, db=db)
    url = await config.links.url_for(session.id, db=db)
    return {"summary": report.summary(), "reportUrl": url}


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """The newest outcome of the session's export to S3 (``resolvers.s3sync``)."""

    exported: bool
    at: datetime
    location: str | None
    files: int | None = None
    bytes: int | None = None
    skipped: int | None = None
    duration_ms: int | None = None
    reason: str | None = None


async def export_status(
    session_id: uuid.UUID, db: BaseDBAsyncClient | None = None
) -> ExportStatus | None:
    """None: no export yet (no bucket, still running, or the session is open)."""
    kinds = (WorkspaceExported.KIND, WorkspaceExportFailed.KIND)
    row = (
        await Event.filter(session_id=session_id, type__in=kinds)
        .using_db(db)
        .order_by("-seq")
        .first()
    )
    if row is None:
        return None
    payload = parse_stored(row.type, row.payload)
    if isinstance(payload, WorkspaceExported):
        return ExportStatus(
            exported=True,
            at=row.at,
            location=payload.location,
            files=payload.files,
            bytes=payload.bytes,
            skipped=payload.skipped,
            duration_ms=payload.duration_ms,
        )
    failed = payload if isinstance(payload, WorkspaceExportFailed) else None
    return ExportStatus(
        exported=False,
        at=row.at,
        location=failed.location if failed else None,
        reason=failed.reason if failed else "unreadable export event",
    )


async def final_test_run(
    session: InterviewSession, db: BaseDBAsyncClient | None = None
) -> TestRun | None:
    return (
        await TestRun.filter(
            session_id=session.id, language=session.language, status=TestRunStatus.FINISHED
        )
        .using_db(db)
        .order_by("-created_at", "-id")
        .first()
    )


async def build_report(
    session: InterviewSession, *, pricing: Pricing, db: BaseDBAsyncClient | None = None
) -> SessionReport:
    """The report of a session the caller has reached already."""
    final = await final_test_run(session, db)
    visible, hidden = await _tallies(session, final, db)
    total = visible.total + hidden.total
    score = None if final is None or total == 0 else 100 * (visible.passed + hidden.passed) // total
    return SessionReport(
        session=session,
        score=score,
        visible=visible,
        hidden=hidden,
        final_run=final,
        duration_s=_duration_s(session),
        agent=await _agent_usage(session.id, pricing, db),
        activity=await _activity(session.id, db),
        scorecards=await session_scorecards(session.id, db),
    )


async def _tallies(
    session: InterviewSession, run: TestRun | None, db: BaseDBAsyncClient | None
) -> tuple[CaseTally, CaseTally]:
    """Passed and total cases of the run, visible and hidden. Totals are the question's
    cases (a run stopped by its time limit may have no result for some: they failed)."""
    hidden_flags = (
        await TestCase.filter(question_id=session.question_id)
        .using_db(db)
        .values_list("hidden", flat=True)
    )
    passed = {False: 0, True: 0}
    if run is not None:
        for is_hidden in (
            await TestCaseResult.filter(run_id=run.id, verdict=Verdict.PASSED)
            .using_db(db)
            .values_list("hidden", flat=True)
        ):
            passed[bool(is_hidden)] += 1
    totals = {False: 0, True: 0}
    for is_hidden in hidden_flags:
        totals[bool(is_hidden)] += 1
    return CaseTally(passed[False], totals[False]), CaseTally(passed[True], totals[True])


def _duration_s(session: InterviewSession) -> int | None:
    if session.started_at is None:
        return None
    end = session.ended_at or datetime.now(UTC)
    return max(0, int((end - session.started_at).total_seconds()))


async def _agent_usage(
    session_id: uuid.UUID, pricing: Pricing, db: BaseDBAsyncClient | None
) -> AgentUsage:
    return await agent_usage(ClaudeRun.filter(session_id=session_id).using_db(db), pricing)


async def agent_usage(runs: QuerySet[ClaudeRun], pricing: Pricing) -> AgentUsage:
    """What ``runs`` (agent runs of a session, of an account's window...) used, summed in SQL."""
    rows = await runs.annotate(
        runs=Count("id"),
        turns=Sum("num_turns"),
        requests=Sum("api_requests"),
        inputs=Sum("input_tokens"),
        outputs=Sum("output_tokens"),
    ).values("runs", "turns", "requests", "inputs", "outputs")
    row = rows[0] if rows else {}
    inputs, outputs = int(row.get("inputs") or 0), int(row.get("outputs") or 0)
    return AgentUsage(
        runs=int(row.get("runs") or 0),
        turns=int(row.get("turns") or 0),
        api_requests=int(row.get("requests") or 0),
        input_tokens=inputs,
        output_tokens=outputs,
        cost_usd=pricing.cost(inputs, outputs),
    )


_COUNTED = (CommandStarted.KIND, FileWritten.KIND, FileDeleted.KIND)


async def _activity(session_id: uuid.UUID, db: BaseDBAsyncClient | None) -> Activity:
    counts: dict[str, int] = {
        kind: int(n)
        for kind, n in await Event.filter(session_id=session_id, type__in=_COUNTED)
        .using_db(db)
        .annotate(n=Count("id"))
        .group_by("type")
        .values_list("type", "n")
    }
    return Activity(
        commands=counts.get(CommandStarted.KIND, 0),
        file_changes=counts.get(FileWritten.KIND, 0) + counts.get(FileDeleted.KIND, 0),
        test_runs=await TestRun.filter(session_id=session_id).using_db(db).count(),
    )
