"""Watching sandbox workspaces from the host with inotify: one instance for all sandboxes.

Not ``watchfiles``: its recursive watcher follows symlinks, so a candidate's
``ln -s / root`` would have the server (root) watch the whole host; it cannot
be bounded; and each watcher holds one of the user's inotify instances (128 by
default) and a worker thread.

Here one inotify instance serves every sandbox of the backend and is read on
the event loop (``add_reader``), a bounded number of reads per wake-up so a
flood of changes cannot starve the loop.  Directories are opened one
component at a time with O_NOFOLLOW from the workspace's fd and watched
through ``/proc/self/fd``, so a symlink (or a directory swapped for one
meanwhile) is never entered, and nothing is ever read: only names are
reported.  Each sandbox watches at most ``max_dirs`` directories (the
kernel's watches are shared by the whole host, so a million directories must
not exhaust them); past that, or after a kernel queue overflow, batches say
``complete=False`` and the unwatched changes wait for the next sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from functools import partial

from modal_app.base import BackendUnavailable, WatchFilter, WorkspaceChanges
from modal_app.local.listing import printable_name
from modal_app.local.walk import DIR_FLAGS

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
_MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_ONLYDIR
    | IN_EXCL_UNLINK
)
_EVENT = struct.Struct("iIII")
_READ_SIZE = 64 * 1024
_READS_PER_WAKE = 8
_SCAN_STEP = 64
"""Directories added per turn of a watch, so a deep new tree does not hold the loop."""


@dataclass(eq=False)
class _Watch:
    workspace: str
    enter: WatchFilter
    max_pending: int
    dirs: dict[int, str] = field(default_factory=dict)
    """Watch descriptor -> directory relative to the workspace ('' is the root)."""
    pending: set[str] = field(default_factory=set)
    to_scan: deque[tuple[str, bool]] = field(default_factory=deque)
    """Directories to watch, and whether to report them once watched (new ones)."""
    over_budget: bool = False
    lost: bool = False
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def changed(self, path: str) -> None:
        if len(self.pending) >= self.max_pending:
            self.pending.clear()
            self.lost = True
        else:
            self.pending.add(path)
        self.wake.set()


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


class WorkspaceWatcher:
    """The backend's inotify instance and the watch of each sandbox."""

    def __init__(self, *, max_dirs: int, max_pending: int = 10_000) -> None:
        self.max_dirs = max_dirs
        self.max_pending = max_pending
        self._fd: int | None = None
        self._by_wd: dict[int, _Watch] = {}
        self._watches: dict[str, _Watch] = {}

    def _instance(self) -> int:
        if self._fd is None:
            fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                code = ctypes.get_errno()
                raise BackendUnavailable(f"inotify is unavailable: {os.strerror(code)}")
            asyncio.get_running_loop().add_reader(fd, self._on_readable)
            self._fd = fd
        return self._fd

    async def watch(
        self, sandbox_id: str, workspace: str, enter: WatchFilter
    ) -> AsyncGenerator[WorkspaceChanges, None]:
        self._instance()
        self.close(sandbox_id)
        watch = _Watch(workspace, enter, self.max_pending)
        watch.to_scan.append(("", False))
        self._watches[sandbox_id] = watch
        try:
            while not watch.closed:
                self._scan(watch)
                if watch.pending or watch.lost:
                    batch = WorkspaceChanges(
                        frozenset(watch.pending), complete=not (watch.lost or watch.over_budget)
                    )
                    watch.pending, watch.lost = set(), False
                    yield batch
                elif watch.to_scan:
                    await asyncio.sleep(0)
                else:
                    await watch.wake.wait()
                    watch.wake.clear()
        finally:
            if self._watches.get(sandbox_id) is watch:
                self.close(sandbox_id)
            else:
                self._forget(watch, lambda _: True)

    def close(self, sandbox_id: str) -> None:
        """Stop watching a sandbox (it ended); its iterator finishes."""
        watch = self._watches.pop(sandbox_id, None)
        if watch is not None:
            self._forget(watch, lambda _: True)
            watch.closed = True
            watch.wake.set()

    def close_all(self) -> None:
        for sandbox_id in list(self._watches):
            self.close(sandbox_id)
        if self._fd is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    # -- watching directories ------------------------------------------------------

    def _scan(self, watch: _Watch) -> None:
        for _ in range(_SCAN_STEP):
            if not watch.to_scan or watch.closed:
                return
            directory, report = watch.to_scan.popleft()
            if len(watch.dirs) >= self.max_dirs:
                watch.over_budget = True
                watch.to_scan.clear()
                return
            self._add(watch, directory, report)

    def _add(self, watch: _Watch, directory: str, report: bool) -> None:
        fd = _open_inside(watch.workspace, directory)
        if fd is None:
            return  # gone, or swapped for a symlink or a file: nothing to watch
        try:
            wd = _libc.inotify_add_watch(self._instance(), f"/proc/self/fd/{fd}".encode(), _MASK)
            if wd < 0:
                # ENOSPC: the host's watches are used up; degrade to sync points.
                watch.over_budget = True
                return
            watch.dirs[wd] = directory
            self._by_wd[wd] = watch
            with os.scandir(fd) as entries:
                for item in entries:
                    child = _join(directory, printable_name(item.name))
                    if item.is_dir(follow_symlinks=False) and watch.enter(child):
                        watch.to_scan.append((child, report))
        except OSError:
            return  # removed while we looked: its parent reports it
        finally:
            os.close(fd)
        if report:
            # Files created before the watch existed are found by syncing the directory.
            watch.changed(directory)

    def _forget(self, watch: _Watch, under: WatchFilter) -> None:
        for wd, directory in list(watch.dirs.items()):
            if under(directory):
                del watch.dirs[wd]
                self._by_wd.pop(wd, None)
                if self._fd is not None:
                    _libc.inotify_rm_watch(self._fd, wd)

    # -- reading events ------------------------------------------------------------

    def _on_readable(self) -> None:
        for _ in range(_READS_PER_WAKE):
            if self._fd is None:
                return
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            self._dispatch(data)
        # More left: the reader is level-triggered, so the loop calls again after others ran.

    def _dispatch(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length].split(b"\0", 1)[0]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                for watch in self._watches.values():
                    watch.lost = True
                    watch.wake.set()
                continue
            owner = self._by_wd.get(wd)
            if owner is None:
                continue
            watch = owner
            if mask & IN_IGNORED:
                watch.dirs.pop(wd, None)
                self._by_wd.pop(wd, None)
                continue
            directory = watch.dirs.get(wd)
            if directory is None or not raw:
                continue  # about the directory itself: its parent reports it
            path = _join(directory, printable_name(os.fsdecode(raw)))
            if mask & IN_ISDIR:
                if mask & IN_MOVED_FROM:
                    self._forget(watch, partial(_is_within, path))
                if not watch.enter(path):
                    continue
                if mask & (IN_CREATE | IN_MOVED_TO):
                    watch.to_scan.append((path, True))
            watch.changed(path)


def _is_within(directory: str, path: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _open_inside(workspace: str, relative: str) -> int | None:
    """An fd of the directory at ``relative``, every component opened with O_NOFOLLOW."""
    try:
        fd = os.open(workspace, DIR_FLAGS)
    except OSError:
        return None
    for name in [p for p in relative.split("/") if p]:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = child
    return fd
