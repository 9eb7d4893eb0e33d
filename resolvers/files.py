"""Workspace files in the recording: content-addressed blobs, snapshots, file events.

``FileRecorder`` is the one way a file change enters the log: it stores the
content once by SHA-256, appends a ``file.written`` / ``file.deleted`` event
with path, size and hash, and moves the session's snapshot of that path and
adds the path's version (``FileVersion``, what ``file(atSeq)`` reads).
Each session's distinct blobs count against its storage budget
(resolvers.storage); past it a change is a ``file.skipped`` event with path,
size and hash, and the snapshot keeps the last stored version.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.file import FileBlob, FileSnapshot, FileVersion
from resolvers.event_kinds import FileDeleted, FileSkipped, FileWritten, StorageBudgetReached
from resolvers.events import EventLog
from resolvers.storage import charge_blob

_SKIPS_REMEMBERED = 10_000
_PREFIXES_PER_QUERY = 50
"""Beyond this many paths, ``current(under=...)`` loads the session's files and filters here."""
_ROWS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    size: int
    sha256: str
    stored: bool = True
    """False when the session's storage budget was reached: hash and size only."""


def within(root: str, path: str) -> bool:
    """Whether ``path`` is ``root`` or lies under the directory ``root``."""
    return path == root or path.startswith(root + "/")


def _at_or_under(roots: Collection[str]) -> Q:
    # startswith escapes LIKE's % and _; SQLite's LIKE ignores ASCII case, so
    # callers check the rows with ``within`` too.
    found = Q(path__in=list(roots))
    for root in roots:
        found |= Q(path__startswith=root + "/")
    return found


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def store_blob(data: bytes, digest: str | None = None) -> str:
    digest = digest or sha256_hex(data)
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
        # What was last reported skipped per path, so a sync does not repeat it.
        self._skips: OrderedDict[tuple[uuid.UUID, str], str] = OrderedDict()

    async def written(
        self, session_id: uuid.UUID, path: str, data: bytes, *, source: str
    ) -> StoredFile:
        digest = sha256_hex(data)
        budget = self.log.limits.storage_budget_bytes
        charge = await charge_blob(session_id, digest, len(data), budget)
        if charge.reached_now:
            await self.log.append(
                session_id,
                StorageBudgetReached(budget, used_bytes=charge.used_bytes, path=path),
            )
        if not charge.stored:
            await self.skipped(
                session_id,
                path,
                size=len(data),
                sha256=digest,
                reason="the session's storage budget is used up",
                source=source,
            )
            return StoredFile(path=path, size=len(data), sha256=digest, stored=False)
        await store_blob(data, digest)
        self._skips.pop((session_id, path), None)
        event = await self.log.append(
            session_id, FileWritten(path, size=len(data), sha256=digest, source=source)
        )
        await FileSnapshot.update_or_create(
            defaults={"sha256": digest, "size": len(data), "seq": event.seq},
            session_id=session_id,
            path=path,
        )
        await FileVersion.create(
            session_id=session_id, path=path, seq=event.seq, sha256=digest, size=len(data)
        )
        return StoredFile(path=path, size=len(data), sha256=digest)

    async def skipped(
        self,
        session_id: uuid.UUID,
        path: str,
        *,
        size: int,
        reason: str,
        sha256: str | None = None,
        source: str | None = None,
    ) -> None:
        """Record once that a file was left out of the recording, and why."""
        key, marker = (session_id, path), f"{reason}:{sha256 or ''}"
        if self._skips.get(key) == marker:
            return
        self._skips[key] = marker
        self._skips.move_to_end(key)
        while len(self._skips) > _SKIPS_REMEMBERED:
            self._skips.popitem(last=False)
        await self.log.append(
            session_id,
            FileSkipped(path, size=size, reason=reason, sha256=sha256, source=source),
        )

    async def deleted(self, session_id: uuid.UUID, path: str, *, source: str) -> None:
        """Record that ``path`` is gone: a file, or a directory and every file under it."""
        self._skips.pop((session_id, path), None)
        live = FileSnapshot.filter(_at_or_under([path]), session_id=session_id)
        affected = [
            (snap_id, snap_path)
            for snap_id, snap_path in await live.filter(sha256__isnull=False).values_list(
                "id", "path"
            )
            if within(path, str(snap_path))
        ]
        event = await self.log.append(session_id, FileDeleted(path, source=source))
        now = datetime.now(UTC)
        for start in range(0, len(affected), _ROWS_PER_STATEMENT):
            ids = [snap_id for snap_id, _ in affected[start : start + _ROWS_PER_STATEMENT]]
            await FileSnapshot.filter(id__in=ids).update(
                sha256=None, size=0, seq=event.seq, updated_at=now
            )
        if affected:
            await FileVersion.bulk_create(
                [
                    FileVersion(session_id=session_id, path=snap_path, seq=event.seq, sha256=None)
                    for _, snap_path in affected
                ],
                batch_size=_ROWS_PER_STATEMENT,
            )

    async def current(
        self, session_id: uuid.UUID, under: Collection[str] | None = None
    ) -> dict[str, StoredFile]:
        """The session's files as last recorded (deleted ones left out).

        ``under``: only those at or under these paths (files or directories).
        """
        query = FileSnapshot.filter(session_id=session_id, sha256__isnull=False)
        if under is not None and len(under) <= _PREFIXES_PER_QUERY:
            if not under:
                return {}
            query = query.filter(_at_or_under(under))
        return {
            s.path: StoredFile(path=s.path, size=s.size, sha256=s.sha256 or "")
            for s in await query
            if under is None or any(within(root, s.path) for root in under)
        }

    async def content(self, sha256: str) -> bytes:
        return await blob_content(sha256)


async def blob_content(sha256: str) -> bytes:
    blob = await FileBlob.get(sha256=sha256)
    return bytes(blob.content)
