"""The in-container exec agent of the Modal stand-in (standard library only).

A Modal sandbox is one container: every ``exec`` runs in the same pid, mount
and ipc namespaces as the entrypoint and every other exec, sees the same
``/tmp`` and can signal the others.  Our Modal backend depends on that (its
kill/resize helpers are separate execs reading a state file in ``/tmp`` and
signalling a pid).  So the stand-in starts ONE bubblewrap container per
sandbox (``container``) whose command is this script, and this script spawns
the entrypoint and every exec inside it, as Modal's worker does.

It talks to the stand-in over a ``SOCK_SEQPACKET`` Unix socket (one JSON
object per packet).  Instead of relaying output it creates the pipes (or the
PTY) here and hands the host ends to the stand-in with ``SCM_RIGHTS``, so the
stand-in reads and writes them directly.

Run as: ``python3 -I -S agent.py SOCKET FS_TOOLS_SCRIPT -- ENTRYPOINT...``.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
from typing import Any

FS_TOOLS = "/__modal/.bin/modal-sandbox-fs-tools"
"""Where Modal's workers provide the filesystem helper the SDK's ``Sandbox.filesystem`` execs."""


class Agent:
    def __init__(self, sock: socket.socket, fs_tools: str) -> None:
        self.sock = sock
        self.fs_tools = fs_tools
        self.children: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            self.sock.sendmsg([data], ancillary)
        else:
            self.sock.send(data)

    def start_entrypoint(self, argv: list[str]) -> None:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self.send({"op": "entrypoint_exit", "code": 127, "message": str(exc)})
            return
        self.children[proc.pid] = ("entrypoint", proc)
        self.send({"op": "ready", "pid": proc.pid})

    def spawn(self, req: dict[str, Any]) -> None:
        exec_id = req["id"]
        argv = list(req["argv"])
        if argv and argv[0] == FS_TOOLS:
            argv = [sys.executable, "-I", "-S", self.fs_tools, *argv[1:]]
        env = dict(os.environ)
        env.update(req.get("env") or {})
        pty = req.get("pty")
        try:
            if pty:
                master, slave = os.openpty()
                winsize = struct.pack("HHHH", pty["rows"], pty["cols"], 0, 0)
                fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
                try:
                    proc = subprocess.Popen(
                        argv,
                        stdin=slave,
                        stdout=slave,
                        stderr=slave,
                        cwd=req["cwd"],
                        env=env,
                        start_new_session=True,
                        # After setsid (start_new_session): the PTY becomes the
                        # controlling terminal, so job control and stty work.
                        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509
                    )
                finally:
                    os.close(slave)
                fds, names = [master], ["pty"]
            else:
                out = subprocess.PIPE if req.get("stdout", True) else subprocess.DEVNULL
                err = subprocess.PIPE if req.get("stderr", True) else subprocess.DEVNULL
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=req["cwd"],
                    env=env,
                    start_new_session=True,
                )
                fds, names = [], []
                for name, pipe in (
                    ("stdin", proc.stdin),
                    ("stdout", proc.stdout),
                    ("stderr", proc.stderr),
                ):
                    if pipe is not None:
                        fds.append(pipe.fileno())
                        names.append(name)
        except OSError as exc:
            if pty:
                os.close(master)
            self.send({"op": "failed", "id": exec_id, "errno": exc.errno, "message": str(exc)})
            return
        self.children[proc.pid] = (exec_id, proc)
        self.send({"op": "spawned", "id": exec_id, "pid": proc.pid, "fds": names}, fds)
        # The stand-in holds its own copies now (SCM_RIGHTS duplicates them).
        if pty:
            os.close(master)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.stdin = proc.stdout = proc.stderr = None

    def kill(self, req: dict[str, Any]) -> None:
        for exec_id, proc in self.children.values():
            if exec_id == req["id"] and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, req.get("signal", signal.SIGKILL))

    def reap(self) -> None:
        for pid, (exec_id, proc) in list(self.children.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.children[pid]
            if exec_id == "entrypoint":
                self.send({"op": "entrypoint_exit", "code": code})
            elif code < 0:
                self.send({"op": "exit", "id": exec_id, "signal": -code})
            else:
                self.send({"op": "exit", "id": exec_id, "code": code})


def main() -> None:
    sock_path, fs_tools = sys.argv[1], sys.argv[2]
    entrypoint = sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(sock_path)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    agent = Agent(sock, fs_tools)
    agent.start_entrypoint(entrypoint)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is sock:
                packet = sock.recv(1 << 20)
                if not packet:
                    return  # the stand-in went away: the container ends with us
                req = json.loads(packet)
                if req["op"] == "spawn":
                    agent.spawn(req)
                elif req["op"] == "kill":
                    agent.kill(req)
            else:
                os.read(wake_r, 4096)
        agent.reap()


if __name__ == "__main__":
    main()
