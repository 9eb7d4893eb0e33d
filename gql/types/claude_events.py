"""Claude run events: the agent's stream-json transcript as typed session events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from strawberry.scalars import JSON

from gql.types.event_base import SessionEvent, meta
from resolvers.events import EventRecord


@strawberry.interface
class ClaudeEvent(SessionEvent):
    """An event of a Claude run: its stream-json transcript, typed, plus start and finish."""

    run_id: strawberry.ID


@strawberry.type
class ClaudeRunEvent(ClaudeEvent):
    """``claude.started`` (with the prompt) / ``claude.finished`` (with the outcome)."""

    prompt: str | None
    claude_status: str | None
    error: str | None
    cost_usd: float | None
    num_turns: int | None
    duration_ms: int | None
    input_tokens: int | None = strawberry.field(
        description="claude.finished: the run's input tokens, as the server's proxy saw them."
    )
    output_tokens: int | None = strawberry.field(
        description="claude.finished: the run's output tokens, as the server's proxy saw them."
    )
    api_requests: int | None = strawberry.field(
        description="claude.finished: the run's Messages API requests through the proxy."
    )


@strawberry.type
class ClaudeInitEvent(ClaudeEvent):
    conversation_id: str | None
    model: str | None
    tools: list[str]


@strawberry.type
class ClaudeTextEvent(ClaudeEvent):
    text: str


@strawberry.type
class ClaudeToolUseEvent(ClaudeEvent):
    tool_use_id: str | None
    tool_name: str
    tool_input: JSON | None


@strawberry.type
class ClaudeToolResultEvent(ClaudeEvent):
    tool_use_id: str | None
    content: str
    is_error: bool


@strawberry.type
class ClaudeResultEvent(ClaudeEvent):
    subtype: str
    is_error: bool
    result: str | None
    cost_usd: float | None
    duration_ms: int | None
    duration_api_ms: int | None
    num_turns: int | None


@strawberry.type
class ClaudeSystemEvent(ClaudeEvent):
    """A system line other than init, such as ``api_retry``."""

    subtype: str
    details: JSON


@strawberry.type
class ClaudeRawEvent(ClaudeEvent):
    """A stream-json line of a type this server does not know: passed through."""

    details: JSON


@strawberry.type
class ClaudeErrorEvent(ClaudeEvent):
    """A line that could not be parsed."""

    message: str
    line: str


def _base(record: EventRecord, payload: dict[str, Any]) -> dict[str, Any]:
    return {**meta(record), "run_id": strawberry.ID(payload["runId"])}


def _claude_run(record: EventRecord, payload: dict[str, Any]) -> ClaudeRunEvent:
    return ClaudeRunEvent(
        **_base(record, payload),
        prompt=payload.get("prompt"),
        claude_status=payload.get("status"),
        error=payload.get("error"),
        cost_usd=payload.get("cost_usd"),
        num_turns=payload.get("num_turns"),
        duration_ms=payload.get("duration_ms"),
        input_tokens=payload.get("input_tokens"),
        output_tokens=payload.get("output_tokens"),
        api_requests=payload.get("api_requests"),
    )


CLAUDE_BUILDERS: dict[str, Callable[[EventRecord, dict[str, Any]], SessionEvent]] = {
    "claude.started": _claude_run,
    "claude.finished": _claude_run,
    "claude.init": lambda r, p: ClaudeInitEvent(
        **_base(r, p),
        conversation_id=p.get("conversation_id"),
        model=p.get("model"),
        tools=p.get("tools") or [],
    ),
    "claude.text": lambda r, p: ClaudeTextEvent(**_base(r, p), text=p["text"]),
    "claude.tool_use": lambda r, p: ClaudeToolUseEvent(
        **_base(r, p),
        tool_use_id=p.get("tool_use_id"),
        tool_name=p["name"],
        tool_input=p.get("input"),
    ),
    "claude.tool_result": lambda r, p: ClaudeToolResultEvent(
        **_base(r, p),
        tool_use_id=p.get("tool_use_id"),
        content=p["content"],
        is_error=p["is_error"],
    ),
    "claude.result": lambda r, p: ClaudeResultEvent(
        **_base(r, p),
        subtype=p["subtype"],
        is_error=p["is_error"],
        result=p.get("result"),
        cost_usd=p.get("cost_usd"),
        duration_ms=p.get("duration_ms"),
        duration_api_ms=p.get("duration_api_ms"),
        num_turns=p.get("num_turns"),
    ),
    "claude.system": lambda r, p: ClaudeSystemEvent(
        **_base(r, p), subtype=p["subtype"], details=p["data"]
    ),
    "claude.raw": lambda r, p: ClaudeRawEvent(**_base(r, p), details=p["data"]),
    "claude.error": lambda r, p: ClaudeErrorEvent(
        **_base(r, p), message=p["message"], line=p["line"]
    ),
}
CLAUDE_EVENT_TYPES: list[type] = [
    ClaudeRunEvent,
    ClaudeInitEvent,
    ClaudeTextEvent,
    ClaudeToolUseEvent,
    ClaudeToolResultEvent,
    ClaudeResultEvent,
    ClaudeSystemEvent,
    ClaudeRawEvent,
    ClaudeErrorEvent,
]
