"""Process plumbing of the in-sandbox supervisor: frames, capped pipes, children.

Standard library only; shipped into the sandbox with ``supervisor.py`` (the
bootstrap registers it under this module's name, so the import works there
as it does here).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import time
from collections import deque

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any

READ_CHUNK = 1 << 16
MEMORY_PATTERNS = (
    "JavaScript heap out of memory",
    "Allocation failed - process out of memory",
    "fatal error: runtime: out of memory",
    "runtime: out of memory",
    "fatal error: out of memory",
    "MemoryError",
    "std::bad_alloc",
)
_SUMMARY_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")
_FATAL_PREFIXES = ("fatal error:", "panic:", "FATAL ERROR:")

Message = dict[str, "Any"]


def ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class Frames:
    """The result channel: ``<<ILM:nonce>>{json}`` lines on the supervisor's own stdout."""

    def __init__(self, nonce: str) -> None:
        self._prefix = f"<<ILM:{nonce}>>".encode()

    def emit(self, frame: Message) -> None:
        data = self._prefix + json.dumps(frame, separators=(",", ":")).encode("ascii") + b"\n"
        view = memoryview(data)
        while view:
            written = os.write(1, view)
            view = view[written:]


class Capped:
    """The first ``cap`` bytes of a stream, and how many there were in all."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.total += len(chunk)

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        if self.total > self.cap:
            text += f"\n[output truncated: {self.total} bytes, limit {self.cap}]\n"
        return text

    def reset(self) -> None:
        self.data = bytearray()
        self.total = 0


Started = tuple[int, int, int, int, int]
"""(pid, stdout read end, stderr read end, control write end, result read end); -1: none."""


def spawn(argv: list[str], *, env: dict[str, str], stdin: int | None, channel: bool) -> Started:
    """``posix_spawn`` a child in a new session with piped stdio (+ the two message pipes).

    Mirrored by ``modal_app.harness.BOOTSTRAP``, which starts the Python
    worker this way before the supervisor is even loaded.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY) if stdin is None else -1
    ctl_r = ctl_w = res_r = res_w = -1
    if channel:
        ctl_r, ctl_w = os.pipe()
        res_r, res_w = os.pipe()
        argv = [*argv, str(ctl_r), str(res_w)]
        os.set_inheritable(ctl_r, True)
        os.set_inheritable(res_w, True)
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin if stdin is not None else null, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    except BaseException:
        for fd in (out_r, err_r, ctl_w, res_r):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, null, ctl_r, res_w):
            if fd >= 0:
                os.close(fd)
    return pid, out_r, err_r, ctl_w, res_r


