"""The GraphQL types of session events (one per kind or family of kinds); how each is
built from its typed payload is ``gql.types.event``."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from gql.types.event_base import SessionEvent
from models.session import SessionStatus
from models.testrun import TestRunStatus, Verdict

strawberry.enum(TestRunStatus, name="TestRunStatus")
strawberry.enum(Verdict, name="Verdict")


@strawberry.type
class SessionLifecycleEvent(SessionEvent):
    """``session.created`` / ``session.started`` / ``session.ended`` / ``session.expired``."""

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
    """``command.output`` of a ``runCommand``: a coalesced chunk of stdout or stderr (stored
    before that kind existed as ``terminal.output`` with a ``commandId``: read as this)."""

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
    reason: str | None = strawberry.field(
        default=None,
        description="For terminal.closed without an exit: why (e.g. its server was lost).",
    )


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
class CommandOutputTruncatedEvent(SessionEvent):
    """``output.truncated`` by a command: the session's recorded-output cap was reached;
    later output is not stored (the command's own result still has it)."""

    command_id: strawberry.ID
    limit_bytes: int


@strawberry.type
class TerminalOutputTruncatedEvent(SessionEvent):
    """``output.truncated`` by a terminal: the session's recorded-output cap was reached;
    later output and input are not stored."""

    terminal_id: strawberry.ID
    limit_bytes: int


@strawberry.type
class StorageBudgetEvent(SessionEvent):
    """``storage.budgetReached``: file contents past the session's storage budget are not
    stored (each such file gets a ``file.skipped``)."""

    limit_bytes: int
    used_bytes: int | None
    path: str


@strawberry.type
class GenericSessionEvent(SessionEvent):
    """An event kind this server does not know (or a stored row that does not fit its
    kind); its payload as JSON."""

    payload: JSON
