"""Every kind of session event and its typed payload: the one source of truth.

Emitters append these (``EventLog.append(session_id, CommandExited(...))``),
readers get them back from ``EventRecord.payload``, the GraphQL event types are
built from them (``gql.types.event``), and so will the webhook and report
features. The stored JSON is each payload's ``to_json()`` (camelCase keys, see
``resolvers.event_payload``), unchanged from before payloads were typed.

Command output has its own kind, ``command.output``; rows stored before it
existed say ``terminal.output`` with a ``commandId``, and ``parse_stored``
reads them as ``command.output``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from models.claude import ClaudeRunStatus
from models.scorecard import Recommendation
from models.session import SessionStatus
from models.testrun import TestRunStatus, Verdict
from resolvers.event_payload import KINDS, JsonDict, Payload, Unknown, kind, parse

__all__ = ["KINDS", "Payload", "Unknown", "parse_stored"]

# --- the session -----------------------------------------------------------


@kind("session.created")
@dataclass(frozen=True, slots=True)
class SessionCreated(Payload):
    status: SessionStatus
    language: str | None = None
    question_id: str | None = None


@kind("session.started")
@dataclass(frozen=True, slots=True)
class SessionStarted(Payload):
    status: SessionStatus


@kind("session.ended")
@dataclass(frozen=True, slots=True)
class SessionEnded(Payload):
    status: SessionStatus


@kind("session.expired")
@dataclass(frozen=True, slots=True)
class SessionExpired(Payload):
    status: SessionStatus = SessionStatus.EXPIRED


# --- the sandbox and its files ---------------------------------------------


@kind("sandbox.started")
@dataclass(frozen=True, slots=True)
class SandboxStarted(Payload):
    sandbox_id: str
    backend: str | None = None
    language: str | None = None
    restored_files: int | None = None


@kind("sandbox.terminated")
@dataclass(frozen=True, slots=True)
class SandboxTerminated(Payload):
    sandbox_id: str
    reason: str | None = None


@kind("sandbox.error")
@dataclass(frozen=True, slots=True)
class SandboxFailed(Payload):
    sandbox_id: str
    reason: str | None = None


@kind("file.written")
@dataclass(frozen=True, slots=True)
class FileWritten(Payload):
    path: str
    size: int | None = None
    sha256: str | None = None
    source: str | None = None


@kind("file.deleted")
@dataclass(frozen=True, slots=True)
class FileDeleted(Payload):
    path: str
    source: str | None = None


@kind("file.skipped")
@dataclass(frozen=True, slots=True)
class FileSkipped(Payload):
    """A file whose content is not in the recording; ``reason`` says why."""

    path: str
    size: int | None = None
    reason: str | None = None
    sha256: str | None = None
    source: str | None = None


@kind("storage.budgetReached")
@dataclass(frozen=True, slots=True)
class StorageBudgetReached(Payload):
    limit_bytes: int
    path: str
    """The file whose content first did not fit."""
    used_bytes: int | None = None


@kind("output.truncated")
@dataclass(frozen=True, slots=True)
class OutputTruncated(Payload):
    """The session's recorded-output cap was reached by a command or a terminal."""

    limit_bytes: int
    command_id: str | None = None
    terminal_id: str | None = None


# --- workspaces in S3 (resolvers.s3sync); staff only: they name bucket keys ----


@kind("workspace.imported")
@dataclass(frozen=True, slots=True)
class WorkspaceImported(Payload):
    """The question's S3 starter prefix was streamed into the first sandbox."""

    STAFF_ONLY = True
    files: int
    bytes: int
    skipped: int
    duration_ms: int
    location: str | None = None


@kind("workspace.importFailed")
@dataclass(frozen=True, slots=True)
class WorkspaceImportFailed(Payload):
    STAFF_ONLY = True
    reason: str
    location: str | None = None


@kind("workspace.exported")
@dataclass(frozen=True, slots=True)
class WorkspaceExported(Payload):
    """The ended session's recorded workspace and recording are in S3 at ``location``."""

    STAFF_ONLY = True
    files: int
    bytes: int
    skipped: int
    duration_ms: int
    location: str | None = None


@kind("workspace.exportFailed")
@dataclass(frozen=True, slots=True)
class WorkspaceExportFailed(Payload):
    """Every try failed; the recording in the database is whole (the export only reads it)."""

    STAFF_ONLY = True
    reason: str
    location: str | None = None
    attempts: int | None = None


# --- commands (runCommand) -------------------------------------------------


@kind("command.started")
@dataclass(frozen=True, slots=True)
class CommandStarted(Payload):
    command_id: str
    command: str | None = None
    timeout_seconds: int | None = None


@kind("command.output")
@dataclass(frozen=True, slots=True)
class CommandOutput(Payload):
    command_id: str
    stream: str
    data: str


@kind("command.exited")
@dataclass(frozen=True, slots=True)
class CommandExited(Payload):
    command_id: str
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool | None = None
    duration_ms: int | None = None
    truncated: bool | None = None


@kind("command.truncated")
@dataclass(frozen=True, slots=True)
class CommandTruncated(Payload):
    command_id: str
    limit_bytes: int | None = None


@kind("command.failed")
@dataclass(frozen=True, slots=True)
class CommandFailed(Payload):
    command_id: str
    error: str | None = None


# --- interactive terminals -------------------------------------------------


@kind("terminal.opened")
@dataclass(frozen=True, slots=True)
class TerminalOpened(Payload):
    terminal_id: str
    cols: int | None = None
    rows: int | None = None


@kind("terminal.output")
@dataclass(frozen=True, slots=True)
class TerminalOutput(Payload):
    terminal_id: str
    data: str


