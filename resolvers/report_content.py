"""What the report page shows beyond the report itself: per-case results, the final
code, the agent's transcript, the timeline, terminal output, notes.

Everything here is plain text as the candidate (or the agent, or a program) wrote it;
the page escapes it. Hidden cases are pass/fail only: their rows are built from the
index and the verdict and nothing else, so no input, expected value, output, error or
name of a hidden case reaches the page. Sizes are capped so a hostile session (a
flood of output, a huge file) makes a long page, not an unbounded one.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.event import Event
from models.file import FileBlob, FileSnapshot
from models.question import Question, QuestionLanguage, TestCase
from models.session import InterviewSession
from models.testrun import TestCaseResult, TestRun, Verdict
from resolvers import event_kinds as ek
from resolvers.event_payload import Payload
from resolvers.report import Pricing, SessionReport, build_report

MAX_FILES = 40
MAX_FILE_BYTES = 256 * 1024
MAX_TEXT = 4000
MAX_TIMELINE = 800
MAX_TRANSCRIPT_EVENTS = 3000
MAX_COMMAND_OUTPUT_EVENTS = 3000
MAX_TERMINAL_OUTPUT_EVENTS = 600
# CSI and OSC sequences and other escapes: a terminal's colours and cursor moves.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class CaseRow:
    index: int
    hidden: bool
    passed: bool
    name: str | None = None
    verdict: Verdict | None = None
    duration_ms: int | None = None
    input: str | None = None
    expected: str | None = None
    actual: str | None = None
    output: str | None = None
    """What the solution printed (function mode) or wrote to stderr (program mode)."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CodeFile:
    path: str
    size: int
    text: str | None
    """None: not shown (binary, or larger than MAX_FILE_BYTES)."""
    tested: bool
    """This very content was what the final test run tested."""


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    kind: str
    """prompt, text, tool, output, error, result, status."""
    text: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    seq: int
    at: datetime
    kind: str
    summary: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class NoteView:
    at: datetime
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class ReportContent:
    session: InterviewSession
    question: Question
    solution_path: str | None
    report: SessionReport
    cases: list[CaseRow]
    code: list[CodeFile]
    transcript: list[TranscriptEntry]
    timeline: list[TimelineEntry]
    timeline_truncated: bool
    notes: list[NoteView]
    terminals: dict[str, str] = field(default_factory=dict)
    """Terminal id -> the tail of its output, escape sequences removed."""


async def report_content(session: InterviewSession, *, pricing: Pricing) -> ReportContent:
    """Everything the report page shows, for a session reached through its link."""
    report = await build_report(session, pricing=pricing)
    question = await Question.get(id=session.question_id)
    spec = await QuestionLanguage.get_or_none(question_id=question.id, language=session.language)
    solution = spec.solution_path if spec else None
    events = await _events(session.id)
    timeline = _timeline(events, await _command_outputs(session.id))
    return ReportContent(
        session=session,
        question=question,
        solution_path=solution,
        report=report,
        cases=await _cases(question, report.final_run),
        code=await _code(session.id, solution, report.final_run),
        transcript=_transcript(events),
        timeline=timeline[:MAX_TIMELINE],
        timeline_truncated=len(timeline) > MAX_TIMELINE or len(events) >= MAX_TRANSCRIPT_EVENTS,
        notes=[
            NoteView(at, p.author or "", p.text)
            for _, at, p in events
            if isinstance(p, ek.NoteAdded)
        ],
        terminals=await _terminals(session.id),
    )


