"""Workspace files of Modal sandboxes: ``Sandbox.filesystem`` while running, the Volume after.

Running: ``list_files`` (one directory per call, so a recursive listing walks
the tree with bounded concurrency and stops at ``max_list_entries``),
``stat``, ``read_bytes``, ``write_bytes`` (creates parents), ``remove``
(recursive) and ``make_directory``, each preceded -- unless
``ModalOptions.check_symlinks`` is off -- by the ``shell`` guard that
refuses paths resolving outside /workspace.  The SDK's filesystem calls follow
symlinks inside the container; the container is the isolation boundary, but
the contract promises InvalidPath for escapes on every backend.

Ended: the workspace Volume through ``listdir``, ``read_file``,
``batch_upload`` and ``remove_file``.  ``mkdir`` has no Volume equivalent
(a Volume holds files; directories exist through them), so it raises
``SandboxTerminated`` there.  A sandbox found to have ended mid-call
(``SandboxRefs.on_sandbox``) is retried on the Volume.

Paths are validated with ``paths.normalize_workspace_path`` first; a path of
the wrong kind is ``InvalidPath`` and listing a file lists that file, as on
the local backend.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import modal
from modal.types import FileEntry as VolumeEntry
from modal.types import FileEntryType, FileInfo, FileType

from modal_app.base import (
    WORKSPACE,
    FileEntry,
    FileKind,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    SandboxFileError,
    SandboxTerminated,
)
from modal_app.modal.errors import translate_errors
from modal_app.modal.refs import SandboxRef, SandboxRefs
from modal_app.modal.shell import GUARD_ESCAPES, GUARD_SYMLINK, guard_argv, handover_argv
from modal_app.modal.spec import ModalOptions
from modal_app.paths import normalize_workspace_path, workspace_abspath

T = TypeVar("T")

_LIST_CONCURRENCY = 8


def entry_from_info(relative: str, info: FileInfo) -> FileEntry:
    kinds: dict[FileType, FileKind] = {
        FileType.FILE: "file",
        FileType.DIRECTORY: "dir",
        FileType.SYMLINK: "symlink",
    }
    # The SDK knows three types; anything else (socket, FIFO, device) is never read.
    kind = kinds.get(info.type, "other")
    return FileEntry(path=relative, kind=kind, size=info.size, mtime=info.modified_time)


_VOLUME_KINDS: dict[FileEntryType, FileKind] = {
    FileEntryType.FILE: "file",
    FileEntryType.DIRECTORY: "dir",
    FileEntryType.SYMLINK: "symlink",
    FileEntryType.FIFO: "fifo",
    FileEntryType.SOCKET: "socket",
}


def entry_from_volume(entry: VolumeEntry) -> FileEntry:
    kind = _VOLUME_KINDS.get(entry.type, "other")
    return FileEntry(
        path=entry.path.strip("/"),
        kind=kind,
        size=entry.size if kind == "file" else 0,
        mtime=float(entry.mtime),
    )


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """What an operation on a running sandbox gets: the sandbox, and whether the
    path is itself a symlink (checked first, see ``_check_inside``)."""

    sandbox: modal.Sandbox
    is_link: bool


class ModalFiles:
    def __init__(
        self, refs: SandboxRefs, options: ModalOptions, client: Callable[[], modal.Client]
    ) -> None:
        self._refs = refs
        self._options = options
        self._client = client
        self._volumes: dict[str, modal.Volume] = {}

    def forget_volume(self, name: str) -> None:
        self._volumes.pop(name, None)

    def clear(self) -> None:
        self._volumes.clear()

    async def list_files(
        self, sandbox_id: str, path: str = "", *, recursive: bool = True
    ) -> list[FileEntry]:
        rel = normalize_workspace_path(path)
        cap = self._options.max_list_entries

        async def running(live: LiveTarget) -> list[FileEntry]:
            fs = live.sandbox.filesystem
            entries: list[FileEntry] = []
            limit = asyncio.Semaphore(_LIST_CONCURRENCY)

            async def walk(directory: str) -> None:
                if len(entries) >= cap:
                    return
                async with limit:
                    infos = await fs.list_files.aio(workspace_abspath(directory))
                children = []
                for info in sorted(infos, key=lambda i: i.name):
                    if len(entries) >= cap:
                        break
                    child = f"{directory}/{info.name}" if directory else info.name
                    entries.append(entry_from_info(child, info))
                    if recursive and info.type == FileType.DIRECTORY:
                        children.append(child)
                await asyncio.gather(*(walk(child) for child in children))

            try:
                with translate_errors():
                    await walk(rel)
            except InvalidPath:
                # Not a directory: like the local backend, list the file itself.
                info = await live.sandbox.filesystem.stat.aio(workspace_abspath(rel))
                if info.type == FileType.DIRECTORY:
                    raise
                return [entry_from_info(rel, info)]
            return sorted(entries, key=lambda e: e.path)

        async def stopped(volume: modal.Volume) -> list[FileEntry]:
            found = await volume.listdir.aio(rel or "/", recursive=recursive)
            entries = sorted((entry_from_volume(e) for e in found), key=lambda e: e.path)
            return entries[:cap]

        return await self._file_op(sandbox_id, rel, True, running, stopped)

    async def stat(self, sandbox_id: str, path: str) -> FileEntry:
        rel = normalize_workspace_path(path)

        async def running(live: LiveTarget) -> FileEntry:
            info = await live.sandbox.filesystem.stat.aio(workspace_abspath(rel))
            return entry_from_info(rel, info)

        async def stopped(volume: modal.Volume) -> FileEntry:
            if not rel:
                return FileEntry(path="", kind="dir", size=0, mtime=0.0)
            parent = rel.rpartition("/")[0]
            for entry in await volume.listdir.aio(parent or "/"):
                if entry.path.strip("/") == rel:
                    return entry_from_volume(entry)
            raise FileNotFoundInSandbox(f"no such file or directory: {rel}")

        return await self._file_op(sandbox_id, rel, False, running, stopped)

    async def read_file(self, sandbox_id: str, path: str, *, max_bytes: int | None = None) -> bytes:
        rel = normalize_workspace_path(path)
        if not rel:
            raise InvalidPath("the workspace root is a directory")
        ref = await self._refs.get(sandbox_id)
        caps = [] if ref.limits is None else [ref.limits.max_file_size_mb << 20]
        if max_bytes is not None:
            caps.append(max_bytes)
        limit = min(caps) if caps else None

        def too_large(size: int) -> FileTooLarge | None:
            if limit is not None and size > limit:
                return FileTooLarge(f"{rel!r} is {size} bytes (limit {limit})")
            return None

        async def running(live: LiveTarget) -> bytes:
            target = workspace_abspath(rel)
            # The SDK opens whatever the path names: a FIFO would block the read
            # and a device could be endless, so only a regular file is opened.
            if await self._refs.helper(ref, ["test", "-f", target]) != 0:
                info = await live.sandbox.filesystem.stat.aio(target)
                what = "a directory" if info.type == FileType.DIRECTORY else "not a regular file"
                raise InvalidPath(f"{rel!r} is {what}; it cannot be read")
            info = await live.sandbox.filesystem.stat.aio(target)
            if error := too_large(info.size):
                raise error
            data = await live.sandbox.filesystem.read_bytes.aio(target)
            if error := too_large(len(data)):  # it grew while we read it
                raise error
            return bytes(data)

        async def stopped(volume: modal.Volume) -> bytes:
            chunks: list[bytes] = []
            total = 0
            async for chunk in volume.read_file.aio(rel):
                total += len(chunk)
                if error := too_large(total):
                    raise error
                chunks.append(chunk)
            return b"".join(chunks)

        return await self._file_op(sandbox_id, rel, True, running, stopped)

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        rel = normalize_workspace_path(path)
        if not rel:
            raise InvalidPath("cannot write to the workspace root")
        ref = await self._refs.get(sandbox_id)
        if ref.limits is not None and len(data) > ref.limits.max_file_size_mb << 20:
            raise FileTooLarge(f"{rel}: over the {ref.limits.max_file_size_mb} MiB file limit")

        async def running(live: LiveTarget) -> None:
            await live.sandbox.filesystem.write_bytes.aio(data, workspace_abspath(rel))
            await self._hand_over(ref, rel)

        async def stopped(volume: modal.Volume) -> None:
            async with volume.batch_upload.aio(force=True) as batch:
                batch.put_file(io.BytesIO(data), f"/{rel}")

        await self._file_op(sandbox_id, rel, True, running, stopped)

    async def delete(self, sandbox_id: str, path: str) -> None:
        rel = normalize_workspace_path(path)
        if not rel:
            raise InvalidPath("cannot delete the workspace root")

        async def running(live: LiveTarget) -> None:
            # A link is removed as a link, never recursively through it.
            target = workspace_abspath(rel)
            await live.sandbox.filesystem.remove.aio(target, recursive=not live.is_link)

        async def stopped(volume: modal.Volume) -> None:
            await volume.remove_file.aio(rel, recursive=True)

        await self._file_op(sandbox_id, rel, False, running, stopped)

    async def mkdir(self, sandbox_id: str, path: str) -> None:
        rel = normalize_workspace_path(path)

        async def running(live: LiveTarget) -> None:
            if rel:
                await live.sandbox.filesystem.make_directory.aio(
                    workspace_abspath(rel), create_parents=True
                )
                await self._hand_over(await self._refs.get(sandbox_id), rel)

        await self._file_op(sandbox_id, rel, True, running, None)

    async def _file_op(
        self,
        sandbox_id: str,
        rel: str,
        follow_last: bool,
        running: Callable[[LiveTarget], Awaitable[T]],
        stopped: Callable[[modal.Volume], Awaitable[T]] | None,
    ) -> T:
        """``running`` through the live sandbox, or ``stopped`` on its volume once it has ended."""
        ref = await self._refs.get(sandbox_id)
        if not ref.ended:
            try:
                async with self._refs.on_sandbox(ref):
                    is_link = False
                    if rel and self._options.check_symlinks:
                        is_link = await self._check_inside(ref, rel, follow_last)
                    return await running(LiveTarget(ref.sandbox, is_link))
            except SandboxTerminated:
                ref.mark_ended()
        if stopped is None:
            raise SandboxTerminated(
                f"sandbox {sandbox_id} has ended (the Volume API cannot create empty directories)"
            )
        if ref.volume_name is None:
            raise SandboxTerminated(f"sandbox {sandbox_id} has ended and has no workspace volume")
        await ref.settle()  # the volume holds the last writes once the container is gone
        volume = self._volumes.get(ref.volume_name)
        if volume is None:
            volume = modal.Volume.from_name(
                ref.volume_name, environment_name=self._options.environment, client=self._client()
            )
            self._volumes[ref.volume_name] = volume
        with translate_errors(not_found=FileNotFoundInSandbox):
            return await stopped(volume)

    async def _hand_over(self, ref: SandboxRef, rel: str) -> None:
        """What the API just wrote as root becomes the candidate's (``shell.handover_argv``)."""
        parts = rel.split("/")
        paths = [workspace_abspath("/".join(parts[: i + 1])) for i in range(len(parts))]
        code = await self._refs.helper(ref, handover_argv(paths))
        if code != 0:
            raise SandboxFileError(f"could not give {rel!r} to the candidate (exit code {code})")

    async def _check_inside(self, ref: SandboxRef, rel: str, follow_last: bool) -> bool:
        """Refuse a path resolving outside the workspace; True if it is itself a symlink."""
        code = await self._refs.helper(
            ref, guard_argv(workspace_abspath(rel), follow_last=follow_last)
        )
        if code == GUARD_ESCAPES:
            raise InvalidPath(f"{rel!r} resolves outside {WORKSPACE}")
        if code not in (0, GUARD_SYMLINK):
            raise SandboxFileError(f"could not resolve {rel!r} (exit code {code})")
        return code == GUARD_SYMLINK
