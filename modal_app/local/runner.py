"""Starting commands and terminals in a local sandbox (the part of the backend
that turns a sandbox's metadata into one bwrap invocation)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from modal_app.base import (
    BackendUnavailable,
    FileNotFoundInSandbox,
    InvalidSpec,
    NetworkPolicy,
    check_env,
)
from modal_app.local.bwrap import Invocation, Tools
from modal_app.local.cgroup import Cgroups
from modal_app.local.exec import LocalExecHandle
from modal_app.local.files import stat_path
from modal_app.local.meta import MetaStore, SandboxMeta
from modal_app.local.presets import SystemView, environment
from modal_app.local.private import make_snapshot, remove_snapshot
from modal_app.local.process import spawn
from modal_app.local.pty import LocalPtyHandle, set_winsize
from modal_app.local.spec import NETWORK_REFUSED
from modal_app.paths import normalize_workspace_path, workspace_abspath

Handle = LocalExecHandle | LocalPtyHandle


@dataclass(frozen=True, slots=True)
class Runner:
    """What a started backend knows about running things on this host."""

    tools: Tools
    view: SystemView
    store: MetaStore
    cgroups: Cgroups | None
    toolchain: Path | None
    tmp_size_mb: int
    snapshot_max_bytes: int = 1 << 30
    snapshot_max_files: int = 100_000

    async def exec(
        self,
        meta: SandboxMeta,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout_s: float | None,
        network: NetworkPolicy | None,
        on_exit: Callable[[Handle], None],
        private: bool = False,
    ) -> LocalExecHandle:
        inv = await self._invocation(meta, cwd=cwd, env=env, network=network, pty=False)
        if private:
            # A snapshot instead of the live workspace (see private.py).
            snapshot = await asyncio.to_thread(
                make_snapshot,
                inv.workspace,
                self.store.sandbox_dir(meta.id) / "private",
                uid=meta.uid,
                max_bytes=self.snapshot_max_bytes,
                max_files=self.snapshot_max_files,
            )
            inv = replace(inv, workspace=snapshot, private=True)
            on_exit = _removing(snapshot, on_exit)
        try:
            spawned = await spawn(
                self.tools,
                inv,
                argv,
                cgroups=self.cgroups,
                cgroup_name=meta.id,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except BaseException as exc:
            if inv.private:
                await asyncio.to_thread(remove_snapshot, inv.workspace)
            if isinstance(exc, OSError):
                raise BackendUnavailable(f"could not start a sandboxed process: {exc}") from exc
            raise
        return LocalExecHandle(spawned, timeout_s=timeout_s, on_exit=on_exit)

    async def pty(
        self,
        meta: SandboxMeta,
        argv: Sequence[str],
        *,
        cols: int,
        rows: int,
        env: Mapping[str, str] | None,
        on_exit: Callable[[Handle], None],
    ) -> LocalPtyHandle:
        inv = await self._invocation(meta, cwd=None, env=env, network=None, pty=True)
        master, slave = os.openpty()
        try:
            set_winsize(slave, cols, rows)
            spawned = await spawn(
                self.tools,
                inv,
                argv,
                cgroups=self.cgroups,
                cgroup_name=meta.id,
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
        except BaseException as exc:
            os.close(master)
            if isinstance(exc, OSError):
                raise BackendUnavailable(f"could not start a sandboxed terminal: {exc}") from exc
            raise
        finally:
            os.close(slave)
        return LocalPtyHandle(spawned, master, on_exit=on_exit)

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
        if not policy.blocked:
            raise InvalidSpec(NETWORK_REFUSED)
        socket_dir = Path(policy.socket_dir) if policy.socket_dir else None
        if socket_dir is not None and (pty or not socket_dir.is_absolute()):
            raise InvalidSpec("a socket directory is for one command, by absolute path")
        if env:
            check_env(env)
        relative = normalize_workspace_path(cwd) if cwd is not None else meta.workdir
        if relative:
            # Checked here, symlink-safely, so a missing directory is a clear
            # error rather than bwrap's exit status 1.
            workspace = str(self.store.workspace(meta.id))
            entry = await asyncio.to_thread(stat_path, workspace, relative)
            if entry.kind != "dir":
                raise FileNotFoundInSandbox(f"working directory {relative!r} is not a directory")
        full_env = environment(meta.language_enum, meta.limits, toolchain=bool(self.toolchain))
        full_env.update(meta.env)
        full_env.update(env or {})
        return Invocation(
            workspace=self.store.workspace(meta.id),
            home=self.store.home(meta.id),
            etc_dir=self.store.root / ".etc",
            uid=meta.uid,
            limits=meta.limits,
            env=full_env,
            cwd=workspace_abspath(relative),
            view=self.view,
            socket_dir=socket_dir,
            pty=pty,
            tmp_size_mb=self.tmp_size_mb,
            toolchain_dir=self.toolchain,
        )


def _removing(snapshot: Path, on_exit: Callable[[Handle], None]) -> Callable[[Handle], None]:
    """``on_exit``, then the private snapshot is deleted (off the event loop)."""

    def done(handle: Handle) -> None:
        on_exit(handle)
        asyncio.get_running_loop().run_in_executor(None, remove_snapshot, snapshot)

    return done
