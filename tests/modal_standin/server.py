"""``ModalStandin``: the control plane and one command router per sandbox, on loopback.

Usage (see tests/test_modal_standin.py)::

    standin = ModalStandin(root)
    await standin.start()
    monkeypatch.setenv("MODAL_SERVER_URL", standin.url)   # the SDK reads it per call
    backend = ModalSandboxBackend(token_id=standin.token_id, token_secret=standin.token_secret)
    ...
    await standin.stop()

Fault injection: ``standin.faults`` (RPC-level: UNAVAILABLE, delays, any
status), ``lose_worker`` (the sandbox's worker vanishes: container killed,
router connection refused), ``expire`` (Modal's sandbox timeout),
``rotate_router_jwt`` (the router JWT expires: the SDK must refresh it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from grpclib.server import Server
from modal_proto import api_pb2

from modal_app.base import Limits
from modal_app.local.host import Host, UidPool, prepare_host
from modal_app.local.presets import SANDBOX_UID, environment
from tests.modal_standin.blobs import BlockStore
from tests.modal_standin.container import Container
from tests.modal_standin.control import ControlPlane
from tests.modal_standin.router import CommandRouter, WorkerServer
from tests.modal_standin.state import (
    Faults,
    StandinSandbox,
    mint_id,
    mint_task_id,
    unsigned_jwt,
)
from tests.modal_standin.userns import MAPPED

_STATUS = api_pb2.GenericResult
# Sandbox uids, away from the local backend's default range (1.5e9...).
_UID_BASE = 1_450_000_000
# Containers' uid ranges (``userns``): 2.5e9 + n * 65536, below 2**32 - 1.
_RANGE_BASE = 2_500_000_000
_RANGES = 16_384


class ModalStandin:
    def __init__(
        self,
        root: Path,
        *,
        token_id: str = "ak-standin",
        token_secret: str = "as-standin",
    ) -> None:
        self.root = root
        self.token_id = token_id
        self.token_secret = token_secret
        self.faults = Faults()
        self.access_at_create = False
        """Hand out router access in ``SandboxCreateV2`` (else the SDK asks for it)."""
        self.sandboxes: dict[str, StandinSandbox] = {}
        self.router_jwt_ttl_s = 600
        """Lifetime of router JWTs; the SDK refreshes one only within 30 s of its ``exp``."""
        self.control = ControlPlane(self)
        self.blobs = BlockStore()
        self._routers: dict[str, WorkerServer] = {}
        self._server: Server | None = None
        self._host: Host | None = None
        self._uids = UidPool(_UID_BASE, 1 << 20)  # only its outside uid (the host probe)
        # A random start: two stand-ins (in-process and as a process) rarely share ranges.
        self._ranges = secrets.randbelow(_RANGES)
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._volume_locks: dict[str, asyncio.Lock] = {}
        self.url = ""

    @property
    def credentials(self) -> tuple[str, str]:
        return self.token_id, self.token_secret

    def environ(self) -> dict[str, str]:
        """What the SDK needs to talk to this stand-in instead of Modal."""
        return {
            "MODAL_SERVER_URL": self.url,
            "MODAL_TOKEN_ID": self.token_id,
            "MODAL_TOKEN_SECRET": self.token_secret,
        }

    async def start(self, *, port: int = 0) -> None:
        # The local backend's own host preparation: root check, tools,
        # generated /etc, and its isolation probe (a real bwrap run).
        self._host = await prepare_host(
            self.root / "host",
            cgroup_mode="off",
            cgroup_parent=None,
            probe_uid=self._uids.outside,
            tmp_size_mb=64,
        )
        await self.blobs.start()
        server = Server([self.control])
        await server.start("127.0.0.1", port)
        self._server = server
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        for sandbox in list(self.sandboxes.values()):
            await self.end_sandbox(sandbox, _STATUS.GENERIC_STATUS_TERMINATED)
        for router in self._routers.values():
            router.close()
            await router.wait_closed()
        self._routers.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.blobs.stop()

    # -- sandboxes --------------------------------------------------------------

    def sandbox(self, sandbox_id: str) -> StandinSandbox:
        from grpclib import GRPCError, Status

        found = self.sandboxes.get(sandbox_id)
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox_id} not found")
        return found

    def by_task(self, task_id: str) -> StandinSandbox:
        for sandbox in self.sandboxes.values():
            if sandbox.task_id == task_id:
                return sandbox
        from grpclib import GRPCError, Status

        raise GRPCError(Status.NOT_FOUND, f"task {task_id} not found")

    async def create_sandbox(self, req: api_pb2.SandboxCreateV2Request) -> StandinSandbox:
        assert self._host is not None
        definition = req.definition
        control = self.control
        for mount in definition.volume_mounts:
            control.volume(mount.volume_id)  # NOT_FOUND for an unknown volume
        env = environment(None, Limits(), toolchain=False)
        env.update(control.image_env(definition.image_id))
        for secret_id in definition.secret_ids:
            env.update(control.secrets.get(secret_id, {}))
        for source in req.secret_sources:
            if source.HasField("env"):
                env.update(source.env.contents)
            elif source.secret_id:
                env.update(control.secrets.get(source.secret_id, {}))
        sandbox = StandinSandbox(
            sandbox_id=mint_id("sb"),
            task_id=mint_task_id(),
            app_id=req.app_id,
            definition=definition,
            tags={t.tag_name: t.tag_value for t in req.tags},
            env=env,
            network=definition.network_access,
        )
        self.sandboxes[sandbox.sandbox_id] = sandbox
        await self._start_container(sandbox)
        router = WorkerServer([CommandRouter(sandbox, self.faults, control.secrets)])
        await router.start("127.0.0.1", 0)
        self._routers[sandbox.sandbox_id] = router
        port = router._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sandbox.router_url = f"http://127.0.0.1:{port}"
        self.rotate_router_jwt(sandbox.sandbox_id)
        if definition.timeout_secs:
            timer = asyncio.get_running_loop().call_later(
                definition.timeout_secs,
                lambda: self._background(self.expire(sandbox.sandbox_id)),
            )
            self._timers.append(timer)
        return sandbox

    async def _start_container(self, sandbox: StandinSandbox) -> None:
        assert self._host is not None
        definition = sandbox.definition
        # Root inside is host uid ``host_base``, uid N inside is host_base + N
        # (``userns``): home belongs to the sandbox user (1000) as in the
        # local backend; the workspace copy to the container's root, as on
        # Modal, where our backend hands it to its candidate uid itself.
        host_base = self._next_range()
        base = self.root / "sandboxes" / sandbox.sandbox_id
        home = base / "home"
        home.mkdir(parents=True)
        os.chown(home, host_base + SANDBOX_UID, host_base + SANDBOX_UID)
        home.chmod(0o700)
        # Only /workspace is mounted (that is all our backend mounts).  The
        # container works on a copy of the volume, committed back when the
        # sandbox ends (``end_sandbox``) -- Modal's "changes commit at
        # termination" -- and lost if its worker dies.
        workspace = base / "workspace"
        for mount in definition.volume_mounts:
            if mount.mount_path.rstrip("/") == "/workspace":
                sandbox.workspace_volume = mount.volume_id
                source = self.control.volume(mount.volume_id).path
                await asyncio.to_thread(shutil.copytree, source, workspace, symlinks=True)
        workspace.mkdir(parents=True, exist_ok=True)
        sandbox.workspace = workspace
        await asyncio.to_thread(_chown_tree, workspace, host_base)
        memory = definition.resources.memory_mb_max or definition.resources.memory_mb or 2048
        limits = Limits(
            memory_mb=max(memory, 512),
            max_processes=1024,
            max_file_size_mb=1024,
            max_open_files=4096,
            cpu_seconds=24 * 3600,
        )

        def entrypoint_exit(code: int) -> None:
            status = _STATUS.GENERIC_STATUS_SUCCESS if code == 0 else _STATUS.GENERIC_STATUS_FAILURE
            self._background(self.end_sandbox(sandbox, status, exitcode=code))

        container = Container(ctl_dir=base / "ctl", on_entrypoint_exit=entrypoint_exit)
        await container.start(
            tools=self._host.tools,
            view=self._host.view,
            etc_dir=self.root / "host" / ".etc",
            host_base=host_base,
            workspace=workspace,
            home=home,
            env=sandbox.env,
            workdir=definition.workdir or "/",
            entrypoint=list(definition.entrypoint_args) or ["sleep", "infinity"],
            limits=limits,
        )
        sandbox.container = container

    def _next_range(self) -> int:
        """The host uid range (``userns.MAPPED`` uids) of one new container."""
        self._ranges += 1
        return _RANGE_BASE + (self._ranges % _RANGES) * MAPPED

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def router_access(self, sandbox: StandinSandbox) -> api_pb2.CommandRouterAccess:
        return api_pb2.CommandRouterAccess(url=sandbox.router_url, jwt=sandbox.router_jwt)

    def rotate_router_jwt(self, sandbox_id: str) -> None:
        """A new router JWT: the one clients hold is refused (UNAUTHENTICATED) from now on."""
        sandbox = self.sandbox(sandbox_id)
        sandbox.router_jwt = unsigned_jwt(
            {
                "exp": int(time.time()) + self.router_jwt_ttl_s,
                "task_id": sandbox.task_id,
                "jti": mint_id("jw"),
            }
        )

    def sandbox_info(self, sandbox: StandinSandbox) -> api_pb2.SandboxInfo:
        result = sandbox.result or api_pb2.GenericResult()
        return api_pb2.SandboxInfo(
            id=sandbox.sandbox_id,
            created_at=sandbox.created_at,
            app_id=sandbox.app_id,
            tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sandbox.tags.items()],
            task_info=api_pb2.TaskInfo(
                id=sandbox.task_id, sandbox_id=sandbox.sandbox_id, result=result
            ),
            metadata=api_pb2.SandboxHandleMetadata(app_id=sandbox.app_id, result=result),
        )

    async def end_sandbox(
        self, sandbox: StandinSandbox, status: int, *, exitcode: int = 0, exception: str = ""
    ) -> None:
        """Publish the result, kill the container, commit its volume.

        The router answers NOT_FOUND from the first step on (no container).
        Reads of the volume wait for the commit (``volume_lock``).  With
        ``faults.result_after_commit`` the result is published last instead:
        then an exec's wait can fail (NOT_FOUND) while the control plane still
        says "running" -- an ordering Modal does not rule out.
        """
        container, sandbox.container = sandbox.container, None
        if container is None:
            sandbox.finish(status, exitcode=exitcode, exception=exception)
            return
        lock = self.volume_lock(sandbox.workspace_volume or "")
        async with lock:
            if not self.faults.result_after_commit:
                sandbox.finish(status, exitcode=exitcode, exception=exception)
            await container.stop()
            await asyncio.sleep(self.faults.commit_delay_s)
            await self._commit(sandbox)
        sandbox.finish(status, exitcode=exitcode, exception=exception)

    def volume_lock(self, volume_id: str) -> asyncio.Lock:
        """Held while a sandbox commits the volume; Volume RPCs wait for it."""
        return self._volume_locks.setdefault(volume_id, asyncio.Lock())

    async def _commit(self, sandbox: StandinSandbox) -> None:
        if sandbox.workspace_volume is None or sandbox.workspace is None:
            return
        volume = self.control.volumes.get(sandbox.workspace_volume)
        if volume is None:  # deleted meanwhile
            return
        await asyncio.to_thread(_replace_tree, sandbox.workspace, volume.path)

    def router_connections(self, sandbox_id: str) -> int:
        """Open client connections to the sandbox's command router (leak checks)."""
        router = self._routers.get(sandbox_id)
        return router.open_connections() if router is not None else 0

    # -- faults -----------------------------------------------------------------

    async def expire(self, sandbox_id: str) -> None:
        """Modal's lifetime timeout ends the sandbox (``SandboxTimeoutError`` for waiters)."""
        await self.end_sandbox(self.sandbox(sandbox_id), _STATUS.GENERIC_STATUS_TIMEOUT)

    async def lose_worker(self, sandbox_id: str, *, report: bool = True) -> None:
        """The worker vanishes: its container dies and its router refuses connections.

        With ``report`` the control plane then says the sandbox failed (as Modal
        does once it notices); without, it still says "running".
        """
        sandbox = self.sandbox(sandbox_id)
        sandbox.worker_gone = True
        container, sandbox.container = sandbox.container, None
        if container is not None:
            await container.stop()
        router = self._routers.pop(sandbox_id, None)
        if router is not None:
            router.sever()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(router.wait_closed(), 5)
        if report:
            sandbox.finish(_STATUS.GENERIC_STATUS_FAILURE, exception="worker lost (stand-in fault)")


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def _replace_tree(source: Path, target: Path) -> None:
    staging = target.with_name(target.name + ".commit")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, symlinks=True)
    shutil.rmtree(target)
    staging.rename(target)


def remove_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
