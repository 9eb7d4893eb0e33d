"""The local sandbox backend: bubblewrap on this machine (the embedded default).

Design: a sandbox is *a workspace directory + its limits + the process trees
this backend is tracking for it*.  There is no long-lived container: every
exec and every PTY is its own bwrap invocation over the sandbox's workspace,
with identical isolation (``bwrap``).  So create→ready is a few mkdirs
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
``bwrap``); when cgroups are available (``cgroup``) the sandbox's
total memory, tasks and CPU share are bounded too.

Disk: RLIMIT_FSIZE bounds each file; the total (``disk_quota_mb``,
``max_inodes``) is enforced by a watchdog while processes run (``quota``),
so the overshoot is what a sandbox writes in one ``disk_check_interval_s``.
/tmp and /dev/shm are size-bounded tmpfs (their pages are also charged to the
sandbox's memory cgroup); / and /dev are read-only.

Syscalls: a seccomp filter (``seccomp``) on every sandboxed process.
Host details: bwrap's options and the environment reach bwrap in file
descriptors, never in an argv (``launch``), so neither the host's ``ps``
nor the sandbox's ``/proc/1/cmdline`` shows host paths or secrets.

Network: none (``--unshare-net``: loopback only), for every command; a
NetworkPolicy with ``allow_hosts`` is refused (InvalidSpec).  The one way out
is ``NetworkPolicy.socket_dir`` on one exec: a host directory of Unix sockets
bound read-only into that invocation (the agent's API proxy).

Never falls back to running on the host: ``start`` raises BackendUnavailable
unless a probe invocation shows separate user, pid and net namespaces and the
seccomp filter in force.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import shutil
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path

from modal_app.base import (
    AgentProxyRoute,
    BackendUnavailable,
    NetworkPolicy,
    SandboxInfo,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
    WatchFilter,
    WorkspaceChanges,
    check_exec,
    check_pty,
)
from modal_app.local.cgroup import Cgroups
from modal_app.local.exec import LocalExecHandle
from modal_app.local.fileapi import WorkspaceFiles, owner_of
from modal_app.local.files import mkdir as fs_mkdir
from modal_app.local.host import CgroupMode, UidPool, prepare_host
from modal_app.local.inotify import WorkspaceWatcher
from modal_app.local.live import LiveSandbox, expired, stop
from modal_app.local.meta import MetaStore, SandboxMeta, check_sandbox_id
from modal_app.local.process import kill_uid
from modal_app.local.pty import LocalPtyHandle
from modal_app.local.quota import DiskQuota
from modal_app.local.runner import Runner
from modal_app.local.spec import check_local_spec
from modal_app.local.watchdog import Watchdog


class LocalSandboxBackend(WorkspaceFiles):
    """SandboxBackend on bubblewrap.

    ``root`` is SANDBOX_ROOT; the backend makes it root-owned 0711, and every
    ancestor must be searchable by other users (bwrap resolves bind sources
    as the sandbox uid).  The server must run as root.
    """

    name = "local"
    shares_sandboxes_across_replicas = False
    """A sandbox's processes are children of the server process that started them."""
    agent_proxy_route: AgentProxyRoute = "socket"
    """No network at all: the proxy's socket is bound in for the agent's command."""
    serves_images = False

    def __init__(
        self,
        root: Path | str,
        *,
        toolchain_dir: Path | str | None = None,
        uid_base: int = 1_500_000_000,
        uid_count: int = 1 << 24,
        cgroups: CgroupMode = "auto",
        cgroup_parent: Path | str | None = None,
        disk_quota_mb: int = 1024,
        max_inodes: int = 100_000,
        disk_check_interval_s: float = 0.5,
        tmp_size_mb: int = 256,
        max_list_entries: int = 10_000,
        watch_max_dirs: int = 2_000,
    ) -> None:
        self.root = Path(root).absolute()
        self._store = MetaStore(self.root)
        self._toolchain = Path(toolchain_dir).absolute() if toolchain_dir else None
        self._uids = UidPool(uid_base, uid_count)
        self._cgroup_mode = cgroups
        self._cgroup_parent = Path(cgroup_parent) if cgroup_parent else None
        self._quota = DiskQuota(disk_quota_mb * 1024 * 1024, max_inodes)
        self._tmp_size_mb = tmp_size_mb
        self._max_list = max_list_entries
        self._runner: Runner | None = None
        self.cgroups: Cgroups | None = None
        """The per-sandbox cgroup layer in use (None: rlimits only)."""
        self._live: dict[str, LiveSandbox] = {}
        self._watchdog = Watchdog(
            self._live,
            store=self._store,
            quota=self._quota,
            interval_s=disk_check_interval_s,
            terminate=self.terminate,
        )
        self._watchdog_task: asyncio.Task[None] | None = None
        self._watcher = WorkspaceWatcher(max_dirs=watch_max_dirs)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        host = await prepare_host(
            self.root,
            cgroup_mode=self._cgroup_mode,
            cgroup_parent=self._cgroup_parent,
            probe_uid=self._uids.outside,
            tmp_size_mb=self._tmp_size_mb,
        )
        self.cgroups = host.cgroups
        self._uids.reset({m.uid for m in await asyncio.to_thread(self._store.all)})
        self._runner = Runner(
            tools=host.tools,
            view=host.view,
            store=self._store,
            cgroups=host.cgroups,
            toolchain=self._toolchain,
            tmp_size_mb=self._tmp_size_mb,
            snapshot_max_bytes=self._quota.max_bytes,
            snapshot_max_files=self._quota.max_inodes,
        )
        self._watchdog_task = asyncio.create_task(self._watchdog.run())

    async def aclose(self) -> None:
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog_task
            self._watchdog_task = None
        self._watcher.close_all()
        await stop([h for live in self._live.values() for h in live.handles], "shutdown")
        if self.cgroups is not None:
            for sandbox_id in list(self._live):
                await asyncio.to_thread(self.cgroups.remove, sandbox_id)
        self._runner = None

    # -- sandboxes ---------------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        workdir = check_local_spec(spec)  # first: a bad spec is the caller's error
        self._started()
        meta = SandboxMeta.new(spec, uid=self._uids.allocate(), workdir=workdir)
        try:
            await asyncio.to_thread(self._create_dirs, meta)
        except BaseException:
            self._uids.release(meta.uid)
            raise
        self._live[meta.id] = LiveSandbox(meta)
        return meta.info()

    def _create_dirs(self, meta: SandboxMeta) -> None:
        self._store.create_dirs(meta)
        if meta.workdir:
            fs_mkdir(str(self._store.workspace(meta.id)), meta.workdir, owner=owner_of(meta))

    async def attach(self, sandbox_id: str) -> SandboxInfo:
        return (await self._current(sandbox_id)).info()

    async def status(self, sandbox_id: str) -> SandboxStatus:
        return SandboxStatus((await self._current(sandbox_id)).status)

    async def list(self, tags: Mapping[str, str]) -> builtins.list[SandboxInfo]:
        metas = await asyncio.to_thread(self._store.all)
        wanted = dict(tags).items()
        found: builtins.list[SandboxInfo] = []
        for meta in metas:
            if not wanted <= dict(meta.tags).items():
                continue
            if meta.terminated:
                continue  # running sandboxes only (the contract: base.SandboxBackend.list)
            if self._expired(meta):
                await self.terminate(meta.id)
                continue
            found.append(meta.info())
        return sorted(found, key=lambda info: info.created_at)

    async def host_uid(self, sandbox_id: str) -> int:
        """The host uid the sandbox's processes and files run as (for operators and tests)."""
        return (await self._load(sandbox_id)).uid

    async def terminate(self, sandbox_id: str) -> None:
        meta = await self._load(sandbox_id)
        live = self._live.setdefault(sandbox_id, LiveSandbox(meta))
        live.terminated = True
        if not meta.terminated:
            meta = meta.with_terminated()
            await asyncio.to_thread(self._store.save, meta)
        live.meta = meta
        self._watcher.close(sandbox_id)
        await stop(list(live.handles), "terminate")
        await asyncio.to_thread(self._kill_everything, meta)

    def _kill_everything(self, meta: SandboxMeta) -> None:
        """Kill every process of the sandbox, tracked by this process or not.

        Processes started by an earlier server process, or a tree whose outer
        bwrap died before its child could arm --die-with-parent, are found by
        their uid (no other process on the host has it).
        """
        if self.cgroups is not None:
            self.cgroups.kill(meta.id)
        kill_uid(meta.uid)
        if self.cgroups is not None:
            self.cgroups.remove(meta.id)

    async def remove(self, sandbox_id: str) -> None:
        """Delete a sandbox and its workspace for good (terminating it first)."""
        await self.terminate(sandbox_id)
        meta = await self._load(sandbox_id)
        await asyncio.to_thread(shutil.rmtree, self._store.sandbox_dir(sandbox_id))
        self._live.pop(sandbox_id, None)
        self._uids.release(meta.uid)

    async def purge(self, older_than_s: float) -> builtins.list[str]:
        """Remove sandboxes terminated more than ``older_than_s`` ago; return their ids."""
        cutoff = time.time() - older_than_s
        removed: builtins.list[str] = []
        for meta in await asyncio.to_thread(self._store.all):
            if meta.terminated and (meta.terminated_at or 0) <= cutoff:
                await self.remove(meta.id)
                removed.append(meta.id)
        return removed

    # -- processes ---------------------------------------------------------------

    async def exec(
        self,
        sandbox_id: str,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        network: NetworkPolicy | None = None,
        private: bool = False,
    ) -> LocalExecHandle:
        argv = check_exec(command, env=env, timeout_s=timeout_s)
        meta, live = await self._runnable(sandbox_id)
        handle = await self._started().exec(
            meta,
            argv,
            cwd=cwd,
            env=env,
            timeout_s=timeout_s,
            network=network,
            on_exit=live.exited,
            private=private,
        )
        live.track(handle)
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
        argv = check_pty(command, cols=cols, rows=rows, env=env)
        meta, live = await self._runnable(sandbox_id)
        handle = await self._started().pty(
            meta, argv, cols=cols, rows=rows, env=env, on_exit=live.exited
        )
        live.track(handle)
        return handle

    async def _runnable(self, sandbox_id: str) -> tuple[SandboxMeta, LiveSandbox]:
        self._started()
        meta = await self._current(sandbox_id)
        if meta.terminated:
            raise SandboxTerminated(f"sandbox {sandbox_id} has been terminated")
        live = self._live.setdefault(sandbox_id, LiveSandbox(meta))
        live.meta = meta
        live.touch()
        return meta, live

    async def watch_workspace(
        self, sandbox_id: str, *, enter: WatchFilter
    ) -> AsyncGenerator[WorkspaceChanges, None]:
        """inotify on the host's copy of the workspace (``inotify``); ends at terminate."""
        meta, _ = await self._runnable(sandbox_id)
        async for changes in self._watcher.watch(
            meta.id, str(self._store.workspace(meta.id)), enter
        ):
            yield changes

    # -- helpers -----------------------------------------------------------------

    def _started(self) -> Runner:
        if self._runner is None:
            raise BackendUnavailable("the local sandbox backend is not started")
        return self._runner

    async def _load(self, sandbox_id: str) -> SandboxMeta:
        check_sandbox_id(sandbox_id)
        return await asyncio.to_thread(self._store.load, sandbox_id)

    async def _touch(self, sandbox_id: str) -> SandboxMeta:
        """Metadata for a file operation (allowed on terminated sandboxes too)."""
        meta = await self._load(sandbox_id)
        live = self._live.get(sandbox_id)
        if live is not None:
            live.touch()
        return meta

    async def _current(self, sandbox_id: str) -> SandboxMeta:
        """Metadata, after ending the sandbox if its lifetime or idle time ran out."""
        meta = await self._load(sandbox_id)
        if not meta.terminated and self._expired(meta):
            await self.terminate(sandbox_id)
            meta = await self._load(sandbox_id)
        return meta

    def _expired(self, meta: SandboxMeta) -> bool:
        return expired(meta, self._live.get(meta.id))
