"""Watching a workspace by polling a listing: for backends without change events.

Every ``interval_s`` the workspace is listed directory by directory (skipping
what ``enter`` refuses, at most ``max_entries`` entries) and compared with the
previous listing by kind, size and mtime; what differs is a batch.  A change
that keeps size and mtime (a forged mtime) is not seen here: the next sync
reads the files again.  Latency: up to ``interval_s`` plus the listing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

from modal_app.base import FileEntry, SandboxFileError, WatchFilter, WorkspaceChanges

ListDirectory = Callable[[str], Awaitable[list[FileEntry]]]
"""One directory's entries (not recursive), relative paths."""

_Seen = dict[str, tuple[str, int, float]]


async def listing(
    list_dir: ListDirectory, enter: WatchFilter, max_entries: int
) -> tuple[_Seen, bool]:
    """Kind, size and mtime of every entry worth watching; and whether all were reached."""
    seen: _Seen = {}
    todo: deque[str] = deque([""])
    while todo:
        directory = todo.popleft()
        try:
            entries = await list_dir(directory)
        except SandboxFileError:
            if not directory:
                raise
            continue  # removed meanwhile: its parent's listing shows it
        for entry in entries:
            if entry.path == directory:
                continue
            seen[entry.path] = (entry.kind, entry.size, entry.mtime)
            if entry.kind == "dir" and enter(entry.path):
                todo.append(entry.path)
            if len(seen) >= max_entries:
                return seen, False
    return seen, True


async def poll_workspace(
    list_dir: ListDirectory, enter: WatchFilter, *, interval_s: float, max_entries: int
) -> AsyncGenerator[WorkspaceChanges, None]:
    """Batches of changed paths, one listing every ``interval_s``; ends when listing fails."""
    before, _ = await listing(list_dir, enter, max_entries)
    while True:
        await asyncio.sleep(interval_s)
        now, complete = await listing(list_dir, enter, max_entries)
        changed = {path for path in before.keys() | now.keys() if before.get(path) != now.get(path)}
        before = now
        if changed or not complete:
            yield WorkspaceChanges(frozenset(changed), complete=complete)
