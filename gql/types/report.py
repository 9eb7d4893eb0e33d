"""The result of a session in GraphQL: ``InterviewSession.report``, ``revokeReportLinks``."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import strawberry

from gql.context import Info, principal_of
from gql.settings import Settings
from gql.testrun_ops import TestRun
from gql.types.account import User
from gql.types.scorecard import Scorecard  # noqa: F401 - defines the Recommendation enum
from models.scorecard import Recommendation
from resolvers import report as reports
from resolvers.report_links import ReportLinks, revoke_links
from resolvers.scorecards import ScorecardView


def report_config(settings: Settings) -> reports.ReportConfig:
    """The report's links and prices, from the server's settings."""
    return reports.ReportConfig(
        links=ReportLinks(
            public_url=settings.public_url,
            secret=settings.report_link_secret,
            ttl=timedelta(seconds=settings.report_link_ttl_s),
        ),
        pricing=reports.Pricing(
            input_usd_per_mtok=settings.claude_input_usd_per_mtok,
            output_usd_per_mtok=settings.claude_output_usd_per_mtok,
        ),
    )


@strawberry.type(description="Cases of the final test run: how many passed, of how many.")
class CaseTally:
    passed: int
    total: int

    @classmethod
    def of(cls, tally: reports.CaseTally) -> CaseTally:
        return cls(passed=tally.passed, total=tally.total)


@strawberry.type(description="The Claude agent over the whole session.")
class AgentUsage:
    runs: int
    turns: int = strawberry.field(description="Turns as the agent counted them.")
    api_requests: int = strawberry.field(description="Messages API requests, metered by the proxy.")
    input_tokens: int = strawberry.field(
        description="Metered by the proxy; cache reads and writes included."
    )
    output_tokens: int = strawberry.field(description="Metered by the proxy.")
    cost_usd: float = strawberry.field(
        description="The metered tokens at the server's configured prices"
        " (CLAUDE_INPUT_USD_PER_MTOK, CLAUDE_OUTPUT_USD_PER_MTOK): an upper bound, as"
        " cached input counts at the full input price."
    )

    @classmethod
    def of(cls, usage: reports.AgentUsage) -> AgentUsage:
        return cls(
            runs=usage.runs,
            turns=usage.turns,
            api_requests=usage.api_requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
        )


@strawberry.type(description="What happened in the session, counted from its recording.")
class SessionActivity:
    commands: int = strawberry.field(description="`runCommand` calls.")
    file_changes: int = strawberry.field(description="Files written or deleted, by any source.")
    test_runs: int = strawberry.field(description="Test runs, in any state and language.")

    @classmethod
    def of(cls, activity: reports.Activity) -> SessionActivity:
        return cls(
            commands=activity.commands,
            file_changes=activity.file_changes,
            test_runs=activity.test_runs,
        )


@strawberry.type(description="One interviewer's scorecard recommendation.")
class ScorecardRecommendation:
    interviewer: User
    recommendation: Recommendation
    submitted_at: datetime = strawberry.field(description="When it was last submitted.")

    @classmethod
    def of(cls, card: ScorecardView) -> ScorecardRecommendation:
        return cls(
            interviewer=User.of(card.author),
            recommendation=card.recommendation,
            submitted_at=card.updated_at,
        )


@strawberry.type(description="The session's workspace and recording, exported to S3.")
class WorkspaceExport:
    exported: bool = strawberry.field(description="False: every try failed (see reason).")
    at: datetime
    location: str | None = strawberry.field(description="s3://bucket/<prefix>/<account>/<session>/")
    files: int | None
    bytes: int | None = strawberry.field(description="Workspace files and recording.jsonl.")
    skipped: int | None = strawberry.field(
        description="Files the recording has no content of (over the size limit, budget)."
    )
    duration_ms: int | None
    reason: str | None

    @classmethod
    def of(cls, status: reports.ExportStatus) -> WorkspaceExport:
        return cls(
            exported=status.exported,
            at=status.at,
            location=status.location,
            files=status.files,
            bytes=status.bytes,
            skipped=status.skipped,
            duration_ms=status.duration_ms,
            reason=status.reason,
        )


@strawberry.type(
    description="The result of a session (staff only). Final test run: the newest"
    " FINISHED run in the session's language; runs that ended in ERROR judged nothing."
)
class SessionReport:
    score: int | None = strawberry.field(
        description="0-100: floor(100 * passed / total) over every case (visible and"
        " hidden) of the final test run; null before the first finished run."
    )
    visible: CaseTally
    hidden: CaseTally
    final_test_run: TestRun | None
    duration_seconds: int | None = strawberry.field(
        description="From the start of the session to its end (to now while active);"
        " null before it started."
    )
    agent: AgentUsage
    activity: SessionActivity
    recommendations: list[ScorecardRecommendation] = strawberry.field(
        description="The interviewers' scorecards' recommendations, oldest first."
    )
    session_id: strawberry.Private[str]

    @strawberry.field(
        description="The server-rendered report: opens without an API token, expires"
        " (REPORT_LINK_TTL_SECONDS), revocable with `revokeReportLinks`. The same URL is"
        " handed out again while it has at least half its lifetime left."
    )
    async def report_url(self, info: Info) -> str:
        # Reached only through resolve_report, which checked the caller.
        links = report_config(info.context.settings).links
        return await links.url_for(uuid.UUID(self.session_id))

    @strawberry.field(
        description="The export to S3 after the session ended (S3_BUCKET): null while there"
        " is none (no bucket, the session open, the export still running)."
    )
    async def export(self) -> WorkspaceExport | None:
        status = await reports.export_status(uuid.UUID(self.session_id))
        return WorkspaceExport.of(status) if status is not None else None

    @classmethod
    def of(cls, report: reports.SessionReport) -> SessionReport:
        return cls(
            score=report.score,
            visible=CaseTally.of(report.visible),
            hidden=CaseTally.of(report.hidden),
            final_test_run=TestRun.of(report.final_run) if report.final_run else None,
            duration_seconds=report.duration_s,
            agent=AgentUsage.of(report.agent),
            activity=SessionActivity.of(report.activity),
            recommendations=[ScorecardRecommendation.of(card) for card in report.scorecards],
            session_id=str(report.session.id),
        )


async def resolve_report(info: Info, session_id: str) -> SessionReport:
    """``InterviewSession.report``: FORBIDDEN for candidates."""
    report = await reports.session_report(
        await principal_of(info), session_id, pricing=report_config(info.context.settings).pricing
    )
    return SessionReport.of(report)


@strawberry.type
class ReportMutation:
    @strawberry.mutation(
        description="Revoke the session's report links (staff): their URLs stop working"
        " at once; the next `reportUrl` is a new link. Returns how many were live."
    )
    async def revoke_report_links(self, info: Info, session_id: strawberry.ID) -> int:
        return await revoke_links(await principal_of(info), session_id)