def clip(text: str | None, limit: int = MAX_TEXT) -> str:
    if not text:
        return ""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    return text if len(text) <= limit else text[:limit] + f"\n[… {len(text) - limit} more]"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _cases(question: Question, run: TestRun | None) -> list[CaseRow]:
    if run is None:
        return []
    cases = {c.position: c for c in await TestCase.filter(question_id=question.id)}
    results = {r.position: r for r in await TestCaseResult.filter(run_id=run.id)}
    rows = []
    for position, case in sorted(cases.items()):
        result = results.get(position)
        passed = result is not None and result.verdict is Verdict.PASSED
        if case.hidden:
            rows.append(CaseRow(index=position, hidden=True, passed=passed))
            continue
        program = case.expected_stdout is not None
        rows.append(
            CaseRow(
                index=position,
                hidden=False,
                passed=passed,
                name=case.name,
                verdict=result.verdict if result else None,
                duration_ms=result.duration_ms if result else None,
                input=clip(case.stdin if program else _json(case.input)),
                expected=clip(case.expected_stdout if program else _json(case.expected)),
                actual=clip(result.actual) if result else "",
                output=clip(result.output) if result else "",
                error=clip(result.error) if result else "",
            )
        )
    return rows


async def _code(
    session_id: uuid.UUID, solution_path: str | None, run: TestRun | None
) -> list[CodeFile]:
    """The workspace as the recording holds it last, the solution file first."""
    rows = await FileSnapshot.filter(session_id=session_id, sha256__isnull=False).values_list(
        "path", "sha256", "size"
    )
    ordered = sorted(rows, key=lambda r: (r[0] != solution_path, r[0]))[:MAX_FILES]
    small = {sha for _, sha, size in ordered if size <= MAX_FILE_BYTES}
    contents: dict[str, bytes] = dict(
        await FileBlob.filter(sha256__in=small).values_list("sha256", "content")
    )
    tested = dict(run.files) if run else {}
    files = []
    for path, sha, size in ordered:
        text = None
        if sha in contents:
            try:
                text = bytes(contents[sha]).decode("utf-8")
            except UnicodeDecodeError:
                text = None
        files.append(CodeFile(path, int(size), text, tested.get(path) == sha))
    return files


_STORY_KINDS = (
    ek.SessionCreated,
    ek.SessionStarted,
    ek.SessionEnded,
    ek.SessionExpired,
    ek.SandboxStarted,
    ek.SandboxTerminated,
    ek.SandboxFailed,
    ek.FileWritten,
    ek.FileDeleted,
    ek.CommandStarted,
    ek.CommandExited,
    ek.TerminalOpened,
    ek.TerminalClosed,
    ek.TestRunFinished,
    ek.NoteAdded,
    ek.ClaudeStarted,
    ek.ClaudeText,
    ek.ClaudeToolUse,
    ek.ClaudeToolResult,
    ek.ClaudeResult,
    ek.ClaudeFinished,
    ek.ClaudeParseError,
)
Story = list[tuple[int, datetime, Payload]]


async def _events(session_id: uuid.UUID) -> Story:
    """The session's events that tell its story (not output, not per-case results)."""
    rows = (
        await Event.filter(session_id=session_id, type__in=[k.KIND for k in _STORY_KINDS])
        .order_by("seq")
        .limit(MAX_TRANSCRIPT_EVENTS)
        .values_list("seq", "at", "type", "payload")
    )
    return [(seq, at, ek.parse_stored(kind, payload)) for seq, at, kind, payload in rows]


async def _command_outputs(session_id: uuid.UUID) -> dict[str, str]:
    """Each command's output (stdout and stderr as they came), its first MAX_TEXT chars."""
    rows = (
        await Event.filter(session_id=session_id, type=ek.CommandOutput.KIND)
        .order_by("seq")
        .limit(MAX_COMMAND_OUTPUT_EVENTS)
        .values_list("payload")
    )
    outputs: dict[str, str] = defaultdict(str)
    for (payload,) in rows:
        chunk = ek.parse_stored(ek.CommandOutput.KIND, payload)
        if isinstance(chunk, ek.CommandOutput) and len(outputs[chunk.command_id]) <= MAX_TEXT:
            outputs[chunk.command_id] += chunk.data
    return {command: clip(text) for command, text in outputs.items()}


