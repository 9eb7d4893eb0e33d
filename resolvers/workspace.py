"""Files of a session's workspace through the API: list, read, write, delete.

Reads come from the running sandbox, or, when none runs, from the recording's
snapshots (so an ended interview can still be browsed). A read is a stat
first; content is read only when asked for, and never past MAX_FILE_BYTES
(the backend's own, larger, file limit is not what a request may read).
Sockets, FIFOs and devices are listed with their kind and never read. Writes and
deletes go to the running sandbox and are recorded (content-addressed) as they
happen; while no sandbox runs (never started yet, or stopped by the idle
reaper) they go to the recording alone, as ``source: "editor"``, so an
editor's autosave never fails after a coffee break, and the next sandbox starts
with them. Once the session has ended, nothing changes (CONFLICT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Literal

from modal_app.base import (
    FileEntry,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    SandboxFileError,
)
from modal_app.paths import normalize_workspace_path
from models.file import FileSnapshot
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession
from resolvers.auth import Principal
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.files import sha256_hex
from resolvers.sandboxes import Sandboxes
from resolvers.sessions import get_session
from resolvers.workspace_sync import session_lock


@dataclass(frozen=True, slots=True)
class FileContent:
    path: str
    size: int
    sha256: str
    data: bytes
    source: Literal["sandbox", "recording"]


def checked_path(field: str, path: str, *, allow_root: bool = False) -> str:
    if not _is_utf8(path):
        # A JSON "\udcff" escape decodes to a lone surrogate: no file can be named
        # by it through the API, and no PostgreSQL text can hold it.
        raise BadUserInput(field, "must be valid Unicode text (no lone surrogates)")
    try:
        normalized = normalize_workspace_path(path)
    except InvalidPath as exc:
        raise BadUserInput(field, str(exc)) from None
    if not normalized and not allow_root:
        raise BadUserInput(field, "must name a file inside /workspace")
    return normalized


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _file_error(exc: SandboxFileError, field: str = "path") -> Exception:
    """A file operation's failure is that request's answer (never the backend's health)."""
    if isinstance(exc, FileNotFoundInSandbox):
        return NotFound("file")
    return BadUserInput(field, str(exc))


async def list_files(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> list[FileEntry]:
    session = await get_session(principal, session_id)
    prefix = checked_path("path", path, allow_root=True)
    record = await sandboxes.live(session.id)
    if record is not None and record.backend_id:
        backend_id = record.backend_id
        try:
            return await sandboxes.call(
                lambda: sandboxes.backend.list_files(backend_id, prefix, recursive=True),
                scope=backend_id,
            )
        except SandboxFileError as exc:
            raise _file_error(exc) from None
    snaps = await FileSnapshot.filter(session_id=session.id, sha256__isnull=False)
    under = [s for s in snaps if not prefix or s.path == prefix or s.path.startswith(prefix + "/")]
    return [
        FileEntry(path=s.path, kind="file", size=s.size, mtime=s.updated_at.timestamp())
        for s in sorted(under, key=lambda s: s.path)
    ]


class OpenedFile:
    """One ``file()`` answer: metadata from a stat, content read at most once and only if asked.

    Asking only for ``path``/``size`` never reads the file; ``content`` and
    ``sha256`` read it once (concurrent resolvers share the read), refusing a
    file over ``max_bytes`` with BAD_USER_INPUT instead of reading it.
    """

    def __init__(
        self,
        path: str,
        size: int,
        source: Literal["sandbox", "recording"],
        read: Callable[[], Awaitable[bytes]],
        *,
        max_bytes: int,
        sha256: str | None = None,
    ) -> None:
        self.path = path
        self.size = size
        self.source = source
        self.max_bytes = max_bytes
        self._read = read
        self._sha256 = sha256
        self._loading: asyncio.Task[bytes] | None = None

    async def data(self) -> bytes:
        if self.size > self.max_bytes:
            raise BadUserInput(
                "path",
                f"is {self.size} bytes; content and sha256 are served for files "
                f"up to {self.max_bytes} bytes (MAX_FILE_BYTES)",
            )
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._loading)

    async def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_hex(await self.data())
        return self._sha256

    async def content(self) -> FileContent:
        data = await self.data()
        return FileContent(self.path, len(data), await self.sha256(), data, self.source)


def _unreadable(entry: FileEntry) -> BadUserInput | None:
    if entry.kind == "dir":
        return BadUserInput("path", "is a directory")
    if entry.kind not in ("file", "symlink"):
        return BadUserInput("path", f"is a {entry.kind}; only regular files can be read")
    return None


async def open_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> OpenedFile:
    """A file of the session's workspace (running sandbox first, else the recording)."""
    session = await get_session(principal, session_id)
    relative = checked_path("path", path)
    limit = sandboxes.policy.max_file_bytes
    record = await sandboxes.live(session.id)
    if record is not None and record.backend_id:
        backend, backend_id = sandboxes.backend, record.backend_id

        async def read() -> bytes:
            try:
                return await sandboxes.call(
                    partial(backend.read_file, backend_id, relative, max_bytes=limit),
                    scope=backend_id,
                )
            except SandboxFileError as exc:
                raise _file_error(exc) from None

        try:
            entry = await sandboxes.call(
                partial(backend.stat, backend_id, relative), scope=backend_id
            )
        except SandboxFileError as exc:
            raise _file_error(exc) from None
        if (refused := _unreadable(entry)) is not None:
            raise refused
        opened = OpenedFile(relative, entry.size, "sandbox", read, max_bytes=limit)
        if entry.kind == "symlink":
            # A link inside the workspace: its size is the target's, known once read.
            opened.size = len(await opened.data())
        return opened
    snap = await FileSnapshot.get_or_none(
        session_id=session.id, path=relative, sha256__isnull=False
    )
    if snap is None or snap.sha256 is None:
        raise NotFound("file")
    sha = snap.sha256
    return OpenedFile(
        relative,
        snap.size,
        "recording",
        lambda: sandboxes.files.content(sha),
        max_bytes=max(limit, snap.size),  # recorded under the limit of its time
        sha256=sha,
    )


async def read_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> FileContent:
    """A whole file (up to MAX_FILE_BYTES), for callers that need the content."""
    opened = await open_file(sandboxes, principal, session_id, path)
    return await opened.content()


async def write_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str, data: bytes
) -> FileContent:
    relative = checked_path("path", path)
    limit = sandboxes.policy.max_file_bytes
    if len(data) > limit:
        raise BadUserInput("content", f"is {len(data)} bytes; the limit is {limit}")
    session = await _open_session(principal, session_id)
    record = await _running(sandboxes, session)
    if record is None:
        await _check_fits_recording(sandboxes, session, relative)
        stored = await sandboxes.files.written(session.id, relative, data, source="editor")
        if not stored.stored:
            raise Conflict("the session's storage budget is used up; start the sandbox to save")
        # A start that began before this save may have copied the recording without
        # it: once that start is over, the save goes into its sandbox too.
        record = await _running(sandboxes, session)
        if record is None:
            return FileContent(relative, stored.size, stored.sha256, data, "recording")
    backend_id = record.backend_id or ""
    # Held over the write and its record: the live watcher, seeing the change before
    # it is recorded, would record the same content a second time (as "sandbox").
    async with session_lock(session.id):
        try:
            await sandboxes.call(
                lambda: sandboxes.backend.write_file(backend_id, relative, data),
                scope=backend_id,
            )
        except SandboxFileError as exc:
            field = "content" if isinstance(exc, FileTooLarge) else "path"
            raise _file_error(exc, field) from None
        stored = await sandboxes.files.written(session.id, relative, data, source="api")
    return FileContent(relative, stored.size, stored.sha256, data, "sandbox")


