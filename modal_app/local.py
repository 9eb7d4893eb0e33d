"""The local sandbox backend: bubblewrap on this machine (the embedded default).

Design: a sandbox is *a workspace directory + its limits + the process trees
this backend is tracking for it*.  There is no long-lived container: every
exec and every PTY is its own bwrap invocation over the sandbox's workspace,
with identical isolation (``local_bwrap``).  So create→ready is a few mkdirs
and a metadata file (no bwrap call), a sandbox survives a server restart as
data (``attach``/``list`` read its metadata), and ``terminate`` kills every
tracked tree, then every process still running as the sandbox's uid, marks
the sandbox TERMINATED on disk and keeps the workspace for the recording
(file operations keep working; exec/PTY raise SandboxTerminated) until
``remove``/``purge`` deletes it.

Uid strategy: each sandbox gets its own unprivileged host uid (random in
``[uid_base, uid_base + uid_count)``, default from 1.5e9 — far above the uids
of real users and the usual /etc/subuid ranges), shown inside as uid 1000.
bwrap runs as that uid and creates an unprivileged user namespace (checked by
``start``).  Own uids make RLIMIT_NPROC a per-sandbox process limit (it is not
enforced for root, and would be shared by all sandboxes under one uid), let
``terminate`` find every process of a sandbox by uid, and keep one sandbox's
files unreadable to another's.  The server must run as root to switch uids.

Memory: RLIMIT_DATA per process (works with Go/Node reservations, see
``local_bwrap``); when cgroups are available (``local_cgroup``) the sandbox's
total memory, tasks and CPU share are bounded too.

Disk: RLIMIT_FSIZE bounds each file; the total is bounded by a watchdog that
measures workspace + home every ``disk_check_interval_s`` while processes run
and kills them (with a note on stderr) once ``disk_quota_mb`` or
``max_inodes`` is exceeded, so the overshoot is at most what the sandbox can
write in one interval.  /tmp and /dev/shm are size-bounded tmpfs; / and /dev
are read-only.

Network: none (``--unshare-net``: loopback only).  A per-exec or spec
NetworkPolicy with ``allow_hosts`` cannot be enforced per host here; it shares
the host network for that invocation only if the operator constructed the
backend with ``allow_network_opt_in=True``, and is refused (InvalidSpec)
otherwise.

Never falls back to running on the host: ``start`` raises BackendUnavailable
unless a probe invocation shows separate user, pid and net namespaces.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from modal_app.base import (
    WORKSPACE,
    BackendUnavailable,
    FileEntry,
    FileNotFoundInSandbox,
    InvalidSpec,
    NetworkPolicy,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
)
from modal_app.local_bwrap import Invocation, Tools, spawn, uid_pids
from modal_app.local_cgroup import Cgroups, detect_v1, from_v2_parent
from modal_app.local_exec import LocalExecHandle
from modal_app.local_files import Owner, disk_usage
from modal_app.local_files import delete as fs_delete
from modal_app.local_files import list_files as fs_list
from modal_app.local_files import mkdir as fs_mkdir
from modal_app.local_files import read_file as fs_read
from modal_app.local_files import stat_path as fs_stat
from modal_app.local_files import write_file as fs_write
from modal_app.local_meta import MetaStore, SandboxMeta, check_sandbox_id, new_sandbox_id
from modal_app.local_probe import probe_isolation
from modal_app.local_pty import LocalPtyHandle, set_winsize
from modal_app.paths import normalize_workspace_path, workspace_abspath
from modal_app.presets import GENERATED_ETC, SystemView, check_limits, environment, system_view

_Handle = LocalExecHandle | LocalPtyHandle
_MB = 1024 * 1024


@dataclass
class _Live:
    """What this process knows about a sandbox beyond its metadata."""

    meta: SandboxMeta
    handles: set[_Handle] = field(default_factory=set)
    last_activity: float = field(default_factory=time.monotonic)
    terminated: bool = False


class LocalSandboxBackend:
    """SandboxBackend on bubblewrap.  ``root`` is SANDBOX_ROOT (must be root-owned
    and reachable by other uids: every ancestor needs o+x)."""

    name = "local"

    def __init__(
        self,
        root: Path | str,
        *,
        allow_network_opt_in: bool = False,
        toolchain_dir: Path | str | None = None,
        uid_base: int = 1_500_000_000,
        uid_count: int = 1 << 24,
        cgroups: Literal["auto", "off", "required"] = "auto",
        cgroup_parent: Path | str | None = None,
        disk_quota_mb: int = 1024,
        max_inodes: int = 200_000,
        disk_check_interval_s: float = 1.0,
        tmp_size_mb: int = 256,
        max_list_entries: int = 10_000,
    ) -> None:
        self.root = Path(root).absolute()
        self._store = MetaStore(self.root)
        self._allow_network = allow_network_opt_in
        self._toolchain = Path(toolchain_dir).absolute() if toolchain_dir else None
        self._uid_base = uid_base
        self._uid_count = uid_count
        self._cgroup_mode = cgroups
        self._cgroup_parent = Path(cgroup_parent) if cgroup_parent else None
        self._disk_quota = disk_quota_mb * _MB
        self._max_inodes = max_inodes
        self._disk_interval = disk_check_interval_s
        self._tmp_size_mb = tmp_size_mb
        self._max_list = max_list_entries
        self._tools: Tools | None = None
        self._view: SystemView | None = None
        self.cgroups: Cgroups | None = None
        self._live: dict[str, _Live] = {}
        self._uids: set[int] = set()
        self._watchdog: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._tools is not None:
            return
        if os.geteuid() != 0:
            raise BackendUnavailable(
                "the local sandbox backend must run as root: it gives every sandbox its own "
                "unprivileged uid (process limits are per uid and not enforced for root)"
            )
        tools = Tools.find()
        await asyncio.to_thread(self._prepare_root)
        self._view = await asyncio.to_thread(system_view)
        self.cgroups = await asyncio.to_thread(self._detect_cgroups)
        self._tools = tools
        try:
            # A uid just past the sandbox range: no sandbox can own it.
            await probe_isolation(
                tools=tools,
                view=self._view,
                root=self.root,
                cgroups=self.cgroups,
                uid=self._uid_base + self._uid_count,
                tmp_size_mb=self._tmp_size_mb,
            )
        except BaseException:
            self._tools = None
            raise
        self._uids = {m.uid for m in await asyncio.to_thread(self._store.all)}
        self._watchdog = asyncio.create_task(self._watch())

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # bwrap resolves bind sources as the sandbox uid, so it must traverse
        # the root (not list it) and read the generated /etc files.
        os.chmod(self.root, 0o711)  # noqa: S103
        etc = self.root / ".etc"
        etc.mkdir(exist_ok=True)
        os.chmod(etc, 0o755)  # noqa: S103
        for name, content in GENERATED_ETC.items():
            path = etc / name
            if not path.exists() or path.read_text() != content:
                tmp = etc / f".{name}.tmp"
                tmp.write_text(content)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)

    def _detect_cgroups(self) -> Cgroups | None:
        if self._cgroup_mode == "off":
            return None
        found = from_v2_parent(self._cgroup_parent) if self._cgroup_parent else detect_v1()
        if found is None and self._cgroup_mode == "required":
            raise BackendUnavailable("cgroups were required but no writable hierarchy was found")
        return found

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        handles = [h for live in self._live.values() for h in live.handles]
        for handle in handles:
            handle.kill_nowait("shutdown")
        await _settle(handles)
        if self.cgroups is not None:
            for sandbox_id in list(self._live):
                await asyncio.to_thread(self.cgroups.remove, sandbox_id)
        self._tools = None

    # -- sandboxes ---------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        self._require_started()
        if spec.image is not None:
            raise InvalidSpec("the local backend runs language presets only, not image specs")
        if spec.volume is not None:
            raise InvalidSpec("the local backend has no named volumes (the workspace persists)")
        check_limits(spec.limits)
        _check_env(spec.env)
        workdir = normalize_workspace_path(spec.workdir)
        if spec.network.allow_hosts and not self._allow_network:
            raise InvalidSpec(_NETWORK_REFUSED)
        meta = SandboxMeta(
            id=new_sandbox_id(),
            created_at=time.time(),
            uid=self._allocate_uid(),
            tags=dict(spec.tags),
            language=spec.language.value if spec.language else None,
            env=dict(spec.env),
            workdir=workdir,
            limits=spec.limits,
            timeout_s=spec.timeout_s,
            idle_timeout_s=spec.idle_timeout_s,
            allow_hosts=tuple(spec.network.allow_hosts),
        )
        try:
            await asyncio.to_thread(self._create_dirs, meta)
        except BaseException:
            self._uids.discard(meta.uid)
            raise
        self._live[meta.id] = _Live(meta)
        return meta.info()

    def _create_dirs(self, meta: SandboxMeta) -> None:
        self._store.create_dirs(meta)
        if meta.workdir:
            fs_mkdir(str(self._store.workspace(meta.id)), meta.workdir, owner=_owner(meta))

    def _allocate_uid(self) -> int:
        for _ in range(100):
            uid = self._uid_base + secrets.randbelow(self._uid_count)
            if uid not in self._uids:
                self._uids.add(uid)
                return uid
        raise SandboxError("no free sandbox uid")  # pragma: no cover - 16M uids

    async def attach(self, sandbox_id: str) -> SandboxInfo:
        meta = await self._current(sandbox_id)
        return meta.info()

    async def status(self, sandbox_id: str) -> SandboxStatus:
        meta = await self._current(sandbox_id)
        return SandboxStatus(meta.status)

    async def list(self, tags: Mapping[str, str]) -> list[SandboxInfo]:
        metas = await asyncio.to_thread(self._store.all)
        wanted = dict(tags).items()
        found = [m.info() for m in metas if wanted <= dict(m.tags).items()]
        return sorted(found, key=lambda info: info.created_at)

    async def terminate(self, sandbox_id: str) -> None:
        meta = await self._load(sandbox_id)
        live = self._live.setdefault(sandbox_id, _Live(meta))
        live.terminated = True
        if not meta.terminated:
            meta = meta.with_terminated()
            await asyncio.to_thread(self._store.save, meta)
        live.meta = meta
        handles = list(live.handles)
        for handle in handles:
            handle.kill_nowait("terminate")
        await _settle(handles)
        await asyncio.to_thread(self._kill_everything, meta)

    def _kill_everything(self, meta: SandboxMeta) -> None:
        """Kill every process of the sandbox, tracked by this process or not.

        Processes started by an earlier server process, or a tree whose outer
        bwrap died before its child could arm --die-with-parent, are found by
        their uid (no other process on the host has it).
        """
        if self.cgroups is not None:
            self.cgroups.kill(meta.id)
        deadline = time.monotonic() + 5
        while (pids := uid_pids(meta.uid)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        if self.cgroups is not None:
            self.cgroups.remove(meta.id)

    async def remove(self, sandbox_id: str) -> None:
        """Delete a sandbox and its workspace for good (terminating it first)."""
        await self.terminate(sandbox_id)
        meta = await self._load(sandbox_id)
        await asyncio.to_thread(shutil.rmtree, self._store.sandbox_dir(sandbox_id))
        self._live.pop(sandbox_id, None)
        self._uids.discard(meta.uid)

    async def purge(self, older_than_s: float) -> builtins.list[str]:
        """Remove sandboxes terminated more than ``older_than_s`` ago; return their ids."""
        cutoff = time.time() - older_than_s
        removed: list[str] = []
        for meta in await asyncio.to_thread(self._store.all):
            if meta.terminated and (meta.terminated_at or 0) <= cutoff:
                await self.remove(meta.id)
                removed.append(meta.id)
        return removed

    # -- processes ---------------------------------------------------------

    async def exec(
        self,
        sandbox_id: str,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        network: NetworkPolicy | None = None,
    ) -> LocalExecHandle:
        argv = _argv(command)
        if timeout_s is not None and not timeout_s > 0:
            raise InvalidSpec("timeout_s must be positive")
        meta, live = await self._runnable(sandbox_id)
        inv = await self._invocation(meta, cwd=cwd, env=env, network=network, pty=False)
        proc = await spawn(
            self._tools_or_fail(),
            inv,
            argv,
            cgroups=self.cgroups,
            cgroup_name=meta.id,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        handle = LocalExecHandle(proc, timeout_s=timeout_s, on_exit=self._exited(live))
        self._track(live, handle)
        return handle

    async def open_pty(
        self,
        sandbox_id: str,
        *,
        cols: int = 80,
        rows: int = 24,
        command: Sequence[str] = ("bash", "-l"),
        env: Mapping[str, str] | None = None,
    ) -> LocalPtyHandle:
        argv = _argv(command)
        meta, live = await self._runnable(sandbox_id)
        inv = await self._invocation(meta, cwd=None, env=env, network=None, pty=True)
        master, slave = os.openpty()
        try:
            set_winsize(slave, cols, rows)
            proc = await spawn(
                self._tools_or_fail(),
                inv,
                argv,
                cgroups=self.cgroups,
                cgroup_name=meta.id,
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        handle = LocalPtyHandle(proc, master, on_exit=self._exited(live))
        self._track(live, handle)
        return handle

    async def _runnable(self, sandbox_id: str) -> tuple[SandboxMeta, _Live]:
        self._require_started()
        meta = await self._current(sandbox_id)
        if meta.terminated:
            raise SandboxTerminated(f"sandbox {sandbox_id} has been terminated")
        live = self._live.setdefault(sandbox_id, _Live(meta))
        live.meta = meta
        live.last_activity = time.monotonic()
        return meta, live

    async def _invocation(
        self,
        meta: SandboxMeta,
        *,
        cwd: str | None,
        env: Mapping[str, str] | None,
        network: NetworkPolicy | None,
        pty: bool,
    ) -> Invocation:
        policy = network if network is not None else NetworkPolicy(meta.allow_hosts)
        if not policy.blocked and not self._allow_network:
            raise InvalidSpec(_NETWORK_REFUSED)
        relative = normalize_workspace_path(cwd) if cwd is not None else meta.workdir
        if relative:
            workspace = str(self._store.workspace(meta.id))
            entry = await asyncio.to_thread(fs_stat, workspace, relative)
            if entry.kind != "dir":
                raise FileNotFoundInSandbox(f"working directory {relative!r} is not a directory")
        full_env = environment(
            meta.language_enum, meta.limits, toolchain=self._toolchain is not None
        )
        full_env.update(meta.env)
        if env:
            _check_env(env)
            full_env.update(env)
        assert self._view is not None
        return Invocation(
            workspace=self._store.workspace(meta.id),
            home=self._store.home(meta.id),
            etc_dir=self.root / ".etc",
            uid=meta.uid,
            limits=meta.limits,
            env=full_env,
            cwd=workspace_abspath(relative),
            view=self._view,
            share_net=not policy.blocked,
            pty=pty,
            tmp_size_mb=self._tmp_size_mb,
            toolchain_dir=self._toolchain,
        )

    def _track(self, live: _Live, handle: _Handle) -> None:
        live.handles.add(handle)
        if live.terminated:
            # terminate() ran while this one was starting: it must not outlive it.
            handle.kill_nowait("terminate")

    def _exited(self, live: _Live) -> Callable[[_Handle], None]:
        def done(handle: _Handle) -> None:
            live.handles.discard(handle)
            live.last_activity = time.monotonic()

        return done

    # -- files -------------------------------------------------------------

    async def list_files(
        self, sandbox_id: str, path: str = "", *, recursive: bool = True
    ) -> builtins.list[FileEntry]:
        relative = normalize_workspace_path(path)
        meta = await self._touch(sandbox_id)
        workspace = str(self._store.workspace(meta.id))
        return await asyncio.to_thread(
            fs_list, workspace, relative, recursive=recursive, max_entries=self._max_list
        )

    async def stat(self, sandbox_id: str, path: str) -> FileEntry:
        relative = normalize_workspace_path(path)
        meta = await self._touch(sandbox_id)
        return await asyncio.to_thread(fs_stat, str(self._store.workspace(meta.id)), relative)

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        relative = normalize_workspace_path(path)
        meta = await self._touch(sandbox_id)
        return await asyncio.to_thread(
            fs_read,
            str(self._store.workspace(meta.id)),
            relative,
            max_bytes=meta.limits.max_file_size_mb * _MB,
        )

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        relative = normalize_workspace_path(path)
        meta = await self._touch(sandbox_id)
        await asyncio.to_thread(
            fs_write,
            str(self._store.workspace(meta.id)),
            relative,
            bytes(data),
            owner=_owner(meta),
            max_bytes=meta.limits.max_file_size_mb * _MB,
        )

    async def delete(self, sandbox_id: str, path: str) -> None:
        relative = normalize_workspace_path(path)
        meta = await self._touch(sandbox_id)
        await asyncio.to_thread(fs_delete, str(self._store.workspace(meta.id)), relative)

    async def mkdir(self, sandbox_id: str, path: str) -> None:
        relative = normalize_workspace_path(path)
        meta = await self._touch(sandbox_id)
        await asyncio.to_thread(
            fs_mkdir, str(self._store.workspace(meta.id)), relative, owner=_owner(meta)
        )

    async def _touch(self, sandbox_id: str) -> SandboxMeta:
        """Metadata for a file operation (allowed on terminated sandboxes too)."""
        meta = await self._load(sandbox_id)
        live = self._live.get(sandbox_id)
        if live is not None:
            live.last_activity = time.monotonic()
        return meta

    # -- helpers -----------------------------------------------------------

    def _require_started(self) -> None:
        if self._tools is None:
            raise BackendUnavailable("the local sandbox backend is not started")

    def _tools_or_fail(self) -> Tools:
        self._require_started()
        assert self._tools is not None
        return self._tools

    async def _load(self, sandbox_id: str) -> SandboxMeta:
        check_sandbox_id(sandbox_id)
        return await asyncio.to_thread(self._store.load, sandbox_id)

    async def _current(self, sandbox_id: str) -> SandboxMeta:
        """Metadata, after ending the sandbox if its lifetime or idle time ran out."""
        meta = await self._load(sandbox_id)
        if not meta.terminated and self._expired(meta):
            await self.terminate(sandbox_id)
            meta = await self._load(sandbox_id)
        return meta

    def _expired(self, meta: SandboxMeta) -> bool:
        if time.time() > meta.created_at + meta.timeout_s:
            return True
        live = self._live.get(meta.id)
        if meta.idle_timeout_s is None or live is None or live.handles:
            return False
        return time.monotonic() - live.last_activity > meta.idle_timeout_s

    async def _watch(self) -> None:
        """Background duty: end expired sandboxes, enforce the disk quota."""
        while True:
            await asyncio.sleep(self._disk_interval)
            for sandbox_id, live in list(self._live.items()):
                if live.terminated:
                    continue
                try:
                    if self._expired(live.meta):
                        await self.terminate(sandbox_id)
                    elif live.handles:
                        await self._check_disk(sandbox_id, live)
                except SandboxError:
                    continue  # removed meanwhile

    async def _check_disk(self, sandbox_id: str, live: _Live) -> None:
        paths = [str(self._store.workspace(sandbox_id)), str(self._store.home(sandbox_id))]
        used, inodes = await asyncio.to_thread(disk_usage, paths, stop_at=self._disk_quota)
        if used <= self._disk_quota and inodes <= self._max_inodes:
            return
        message = (
            f"\n[sandbox: workspace disk quota exceeded ({used // _MB} MB, {inodes} files; "
            f"limit {self._disk_quota // _MB} MB, {self._max_inodes} files): processes killed]\n"
        )
        for handle in list(live.handles):
            if isinstance(handle, LocalExecHandle):
                handle.note(message)
            handle.kill_nowait("quota")


_NETWORK_REFUSED = (
    "the local backend cannot restrict network access to specific hosts; it is only "
    "available when the operator enables allow_network_opt_in"
)


def _owner(meta: SandboxMeta) -> Owner:
    return Owner(meta.uid, meta.uid)


def _argv(command: Sequence[str] | str) -> list[str]:
    if isinstance(command, str):
        if "\x00" in command:
            raise InvalidSpec("command contains a NUL byte")
        return ["/bin/sh", "-c", command]
    argv = list(command)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidSpec("command must be a non-empty sequence of strings")
    if any("\x00" in a for a in argv):
        raise InvalidSpec("command contains a NUL byte")
    return argv


def _check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSpec("environment keys and values must be strings")
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise InvalidSpec(f"invalid environment variable name {key!r}")


async def _settle(handles: Sequence[_Handle], timeout_s: float = 5.0) -> None:
    """Wait (bounded) until killed handles have been reaped."""
    if handles:
        await asyncio.wait([asyncio.ensure_future(h.wait()) for h in handles], timeout=timeout_s)


__all__ = ["WORKSPACE", "LocalSandboxBackend"]
