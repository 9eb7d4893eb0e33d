"""Parsing the Claude Code CLI's ``--output-format stream-json`` into typed items.

One JSON object per line. Known shapes become typed items; a line of an
unknown type passes through as ``Raw``; a line that is not JSON becomes
``ParseError``; nothing raises. ``LineBuffer`` reassembles lines split across
reads, so a chunk boundary never breaks an item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from resolvers import event_kinds as ek

MAX_TEXT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Init:
    conversation_id: str | None
    model: str | None
    tools: list[str]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    tool_use_id: str | None
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool_use_id: str | None
    content: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class Result:
    subtype: str
    is_error: bool
    result: str | None
    cost_usd: float | None
    duration_ms: int | None
    duration_api_ms: int | None
    num_turns: int | None
    conversation_id: str | None


@dataclass(frozen=True, slots=True)
class System:
    """A system line other than init (``api_retry`` and the like)."""

    subtype: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Raw:
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParseError:
    message: str
    line: str


Item = Init | Text | ToolUse | ToolResult | Result | System | Raw | ParseError


class LineBuffer:
    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines if line.strip()]

    def flush(self) -> list[str]:
        rest, self._partial = self._partial, b""
        return [rest.decode(errors="replace")] if rest.strip() else []


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):  # tool results may be a list of content blocks
        text = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in value)
    else:
        text = json.dumps(value)
    return text[:MAX_TEXT]


def _content(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def parse_line(line: str) -> list[Item]:
    try:
        data = json.loads(line)
    except ValueError as exc:
        return [ParseError(f"not JSON: {exc}", line[:2000])]
    if not isinstance(data, dict):
        return [ParseError("not a JSON object", line[:2000])]
    kind, subtype = data.get("type"), data.get("subtype")
    if kind == "system" and subtype == "init":
        tools = [str(t) for t in data.get("tools") or []]
        return [Init(data.get("session_id"), data.get("model"), tools)]
    if kind == "system":
        return [System(str(subtype), data)]
    if kind == "assistant":
        items: list[Item] = []
        for block in _content(data.get("message")):
            if block.get("type") == "text":
                items.append(Text(_text(block.get("text", ""))))
            elif block.get("type") == "tool_use":
                items.append(ToolUse(block.get("id"), str(block.get("name")), block.get("input")))
        return items or [Raw(data)]
    if kind == "user":
        results: list[Item] = [
            ToolResult(b.get("tool_use_id"), _text(b.get("content", "")), bool(b.get("is_error")))
            for b in _content(data.get("message"))
            if b.get("type") == "tool_result"
        ]
        return results or [Raw(data)]
    if kind == "result":
        return [
            Result(
                subtype=str(subtype),
                is_error=bool(data.get("is_error")),
                result=_text(data["result"]) if data.get("result") is not None else None,
                cost_usd=data.get("total_cost_usd", data.get("cost_usd")),
                duration_ms=data.get("duration_ms"),
                duration_api_ms=data.get("duration_api_ms"),
                num_turns=data.get("num_turns"),
                conversation_id=data.get("session_id"),
            )
        ]
    return [Raw(data)]


KINDS: dict[type, str] = {
    Init: "init",
    Text: "text",
    ToolUse: "tool_use",
    ToolResult: "tool_result",
    Result: "result",
    System: "system",
    Raw: "raw",
    ParseError: "error",
}


def payload_of(run_id: str, item: Item) -> ek.Payload:
    """The session event of one transcript item (``claude.<kind>``, resolvers.event_kinds)."""
    match item:
        case Init():
            return ek.ClaudeInit(run_id, item.conversation_id, item.model, item.tools)
        case Text():
            return ek.ClaudeText(run_id, item.text)
        case ToolUse():
            return ek.ClaudeToolUse(run_id, item.name, item.tool_use_id, item.input)
        case ToolResult():
            return ek.ClaudeToolResult(run_id, item.content, item.is_error, item.tool_use_id)
        case Result():
            return ek.ClaudeResult(
                run_id,
                item.subtype,
                is_error=item.is_error,
                result=item.result,
                cost_usd=item.cost_usd,
                duration_ms=item.duration_ms,
                duration_api_ms=item.duration_api_ms,
                num_turns=item.num_turns,
                conversation_id=item.conversation_id,
            )
        case System():
            return ek.ClaudeSystem(run_id, item.subtype, item.data)
        case Raw():
            return ek.ClaudeRaw(run_id, item.data)
        case ParseError():
            return ek.ClaudeParseError(run_id, item.message, item.line)


# What a finished run's ``error`` says for the CLI's error results: what
# happened, never internals (the result's own text stays in its event).
RESULT_ERRORS = {
    "error_max_turns": "the agent reached its turn limit",
    "error_max_budget_usd": "the agent reached its budget",
    "error_during_execution": "the agent stopped with an error",
}


def result_error(subtype: str) -> str:
    return RESULT_ERRORS.get(subtype, "the agent reported an error")