async def _terminals(session_id: uuid.UUID) -> dict[str, str]:
    """The tail of each terminal's output (the newest output events of the session)."""
    rows = (
        await Event.filter(session_id=session_id, type=ek.TerminalOutput.KIND)
        .order_by("-seq")
        .limit(MAX_TERMINAL_OUTPUT_EVENTS)
        .values_list("payload")
    )
    chunks: dict[str, list[str]] = defaultdict(list)
    for (payload,) in reversed(rows):
        chunk = ek.parse_stored(ek.TerminalOutput.KIND, payload)
        if isinstance(chunk, ek.TerminalOutput):
            chunks[chunk.terminal_id].append(chunk.data)
    tails = {}
    for terminal, parts in chunks.items():
        text = _CONTROL.sub("", _ANSI.sub("", "".join(parts)).replace("\r\n", "\n"))
        tails[terminal] = text[-MAX_TEXT:]
    return tails


def _transcript(events: Story) -> list[TranscriptEntry]:
    entries = []
    for _, _, p in events:
        if isinstance(p, ek.ClaudeStarted):
            entries.append(TranscriptEntry("prompt", clip(p.prompt), "Prompt"))
        elif isinstance(p, ek.ClaudeText):
            entries.append(TranscriptEntry("text", clip(p.text), "Claude"))
        elif isinstance(p, ek.ClaudeToolUse):
            entries.append(TranscriptEntry("tool", clip(_json(p.input), 2000), p.name))
        elif isinstance(p, ek.ClaudeToolResult):
            label = "Tool error" if p.is_error else "Tool output"
            entries.append(TranscriptEntry("output", clip(p.content, 2000), label))
        elif isinstance(p, ek.ClaudeResult) and p.is_error:
            entries.append(TranscriptEntry("error", clip(p.result), p.subtype))
        elif isinstance(p, ek.ClaudeParseError):
            entries.append(TranscriptEntry("error", clip(p.message), "Unreadable output"))
        elif isinstance(p, ek.ClaudeFinished):
            status = p.status.value if p.status else "finished"
            entries.append(TranscriptEntry("status", clip(p.error), f"Run {status.lower()}"))
    return entries


def _timeline(events: Story, outputs: dict[str, str]) -> list[TimelineEntry]:
    entries = []
    for seq, at, p in events:
        line = _line(p, outputs)
        if line is not None:
            entries.append(TimelineEntry(seq, at, p.kind, *line))
    return entries


def _line(p: Payload, outputs: dict[str, str]) -> tuple[str, str | None] | None:
    """One timeline row's summary and detail, or None for events the timeline skips."""
    if isinstance(p, ek.SessionCreated | ek.SessionStarted | ek.SessionEnded | ek.SessionExpired):
        return f"Session {p.status.value.lower()}", None
    if isinstance(p, ek.SandboxStarted):
        return "Sandbox started", None
    if isinstance(p, ek.SandboxTerminated | ek.SandboxFailed):
        return "Sandbox stopped", clip(p.reason, 500) or None
    if isinstance(p, ek.FileWritten):
        return f"Wrote {clip(p.path, 300)} ({p.size or 0} bytes)", None
    if isinstance(p, ek.FileDeleted):
        return f"Deleted {clip(p.path, 300)}", None
    if isinstance(p, ek.CommandStarted):
        return f"$ {clip(p.command, 500)}", outputs.get(p.command_id) or None
    if isinstance(p, ek.CommandExited):
        how = "timed out" if p.timed_out else f"exit code {p.exit_code}"
        return f"Command ended: {how}", None
    if isinstance(p, ek.TerminalOpened):
        return "Terminal opened", None
    if isinstance(p, ek.TerminalClosed):
        return "Terminal closed", None
    if isinstance(p, ek.TestRunFinished):
        if p.status is not None and p.status.value == "ERROR":
            return "Test run failed to complete", clip(p.error, 500) or None
        return f"Tests: {p.passed or 0}/{p.total or 0} passed", clip(p.compile_error, 500) or None
    if isinstance(p, ek.NoteAdded):
        return f"Note by {clip(p.author, 200) or 'staff'}", clip(p.text)
    if isinstance(p, ek.ClaudeStarted):
        return "Asked Claude", clip(p.prompt, 500)
    if isinstance(p, ek.ClaudeFinished):
        return f"Claude run {(p.status.value if p.status else 'ended').lower()}", None
    return None