@kind("terminal.input")
@dataclass(frozen=True, slots=True)
class TerminalInput(Payload):
    terminal_id: str
    data: str


@kind("terminal.resized")
@dataclass(frozen=True, slots=True)
class TerminalResized(Payload):
    terminal_id: str
    cols: int | None = None
    rows: int | None = None


@kind("terminal.closed")
@dataclass(frozen=True, slots=True)
class TerminalClosed(Payload):
    terminal_id: str
    exit_code: int | None = None
    reason: str | None = None
    """Why it closed when its shell did not exit (e.g. its replica was lost)."""


# --- test runs -------------------------------------------------------------


@kind("testrun.started")
@dataclass(frozen=True, slots=True)
class TestRunStarted(Payload):
    __test__ = False
    run_id: str
    language: str | None = None
    total: int | None = None
    files: dict[str, str] | None = None
    """{path: sha256}: the code tested."""


@kind("testrun.case")
@dataclass(frozen=True, slots=True)
class TestRunCase(Payload):
    """One case's result. Of a hidden case a candidate sees only run, index and passed."""

    __test__ = False
    run_id: str
    index: int
    passed: bool
    hidden: bool = False
    name: str | None = None
    verdict: Verdict | None = None
    duration_ms: int | None = None
    error: str | None = None

    def for_candidate(self) -> Payload:
        if not self.hidden:
            return self
        return TestRunCase(run_id=self.run_id, index=self.index, passed=self.passed, hidden=True)

    def to_json(self) -> JsonDict:
        out = Payload.to_json(self)
        if self.hidden:
            # Kept for replicas still running the code that read it.
            out["public"] = {"runId": self.run_id, "index": self.index, "passed": self.passed}
        return out


@kind("testrun.finished")
@dataclass(frozen=True, slots=True)
class TestRunFinished(Payload):
    __test__ = False
    run_id: str
    status: TestRunStatus | None = None
    passed: int | None = None
    failed: int | None = None
    total: int | None = None
    duration_ms: int | None = None
    compile_error: str | None = None
    error: str | None = None


# --- interviewer notes -----------------------------------------------------


@kind("note.added")
@dataclass(frozen=True, slots=True)
class NoteAdded(Payload):
    """Never shown to the candidate."""

    STAFF_ONLY = True
    text: str
    author: str | None = None


# --- scorecards ------------------------------------------------------------


@kind("scorecard.submitted")
@dataclass(frozen=True, slots=True)
class ScorecardSubmitted(Payload):
    """An interviewer submitted (``replaced``: resubmitted) their scorecard. Never shown to
    the candidate. The scorecard itself is not copied here: it is read, as it stands now,
    through ``scorecards``."""

    STAFF_ONLY = True
    scorecard_id: str
    author: str | None = None
    recommendation: Recommendation | None = None
    replaced: bool | None = None


# --- Claude runs: start, finish, and the CLI's stream-json transcript -------
# Stored with the CLI's own snake_case names (only ``runId`` is camelCase).


@kind("claude.started", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeStarted(Payload):
    run_id: str
    prompt: str | None = None


@kind("claude.finished", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeFinished(Payload):
    run_id: str
    status: ClaudeRunStatus | None = None
    error: str | None = None
    cost_usd: float | None = None
    num_turns: int | None = None
    duration_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    api_requests: int | None = None


@kind("claude.init", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeInit(Payload):
    run_id: str
    conversation_id: str | None = None
    model: str | None = None
    tools: list[str] = dataclasses.field(default_factory=list)


@kind("claude.text", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeText(Payload):
    run_id: str
    text: str


@kind("claude.tool_use", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeToolUse(Payload):
    run_id: str
    name: str
    tool_use_id: str | None = None
    input: Any = None


@kind("claude.tool_result", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeToolResult(Payload):
    run_id: str
    content: str
    is_error: bool = False
    tool_use_id: str | None = None


@kind("claude.result", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeResult(Payload):
    run_id: str
    subtype: str
    is_error: bool = False
    result: str | None = None
    cost_usd: float | None = None
    duration_ms: int | None = None
    duration_api_ms: int | None = None
    num_turns: int | None = None
    conversation_id: str | None = None


@kind("claude.system", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeSystem(Payload):
    """A system line other than init (``api_retry``; ``stderr`` for what the agent printed)."""

    run_id: str
    subtype: str
    data: JsonDict = dataclasses.field(default_factory=dict)


@kind("claude.raw", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeRaw(Payload):
    """A stream-json line of a type this server does not know: passed through."""

    run_id: str
    data: JsonDict = dataclasses.field(default_factory=dict)


@kind("claude.error", snake=True)
@dataclass(frozen=True, slots=True)
class ClaudeParseError(Payload):
    """A line that could not be parsed."""

    run_id: str
    message: str
    line: str = ""


RUN_KINDS = (
    TestRunStarted,
    TestRunCase,
    TestRunFinished,
    ClaudeStarted,
    ClaudeFinished,
    ClaudeInit,
    ClaudeText,
    ClaudeToolUse,
    ClaudeToolResult,
    ClaudeResult,
    ClaudeSystem,
    ClaudeRaw,
    ClaudeParseError,
)
"""The kinds that belong to a run: each has a ``run_id``."""


def run_id_of(payload: Payload) -> str | None:
    return payload.run_id if isinstance(payload, RUN_KINDS) else None


def parse_stored(kind_name: str, data: JsonDict) -> Payload:
    """A stored event's payload: old ``terminal.output`` rows of a command are read as
    ``command.output``."""
    if kind_name == "terminal.output" and isinstance(data, dict) and data.get("commandId"):
        kind_name = "command.output"
    return parse(kind_name, data)
