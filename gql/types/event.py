"""Session events in GraphQL: each typed payload (resolvers.event_kinds) built into its type
(gql.types.session_events, gql.types.claude_events), pages and batches of them."""

from __future__ import annotations

from typing import cast

import strawberry
from strawberry.scalars import JSON

from gql.types.claude_events import CLAUDE_EVENT_TYPES
from gql.types.event_base import BUILDERS, SessionEvent, meta, register
from gql.types.scorecard import ScorecardSubmittedEvent
from gql.types.session_events import (
    CommandEvent,
    CommandOutputEvent,
    CommandOutputTruncatedEvent,
    FileEvent,
    GenericSessionEvent,
    NoteEvent,
    SandboxEvent,
    SessionLifecycleEvent,
    StorageBudgetEvent,
    TerminalEvent,
    TerminalOutputEvent,
    TerminalOutputTruncatedEvent,
    TestCaseEvent,
    TestRunEvent,
)
from resolvers import event_kinds as ek
from resolvers.events import EventRecord

# The types most callers want come from here, with the builders that make them.
__all__ = [
    "EVENT_TYPES",
    "GenericSessionEvent",
    "NoteEvent",
    "Recording",
    "SessionEvent",
    "SessionEventBatch",
    "event_of",
]


def _truncated(r: EventRecord, p: ek.OutputTruncated) -> SessionEvent:
    if p.command_id is not None:
        return CommandOutputTruncatedEvent(
            **meta(r), command_id=strawberry.ID(p.command_id), limit_bytes=p.limit_bytes
        )
    if p.terminal_id is not None:
        return TerminalOutputTruncatedEvent(
            **meta(r), terminal_id=strawberry.ID(p.terminal_id), limit_bytes=p.limit_bytes
        )
    return GenericSessionEvent(**meta(r), payload=cast(JSON, p.to_json()))


def _session(
    r: EventRecord,
    p: ek.SessionCreated | ek.SessionStarted | ek.SessionEnded | ek.SessionExpired,
) -> SessionEvent:
    return SessionLifecycleEvent(**meta(r), status=p.status)


def _sandbox_ended(r: EventRecord, p: ek.SandboxTerminated | ek.SandboxFailed) -> SessionEvent:
    return SandboxEvent(
        **meta(r),
        sandbox_id=strawberry.ID(p.sandbox_id),
        backend=None,
        reason=p.reason,
        restored_files=None,
    )


def _file(r: EventRecord, p: ek.FileWritten | ek.FileDeleted | ek.FileSkipped) -> SessionEvent:
    return FileEvent(
        **meta(r),
        path=p.path,
        size=None if isinstance(p, ek.FileDeleted) else p.size,
        sha256=None if isinstance(p, ek.FileDeleted) else p.sha256,
        source=p.source,
        reason=p.reason if isinstance(p, ek.FileSkipped) else None,
    )


def _command(
    r: EventRecord,
    p: ek.CommandStarted | ek.CommandExited | ek.CommandTruncated | ek.CommandFailed,
) -> SessionEvent:
    started = p if isinstance(p, ek.CommandStarted) else None
    exited = p if isinstance(p, ek.CommandExited) else None
    return CommandEvent(
        **meta(r),
        command_id=strawberry.ID(p.command_id),
        command=started.command if started else None,
        exit_code=exited.exit_code if exited else None,
        signal=exited.signal if exited else None,
        timed_out=exited.timed_out if exited else None,
        duration_ms=exited.duration_ms if exited else None,
        truncated=exited.truncated if exited else None,
        error=p.error if isinstance(p, ek.CommandFailed) else None,
    )


def _terminal(
    r: EventRecord,
    p: ek.TerminalOpened | ek.TerminalInput | ek.TerminalResized | ek.TerminalClosed,
) -> SessionEvent:
    sized = p if isinstance(p, ek.TerminalOpened | ek.TerminalResized) else None
    return TerminalEvent(
        **meta(r),
        terminal_id=strawberry.ID(p.terminal_id),
        input=p.data if isinstance(p, ek.TerminalInput) else None,
        cols=sized.cols if sized else None,
        rows=sized.rows if sized else None,
        exit_code=p.exit_code if isinstance(p, ek.TerminalClosed) else None,
        reason=p.reason if isinstance(p, ek.TerminalClosed) else None,
    )


def _testrun(r: EventRecord, p: ek.TestRunStarted | ek.TestRunFinished) -> SessionEvent:
    started = p if isinstance(p, ek.TestRunStarted) else None
    finished = p if isinstance(p, ek.TestRunFinished) else None
    return TestRunEvent(
        **meta(r),
        run_id=strawberry.ID(p.run_id),
        run_status=finished.status if finished else None,
        language=started.language if started else None,
        total=p.total,
        passed_count=finished.passed if finished else None,
        failed_count=finished.failed if finished else None,
        duration_ms=finished.duration_ms if finished else None,
        compile_error=finished.compile_error if finished else None,
        error=finished.error if finished else None,
        files=cast(JSON, started.files) if started else None,
    )


