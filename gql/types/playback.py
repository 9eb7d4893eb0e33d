"""Playback in GraphQL: the workspace at a seq, and content by hash."""

from __future__ import annotations

import strawberry

from gql.types.workspace import ContentEncoding, text_of
from resolvers.playback import SnapshotFile as SnapshotFileData
from resolvers.workspace import OpenedFile


@strawberry.type(description="One file of a workspace snapshot; its content is `blob(sha256)`.")
class SnapshotFile:
    path: str = strawberry.field(description="Relative to /workspace.")
    size: int
    sha256: str

    @classmethod
    def of(cls, data: SnapshotFileData) -> SnapshotFile:
        return cls(path=data.path, size=data.size, sha256=data.sha256)


@strawberry.type(description="Content stored by SHA-256; read only when `content` is asked.")
class Blob:
    size: int
    opened: strawberry.Private[OpenedFile]

    @strawberry.field
    async def sha256(self) -> str:
        return await self.opened.sha256()  # known: nothing is read for it

    @strawberry.field(description="UTF8 for text; BASE64 when the bytes are not valid UTF-8.")
    async def encoding(self) -> ContentEncoding:
        return text_of(await self.opened.data())[1]

    @strawberry.field
    async def content(self) -> str:
        return text_of(await self.opened.data())[0]

    @classmethod
    def of(cls, opened: OpenedFile) -> Blob:
        return cls(size=opened.size, opened=opened)
