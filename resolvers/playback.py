"""Playback: a session's workspace as it was right after any event, and blobs by hash.

``FileRecorder`` adds a ``FileVersion`` row for every path each file event
changes, so the file at seq N is that path's version with the greatest
``seq <= N`` (one index lookup) and the snapshot at N is the newest version
of every path up to N. Content comes from the content-addressed blobs.

A blob is served only through a session whose recording refers to it
(``SessionBlob``): any other hash -- another session's, another account's,
one never stored -- is NOT_FOUND, the same answer as a hash that exists
nowhere, so ``blob`` is no oracle for what other sessions hold.

``atSeq`` must be between 0 (before the first event: an empty workspace) and
the session's ``lastSeq``; a seq past it names a moment that has not happened
and is BAD_USER_INPUT rather than silently the present.

Versions are written right after their event, like the snapshot (not in the
event's transaction): for that moment a reader at the newest seq still sees
the previous version. Migration 0009's backfill is idempotent and rebuilds
the index from the file events if a row was ever lost.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from models.file import FileBlob, FileSnapshot, FileVersion, SessionBlob
from models.session import InterviewSession
from resolvers.auth import Principal
from resolvers.errors import BadUserInput, NotFound
from resolvers.files import blob_content
from resolvers.sessions import get_session
from resolvers.workspace import OpenedFile, checked_path

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: str
    size: int
    sha256: str


def checked_seq(session: InterviewSession, at_seq: int) -> int:
    if not 0 <= at_seq <= session.last_seq:
        raise BadUserInput(
            "atSeq", f"must be between 0 and the session's lastSeq ({session.last_seq})"
        )
    return at_seq


def _recorded(path: str, size: int, sha256: str) -> OpenedFile:
    # Recorded content was under the size limit of its time: always served.
    return OpenedFile(
        path, size, "recording", lambda: blob_content(sha256), max_bytes=size, sha256=sha256
    )


async def file_at(principal: Principal, session_id: str, path: str, at_seq: int) -> OpenedFile:
    """The file at ``path`` as it was right after event ``at_seq``; NOT_FOUND if none was."""
    session = await get_session(principal, session_id)
    relative = checked_path("path", path)
    seq = checked_seq(session, at_seq)
    version = (
        await FileVersion.filter(session_id=session.id, path=relative, seq__lte=seq)
        .order_by("-seq")
        .only("sha256", "size")
        .first()
    )
    if version is None or version.sha256 is None:
        raise NotFound("file")
    return _recorded(relative, version.size, version.sha256)


async def snapshot_at(
    principal: Principal, session_id: str, at_seq: int | None = None
) -> list[SnapshotFile]:
    """Every file of the workspace right after event ``at_seq`` (default: the last), by path."""
    session = await get_session(principal, session_id)
    seq = session.last_seq if at_seq is None else checked_seq(session, at_seq)
    rows = (
        await FileVersion.filter(session_id=session.id, seq__lte=seq)
        .order_by("seq")
        .values_list("path", "sha256", "size")
    )
    latest: dict[str, tuple[str | None, int]] = {}
    for path, sha256, size in rows:
        latest[path] = (sha256, size)
    return [
        SnapshotFile(path, size, sha256)
        for path, (sha256, size) in sorted(latest.items())
        if sha256 is not None
    ]


async def blob(principal: Principal, session_id: str, sha256: str) -> OpenedFile:
    """Content by hash, only if the session's recording refers to it (else NOT_FOUND)."""
    session = await get_session(principal, session_id)
    digest = sha256.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise BadUserInput("sha256", "must be 64 hexadecimal digits")
    if not await SessionBlob.exists(session_id=session.id, sha256=digest):
        raise NotFound("blob")
    stored = await FileBlob.filter(sha256=digest).only("sha256", "size").first()
    if stored is None:  # referred to a moment before the blob itself is stored
        raise NotFound("blob")
    return _recorded("", stored.size, digest)


async def snapshot_of_hashes(session_id: uuid.UUID, files: dict[str, str]) -> list[SnapshotFile]:
    """``{path: sha256}`` (a test run's code) with sizes, for hashes the session refers to.

    The caller has reached the session already (through the test run)."""
    sizes = dict(
        await SessionBlob.filter(session_id=session_id, sha256__in=set(files.values())).values_list(
            "sha256", "size"
        )
    )
    # Every hash a test run tested was stored, hence referred to: the filter
    # only guards against serving a hash the session does not own.
    return [
        SnapshotFile(path, int(sizes[sha]), sha)
        for path, sha in sorted(files.items())
        if sha in sizes
    ]


async def recorded_hashes(principal: Principal, session_id: str) -> dict[str, str]:
    """Each recorded path's last recorded hash, in one query for a whole listing.

    While a sandbox runs, a change it has not recorded yet is not reflected:
    this is the hash the recording holds, not a hash of what is on disk now."""
    session = await get_session(principal, session_id)
    rows = await FileSnapshot.filter(session_id=session.id, sha256__isnull=False).values_list(
        "path", "sha256"
    )
    return {path: sha for path, sha in rows}
