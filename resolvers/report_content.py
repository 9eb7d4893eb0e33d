"""What the report page shows beyond the report itself: per-case results, the final
code, the agent's transcript, the timeline, terminal output, notes.

Everything here is plain text as the candidate (or the agent, or a program) wrote it;
the page escapes it. Hidden cases are pass/fail only: their rows are built from the
index and the verdict and nothing else, so no input, expected value, output, error or
name of a hidden case reaches the page. Sizes are capped so a hostile session (a
flood of output, a huge file) makes a long page, not an unbounded one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from models.event import Event
from models.file import FileBlob, FileSnapshot
from models.question import Question, QuestionLanguage, TestCase
from models.session import InterviewSession
from models.testrun import TestCaseResult, TestRun, Verdict
from resolvers import event_kinds as ek
from resolvers.report import Pricing, SessionReport, build_report
from resolvers.report_timeline import (
    MAX_TEXT,
    STORY_KINDS,
    Story,
    TimelineEntry,
    TranscriptEntry,
    as_json,
    clip,
    terminal_text,
    transcript,
)
from resolvers.report_timeline import timeline as timeline_of

MAX_FILES = 40
MAX_FILE_BYTES = 256 * 1024
MAX_TIMELINE = 800
MAX_TRANSCRIPT_EVENTS = 3000
MAX_COMMAND_OUTPUT_EVENTS = 3000
MAX_TERMINAL_OUTPUT_EVENTS = 600


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
    timeline = timeline_of(events, await _command_outputs(session.id))
    return ReportContent(
        session=session,
        question=question,
        solution_path=solution,
        report=report,
        cases=await _cases(question, report.final_run),
        code=await _code(session.id, solution, report.final_run),
        transcript=transcript(events),
        timeline=timeline[:MAX_TIMELINE],
        timeline_truncated=len(timeline) > MAX_TIMELINE or len(events) >= MAX_TRANSCRIPT_EVENTS,
        notes=[
            NoteView(at, p.author or "", p.text)
            for _, at, p in events
            if isinstance(p, ek.NoteAdded)
        ],
        terminals=await _terminals(session.id),
    )


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
                input=clip(case.stdin if program else as_json(case.input)),
                expected=clip(case.expected_stdout if program else as_json(case.expected)),
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


async def _events(session_id: uuid.UUID) -> Story:
    """The session's events that tell its story (not output, not per-case results)."""
    rows = (
        await Event.filter(session_id=session_id, type__in=[k.KIND for k in STORY_KINDS])
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
        text = terminal_text("".join(parts))
        tails[terminal] = text[-MAX_TEXT:]
    return tails
