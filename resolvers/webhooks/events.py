"""What the events say: the ``data`` of session and test-run events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from models.session import InterviewSession, SessionStatus
from models.testrun import TestRun, TestRunStatus
from models.webhook import EndpointKind, WebhookEndpoint
from resolvers.webhooks.outbox import enqueue, queue
from resolvers.webhooks.signing import new_webhook_id

ENDED = {
    SessionStatus.COMPLETED: "session.completed",
    SessionStatus.CANCELLED: "session.cancelled",
    SessionStatus.EXPIRED: "session.expired",
}


def session_data(session: InterviewSession, status: SessionStatus | None = None) -> dict[str, Any]:
    return {
        "sessionId": str(session.id),
        "externalId": session.external_id,
        "status": (status or session.status).value,
        "questionId": str(session.question_id),
        "language": session.language,
    }


async def enqueue_session_event(
    session: InterviewSession,
    event_type: str,
    *,
    using_db: BaseDBAsyncClient,
    status: SessionStatus | None = None,
    **extra: Any,
) -> int:
    """Queue a session event (in the caller's transaction); ``status`` is the one the
    change set, when ``session`` was loaded before it. A completion carries the report."""
    data = session_data(session, status) | extra
    if event_type == "session.completed":
        data |= await _completion_report(session, using_db)
        await enqueue_completion_callbacks(session, using_db=using_db)
    return await enqueue(session.account_id, event_type, data, using_db=using_db)


async def enqueue_completion_callbacks(
    session: InterviewSession, *, using_db: BaseDBAsyncClient
) -> int:
    """Queue the session's callbacks (the ``url`` of the Greenhouse ``send_test`` that
    ordered it: an empty PATCH, see ``EndpointKind``) in the completing transaction."""
    endpoints = await WebhookEndpoint.filter(
        kind=EndpointKind.GREENHOUSE_CALLBACK, greenhouse_interview__session_id=session.id
    ).using_db(using_db)
    if endpoints:
        await queue(endpoints, new_webhook_id(), "session.completed", "", using_db)
    return len(endpoints)


async def enqueue_test_run_finished(
    session: InterviewSession, run: TestRun, *, using_db: BaseDBAsyncClient
) -> int:
    return await enqueue_session_event(
        session,
        "testrun.finished",
        using_db=using_db,
        testRun={
            "id": str(run.id),
            "status": run.status.value,
            "passed": run.passed,
            "failed": run.failed,
            "total": run.total,
            "durationMs": run.duration_ms,
        },
    )


async def provisional_report(
    session: InterviewSession, using_db: BaseDBAsyncClient
) -> dict[str, Any]:
    """``summary`` and ``reportUrl`` of a completed session without the report: the
    last finished test run's counts, no link. Used only until an app installs the
    session report (``gql.app`` does, with ``use_completion_report``): a process that
    never builds the app (a script enqueueing events) still sends something true.
    """
    run = (
        await TestRun.filter(session_id=session.id, status=TestRunStatus.FINISHED)
        .using_db(using_db)
        .order_by("-created_at")
        .first()
    )
    summary: dict[str, Any] = {"score": None, "passed": None, "total": None, "testRunId": None}
    if run is not None:
        summary = {
            "score": round(100 * run.passed / run.total) if run.total else None,
            "passed": run.passed,
            "total": run.total,
            "testRunId": str(run.id),
        }
    return {"summary": summary, "reportUrl": None}


CompletionReport = Callable[[InterviewSession, BaseDBAsyncClient], Awaitable[dict[str, Any]]]
_completion_report: CompletionReport = provisional_report


def use_completion_report(report: CompletionReport) -> None:
    """Have ``session.completed`` carry what ``report`` returns (``{"summary",
    "reportUrl"}``, computed in the completing transaction) instead of the provisional
    one: the app factory installs the session report here once it has its settings."""
    global _completion_report  # noqa: PLW0603 -- one per process, like the settings it binds
    _completion_report = report
