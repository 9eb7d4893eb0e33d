"""Root fields for playback: the workspace at any seq, and content by hash.

``file(sessionId, path, atSeq)`` (in gql.workspace_ops) is the third one.
"""

from __future__ import annotations

import strawberry

from gql.context import Info, principal_of
from gql.types.playback import Blob, SnapshotFile
from gql.workspace_ops import check_file_reads
from resolvers import playback


@strawberry.type
class PlaybackQuery:
    @strawberry.field(
        description="Every file of the workspace (path, size, sha256) right after event "
        "`atSeq` (default: the last event), by path; content through `blob`."
    )
    async def snapshot(
        self, info: Info, session_id: strawberry.ID, at_seq: int | None = None
    ) -> list[SnapshotFile]:
        files = await playback.snapshot_at(await principal_of(info), session_id, at_seq)
        return [SnapshotFile.of(f) for f in files]

    @strawberry.field(
        description="Content by SHA-256, for hashes this session's recording refers to "
        "(any version of any of its files); any other hash is NOT_FOUND."
    )
    async def blob(self, info: Info, session_id: strawberry.ID, sha256: str) -> Blob:
        check_file_reads(info)
        opened = await playback.blob(await principal_of(info), session_id, sha256)
        return Blob.of(opened)
