"""Workspace files in the recording: content-addressed blobs, snapshots, file events.

``FileRecorder`` is the one way a file change enters the log: it stores the
content once by SHA-256, appends a ``file.written`` / ``file.deleted`` event
with path, size and hash, and moves the session's snapshot of that path.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from models.file import FileBlob, FileSnapshot
from resolvers.events import EventLog


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    size: int
    sha256: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def store_blob(data: bytes) -> str:
    digest = sha256_hex(data)
    if not await FileBlob.exists(sha256=digest):
        async with in_transaction() as conn:
            # Two writers of the same content race harmlessly: same key, same bytes.
            await FileBlob.bulk_create(
                [FileBlob(sha256=digest, size=len(data), content=data)],
                ignore_conflicts=True,
                using_db=conn,
            )
    return digest


class FileRecorder:
    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def written(
        self, session_id: uuid.UUID, path: str, data: bytes, *, source: str
    ) -> StoredFile:
        digest = await store_blob(data)
        event = await self.log.append(
            session_id,
            "file.written",
            {"path": path, "size": len(data), "sha256": digest, "source": source},
        )
        await FileSnapshot.update_or_create(
            defaults={"sha256": digest, "size": len(data), "seq": event.seq},
            session_id=session_id,
            path=path,
        )
        return StoredFile(path=path, size=len(data), sha256=digest)

    async def deleted(self, session_id: uuid.UUID, path: str, *, source: str) -> None:
        prefix = path + "/"
        affected = [
            snap
            for snap in await FileSnapshot.filter(session_id=session_id, sha256__isnull=False)
            if snap.path == path or snap.path.startswith(prefix)
        ]
        event = await self.log.append(session_id, "file.deleted", {"path": path, "source": source})
        for snap in affected:
            snap.sha256 = None
            snap.size = 0
            snap.seq = event.seq
            await snap.save(update_fields=["sha256", "size", "seq", "updated_at"])

    async def current(self, session_id: uuid.UUID) -> dict[str, StoredFile]:
        """The session's files as last recorded (deleted ones left out)."""
        snaps = await FileSnapshot.filter(session_id=session_id, sha256__isnull=False)
        return {s.path: StoredFile(path=s.path, size=s.size, sha256=s.sha256 or "") for s in snaps}

    async def content(self, sha256: str) -> bytes:
        blob = await FileBlob.get(sha256=sha256)
        return bytes(blob.content)
