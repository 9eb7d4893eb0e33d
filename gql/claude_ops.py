"""The Claude agent in GraphQL: askClaude, cancelClaude, claudeRun, claudeOutput."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from gql.context import Info, principal_of
from gql.types.event import SessionEventBatch
from models.claude import ClaudeRun as ClaudeRunModel
from models.claude import ClaudeRunStatus
from resolvers.watching import follow_claude_run

strawberry.enum(ClaudeRunStatus, name="ClaudeRunStatus")


@strawberry.type
class ClaudeRun:
    id: strawberry.ID
    session_id: strawberry.ID
    prompt: str
    status: ClaudeRunStatus
    error: str | None
    cost_usd: float | None
    num_turns: int | None
    duration_ms: int | None
    input_tokens: int = strawberry.field(
        description="Input tokens of the run's API requests (cache reads and writes included),"
        " as the server's proxy saw them."
    )
    output_tokens: int = strawberry.field(
        description="Output tokens of the run's API requests, as the server's proxy saw them."
    )
    api_requests: int = strawberry.field(
        description="Messages API requests the agent made through the proxy in this run."
    )
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: ClaudeRunModel) -> ClaudeRun:
        return cls(
            id=strawberry.ID(str(run.id)),
            session_id=strawberry.ID(str(run.session_id)),
            prompt=run.prompt,
            status=run.status,
            error=run.error,
            cost_usd=run.cost_usd,
            num_turns=run.num_turns,
            duration_ms=run.duration_ms,
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            api_requests=run.api_requests,
            created_at=run.created_at,
            finished_at=run.finished_at,
        )


@strawberry.type
class ClaudeQuery:
    @strawberry.field
    async def claude_run(self, info: Info, id: strawberry.ID) -> ClaudeRun:
        return ClaudeRun.of(await info.context.claude.get(await principal_of(info), id))


@strawberry.type
class ClaudeMutation:
    @strawberry.mutation(
        description="Ask the agent in the sandbox; continues the last conversation."
    )
    async def ask_claude(self, info: Info, session_id: strawberry.ID, prompt: str) -> ClaudeRun:
        run = await info.context.claude.ask(await principal_of(info), session_id, prompt)
        return ClaudeRun.of(run)

    @strawberry.mutation(description="Stop a running agent (its whole process tree).")
    async def cancel_claude(self, info: Info, run_id: strawberry.ID) -> ClaudeRun:
        return ClaudeRun.of(await info.context.claude.cancel(await principal_of(info), run_id))


@strawberry.type
class ClaudeSubscription:
    @strawberry.subscription(description="The run's transcript, replayed then live; ends with it.")
    async def claude_output(
        self, info: Info, run_id: strawberry.ID, after_seq: int = 0
    ) -> AsyncGenerator[SessionEventBatch, None]:
        principal = await principal_of(info)
        run = await info.context.claude.get(principal, run_id)
        async for batch in follow_claude_run(info.context.live, principal, run, after_seq):
            yield info.context.renders.batch(strawberry.ID(str(run.session_id)), batch)
