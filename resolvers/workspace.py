"""Files of a session's workspace through the API: list, read, write, delete.

Reads come from the running sandbox, or, when none runs, from the recording's
snapshots (so an ended interview can still be browsed). Writes and deletes
need a running sandbox and are recorded (content-addressed) as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from resolvers.auth import Principal
from resolvers.errors import BadUserInput, NotFound
from resolvers.files import sha256_hex
from resolvers.sandboxes import Sandboxes
from resolvers.sessions import get_session


@dataclass(frozen=True, slots=True)
class FileContent:
    path: str
    size: int
    sha256: str
    data: bytes
    source: Literal["sandbox", "recording"]


def checked_path(field: str, path: str, *, allow_root: bool = False) -> str:
    try:
        normalized = normalize_workspace_path(path)
    except InvalidPath as exc:
        raise BadUserInput(field, str(exc)) from None
    if not normalized and not allow_root:
        raise BadUserInput(field, "must name a file inside /workspace")
    return normalized


def _file_error(exc: SandboxFileError, field: str = "path") -> Exception:
    if isinstance(exc, FileNotFoundInSandbox):
        return NotFound("file")
    if isinstance(exc, FileTooLarge):
        return BadUserInput(field, str(exc))
    return BadUserInput(field, str(exc))


async def list_files(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> list[FileEntry]:
    session = await get_session(principal, session_id, log=sandboxes.log)
    prefix = checked_path("path", path, allow_root=True)
    record = await sandboxes.live(session.id)
    if record is not None and record.backend_id:
        backend_id = record.backend_id
        try:
            return await sandboxes.call(
                lambda: sandboxes.backend.list_files(backend_id, prefix, recursive=True)
            )
        except SandboxFileError as exc:
            raise _file_error(exc) from None
    snaps = await FileSnapshot.filter(session_id=session.id, sha256__isnull=False)
    under = [s for s in snaps if not prefix or s.path == prefix or s.path.startswith(prefix + "/")]
    return [
        FileEntry(path=s.path, kind="file", size=s.size, mtime=s.updated_at.timestamp())
        for s in sorted(under, key=lambda s: s.path)
    ]


async def read_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> FileContent:
    session = await get_session(principal, session_id, log=sandboxes.log)
    relative = checked_path("path", path)
    record = await sandboxes.live(session.id)
    if record is not None and record.backend_id:
        backend_id = record.backend_id
        try:
            data = await sandboxes.call(lambda: sandboxes.backend.read_file(backend_id, relative))
        except SandboxFileError as exc:
            raise _file_error(exc) from None
        return FileContent(relative, len(data), sha256_hex(data), data, "sandbox")
    snap = await FileSnapshot.get_or_none(
        session_id=session.id, path=relative, sha256__isnull=False
    )
    if snap is None or snap.sha256 is None:
        raise NotFound("file")
    data = await sandboxes.files.content(snap.sha256)
    return FileContent(relative, len(data), snap.sha256, data, "recording")


async def write_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str, data: bytes
) -> FileContent:
    relative = checked_path("path", path)
    limit = sandboxes.policy.max_file_bytes
    if len(data) > limit:
        raise BadUserInput("content", f"is {len(data)} bytes; the limit is {limit}")
    session, record = await sandboxes.require_live(principal, session_id)
    backend_id = record.backend_id or ""
    try:
        await sandboxes.call(lambda: sandboxes.backend.write_file(backend_id, relative, data))
    except SandboxFileError as exc:
        raise _file_error(exc, "content" if isinstance(exc, FileTooLarge) else "path") from None
    stored = await sandboxes.files.written(session.id, relative, data, source="api")
    return FileContent(relative, stored.size, stored.sha256, data, "sandbox")


async def delete_file(
    sandboxes: Sandboxes, principal: Principal, session_id: str, path: str
) -> str:
    relative = checked_path("path", path)
    session, record = await sandboxes.require_live(principal, session_id)
    backend_id = record.backend_id or ""
    try:
        await sandboxes.call(lambda: sandboxes.backend.delete(backend_id, relative))
    except SandboxFileError as exc:
        raise _file_error(exc) from None
    await sandboxes.files.deleted(session.id, relative, source="api")
    return relative
