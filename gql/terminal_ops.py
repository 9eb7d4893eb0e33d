"""Root fields for interactive terminals (merged into Mutation)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gql.context import Info, principal_of
from models.terminal import TerminalRecord
from models.terminal import TerminalState as TerminalStateEnum

strawberry.enum(TerminalStateEnum, name="TerminalState")


@strawberry.type
class Terminal:
    id: strawberry.ID
    session_id: strawberry.ID
    state: TerminalStateEnum
    cols: int
    rows: int
    exit_code: int | None
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, record: TerminalRecord) -> Terminal:
        return cls(
            id=strawberry.ID(str(record.id)),
            session_id=strawberry.ID(str(record.session_id)),
            state=record.state,
            cols=record.cols,
            rows=record.rows,
            exit_code=record.exit_code,
            created_at=record.created_at,
            closed_at=record.closed_at,
        )


@strawberry.type
class TerminalMutation:
    @strawberry.mutation(description="A shell in the sandbox; its output streams to every watcher.")
    async def open_terminal(
        self, info: Info, session_id: strawberry.ID, cols: int = 80, rows: int = 24
    ) -> Terminal:
        record = await info.context.terminals.open(
            await principal_of(info), session_id, cols=cols, rows=rows
        )
        return Terminal.of(record)

    @strawberry.mutation(description="Type into a terminal (keystrokes, escape sequences).")
    async def terminal_input(self, info: Info, terminal_id: strawberry.ID, data: str) -> Terminal:
        record = await info.context.terminals.input(await principal_of(info), terminal_id, data)
        return Terminal.of(record)

    @strawberry.mutation
    async def resize_terminal(
        self, info: Info, terminal_id: strawberry.ID, cols: int, rows: int
    ) -> Terminal:
        record = await info.context.terminals.resize(
            await principal_of(info), terminal_id, cols=cols, rows=rows
        )
        return Terminal.of(record)

    @strawberry.mutation
    async def close_terminal(self, info: Info, terminal_id: strawberry.ID) -> Terminal:
        record = await info.context.terminals.close(await principal_of(info), terminal_id)
        return Terminal.of(record)