async def delete_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> str:
    relative = checked_path("path", path)
    session = await _open_session(principal, session_id)
    record = await _running(sandboxes, session)
    if record is None:
        recorded = await sandboxes.files.current(session.id)
        prefix = relative + "/"
        if not any(p == relative or p.startswith(prefix) for p in recorded):
            raise NotFound("file")
        await sandboxes.files.deleted(session.id, relative, source="editor")
        # A start that began before this save may have copied the recording without
        # it: once that start is over, the save goes into its sandbox too.
        record = await _running(sandboxes, session)
        if record is None:
            return relative
    backend_id = record.backend_id or ""
    async with session_lock(session.id):  # as in write_file
        try:
            await sandboxes.call(
                lambda: sandboxes.backend.delete(backend_id, relative), scope=backend_id
            )
        except FileNotFoundInSandbox:
            # Deleted from the recording while the sandbox was starting with it gone already.
            return relative
        except SandboxFileError as exc:
            raise _file_error(exc) from None
        await sandboxes.files.deleted(session.id, relative, source="api")
    return relative


async def _check_fits_recording(
    sandboxes: Sandboxes, session: InterviewSession, relative: str
) -> None:
    """A save without a sandbox must be a file a filesystem could hold next to the
    recorded ones (the next sandbox is built from them): not under a recorded file,
    not where recorded files make a directory."""
    recorded = await sandboxes.files.current(session.id)
    parts = relative.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if parent in recorded:
            raise BadUserInput("path", f"{parent!r} is a file, not a directory")
    prefix = relative + "/"
    if any(path.startswith(prefix) for path in recorded):
        raise BadUserInput("path", "is a directory")


async def _open_session(principal: Principal, session_id: str) -> InterviewSession:
    session = await get_session(principal, session_id)
    if not session.status.is_open:
        raise Conflict(f"session is {session.status.value}; its files can no longer change")
    return session


async def _running(sandboxes: Sandboxes, session: InterviewSession) -> SandboxRecord | None:
    """The session's sandbox once it runs (a start in progress is waited out), or None."""
    record = await sandboxes.live(session.id)
    if record is None:
        return None
    record = await sandboxes.settled(record)
    if record.state is not SandboxState.RUNNING or not record.backend_id:
        return None
    await SandboxRecord.filter(id=record.id).update(last_activity_at=datetime.now(UTC))
    return record
