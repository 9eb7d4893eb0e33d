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
it short) are looked up one by one rather than recorded as deleted; a
directory found missing answers for every recorded file under it, and is one
``file.deleted`` event for the directory (``rm -rf`` of a big tree).

Live changes (``resolvers.file_watch``) come through ``sync_paths``: the same
comparison and recording, limited to the paths a watcher reported. Both hold
the session's lock, so a sync point and the watcher never record one change
twice, and a change seen by neither while the other runs is seen after it.

A file whose size and mtime are unchanged since it was last hashed is not
read again for ``REHASH_AFTER_S``, so a burst of commands does not re-read a
large workspace each time; the periodic re-read, and the final capture before
a sandbox ends (which reads everything), catch a forged mtime.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from modal_app.base import FileEntry, FileNotFoundInSandbox, FileTooLarge, SandboxFileError
from models.sandbox import SandboxRecord
from resolvers.files import StoredFile, sha256_hex, within

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


def worth_entering(directory: str) -> bool:
    """Whether a directory can hold tracked files (what watchers watch, too)."""
    prefix = directory + "/"
    return tracked(prefix + "x") or any(kept.startswith(prefix) for kept in KEPT_DIRS)


@dataclass(frozen=True, slots=True)
class _Hashed:
    size: int
    mtime: float
    sha256: str
    at: float


@dataclass(slots=True)
class _Seen:
    hashes: dict[str, _Hashed] = field(default_factory=dict)
    """Path -> what its content hashed to, at which size and mtime."""
    full_sync_at: float = float("-inf")
    """When (monotonic) the last full sync began: it saw every change made before."""


@dataclass(frozen=True, slots=True)
class PathsSynced:
    changed: int
    left: tuple[str, ...] = ()
    """Paths not looked at because ``max_changes`` was reached."""


_SANDBOXES: OrderedDict[str, _Seen] = OrderedDict()
# Weak: a session's lock lives as long as a sync holds or waits for it.
_LOCKS: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = weakref.WeakValueDictionary()


def _seen(sandbox_id: str) -> _Seen:
    seen = _SANDBOXES.setdefault(sandbox_id, _Seen())
    _SANDBOXES.move_to_end(sandbox_id)
    while len(_SANDBOXES) > _CACHED_SANDBOXES:
        _SANDBOXES.popitem(last=False)
    return seen


def last_full_sync(sandbox_id: str) -> float:
    seen = _SANDBOXES.get(sandbox_id)
    return seen.full_sync_at if seen is not None else float("-inf")


def read_paths(sandbox_id: str) -> Container[str]:
    """Paths a sync has read in this sandbox: files already in the recording, mostly."""
    seen = _SANDBOXES.get(sandbox_id)
    return seen.hashes if seen is not None else {}


def session_lock(session_id: uuid.UUID) -> asyncio.Lock:
    return _LOCKS.setdefault(session_id, asyncio.Lock())


async def _walk(sandboxes: Sandboxes, sandbox_id: str, root: str = "") -> dict[str, FileEntry]:
    """Tracked entries under ``root``, directory by directory, at most about MAX_SYNC_ENTRIES."""
    backend = sandboxes.backend
    found: dict[str, FileEntry] = {}
    todo: deque[str] = deque([root])
    while todo:
        directory = todo.popleft()
        try:
            entries = await sandboxes.call(
                partial(backend.list_files, sandbox_id, directory, recursive=False),
                scope=sandbox_id,
            )
        except SandboxFileError:
            if directory == root:
                raise
            continue  # removed or swapped for a link meanwhile
        for entry in entries:
            if entry.path == directory:
                continue  # a directory swapped for a file lists itself
            if entry.kind == "dir":
                if worth_entering(entry.path):
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
    sandbox_id = record.backend_id or ""
    async with session_lock(record.session_id):
        _seen(sandbox_id).full_sync_at = time.monotonic()
        listed = await _walk(sandboxes, sandbox_id)
        known = await sandboxes.files.current(record.session_id)
        synced = await _record(sandboxes, record, listed, known, source=source, thorough=thorough)
        return synced.changed


