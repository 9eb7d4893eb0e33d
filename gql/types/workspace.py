"""Sandboxes, workspace files and commands in GraphQL."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from enum import Enum

import strawberry

from modal_app.base import FileEntry as FileEntryData
from models.sandbox import SandboxRecord
from models.sandbox import SandboxState as SandboxStateEnum
from resolvers.commands import CommandResult as CommandResultData
from resolvers.errors import BadUserInput
from resolvers.workspace import FileContent as FileContentData

strawberry.enum(SandboxStateEnum, name="SandboxState")


@strawberry.enum
class FileKind(Enum):
    FILE = "file"
    DIRECTORY = "dir"
    SYMLINK = "symlink"


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


@strawberry.type
class FileEntry:
    path: str = strawberry.field(description="Relative to /workspace.")
    kind: FileKind
    size: int
    modified_at: datetime

    @classmethod
    def of(cls, entry: FileEntryData) -> FileEntry:
        return cls(
            path=entry.path,
            kind=FileKind(entry.kind),
            size=entry.size,
            modified_at=datetime.fromtimestamp(entry.mtime, UTC),
        )


@strawberry.type
class File:
    path: str
    size: int
    sha256: str
    encoding: ContentEncoding = strawberry.field(
        description="UTF8 for text; BASE64 when the bytes are not valid UTF-8."
    )
    content: str
    from_recording: bool = strawberry.field(
        description="True when no sandbox runs and the content comes from the recording."
    )

    @classmethod
    def of(cls, data: FileContentData) -> File:
        try:
            content, encoding = data.data.decode("utf-8"), ContentEncoding.UTF8
        except UnicodeDecodeError:
            content, encoding = base64.b64encode(data.data).decode(), ContentEncoding.BASE64
        return cls(
            path=data.path,
            size=data.size,
            sha256=data.sha256,
            encoding=encoding,
            content=content,
            from_recording=data.source == "recording",
        )


def decode_content(content: str, encoding: ContentEncoding) -> bytes:
    if encoding is ContentEncoding.UTF8:
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error:
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
