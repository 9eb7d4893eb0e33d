"""Root fields for sandboxes, files and commands (merged into Query and Mutation)."""

from __future__ import annotations

from functools import partial

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

from gql.context import Info, principal_of
from gql.types.sandbox_config import SandboxConfigInput
from gql.types.workspace import (
    CommandResult,
    ContentEncoding,
    DeleteFilePayload,
    File,
    FileEntry,
    RecordedHashes,
    Sandbox,
    decode_content,
)
from resolvers import commands, playback, workspace
from resolvers.errors import BadUserInput

# Each file() that asks for content or sha256 reads up to MAX_FILE_BYTES; with
# this many per request, one request reads at most MAX_FILE_READS * MAX_FILE_BYTES
# (aliases would otherwise multiply one small query into gigabytes of reads).
MAX_FILE_READS = 16
_READING = frozenset({"content", "sha256", "encoding"})
_READERS = frozenset({"file", "blob"})


def _selects(
    selection_set: SelectionSetNode | None, fragments: dict[str, object], wanted: frozenset[str]
) -> list[FieldNode]:
    """Fields named in ``wanted`` directly under ``selection_set``, through fragments."""
    found: list[FieldNode] = []
    for node in selection_set.selections if selection_set else ():
        if isinstance(node, FieldNode):
            if node.name.value in wanted:
                found.append(node)
        elif isinstance(node, InlineFragmentNode):
            found += _selects(node.selection_set, fragments, wanted)
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments.get(node.name.value)
            found += _selects(getattr(fragment, "selection_set", None), fragments, wanted)
    return found


def check_file_reads(info: Info) -> None:
    """Refuse an operation whose file()/blob() fields would read more than MAX_FILE_READS files.

    Counted from the document (every alias, ignoring @skip/@include, so it is
    an upper bound), so the answer is the same whichever alias resolves first.
    """
    fragments: dict[str, object] = dict(info._raw_info.fragments)
    reads = sum(
        1
        for field in _selects(info.operation.selection_set, fragments, _READERS)
        if _selects(field.selection_set, fragments, _READING)
    )
    if reads > MAX_FILE_READS:
        raise BadUserInput(
            info.field_name,
            f"{reads} file()/blob() fields read content; at most {MAX_FILE_READS} per request",
        )


@strawberry.type
class WorkspaceQuery:
    @strawberry.field(
        description="Files under `path` (default: all), from the sandbox or recording."
    )
    async def files(self, info: Info, session_id: strawberry.ID, path: str = "") -> list[FileEntry]:
        principal = await principal_of(info)
        entries = await workspace.list_files(info.context.sandboxes, principal, session_id, path)
        hashes = RecordedHashes(partial(playback.recorded_hashes, principal, session_id))
        return [FileEntry.of(e, hashes) for e in entries]

    @strawberry.field(
        description="One file; `content`/`sha256` read it (up to MAX_FILE_BYTES), "
        f"at most {MAX_FILE_READS} such reads per request. With `atSeq`: the file as it "
        "was right after that event (from the recording; NOT_FOUND if it did not exist)."
    )
    async def file(
        self, info: Info, session_id: strawberry.ID, path: str, at_seq: int | None = None
    ) -> File:
        check_file_reads(info)
        principal = await principal_of(info)
        if at_seq is not None:
            return File.of(await playback.file_at(principal, session_id, path, at_seq))
        opened = await workspace.open_file(info.context.sandboxes, principal, session_id, path)
        return File.of(opened)


@strawberry.type
class WorkspaceMutation:
    @strawberry.mutation(
        description="Start the session's sandbox; returns the running one if any. `config`"
        " (interviewers and ATS only; a candidate's is FORBIDDEN) goes over the question's"
        " environment; without it a restart keeps the previous sandbox's configuration."
        " CONFLICT if one runs with another configuration."
    )
    async def start_sandbox(
        self, info: Info, session_id: strawberry.ID, config: SandboxConfigInput | None = None
    ) -> Sandbox:
        principal = await principal_of(info)
        sandboxes = info.context.sandboxes
        checked = None
        if config is not None:
            principal.require_staff()  # before anything about the config is said
            checked = config.checked("config", sandboxes.config_limits)
        record = await sandboxes.start(principal, session_id, checked)
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
        return File.written(data)

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