def _roots(paths: Iterable[str]) -> list[str]:
    """The paths, without those inside another one of them."""
    roots: list[str] = []
    for path in sorted(set(paths)):
        if not any(within(root, path) for root in roots):
            roots.append(path)
    return roots


async def sync_paths(
    sandboxes: Sandboxes,
    record: SandboxRecord,
    paths: Iterable[str],
    *,
    source: str = "sandbox",
    max_changes: int | None = None,
) -> PathsSynced:
    """Record what differs at these paths (a directory: everything under it).

    Every file found is read again (a watcher said it changed); at most
    ``max_changes`` changes are recorded, the paths not reached are returned.
    """
    backend, sandbox_id = sandboxes.backend, record.backend_id or ""
    roots = _roots(p for p in paths if tracked(p))
    async with session_lock(record.session_id):
        listed: dict[str, FileEntry] = {}
        for root in roots:
            try:
                entry = await sandboxes.call(
                    partial(backend.stat, sandbox_id, root), scope=sandbox_id
                )
                if entry.kind == "dir" and worth_entering(root):
                    listed.update(await _walk(sandboxes, sandbox_id, root))
                elif entry.kind != "dir":
                    listed[root] = entry
            except SandboxFileError:
                continue  # gone (recorded as deleted below) or unreachable
        known = await sandboxes.files.current(record.session_id, under=roots)
        return await _record(
            sandboxes, record, listed, known, source=source, thorough=True, max_changes=max_changes
        )


async def _look_up_unlisted(
    sandboxes: Sandboxes,
    sandbox_id: str,
    known: dict[str, StoredFile],
    listed: dict[str, FileEntry],
) -> list[str]:
    """Look up (into ``listed``) recorded files the walk did not see; returns directories gone.

    A listing cut short by a huge directory must not lose the code, so each is
    looked up before it is called deleted; a directory found missing answers
    for every file under it (the highest such directory is returned).
    """
    backend = sandboxes.backend
    gone_dirs: list[str] = []
    present_dirs: set[str] = set()

    async def missing(path: str) -> bool:
        try:
            entry = await sandboxes.call(partial(backend.stat, sandbox_id, path), scope=sandbox_id)
        except FileNotFoundInSandbox:
            return True
        except SandboxFileError:
            return False  # unreachable: not known to be gone
        listed.setdefault(path, entry)
        return False

    for path in sorted(p for p in set(known) - set(listed) if tracked(p)):
        if any(within(d, path) for d in gone_dirs) or not await missing(path):
            continue
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory in present_dirs:
                continue
            if await missing(directory):
                gone_dirs.append(directory)
                break
            present_dirs.add(directory)
    return gone_dirs


async def _record(
    sandboxes: Sandboxes,
    record: SandboxRecord,
    listed: dict[str, FileEntry],
    known: dict[str, StoredFile],
    *,
    source: str,
    thorough: bool,
    max_changes: int | None = None,
) -> PathsSynced:
    """Record how ``listed`` (what the sandbox has) differs from ``known`` (the recording)."""
    backend, sandbox_id = sandboxes.backend, record.backend_id or ""
    session_id = record.session_id
    files, limit = sandboxes.files, sandboxes.policy.max_file_bytes
    gone_dirs = await _look_up_unlisted(sandboxes, sandbox_id, known, listed)
    present = {path: e for path, e in listed.items() if e.kind == "file"}
    hashes = _seen(sandbox_id).hashes
    now = time.monotonic()
    changed = 0
    # A directory removed whole is one deletion (rm -rf of a big tree is one event).
    gone = sorted(
        {
            next((d for d in gone_dirs if within(d, path)), path)
            for path in set(known) - set(present)
            if tracked(path)
        }
    )
    work = sorted(present) + gone
    for index, path in enumerate(work):
        if max_changes is not None and changed >= max_changes:
            return PathsSynced(changed, tuple(work[index:]))
        if path not in present:
            for cached in [p for p in hashes if within(path, p)] if path in gone_dirs else [path]:
                hashes.pop(cached, None)
            await files.deleted(session_id, path, source=source)
            changed += 1
            continue
        entry = present[path]
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
    return PathsSynced(changed)
