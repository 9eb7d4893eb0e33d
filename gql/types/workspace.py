"""Sandboxes, workspace files and commands in GraphQL."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import Enum

import strawberry

from modal_app.base import FileEntry as FileEntryData
from models.sandbox import SandboxRecord
from models.sandbox import SandboxState as SandboxStateEnum
from resolvers.commands import CommandResult as CommandResultData
from resolvers.errors import BadUserInput
from resolvers.workspace import FileContent as FileContentData
from resolvers.workspace import OpenedFile

strawberry.enum(SandboxStateEnum, name="SandboxState")


@strawberry.enum(
    description="What a workspace entry is. Only FILE (and a SYMLINK to one) can be read; "
    "sockets, FIFOs and devices are listed but never opened or recorded."
)
class FileKind(Enum):
    FILE = "file"
    DIRECTORY = "dir"
    SYMLINK = "symlink"
    SOCKET = "socket"
    FIFO = "fifo"
    DEVICE = "device"
    OTHER = "other"


@strawberry.enum
class ContentEncoding(Enum):
    UTF8 = "UTF8"
    BASE64 = "BASE64"


@strawberry.type
class Sandbox:
    id: strawberry.ID
    state: SandboxStateEnum
    backend: str
    created_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None
    end_reason: str | None

    @classmethod
    def of(cls, record: SandboxRecord) -> Sandbox:
        return cls(
            id=strawberry.ID(str(record.id)),
            state=record.state,
            backend=record.backend,
            created_at=record.created_at,
            last_activity_at=record.last_activity_at,
            ended_at=record.ended_at,
            end_reason=record.end_reason,
        )


class RecordedHashes:
    """A listing's recorded hashes: loaded once, by the first entry that asks, for all."""

    def __init__(self, load: Callable[[], Awaitable[dict[str, str]]]) -> None:
        self._load = load
        self._loading: asyncio.Task[dict[str, str]] | None = None

    async def of(self, path: str) -> str | None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        return (await asyncio.shield(self._loading)).get(path)


@strawberry.type
class FileEntry:
    path: str = strawberry.field(description="Relative to /workspace.")
    kind: FileKind
    size: int
    modified_at: datetime
    hashes: strawberry.Private[RecordedHashes | None] = None

    @strawberry.field(
        description="The hash the recording holds for this path (content through `blob`); "
        "null for directories and unrecorded paths. While a sandbox runs, a change not "
        "recorded yet is not reflected: `file.sha256` hashes the content on disk now."
    )
    async def sha256(self) -> str | None:
        if self.kind is FileKind.DIRECTORY or self.hashes is None:
            return None
        return await self.hashes.of(self.path)

    @classmethod
    def of(cls, entry: FileEntryData, hashes: RecordedHashes | None = None) -> FileEntry:
        return cls(
            path=entry.path,
            kind=FileKind(entry.kind),
            size=entry.size,
            modified_at=datetime.fromtimestamp(entry.mtime, UTC),
            hashes=hashes,
        )


def text_of(data: bytes) -> tuple[str, ContentEncoding]:
    try:
        return data.decode("utf-8"), ContentEncoding.UTF8
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), ContentEncoding.BASE64


@strawberry.type(
    description="A workspace file. `path` and `size` come from a stat; `content`, `encoding` "
    "and `sha256` read the file (once), and only for files up to MAX_FILE_BYTES: a bigger "
    "file answers BAD_USER_INPUT for them."
)
class File:
    path: str
    size: int
    from_recording: bool = strawberry.field(
        description="True when no sandbox runs and the content comes from the recording."
    )
    opened: strawberry.Private[OpenedFile]

    @strawberry.field
    async def sha256(self) -> str:
        return await self.opened.sha256()

    @strawberry.field(description="UTF8 for text; BASE64 when the bytes are not valid UTF-8.")
    async def encoding(self) -> ContentEncoding:
        return text_of(await self.opened.data())[1]

    @strawberry.field
    async def content(self) -> str:
        return text_of(await self.opened.data())[0]

    @classmethod
    def of(cls, opened: OpenedFile) -> File:
        return cls(
            path=opened.path,
            size=opened.size,
            from_recording=opened.source == "recording",
            opened=opened,
        )

    @classmethod
    def written(cls, data: FileContentData) -> File:
        """A file just written: its content is at hand, nothing is read back."""
        loaded = data.data
        opened = OpenedFile(
            data.path,
            data.size,
            data.source,
            lambda: _ready(loaded),
            max_bytes=len(loaded),
            sha256=data.sha256,
        )
        return cls.of(opened)


async def _ready(data: bytes) -> bytes:
    return data


def decode_content(content: str, encoding: ContentEncoding) -> bytes:
    if encoding is ContentEncoding.UTF8:
        try:
            return content.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
            raise BadUserInput("content", "is not valid Unicode text") from None
    try:
        # b64decode raises a bare ValueError (not binascii.Error) for non-ASCII text.
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise BadUserInput("content", "is not valid base64") from None


@strawberry.type
class CommandResult:
    command_id: strawberry.ID
    exit_code: int | None = strawberry.field(description="Null when killed (timeout, signal).")
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: int
    truncated: bool = strawberry.field(description="Output went past the cap and was cut.")

    @classmethod
    def of(cls, result: CommandResultData) -> CommandResult:
        return cls(
            command_id=strawberry.ID(result.command_id),
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            timed_out=result.timed_out,
            duration_ms=result.duration_ms,
            truncated=result.truncated,
        )


@strawberry.type
class DeleteFilePayload:
    path: str
