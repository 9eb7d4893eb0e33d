"""One stand-in sandbox = one real bubblewrap container, made by the local backend's launcher.

Isolation is not reimplemented here: the container is started from
the local backend's ``modal_app.local.bwrap.Invocation`` (pid/ipc/uts/net
namespaces, seccomp, rlimits, read-only system view, fresh /tmp), as the
local backend starts each of its commands, except that its user namespace
maps a uid range and the container runs as its root (``userns``), as a Modal
container does.  The
difference is the lifetime: the container's command is the exec agent
(``agent.py``), which runs the Modal entrypoint and then every exec inside
the same namespaces, as a Modal container does.

The control directory (the agent's socket, the agent and fs-tools scripts) is
bound read-only at ``SOCKET_MOUNT``; the workspace volume's directory is bound
read-write at /workspace.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modal_app.base import SOCKET_MOUNT, Limits
from modal_app.local.bwrap import Invocation, Tools
from modal_app.local.presets import SystemView
from modal_app.local.process import Spawned, kill_tree, reap_namespace
from tests.modal_standin.execs import ExecState
from tests.modal_standin.userns import spawn_root

_HERE = Path(__file__).resolve().parent
_MAX_FDS = 3


class Container:
    """The running container of one sandbox and the execs the agent started in it."""

    def __init__(self, *, ctl_dir: Path, on_entrypoint_exit: Callable[[int], None]) -> None:
        self.ctl_dir = ctl_dir
        self.execs: dict[str, ExecState] = {}
        self._on_entrypoint_exit = on_entrypoint_exit
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._spawned: Spawned | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._waiter: asyncio.Task[None] | None = None
        self.stopped = False

    async def start(
        self,
        *,
        tools: Tools,
        view: SystemView,
        etc_dir: Path,
        host_base: int,
        workspace: Path,
        home: Path,
        env: dict[str, str],
        workdir: str,
        entrypoint: list[str],
        limits: Limits,
    ) -> None:
        self.ctl_dir.mkdir(parents=True)
        self.ctl_dir.chmod(0o755)
        for name in ("agent.py", "fs_tools.py"):
            shutil.copy(_HERE / name, self.ctl_dir / name)
            (self.ctl_dir / name).chmod(0o644)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(str(self.ctl_dir / "agent.sock"))
        (self.ctl_dir / "agent.sock").chmod(0o777)  # the container's root is not host root
        listener.listen(1)
        listener.setblocking(False)
        self._listener = listener
        inv = Invocation(
            workspace=workspace,
            home=home,
            etc_dir=etc_dir,
            uid=host_base,  # unused by spawn_root: it starts as root
            limits=limits,
            env=env,
            cwd=workdir,
            view=view,
            socket_dir=self.ctl_dir,
        )
        command = [
            "python3",
            "-I",
            "-S",
            f"{SOCKET_MOUNT}/agent.py",
            f"{SOCKET_MOUNT}/agent.sock",
            f"{SOCKET_MOUNT}/fs_tools.py",
            "--",
            *entrypoint,
        ]
        self._spawned = await spawn_root(
            tools,
            inv,
            command,
            host_base=host_base,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 15)
        conn.setblocking(False)
        self._conn = conn
        ready = loop.create_future()
        self._pending["ready"] = ready
        loop.add_reader(conn, self._readable)
        await asyncio.wait_for(ready, 15)
        self._waiter = asyncio.create_task(self._wait_container())

    async def _wait_container(self) -> None:
        """The container died (killed, or the agent crashed): every exec ends with it."""
        assert self._spawned is not None
        await self._spawned.proc.wait()
        self._drop()
        if not self.stopped:
            self.stopped = True
            self._on_entrypoint_exit(137)

    def _readable(self) -> None:
        assert self._conn is not None
        try:
            data, ancdata, _, _ = self._conn.recvmsg(1 << 16, socket.CMSG_SPACE(_MAX_FDS * 4))
        except BlockingIOError:
            return
        except OSError:
            data, ancdata = b"", []
        if not data:
            self._drop()
            return
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", payload[: len(payload) - len(payload) % 4]))
        self._dispatch(json.loads(data), fds)

    def _dispatch(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg["op"]
        if op == "ready":
            self._resolve("ready")
        elif op == "entrypoint_exit":
            self._resolve("ready")
            self._on_entrypoint_exit(int(msg["code"]))
        elif op in ("spawned", "failed", "exit"):
            state = self.execs.get(msg["id"])
            if state is None:
                for fd in fds:
                    os.close(fd)
                return
            if op == "spawned":
                state.pid = msg["pid"]
                state.attach(msg["fds"], fds)
                self._resolve(msg["id"])
            elif op == "failed":
                state.fail_start(msg["message"])
                self._resolve(msg["id"])
            else:
                state.finish(
                    code=msg.get("code"), signal=msg.get("signal"), by_shutdown=self.stopped
                )

    def _resolve(self, key: str) -> None:
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _send(self, msg: dict[str, Any]) -> None:
        if self._conn is None:
            raise ConnectionError("the container is gone")
        self._conn.send(json.dumps(msg).encode())

    async def exec(
        self,
        exec_id: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str,
        pty: tuple[int, int] | None,
        stdout: bool,
        stderr: bool,
    ) -> ExecState:
        state = ExecState(exec_id, pty=pty is not None)
        self.execs[exec_id] = state
        started = asyncio.get_running_loop().create_future()
        self._pending[exec_id] = started
        request: dict[str, Any] = {
            "op": "spawn",
            "id": exec_id,
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "stdout": stdout,
            "stderr": stderr,
        }
        if pty is not None:
            request["pty"] = {"rows": pty[0], "cols": pty[1]}
        self._send(request)
        await asyncio.wait_for(started, 15)
        return state

    def kill(self, exec_id: str, signal: int = 9) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            self._send({"op": "kill", "id": exec_id, "signal": signal})

    async def stop(self) -> None:
        """Kill the whole container (every process in its pid namespace) and wait for it."""
        self.stopped = True
        spawned = self._spawned
        if spawned is not None:
            self._spawned = None
            kill_tree(
                spawned.proc.pid if spawned.proc.returncode is None else None, spawned.init_pidfd
            )
            await spawned.proc.wait()
            await reap_namespace(spawned.init_pidfd)
        if self._waiter is not None:
            self._waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiter
        self._drop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _drop(self) -> None:
        if self._conn is not None:
            asyncio.get_running_loop().remove_reader(self._conn)
            self._conn.close()
            self._conn = None
        for state in self.execs.values():
            state.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the container is gone"))
        self._pending.clear()
