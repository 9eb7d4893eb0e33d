"""ExecHandle of the local backend: one bwrap invocation with piped stdio."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from modal_app.base import ExitStatus, OutputChunk
from modal_app.local.process import Spawned, kill_tree, reap_namespace

READ_CHUNK = 1 << 16
# Bounded so an output flood nobody reads stalls the command on a full pipe
# instead of growing the server's memory.
_QUEUE_CHUNKS = 64

KillReason = Literal["timeout", "kill", "terminate", "quota", "shutdown"]


class LocalExecHandle:
    """A running command; output() yields stdout/stderr chunks in arrival order.

    ``pid`` is the host pid of the outer bwrap process (tests look at its
    descendants from outside the sandbox).
    """

    def __init__(
        self,
        spawned: Spawned,
        *,
        timeout_s: float | None,
        on_exit: Callable[[LocalExecHandle], None] | None = None,
    ) -> None:
        proc = spawned.proc
        self.pid = proc.pid
        self._proc = proc
        self._init_pidfd = spawned.init_pidfd
        self._started = time.monotonic()
        self._ended: float | None = None
        self._reason: KillReason | None = None
        self._notes: list[bytes] = []
        self._on_exit = on_exit
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        loop = asyncio.get_running_loop()
        self._timer = (
            loop.call_later(timeout_s, self.kill_nowait, "timeout")
            if timeout_s is not None
            else None
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump("stdout", proc.stdout)),
            asyncio.create_task(self._pump("stderr", proc.stderr)),
        ]
        self._done = asyncio.create_task(self._reap())

    async def _pump(
        self, stream: Literal["stdout", "stderr"], reader: asyncio.StreamReader
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(READ_CHUNK):
                await self._queue.put(OutputChunk(stream, chunk))
        await self._queue.put(None)

    async def _reap(self) -> int:
        code = await self._proc.wait()
        await reap_namespace(self._init_pidfd)
        self._init_pidfd = None
        self._ended = time.monotonic()
        if self._timer is not None:
            self._timer.cancel()
        if self._on_exit is not None:
            self._on_exit(self)
        return code

    @property
    def running(self) -> bool:
        return self._ended is None

    def note(self, message: str) -> None:
        """Append a backend message (e.g. why it was killed) to the end of stderr."""
        self._notes.append(message.encode())

    async def output(self) -> AsyncIterator[OutputChunk]:
        open_streams = 2
        while open_streams:
            item = await self._queue.get()
            if item is None:
                open_streams -= 1
            else:
                yield item
        for note in self._notes:
            yield OutputChunk("stderr", note)

    async def wait(self) -> ExitStatus:
        code = await asyncio.shield(self._done)
        duration_ms = int(((self._ended or time.monotonic()) - self._started) * 1000)
        if self._reason is not None:
            return ExitStatus(
                exit_code=None,
                signal=signal.SIGKILL,
                timed_out=self._reason == "timeout",
                duration_ms=duration_ms,
            )
        if code < 0:
            return ExitStatus(exit_code=None, signal=-code, duration_ms=duration_ms)
        # bwrap reports a command killed inside the sandbox as 128+signal,
        # exactly as a shell would; that is what we pass on.
        return ExitStatus(exit_code=code, duration_ms=duration_ms)

    async def write_stdin(self, data: bytes) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            return
        # No drain(): the transport buffers and writes as the pipe empties.
        # Waiting here could deadlock a caller that writes all of stdin before
        # reading output (base.run does) against a command that writes first.
        stdin.write(data)

    async def close_stdin(self) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()  # flushes what is buffered, then closes

    def kill_nowait(self, reason: KillReason = "kill") -> None:
        if self._ended is not None:
            return
        if self._reason is None:
            self._reason = reason
        outer = self.pid if self._proc.returncode is None else None
        kill_tree(outer, self._init_pidfd)

    async def kill(self) -> None:
        self.kill_nowait("kill")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), 5)
