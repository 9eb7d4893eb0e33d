"""PtyHandle of the local backend: one bwrap invocation on a real pseudo-terminal.

The slave side becomes the sandboxed command's controlling terminal (via
``setsid --ctty`` before bwrap; bwrap runs without ``--new-session`` here), so
job control, ``stty`` and SIGWINCH behave as in any terminal.  The master is
read non-blocking from the event loop (``add_reader``); when the consumer
falls behind, reading pauses and the command blocks on a full terminal
instead of the server buffering without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator, Callable

from modal_app.base import check_terminal_size
from modal_app.local.process import Spawned, kill_tree, reap_namespace

_READ = 1 << 16
_HIGH_WATER = 1 << 20
_LOW_WATER = 1 << 18
_WRITE_STALL_S = 5.0


def set_winsize(fd: int, cols: int, rows: int) -> None:
    check_terminal_size(cols, rows)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class LocalPtyHandle:
    """An interactive terminal; ``pid`` is the host pid of the launcher/outer bwrap."""

    def __init__(
        self,
        spawned: Spawned,
        master_fd: int,
        *,
        on_exit: Callable[[LocalPtyHandle], None] | None = None,
    ) -> None:
        self.pid = spawned.proc.pid
        self._proc = spawned.proc
        self._init_pidfd = spawned.init_pidfd
        self._fd = master_fd
        self._loop = asyncio.get_running_loop()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._wakeup = asyncio.Event()
        self._on_exit = on_exit
        self._ended = False
        os.set_blocking(master_fd, False)
        self._loop.add_reader(master_fd, self._readable)
        self._done = asyncio.create_task(self._reap())

    @property
    def running(self) -> bool:
        return not self._ended

    async def _reap(self) -> int:
        code = await self._proc.wait()
        await reap_namespace(self._init_pidfd)
        self._init_pidfd = None
        self._ended = True
        if self._on_exit is not None:
            self._on_exit(self)
        return code

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: every slave end is closed, the session is over
        if not data:
            self._finish_reading()
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= _HIGH_WATER and not self._paused:
            self._paused = True
            self._loop.remove_reader(self._fd)
        self._wakeup.set()

    def _finish_reading(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._eof = True
        self._wakeup.set()

    async def output(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= _LOW_WATER and self._fd >= 0:
                    self._paused = False
                    self._loop.add_reader(self._fd, self._readable)
                yield chunk
            if self._eof:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._fd >= 0:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                if not await self._writable():
                    return  # nothing reads the terminal's input; drop the rest
            except OSError:
                return  # the terminal is gone; input to a dead session is dropped

    async def _writable(self) -> bool:
        ready: asyncio.Future[None] = self._loop.create_future()
        fd = self._fd

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(fd, wake)
        try:
            await asyncio.wait_for(ready, _WRITE_STALL_S)
        except TimeoutError:
            return False
        finally:
            self._loop.remove_writer(fd)
        return True

    async def resize(self, cols: int, rows: int) -> None:
        if self._fd >= 0:
            # The kernel delivers SIGWINCH to the terminal's foreground group.
            set_winsize(self._fd, cols, rows)

    def kill_nowait(self, reason: str = "close") -> None:
        del reason  # same signature as LocalExecHandle; a PTY has no status to mark
        if not self._ended:
            outer = self.pid if self._proc.returncode is None else None
            kill_tree(outer, self._init_pidfd)

    async def close(self) -> None:
        self.kill_nowait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), 5)
        self._finish_reading()

    async def wait(self) -> int | None:
        code = await asyncio.shield(self._done)
        return code if code >= 0 else None
