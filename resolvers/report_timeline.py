"""The report page's story of a session: the agent's transcript and the timeline, built
from the recording's events (``report_content`` loads them). Plain text, clipped; the
page escapes it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resolvers import event_kinds as ek
from resolvers.event_payload import Payload

MAX_TEXT = 4000
# CSI and OSC sequences and other escapes: a terminal's colours and cursor moves.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clip(text: str | None, limit: int = MAX_TEXT) -> str:
    if not text:
        return ""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    return text if len(text) <= limit else text[:limit] + f"\n[… {len(text) - limit} more]"


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def terminal_text(text: str) -> str:
    """Terminal output as plain text: escape sequences and control characters removed."""
    return _CONTROL.sub("", _ANSI.sub("", text).replace("\r\n", "\n"))


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


STORY_KINDS = (
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


def transcript(events: Story) -> list[TranscriptEntry]:
    entries = []
    for _, _, p in events:
        if isinstance(p, ek.ClaudeStarted):
            entries.append(TranscriptEntry("prompt", clip(p.prompt), "Prompt"))
        elif isinstance(p, ek.ClaudeText):
            entries.append(TranscriptEntry("text", clip(p.text), "Claude"))
        elif isinstance(p, ek.ClaudeToolUse):
            entries.append(TranscriptEntry("tool", clip(as_json(p.input), 2000), p.name))
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


def timeline(events: Story, outputs: dict[str, str]) -> list[TimelineEntry]:
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