class Child:
    """A child process: stdout/stderr into capped buffers, optional message pipes.

    With ``channel``, two pipes are added and their fd numbers appended to the
    argv: the worker reads cases from the first and writes JSON-line messages
    to the second.  Its stdout and stderr are separate pipes, so nothing the
    candidate prints can reach the message pipe or the supervisor's stdout.
    Started with ``posix_spawn`` in a new session (its own process group, so
    ``kill`` reaches its children); every other fd of the supervisor is
    close-on-exec and stays behind.  ``stdin`` None is /dev/null.  ``started``
    adopts a child started already (by the bootstrap) instead.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        stdin: int | None,
        out_cap: int,
        err_cap: int,
        channel: bool,
        started: Started | None = None,
    ) -> None:
        self.out = Capped(out_cap)
        self.err = Capped(err_cap)
        self.messages: deque[Message] = deque()
        self.returncode: int | None = None
        self._closed = False
        self._lines = bytearray()
        self._outbox = bytearray()
        self._sel = selectors.DefaultSelector()
        if started is None:
            started = spawn(argv, env=env, stdin=stdin, channel=channel)
        self.pid, out_r, err_r, self._ctl_w, res_r = started
        self._watch(out_r, self.out.add)
        self._watch(err_r, self.err.add)
        if res_r >= 0:
            self._watch(res_r, self._on_message_bytes)
        if self._ctl_w >= 0:
            os.set_blocking(self._ctl_w, False)
        self._pidfd = -1
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self.pid)
            self._sel.register(self._pidfd, selectors.EVENT_READ, "exit")
        self._polling = self._pidfd < 0
        """No pidfd (old kernel): poll for the exit every 10 ms instead."""

    def _watch(self, fd: int, sink: Any) -> None:
        os.set_blocking(fd, False)
        self._sel.register(fd, selectors.EVENT_READ, sink)

    # -- messages ------------------------------------------------------------------

    def send(self, message: Message) -> None:
        self._outbox += json.dumps(message).encode() + b"\n"
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        if self._ctl_w < 0:
            return
        try:
            while self._outbox:
                written = os.write(self._ctl_w, self._outbox)
                del self._outbox[:written]
        except BlockingIOError:
            pass
        except OSError:  # the worker closed its end (it died)
            self._outbox.clear()
        registered = self._ctl_w in self._sel.get_map()
        if self._outbox and not registered:
            self._sel.register(self._ctl_w, selectors.EVENT_WRITE, "write")
        elif not self._outbox and registered:
            self._sel.unregister(self._ctl_w)

    def _on_message_bytes(self, chunk: bytes) -> None:
        self._lines += chunk
        while (end := self._lines.find(b"\n")) >= 0:
            line = bytes(self._lines[:end])
            del self._lines[: end + 1]
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    self.messages.append(message)

    # -- waiting -------------------------------------------------------------------

    @property
    def exited(self) -> bool:
        return self.returncode is not None

    def pump(self, deadline: float) -> None:
        """Handle whatever I/O is ready, waiting at most until ``deadline``."""
        timeout = max(0.0, deadline - time.monotonic())
        if self._polling:
            timeout = min(timeout, 0.01)
        for key, _ in self._sel.select(timeout):
            if key.data == "exit":
                self._reap()
            elif key.data == "write":
                self._flush_outbox()
            else:
                self._read(key.fd, key.data)
        if self._polling and not self.exited:
            self._reap(block=False)

    def _read(self, fd: int, sink: Any) -> None:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            sink(chunk)
        else:
            self._sel.unregister(fd)
            os.close(fd)

    def drain(self) -> None:
        """Read everything already sitting in the pipes (without waiting for more)."""
        for key in list(self._sel.get_map().values()):
            if key.data in ("exit", "write"):
                continue
            for _ in range(1024):
                if key.fd not in self._sel.get_map():
                    break
                try:
                    chunk = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    self._sel.unregister(key.fd)
                    os.close(key.fd)
                    break
                key.data(chunk)

    def _reap(self, block: bool = True) -> None:
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        self.returncode = os.waitstatus_to_exitcode(status)
        if self._pidfd >= 0:
            if self._pidfd in self._sel.get_map():
                self._sel.unregister(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        self.drain()

    def next_message(self, deadline: float) -> Message | None:
        """The worker's next message; None if it exited or the deadline passed first."""
        while not self.messages:
            if self.exited or time.monotonic() >= deadline:
                return None
            self.pump(deadline)
        return self.messages.popleft()

    def wait_exit(self, deadline: float) -> bool:
        while not self.exited and time.monotonic() < deadline:
            self.pump(deadline)
        return self.exited

    def kill(self) -> None:
        """SIGKILL the child's whole process group and release everything."""
        if not self.exited:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self._reap()
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.returncode is None:
            self._reap()
        for key in list(self._sel.get_map().values()):
            self._sel.unregister(key.fd)
            if key.data != "write":
                with contextlib.suppress(OSError):
                    os.close(key.fd)
        if self._ctl_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self._ctl_w)
            self._ctl_w = -1
        self._sel.close()


def death(child: Child) -> tuple[str, str, int | None]:
    """(status, error, signal) of a process that died on its own."""
    code = child.returncode if child.returncode is not None else -signal.SIGKILL
    stderr = child.err.text()
    sig = -code if code < 0 else None
    summary = _summary(stderr)
    if any(pattern in stderr for pattern in MEMORY_PATTERNS):
        return "MEMORY_LIMIT", summary or "out of memory", sig
    if sig == signal.SIGKILL:
        # Not ours (we report our kills as TIMEOUT): the cgroup OOM killer or
        # an allocation the kernel would not satisfy.
        return "MEMORY_LIMIT", "killed by SIGKILL (out of memory)", sig
    how = f"killed by signal {sig}" if sig is not None else f"exit status {code}"
    return "RUNTIME_ERROR", f"{summary} ({how})" if summary else how, sig


def _summary(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(_FATAL_PREFIXES):
            return line
    for line in lines:
        if _SUMMARY_LINE.match(line):
            return line
    return lines[-1] if lines else ""


def stdin_file(text: str) -> int:
    """A readable fd positioned at the start of ``text`` (a memfd, or an unlinked temp file)."""
    data = text.encode("utf-8", "surrogatepass")
    try:
        fd = os.memfd_create("stdin", 0)
    except (AttributeError, OSError):
        tmp = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - the sandbox's private tmpfs
        fd = os.open(tmp, os.O_TMPFILE | os.O_RDWR, 0o600)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
