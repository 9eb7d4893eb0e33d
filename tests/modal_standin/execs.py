"""One exec'd process as the stand-in's command router sees it.

Output is kept whole in memory (tests are short), because the router's
``TaskExecStdioRead`` is offset-based: a client that reconnects (or a second
client, e.g. another API replica) asks for "stdout from byte N" and must get
exactly the bytes after N, then everything that follows until EOF.  Stdin is
offset-based too (``TaskExecStdinWrite`` carries the offset of its data), so a
retried write is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from dataclasses import dataclass, field

_READ = 1 << 16


@dataclass
class OutputBuffer:
    """Everything one fd of a process has written, plus EOF."""

    data: bytearray = field(default_factory=bytearray)
    eof: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, chunk: bytes) -> None:
        self.data.extend(chunk)
        self._notify()

    def close(self) -> None:
        self.eof = True
        self._notify()

    def _notify(self) -> None:
        # Wake everyone waiting now; later waiters get a fresh event.
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class ExecState:
    exec_id: str
    pty: bool
    stdout: OutputBuffer = field(default_factory=OutputBuffer)
    stderr: OutputBuffer = field(default_factory=OutputBuffer)
    stdin_fd: int | None = None
    stdin_written: int = 0
    stdin_closed: bool = False
    stdin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    exit_code: int | None = None
    exit_signal: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    pid: int | None = None
    by_shutdown: bool = False
    """Ended because its sandbox did: the router answers NOT_FOUND, not an exit status."""
    _readers: list[int] = field(default_factory=list)

    def attach(self, names: list[str], fds: list[int]) -> None:
        """Take the host ends of the process's stdio, handed over by the agent."""
        loop = asyncio.get_running_loop()
        by_name = dict(zip(names, fds, strict=True))
        if "pty" in by_name:
            master = by_name["pty"]
            # One fd for reading, a duplicate for writing, so closing stdin
            # (EOF) does not stop the output.
            self.stdin_fd = os.dup(master)
            self._read_into(loop, master, self.stdout)
            self.stderr.close()  # a PTY merges stderr into stdout
        else:
            self.stdin_fd = by_name.get("stdin")
            for name, buffer in (("stdout", self.stdout), ("stderr", self.stderr)):
                fd = by_name.get(name)
                if fd is None:
                    buffer.close()  # DEVNULL: nothing will ever come
                else:
                    self._read_into(loop, fd, buffer)
        if self.stdin_fd is not None:
            os.set_blocking(self.stdin_fd, False)

    def _read_into(self, loop: asyncio.AbstractEventLoop, fd: int, buffer: OutputBuffer) -> None:
        os.set_blocking(fd, False)
        self._readers.append(fd)

        def readable() -> None:
            try:
                chunk = os.read(fd, _READ)
            except BlockingIOError:
                return
            except OSError as exc:
                # EIO: the last slave fd of a PTY closed (that is its EOF).
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            if chunk:
                buffer.append(chunk)
                return
            loop.remove_reader(fd)
            self._readers.remove(fd)
            os.close(fd)
            buffer.close()

        loop.add_reader(fd, readable)

    def finish(
        self, *, code: int | None = None, signal: int | None = None, by_shutdown: bool = False
    ) -> None:
        self.exit_code, self.exit_signal = code, signal
        self.by_shutdown = by_shutdown
        self.exited.set()

    def fail_start(self, message: str) -> None:
        """The agent could not start the command: it 'ran' and failed like a shell would."""
        self.stdout.close()
        self.stderr.append(f"exec: {message}\n".encode())
        self.stderr.close()
        self.stdin_closed = True
        self.finish(code=127)

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        """Apply a write at ``offset`` (the part already applied is skipped)."""
        async with self.stdin_lock:
            if offset > self.stdin_written:
                raise ValueError(f"stdin offset {offset} is past {self.stdin_written}")
            data = data[self.stdin_written - offset :]
            # Modal answers FAILED_PRECONDITION (the SDK's ConflictError) when
            # stdin is written after EOF or after the process exited: the SDK's
            # own fs-tools write path relies on that (``_exec_fs_tool_write``).
            if data and (self.stdin_closed or self.exited.is_set()):
                raise BrokenPipeError("stdin is closed" if self.stdin_closed else "process exited")
            if data and self.stdin_fd is not None:
                await _write_all(self.stdin_fd, data)
            self.stdin_written += len(data)
            if eof and not self.stdin_closed:
                self.stdin_closed = True
                if self.stdin_fd is not None:
                    os.close(self.stdin_fd)
                    self.stdin_fd = None

    def close(self) -> None:
        """The container is gone: release every fd and end every stream."""
        loop = asyncio.get_running_loop()
        for fd in self._readers:
            loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._readers.clear()
        if self.stdin_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = None
        for buffer in (self.stdout, self.stderr):
            if not buffer.eof:
                buffer.close()
        if not self.exited.is_set():
            self.finish(signal=9, by_shutdown=True)


async def _write_all(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
            continue
        view = view[written:]
