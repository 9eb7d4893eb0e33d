"""Root fields for sandboxes, files and commands (merged into Query and Mutation)."""

from __future__ import annotations

import strawberry

from gql.context import Info, principal_of
from gql.types.workspace import (
    CommandResult,
    ContentEncoding,
    DeleteFilePayload,
    File,
    FileEntry,
    Sandbox,
    decode_content,
)
from resolvers import commands, workspace


@strawberry.type
class WorkspaceQuery:
    @strawberry.field(
        description="Files under `path` (default: all), from the sandbox or recording."
    )
    async def files(self, info: Info, session_id: strawberry.ID, path: str = "") -> list[FileEntry]:
        entries = await workspace.list_files(
            info.context.sandboxes, await principal_of(info), session_id, path
        )
        return [FileEntry.of(e) for e in entries]

    @strawberry.field
    async def file(self, info: Info, session_id: strawberry.ID, path: str) -> File:
        data = await workspace.read_file(
            info.context.sandboxes, await principal_of(info), session_id, path
        )
        return File.of(data)


@strawberry.type
class WorkspaceMutation:
    @strawberry.mutation(description="Start the session's sandbox; returns the running one if any.")
    async def start_sandbox(self, info: Info, session_id: strawberry.ID) -> Sandbox:
        record = await info.context.sandboxes.start(await principal_of(info), session_id)
        return Sandbox.of(record)

    @strawberry.mutation
    async def terminate_sandbox(self, info: Info, session_id: strawberry.ID) -> Sandbox:
        record = await info.context.sandboxes.terminate(await principal_of(info), session_id)
        return Sandbox.of(record)

    @strawberry.mutation
    async def write_file(
        self,
        info: Info,
        session_id: strawberry.ID,
        path: str,
        content: str,
        encoding: ContentEncoding = ContentEncoding.UTF8,
    ) -> File:
        data = await workspace.write_file(
            info.context.sandboxes,
            await principal_of(info),
            session_id,
            path,
            decode_content(content, encoding),
        )
        return File.of(data)

    @strawberry.mutation
    async def delete_file(
        self, info: Info, session_id: strawberry.ID, path: str
    ) -> DeleteFilePayload:
        deleted = await workspace.delete_file(
            info.context.sandboxes, await principal_of(info), session_id, path
        )
        return DeleteFilePayload(path=deleted)

    @strawberry.mutation(description="Run a shell command in the sandbox; output also streams.")
    async def run_command(
        self,
        info: Info,
        session_id: strawberry.ID,
        command: str,
        timeout_seconds: int | None = None,
    ) -> CommandResult:
        settings = info.context.settings
        result = await commands.run_command(
            info.context.sandboxes,
            await principal_of(info),
            session_id,
            command,
            timeout_s=timeout_seconds or settings.command_timeout_s,
            max_timeout_s=settings.command_timeout_max_s,
            output_cap=settings.output_cap_bytes,
        )
        return CommandResult.of(result)
