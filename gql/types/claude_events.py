"""Claude run events: the agent's stream-json transcript as typed session events."""

from __future__ import annotations

from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from gql.types.event_base import SessionEvent, meta, register
from resolvers import event_kinds as ek
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


def _base(record: EventRecord, run_id: str) -> dict[str, Any]:
    return {**meta(record), "run_id": strawberry.ID(run_id)}


def _claude_run(r: EventRecord, p: ek.ClaudeStarted | ek.ClaudeFinished) -> SessionEvent:
    finished = p if isinstance(p, ek.ClaudeFinished) else None
    return ClaudeRunEvent(
        **_base(r, p.run_id),
        prompt=p.prompt if isinstance(p, ek.ClaudeStarted) else None,
        claude_status=finished.status.value if finished and finished.status else None,
        error=finished.error if finished else None,
        cost_usd=finished.cost_usd if finished else None,
        num_turns=finished.num_turns if finished else None,
        duration_ms=finished.duration_ms if finished else None,
        input_tokens=finished.input_tokens if finished else None,
        output_tokens=finished.output_tokens if finished else None,
        api_requests=finished.api_requests if finished else None,
    )


register(ek.ClaudeStarted, _claude_run)
register(ek.ClaudeFinished, _claude_run)
register(
    ek.ClaudeInit,
    lambda r, p: ClaudeInitEvent(
        **_base(r, p.run_id), conversation_id=p.conversation_id, model=p.model, tools=p.tools
    ),
)
register(ek.ClaudeText, lambda r, p: ClaudeTextEvent(**_base(r, p.run_id), text=p.text))
register(
    ek.ClaudeToolUse,
    lambda r, p: ClaudeToolUseEvent(
        **_base(r, p.run_id), tool_use_id=p.tool_use_id, tool_name=p.name, tool_input=p.input
    ),
)
register(
    ek.ClaudeToolResult,
    lambda r, p: ClaudeToolResultEvent(
        **_base(r, p.run_id), tool_use_id=p.tool_use_id, content=p.content, is_error=p.is_error
    ),
)
register(
    ek.ClaudeResult,
    lambda r, p: ClaudeResultEvent(
        **_base(r, p.run_id),
        subtype=p.subtype,
        is_error=p.is_error,
        result=p.result,
        cost_usd=p.cost_usd,
        duration_ms=p.duration_ms,
        duration_api_ms=p.duration_api_ms,
        num_turns=p.num_turns,
    ),
)
register(
    ek.ClaudeSystem,
    lambda r, p: ClaudeSystemEvent(
        **_base(r, p.run_id), subtype=p.subtype, details=cast(JSON, p.data)
    ),
)
register(
    ek.ClaudeRaw, lambda r, p: ClaudeRawEvent(**_base(r, p.run_id), details=cast(JSON, p.data))
)
register(
    ek.ClaudeParseError,
    lambda r, p: ClaudeErrorEvent(**_base(r, p.run_id), message=p.message, line=p.line),
)
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
