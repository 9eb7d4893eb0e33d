"""``ExecHandle`` and ``PtyHandle`` over a Modal ``ContainerProcess``.

Output: stdout and stderr are drained by two concurrent tasks into one bounded
queue, so chunks come out in arrival order and a full stderr pipe can never
block a reader stuck on stdout (the queue bound gives back-pressure; Modal
buffers the rest server-side).

Timeouts: ``Sandbox.exec(timeout=N)`` (whole seconds) gives the process an
exec deadline; in 1.6.4 the SDK then ends the output streams quietly and
``ContainerProcess.wait`` returns -1 instead of raising ``ExecTimeoutError``.
That -1 after the deadline is reported as ``timed_out`` and the process tree
is killed, in case anything outlived the deadline.

Exit codes: the SDK folds "killed by signal N" into ``128 + N``; a process we
killed ourselves is reported as ``signal=SIGKILL`` with no exit code, any
other 128+N stays an exit code because it is indistinguishable from
``exit(128+N)``.

Kill / resize: see ``modal_shell`` -- they run as separate small commands
through the ``helper`` callback the backend passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Literal

import modal.container_process

from modal_app.base import ExitStatus, OutputChunk, SandboxError
from modal_app.modal_errors import translate_errors
from modal_app.modal_shell import kill_tree_argv, resize_argv

Helper = Callable[[Sequence[str]], Awaitable[int]]
"""Runs a helper argv in the same sandbox and returns its exit code."""

_STDIN_CHUNK = 1 << 20
_QUEUE_CHUNKS = 64

Process = modal.container_process.ContainerProcess[bytes]


async def _drain(
    process: Process,
    streams: Sequence[Literal["stdout", "stderr"]],
) -> AsyncIterator[tuple[Literal["stdout", "stderr"], bytes]]:
    """Yield (stream, data) from ``streams`` of ``process``, read concurrently."""
    queue: asyncio.Queue[tuple[Literal["stdout", "stderr"], bytes] | BaseException | None] = (
        asyncio.Queue(maxsize=_QUEUE_CHUNKS)
    )

    async def pump(name: Literal["stdout", "stderr"]) -> None:
        reader = process.stdout if name == "stdout" else process.stderr
        try:
            async for data in reader:
                if data:
                    await queue.put((name, data))
        except Exception as exc:
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(name)) for name in streams]
    open_streams = len(tasks)
    try:
        while open_streams:
            item = await queue.get()
            if item is None:
                open_streams -= 1
            elif isinstance(item, BaseException):
                with translate_errors():
                    raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _ProcessBase:
    def __init__(
        self,
        process: Process,
        *,
        state_path: str,
        helper: Helper,
        deadline: float | None,
        on_finish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._process = process
        self._state_path = state_path
        self._helper = helper
        self._deadline = deadline
        self._started = time.monotonic()
        self._killed = False
        self._timed_out = False
        self._on_finish = on_finish
        self._finished = asyncio.Event()
        self._returncode: int | None = None
        self._waiter: asyncio.Future[int] | None = None
        self._ended_at: float | None = None

    async def _exited(self) -> bool:
        """Whether the process has ended (errors read as 'ended': nothing left to act on)."""
        if self._returncode is not None:
            return True
        try:
            return await self._process.poll.aio() is not None
        except Exception:
            return True

    async def _kill_tree(self) -> None:
        self._killed = True
        await self._helper(kill_tree_argv(self._state_path))

    async def _wait_raw(self) -> int:
        # One wait per process, shared by every caller (and by the backend's
        # bookkeeping), so a timeout is detected and handled exactly once.
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self._wait_once())
        return await asyncio.shield(self._waiter)

    async def _wait_once(self) -> int:
        with translate_errors():
            returncode = await self._process.wait.aio()
        self._ended_at = time.monotonic()
        if returncode == -1 and self._deadline is not None and self._ended_at >= self._deadline - 1:
            self._timed_out = True
            with contextlib.suppress(Exception):
                await self._kill_tree()
        self._returncode = returncode
        await self._finish()
        return returncode

    async def _finish(self) -> None:
        if self._finished.is_set():
            return
        self._finished.set()
        if self._on_finish is not None:
            with contextlib.suppress(Exception):
                await self._on_finish()

    async def _write(self, data: bytes) -> None:
        stdin = self._process.stdin
        try:
            with translate_errors():
                for start in range(0, len(data), _STDIN_CHUNK):
                    stdin.write(data[start : start + _STDIN_CHUNK])
                    await stdin.drain.aio()
        except (SandboxError, ValueError):
            # Writing to a process that already exited is not an error of the
            # caller's (a pipe to a dead reader); anything else is.
            if not await self._exited():
                raise

    async def _close_stdin(self) -> None:
        stdin = self._process.stdin
        try:
            with translate_errors():
                stdin.write_eof()
                await stdin.drain.aio()
        except (SandboxError, ValueError):
            if not await self._exited():
                raise


class ModalExecHandle(_ProcessBase):
    """A command started with ``Sandbox.exec``; see the module docstring."""

    def output(self) -> AsyncIterator[OutputChunk]:
        return self._output()

    async def _output(self) -> AsyncIterator[OutputChunk]:
        async for name, data in _drain(self._process, ("stdout", "stderr")):
            yield OutputChunk(stream=name, data=data)

    async def wait(self) -> ExitStatus:
        returncode = await self._wait_raw()
        duration_ms = int(((self._ended_at or time.monotonic()) - self._started) * 1000)
        if self._timed_out or self._killed:
            return ExitStatus(
                exit_code=None,
                signal=int(signal.SIGKILL),
                timed_out=self._timed_out,
                duration_ms=duration_ms,
            )
        exit_code = returncode if returncode >= 0 else None
        return ExitStatus(exit_code=exit_code, duration_ms=duration_ms)

    async def write_stdin(self, data: bytes) -> None:
        await self._write(data)

    async def close_stdin(self) -> None:
        await self._close_stdin()

    async def kill(self) -> None:
        if not await self._exited():
            await self._kill_tree()


class ModalPtyHandle(_ProcessBase):
    """An interactive shell on a PTY (``Sandbox.exec(pty=True)``).

    The PTY merges stdout and stderr into stdout.  ``resize`` sets the window
    size of the recorded tty with ``stty`` from a helper command (the SDK has
    no resize call); concurrent resizes collapse into the latest size.
    """

    def __init__(
        self,
        process: Process,
        *,
        state_path: str,
        helper: Helper,
        size: tuple[int, int],
        on_finish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            process, state_path=state_path, helper=helper, deadline=None, on_finish=on_finish
        )
        self._wanted = size
        self._applied = size
        self._resize_lock = asyncio.Lock()
        self._closed = False

    def output(self) -> AsyncIterator[bytes]:
        return self._output()

    async def _output(self) -> AsyncIterator[bytes]:
        async for _, data in _drain(self._process, ("stdout",)):
            yield data

    async def write(self, data: bytes) -> None:
        await self._write(data)

    async def resize(self, cols: int, rows: int) -> None:
        if cols <= 0 or rows <= 0:
            return
        self._wanted = (cols, rows)
        async with self._resize_lock:
            size = self._wanted
            if size == self._applied or await self._exited():
                return
            await self._helper(resize_argv(self._state_path, *size))
            self._applied = size

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._close_stdin()
        if not await self._exited():
            with contextlib.suppress(Exception):
                await self._kill_tree()
        await self._finish()

    async def wait(self) -> int | None:
        returncode = await self._wait_raw()
        if self._killed or returncode < 0:
            return None
        return returncode
