"""Bringing changes made inside a sandbox into the recording.

Commands, the terminal and the agent change files without going through
``writeFile``. After each of them (and before a sandbox is terminated) the
workspace is listed and compared with the session's snapshot; what differs
becomes ``file.written`` / ``file.deleted`` events with ``source: "sandbox"``.

Not recorded: tool caches and dependencies (any directory whose name starts
with a dot, but for the agent's config dir; ``node_modules``, ``__pycache__``),
which are not even listed; anything but regular files (sockets, FIFOs,
devices and symlinks are never opened); files over the file size limit and
files that cannot be read (``file.skipped`` with the reason, once per path and
reason, so the gap is visible). Server secrets found in a file (the agent
could write its API key somewhere) are replaced before anything is stored.

The workspace is the candidate's: every failure about one of its files is
that file's problem and the sync goes on with the rest, so one planted FIFO
or socket cannot stop later changes (the final code) from being recorded.
The walk is bounded (``MAX_SYNC_ENTRIES``, and each listing by the backend);
files already in the recording that it did not reach (a huge directory cut
it short) are looked up one by one rather than recorded as deleted.

A file whose size and mtime are unchanged since it was last hashed is not
read again for ``REHASH_AFTER_S``, so a burst of commands does not re-read a
large workspace each time; the periodic re-read, and the final capture before
a sandbox ends (which reads everything), catch a forged mtime.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from modal_app.base import FileEntry, FileNotFoundInSandbox, FileTooLarge, SandboxFileError
from models.sandbox import SandboxRecord
from resolvers.files import sha256_hex

if TYPE_CHECKING:
    from resolvers.sandboxes import Sandboxes

IGNORED_DIRS = frozenset({"node_modules", "__pycache__"})
MAX_SYNC_ENTRIES = 10_000
REHASH_AFTER_S = 60.0
_CACHED_SANDBOXES = 256


# The agent's config dir (its conversations, for --resume) is kept with the
# workspace, so it survives a sandbox restart like the candidate's files.
KEPT_DIRS = (".interviewlm/claude/",)


def tracked(path: str) -> bool:
    if path.startswith(KEPT_DIRS):
        return True
    directories = path.split("/")[:-1]
    return not any(d.startswith(".") or d in IGNORED_DIRS for d in directories)


def _worth_entering(directory: str) -> bool:
    prefix = directory + "/"
    return tracked(prefix + "x") or any(kept.startswith(prefix) for kept in KEPT_DIRS)


@dataclass(frozen=True, slots=True)
class _Hashed:
    size: int
    mtime: float
    sha256: str
    at: float


# sandbox id -> path -> what its content hashed to, at which size and mtime.
_HASHES: OrderedDict[str, dict[str, _Hashed]] = OrderedDict()


def _hashes_of(sandbox_id: str) -> dict[str, _Hashed]:
    hashes = _HASHES.setdefault(sandbox_id, {})
    _HASHES.move_to_end(sandbox_id)
    while len(_HASHES) > _CACHED_SANDBOXES:
        _HASHES.popitem(last=False)
    return hashes


async def _walk(sandboxes: Sandboxes, sandbox_id: str) -> dict[str, FileEntry]:
    """Tracked entries, directory by directory, at most about MAX_SYNC_ENTRIES."""
    backend = sandboxes.backend
    found: dict[str, FileEntry] = {}
    todo: deque[str] = deque([""])
    while todo:
        directory = todo.popleft()
        try:
            entries = await sandboxes.call(
                partial(backend.list_files, sandbox_id, directory, recursive=False),
                scope=sandbox_id,
            )
        except SandboxFileError:
            if not directory:
                raise
            continue  # removed or swapped for a link meanwhile
        for entry in entries:
            if entry.path == directory:
                continue  # a directory swapped for a file lists itself
            if entry.kind == "dir":
                if _worth_entering(entry.path):
                    todo.append(entry.path)
            elif tracked(entry.path):
                found[entry.path] = entry
            if len(found) + len(todo) >= MAX_SYNC_ENTRIES:
                return found
    return found


async def sync_workspace(
    sandboxes: Sandboxes, record: SandboxRecord, *, source: str = "sandbox", thorough: bool = False
) -> int:
    """Record every difference; returns how many paths changed.

    ``thorough`` (the final capture before a sandbox ends) re-reads every file
    whatever its size and mtime say.
    """
    backend, sandbox_id = sandboxes.backend, record.backend_id or ""
    session_id = record.session_id
    files, limit = sandboxes.files, sandboxes.policy.max_file_bytes
    listed = await _walk(sandboxes, sandbox_id)
    known = await files.current(session_id)
    # A recorded file the walk did not see is looked up before it is called
    # deleted: a listing cut short by a huge directory must not lose the code.
    for path in sorted(p for p in set(known) - set(listed) if tracked(p)):
        try:
            listed[path] = await sandboxes.call(
                partial(backend.stat, sandbox_id, path), scope=sandbox_id
            )
        except SandboxFileError:
            continue  # gone: recorded as deleted below
    present = {path: e for path, e in listed.items() if e.kind == "file"}
    hashes = _hashes_of(sandbox_id)
    now = time.monotonic()
    changed = 0
    for path, entry in sorted(present.items()):
        if entry.size > limit:
            await files.skipped(
                session_id, path, size=entry.size, reason="over the file size limit"
            )
            continue
        old = known.get(path)
        seen = hashes.get(path)
        if (
            old is not None
            and seen is not None
            and (seen.size, seen.mtime, seen.sha256) == (entry.size, entry.mtime, old.sha256)
            and now - seen.at < REHASH_AFTER_S
            and not thorough
        ):
            continue  # unchanged since we last read it
        try:
            raw = await sandboxes.call(
                partial(backend.read_file, sandbox_id, path, max_bytes=limit), scope=sandbox_id
            )
        except FileNotFoundInSandbox:
            continue  # removed since the listing: the next sync records it
        except FileTooLarge:
            await files.skipped(
                session_id, path, size=entry.size, reason="over the file size limit"
            )
            continue
        except SandboxFileError as exc:
            # Swapped for a FIFO or socket after the listing, unreadable, ...
            await files.skipped(session_id, path, size=entry.size, reason=str(exc))
            continue
        data = sandboxes.redact(raw)
        digest = sha256_hex(data)
        hashes[path] = _Hashed(entry.size, entry.mtime, digest, now)
        if old is None or old.sha256 != digest:
            await files.written(session_id, path, data, source=source)
            changed += 1
    for path in sorted(p for p in set(known) - set(present) if tracked(p)):
        hashes.pop(path, None)
        await files.deleted(session_id, path, source=source)
        changed += 1
    return changed
