"""Session events in GraphQL: the ``SessionEvent`` interface, one type per kind of event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from gql.types.claude_events import CLAUDE_BUILDERS, CLAUDE_EVENT_TYPES
from gql.types.event_base import SessionEvent, meta
from models.session import SessionStatus
from models.testrun import TestRunStatus, Verdict
from resolvers.events import EventRecord

strawberry.enum(TestRunStatus, name="TestRunStatus")
strawberry.enum(Verdict, name="Verdict")


@strawberry.type
class SessionLifecycleEvent(SessionEvent):
    """``session.created`` / ``session.started`` / ``session.ended``."""

    status: SessionStatus


@strawberry.type
class SandboxEvent(SessionEvent):
    """``sandbox.started`` / ``sandbox.terminated`` / ``sandbox.error``."""

    sandbox_id: strawberry.ID
    backend: str | None
    reason: str | None
    restored_files: int | None


@strawberry.type
class FileEvent(SessionEvent):
    """``file.written`` / ``file.deleted`` / ``file.skipped`` (not stored: see ``reason``)."""

    path: str
    size: int | None
    sha256: str | None
    source: str | None = strawberry.field(description="api, starter, sandbox or agent.")
    reason: str | None = strawberry.field(
        description="file.skipped: why the content is not in the recording (over the file "
        "size limit, the session's storage budget used up, unreadable)."
    )


@strawberry.type
class CommandEvent(SessionEvent):
    """``command.started`` / ``command.exited`` / ``command.truncated`` / ``command.failed``."""

    command_id: strawberry.ID
    command: str | None
    exit_code: int | None
    signal: int | None
    timed_out: bool | None
    duration_ms: int | None
    truncated: bool | None
    error: str | None


@strawberry.type
class CommandOutputEvent(SessionEvent):
    """``terminal.output`` of a ``runCommand``: a coalesced chunk of stdout or stderr."""

    command_id: strawberry.ID
    stream: str = strawberry.field(description="stdout or stderr.")
    data: str


@strawberry.type
class TerminalOutputEvent(SessionEvent):
    """``terminal.output`` of an interactive terminal: a coalesced chunk of its PTY output."""

    terminal_id: strawberry.ID
    data: str


@strawberry.type
class TerminalEvent(SessionEvent):
    """``terminal.opened`` / ``terminal.input`` / ``terminal.resized`` / ``terminal.closed``."""

    terminal_id: strawberry.ID
    input: str | None = strawberry.field(description="For terminal.input: what was typed.")
    cols: int | None
    rows: int | None
    exit_code: int | None


@strawberry.type
class TestRunEvent(SessionEvent):
    """``testrun.started`` (with the hashes of the files tested) / ``testrun.finished``."""

    run_id: strawberry.ID
    run_status: TestRunStatus | None
    language: str | None
    total: int | None
    passed_count: int | None
    failed_count: int | None
    duration_ms: int | None
    compile_error: str | None
    error: str | None
    files: JSON | None = strawberry.field(description="{path: sha256}: the code snapshot tested.")


@strawberry.type
class TestCaseEvent(SessionEvent):
    """``testrun.case``: one case's result. Of a hidden case, candidates see only ``passed``."""

    run_id: strawberry.ID
    index: int
    hidden: bool
    passed: bool
    name: str | None
    verdict: Verdict | None
    duration_ms: int | None
    error: str | None


@strawberry.type
class NoteEvent(SessionEvent):
    """``note.added``: an interviewer's note (never shown to the candidate)."""

    text: str
    author: str | None


@strawberry.type
class GenericSessionEvent(SessionEvent):
    """An event kind without a dedicated type; its payload as JSON."""

    payload: JSON


_BUILDERS: dict[str, Callable[[EventRecord, dict[str, Any]], SessionEvent]] = {
    "session": lambda r, p: SessionLifecycleEvent(**meta(r), status=SessionStatus(p["status"])),
    "sandbox": lambda r, p: SandboxEvent(
        **meta(r),
        sandbox_id=strawberry.ID(p["sandboxId"]),
        backend=p.get("backend"),
        reason=p.get("reason"),
        restored_files=p.get("restoredFiles"),
    ),
    "file": lambda r, p: FileEvent(
        **meta(r),
        path=p["path"],
        size=p.get("size"),
        sha256=p.get("sha256"),
        source=p.get("source"),
        reason=p.get("reason"),
    ),
    "command": lambda r, p: CommandEvent(
        **meta(r),
        command_id=strawberry.ID(p["commandId"]),
        command=p.get("command"),
        exit_code=p.get("exitCode"),
        signal=p.get("signal"),
        timed_out=p.get("timedOut"),
        duration_ms=p.get("durationMs"),
        truncated=p.get("truncated"),
        error=p.get("error"),
    ),
    "terminal.output": lambda r, p: (
        CommandOutputEvent(
            **meta(r),
            command_id=strawberry.ID(p["commandId"]),
            stream=p["stream"],
            data=p["data"],
        )
        if p.get("commandId")
        else TerminalOutputEvent(
            **meta(r),
            terminal_id=strawberry.ID(p["terminalId"]),
            data=p["data"],
        )
    ),
    "terminal": lambda r, p: TerminalEvent(
        **meta(r),
        terminal_id=strawberry.ID(p["terminalId"]),
        input=p.get("data"),
        cols=p.get("cols"),
        rows=p.get("rows"),
        exit_code=p.get("exitCode"),
    ),
    "testrun.case": lambda r, p: TestCaseEvent(
        **meta(r),
        run_id=strawberry.ID(p["runId"]),
        index=p["index"],
        hidden=bool(p.get("hidden")),
        passed=p["passed"],
        name=p.get("name"),
        verdict=Verdict(p["verdict"]) if p.get("verdict") else None,
        duration_ms=p.get("durationMs"),
        error=p.get("error"),
    ),
    "testrun": lambda r, p: TestRunEvent(
        **meta(r),
        run_id=strawberry.ID(p["runId"]),
        run_status=TestRunStatus(p["status"]) if p.get("status") else None,
        language=p.get("language"),
        total=p.get("total"),
        passed_count=p.get("passed"),
        failed_count=p.get("failed"),
        duration_ms=p.get("durationMs"),
        compile_error=p.get("compileError"),
        error=p.get("error"),
        files=p.get("files"),
    ),
    "note": lambda r, p: NoteEvent(**meta(r), text=p["text"], author=p.get("author")),
}


_BUILDERS.update(CLAUDE_BUILDERS)


def event_of(record: EventRecord) -> SessionEvent:
    builder = _BUILDERS.get(record.type) or _BUILDERS.get(record.type.split(".", 1)[0])
    if builder is not None:
        return builder(record, record.payload)
    return GenericSessionEvent(**meta(record), payload=cast(JSON, record.payload))


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
    GenericSessionEvent,
]