register(ek.SessionCreated, _session)
register(ek.SessionStarted, _session)
register(ek.SessionEnded, _session)
register(ek.SessionExpired, _session)
register(
    ek.SandboxStarted,
    lambda r, p: SandboxEvent(
        **meta(r),
        sandbox_id=strawberry.ID(p.sandbox_id),
        backend=p.backend,
        reason=None,
        restored_files=p.restored_files,
    ),
)
register(ek.SandboxTerminated, _sandbox_ended)
register(ek.SandboxFailed, _sandbox_ended)
register(ek.FileWritten, _file)
register(ek.FileDeleted, _file)
register(ek.FileSkipped, _file)
register(
    ek.StorageBudgetReached,
    lambda r, p: StorageBudgetEvent(
        **meta(r), limit_bytes=p.limit_bytes, used_bytes=p.used_bytes, path=p.path
    ),
)
register(ek.OutputTruncated, _truncated)
register(ek.CommandStarted, _command)
register(ek.CommandExited, _command)
register(ek.CommandTruncated, _command)
register(ek.CommandFailed, _command)
register(
    ek.CommandOutput,
    lambda r, p: CommandOutputEvent(
        **meta(r), command_id=strawberry.ID(p.command_id), stream=p.stream, data=p.data
    ),
)
register(
    ek.TerminalOutput,
    lambda r, p: TerminalOutputEvent(
        **meta(r), terminal_id=strawberry.ID(p.terminal_id), data=p.data
    ),
)
register(ek.TerminalOpened, _terminal)
register(ek.TerminalInput, _terminal)
register(ek.TerminalResized, _terminal)
register(ek.TerminalClosed, _terminal)
register(ek.TestRunStarted, _testrun)
register(ek.TestRunFinished, _testrun)
register(
    ek.TestRunCase,
    lambda r, p: TestCaseEvent(
        **meta(r),
        run_id=strawberry.ID(p.run_id),
        index=p.index,
        hidden=p.hidden,
        passed=p.passed,
        name=p.name,
        verdict=p.verdict,
        duration_ms=p.duration_ms,
        error=p.error,
    ),
)
register(ek.NoteAdded, lambda r, p: NoteEvent(**meta(r), text=p.text, author=p.author))


@strawberry.type
class WorkspaceSyncEvent(SessionEvent):
    """``workspace.imported`` / ``.importFailed`` (the question's S3 starter prefix) and
    ``workspace.exported`` / ``.exportFailed`` (the ended session to S3). Staff only."""

    location: str | None = strawberry.field(description="s3://bucket/key-prefix")
    files: int | None
    bytes: int | None
    skipped: int | None = strawberry.field(description="Objects or files not copied.")
    duration_ms: int | None
    reason: str | None = strawberry.field(description="Failed: why (after every try).")


def _s3(
    r: EventRecord,
    p: ek.WorkspaceImported
    | ek.WorkspaceImportFailed
    | ek.WorkspaceExported
    | ek.WorkspaceExportFailed,
) -> SessionEvent:
    done = p if isinstance(p, ek.WorkspaceImported | ek.WorkspaceExported) else None
    failed = p if isinstance(p, ek.WorkspaceImportFailed | ek.WorkspaceExportFailed) else None
    return WorkspaceSyncEvent(
        **meta(r),
        location=p.location,
        files=done.files if done else None,
        bytes=done.bytes if done else None,
        skipped=done.skipped if done else None,
        duration_ms=done.duration_ms if done else None,
        reason=failed.reason if failed else None,
    )


register(ek.WorkspaceImported, _s3)
register(ek.WorkspaceImportFailed, _s3)
register(ek.WorkspaceExported, _s3)
register(ek.WorkspaceExportFailed, _s3)


def event_of(record: EventRecord) -> SessionEvent:
    builder = BUILDERS.get(type(record.payload))
    if builder is not None:
        return builder(record, record.payload)
    return GenericSessionEvent(**meta(record), payload=cast(JSON, record.payload.to_json()))


@strawberry.type
class Recording:
    session_id: strawberry.ID
    events: list[SessionEvent]
    last_seq: int = strawberry.field(description="Seq of the newest event in the session.")
    has_more: bool = strawberry.field(description="More events follow the last one returned.")


@strawberry.type
class SessionEventBatch:
    """Events delivered together, in seq order (a burst of output arrives as one batch)."""

    session_id: strawberry.ID
    events: list[SessionEvent]
    last_seq: int = strawberry.field(description="Seq of the last event here: resume after it.")


EVENT_TYPES: list[type] = [
    SessionLifecycleEvent,
    SandboxEvent,
    FileEvent,
    CommandEvent,
    CommandOutputEvent,
    TerminalOutputEvent,
    TerminalEvent,
    TestRunEvent,
    TestCaseEvent,
    *CLAUDE_EVENT_TYPES,
    NoteEvent,
    ScorecardSubmittedEvent,
    CommandOutputTruncatedEvent,
    TerminalOutputTruncatedEvent,
    StorageBudgetEvent,
    WorkspaceSyncEvent,
    GenericSessionEvent,
]
