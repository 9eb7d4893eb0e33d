"""The file half of the local backend's SandboxBackend methods.

The server reads and writes workspaces directly on the host (no bwrap call),
symlink-safely (see ``files``).  Paths are normalized first
(``modal_app.paths``); file operations work on terminated sandboxes too, since
the workspace is kept for the recording.  No OSError leaves this mixin: what
the OS says about a candidate's file is that sandbox's SandboxFileError
(``oserrors``), so it never looks like the backend failing.
"""

from __future__ import annotations

import asyncio

from modal_app.base import FileEntry
from modal_app.local.files import delete, mkdir, read_file, stat_path, write_file
from modal_app.local.listing import list_files
from modal_app.local.meta import MetaStore, SandboxMeta
from modal_app.local.oserrors import os_errors_as_file_errors
from modal_app.local.walk import Owner
from modal_app.paths import normalize_workspace_path

_MB = 1024 * 1024


def owner_of(meta: SandboxMeta) -> Owner:
    return Owner(meta.uid, meta.uid)


class WorkspaceFiles:
    """Mixin of LocalSandboxBackend: list/stat/read/write/delete/mkdir."""

    _store: MetaStore
    _max_list: int

    async def _touch(self, sandbox_id: str) -> SandboxMeta:
        raise NotImplementedError

    async def _workspace(self, sandbox_id: str) -> tuple[SandboxMeta, str]:
        meta = await self._touch(sandbox_id)
        return meta, str(self._store.workspace(meta.id))

    async def list_files(
        self, sandbox_id: str, path: str = "", *, recursive: bool = True
    ) -> list[FileEntry]:
        relative = normalize_workspace_path(path)
        _, workspace = await self._workspace(sandbox_id)
        return await asyncio.to_thread(
            os_errors_as_file_errors(list_files, relative),
            workspace,
            relative,
            recursive=recursive,
            max_entries=self._max_list,
        )

    async def stat(self, sandbox_id: str, path: str) -> FileEntry:
        relative = normalize_workspace_path(path)
        _, workspace = await self._workspace(sandbox_id)
        return await asyncio.to_thread(
            os_errors_as_file_errors(stat_path, relative), workspace, relative
        )

    async def read_file(self, sandbox_id: str, path: str, *, max_bytes: int | None = None) -> bytes:
        relative = normalize_workspace_path(path)
        meta, workspace = await self._workspace(sandbox_id)
        limit = meta.limits.max_file_size_mb * _MB
        if max_bytes is not None:
            limit = min(limit, max_bytes)
        return await asyncio.to_thread(
            os_errors_as_file_errors(read_file, relative), workspace, relative, max_bytes=limit
        )

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        relative = normalize_workspace_path(path)
        meta, workspace = await self._workspace(sandbox_id)
        await asyncio.to_thread(
            os_errors_as_file_errors(write_file, relative),
            workspace,
            relative,
            bytes(data),
            owner=owner_of(meta),
            max_bytes=meta.limits.max_file_size_mb * _MB,
        )

    async def delete(self, sandbox_id: str, path: str) -> None:
        relative = normalize_workspace_path(path)
        _, workspace = await self._workspace(sandbox_id)
        await asyncio.to_thread(os_errors_as_file_errors(delete, relative), workspace, relative)

    async def mkdir(self, sandbox_id: str, path: str) -> None:
        relative = normalize_workspace_path(path)
        meta, workspace = await self._workspace(sandbox_id)
        await asyncio.to_thread(
            os_errors_as_file_errors(mkdir, relative), workspace, relative, owner=owner_of(meta)
        )
