"""Watching a Modal sandbox's workspace: the SDK's ``filesystem.watch``, else polling.

modal 1.6.4 has ``Sandbox.filesystem.watch(path, recursive=True)``: a helper
binary in the sandbox streams inotify-style events (one per change, absolute
paths, renames as ``Modify``).  It runs inside the sandbox, so symlinks it
follows stay inside the container, and the candidate can kill it; its events
are only hints (every path is looked at through the checked file operations).
Where it fails (a filesystem that cannot be watched, the helper killed), the
workspace is polled instead (``modal_app.polling``) every ``POLL_INTERVAL_S``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable

from modal_app.base import (
    WORKSPACE,
    FileEntry,
    SandboxError,
    SandboxTerminated,
    WatchFilter,
    WorkspaceChanges,
)
from modal_app.modal.files import ModalFiles
from modal_app.modal.refs import SandboxRefs
from modal_app.paths import normalize_workspace_path
from modal_app.polling import poll_workspace

POLL_INTERVAL_S = 2.0
_log = logging.getLogger(__name__)


def relative_paths(paths: Iterable[str], enter: WatchFilter) -> frozenset[str]:
    """Workspace-relative paths of an event, leaving out ignored directories and outsiders."""
    found: set[str] = set()
    prefix = WORKSPACE + "/"
    for path in paths:
        if not path.startswith(prefix):
            continue
        try:
            relative = normalize_workspace_path(path)
        except SandboxError:
            continue
        parents = relative.split("/")[:-1]
        if all(enter("/".join(parents[: i + 1])) for i in range(len(parents))):
            found.add(relative)
    return frozenset(found)


async def watch_workspace(
    refs: SandboxRefs, files: ModalFiles, sandbox_id: str, enter: WatchFilter, max_entries: int
) -> AsyncGenerator[WorkspaceChanges, None]:
    ref = await refs.running(sandbox_id)
    try:
        async with refs.on_sandbox(ref):
            async for event in ref.sandbox.filesystem.watch.aio(WORKSPACE, recursive=True):
                changed = relative_paths(event.paths, enter)
                if changed:
                    yield WorkspaceChanges(changed)
    except SandboxTerminated:
        return
    except SandboxError as exc:
        _log.info("sandbox %s: filesystem.watch failed (%s); polling instead", sandbox_id, exc)
    if await refs.finished(ref):
        return

    async def list_dir(directory: str) -> list[FileEntry]:
        return await files.list_files(sandbox_id, directory, recursive=False)

    try:
        async for changes in poll_workspace(
            list_dir, enter, interval_s=POLL_INTERVAL_S, max_entries=max_entries
        ):
            yield changes
    except SandboxTerminated:
        return
