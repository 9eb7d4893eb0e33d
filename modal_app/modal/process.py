"""``ExecHandle`` and ``PtyHandle`` over a Modal ``ContainerProcess``.

Output: stdout and stderr are drained by two concurrent tasks into one bounded
queue, so chunks come out in arrival order and a full stderr pipe can never
block a reader stuck on stdout (the queue bound gives back-pressure; Modal
buffers the rest server-side).  A stream that fails because the sandbox has
ended simply ends.

Timeouts: a watchdog kills the process tree at ``timeout_s`` (to the
sub-second); Modal gets the timeout too, rounded up plus a margin, as a
backstop should this replica die.  In 1.6.4 a process past Modal's exec
deadline makes ``ContainerProcess.wait`` return -1 (the SDK swallows
``ExecTimeoutError``) -- also reported as ``timed_out``.

Exit codes: the SDK folds "killed by signal N" into ``128 + N``.  A process we
killed (kill, timeout, terminate) is reported as ``signal=SIGKILL`` with no
exit code, as on the local backend; any other 128+N stays an exit code,
because it is indistinguishable from ``exit(128+N)``.

Kill / resize: see ``shell``; they run as separate small commands
through ``ProcessContext.helper`` (the SDK has no RPC for them).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import modal.container_process

from modal_app.base import ExitStatus, OutputChunk, SandboxError, check_terminal_size
from modal_app.logged import suppressed
from modal_app.modal.errors import translate_errors
from modal_app.modal.shell import kill_tree_argv, resize_argv

_STDIN_CHUNK = 1 << 20
_QUEUE_CHUNKS = 64

Process = modal.container_process.ContainerProcess[bytes]
Stream = Literal["stdout", "stderr"]

_log = logging.getLogger(__name__)


async def _never() -> bool:
    return False


@dataclass(frozen=True)
class ProcessContext:
    """What a handle needs from the backend about its sandbox."""

    helper: Callable[[Sequence[str]], Awaitable[int]]
    """Runs a helper argv in the same sandbox and returns its exit code."""
    sandbox_ended: Callable[[], Awaitable[bool]] = _never
    """Asks Modal whether the sandbox has finished."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this replica saw the sandbox end (terminate)."""


async def _drain(
    process: Process,
    streams: Sequence[Stream],
    sandbox_ended: Callable[[], Awaitable[bool]] = _never,
) -> AsyncIterator[tuple[Stream, bytes]]:
    """Yield (stream, data) from ``streams`` of ``process``, read concurrently."""
    queue: asyncio.Queue[tuple[Stream, bytes] | BaseException | None] = asyncio.Queue(
        maxsize=_QUEUE_CHUNKS
    )

    async def pump(name: Stream) -> None:
        reader = process.stdout if name == "stdout" else process.stderr
        try:
            async for data in reader:
                if data:
                    await queue.put((name, data))
        except Exception as exc:
            if not await sandbox_ended():
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
        context: ProcessContext,
        timeout_s: float | None = None,
        on_finish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._process = process
        self._state_path = state_path
        self._context = context
        self._started = time.monotonic()
        self._deadline = None if timeout_s is None else self._started + timeout_s
        self._killed = False
        self._timed_out = False
        self._on_finish = on_finish
        self._finished = False
        self._returncode: int | None = None
        self._waiter: asyncio.Future[int] | None = None
        self._ended_at: float | None = None
        self._watchdog: asyncio.Task[None] | None = None
        if timeout_s is not None:
            self._watchdog = asyncio.get_running_loop().create_task(self._expire(timeout_s))

    async def _expire(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if not await self._exited():
            self._timed_out = True
            with suppressed(
                _log,
                "killing a timed-out command",
                safe_because="it is reported timed out; Modal's backstop timeout ends it",
            ):
                await self._kill_tree()

    async def _exited(self) -> bool:
        """Whether the process has ended (errors read as 'ended': nothing left to act on)."""
        if self._returncode is not None or self._context.ended.is_set():
            return True
        try:
            return await self._process.poll.aio() is not None
        except Exception as exc:
            _log.debug("polling a command failed (%r): taken as ended", exc)
            return True

    async def _kill_tree(self) -> None:
        self._killed = True
        await self._context.helper(kill_tree_argv(self._state_path))

    async def _wait_raw(self) -> int:
        # One wait per process, shared by every caller (and by the backend's
        # bookkeeping), so a timeout is detected and handled exactly once.
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self._wait_once())
        return await asyncio.shield(self._waiter)

    async def _wait_once(self) -> int:
        # A terminated sandbox may never answer the exec wait (the SDK retries
        # forever when the worker is gone), so the sandbox's end also ends it.
        waiter = asyncio.ensure_future(self._process.wait.aio())
        ended = asyncio.ensure_future(self._context.ended.wait())
        try:
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            waiter.cancel()
            raise
        finally:
            ended.cancel()
        returncode = -1
        if not waiter.done():
            waiter.cancel()
            self._killed = True
        elif (error := waiter.exception()) is not None:
            # Ended (or being terminated) as this replica knows, or as Modal says.
            if not self._context.ended.is_set() and not await self._context.sandbox_ended():
                with translate_errors():
                    raise error
            self._killed = True
        else:
            returncode = waiter.result()
        self._ended_at = time.monotonic()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if returncode == -1 and self._deadline is not None and self._ended_at >= self._deadline:
            self._timed_out = True  # Modal's own deadline: see the module docstring
            with suppressed(
                _log,
                "killing what is left of a command past Modal's deadline",
                safe_because="its process tree ends with the sandbox",
            ):
                await self._kill_tree()
        self._returncode = returncode
        await self._finish()
        return returncode

    def abandon(self) -> None:
        """Stop watching the process (the backend is closing); it is not signalled."""
        for task in (self._watchdog, self._waiter):
            if task is not None and not task.done():
                task.cancel()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._on_finish is not None:
            with suppressed(
                _log,
                "releasing a command's network grant",
                safe_because="the grant is dropped from the sandbox's list: the next network "
                "change or the sandbox's end narrows the egress (it only ever named our host)",
            ):
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
        drain = _drain(self._process, ("stdout", "stderr"), self._context.sandbox_ended)
        async for name, data in drain:
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
    no resize call; the kernel then sends SIGWINCH to the terminal's
    foreground job); concurrent resizes collapse into the latest size.
    """

    def __init__(
        self,
        process: Process,
        *,
        state_path: str,
        context: ProcessContext,
        size: tuple[int, int],
    ) -> None:
        super().__init__(process, state_path=state_path, context=context)
        self._wanted = size
        self._applied = size
        self._resize_lock = asyncio.Lock()
        self._closed = False

    def output(self) -> AsyncIterator[bytes]:
        return self._output()

    async def _output(self) -> AsyncIterator[bytes]:
        async for _, data in _drain(self._process, ("stdout",), self._context.sandbox_ended):
            yield data

    async def write(self, data: bytes) -> None:
        await self._write(data)

    async def resize(self, cols: int, rows: int) -> None:
        check_terminal_size(cols, rows)
        self._wanted = (cols, rows)
        async with self._resize_lock:
            size = self._wanted
            if size == self._applied or await self._exited():
                return
            # Not applied (no tty recorded, stty failed): a later resize retries.
            if await self._context.helper(resize_argv(self._state_path, *size)) == 0:
                self._applied = size

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with suppressed(
            _log,
            "closing a terminal's input",
            safe_because="it is killed next",
            level=logging.DEBUG,
        ):
            await self._close_stdin()
        if not await self._exited():
            with suppressed(
                _log, "killing a closed terminal", safe_because="it ends with its sandbox"
            ):
                await self._kill_tree()

    async def wait(self) -> int | None:
        returncode = await self._wait_raw()
        if self._killed or returncode < 0:
            return None
        return returncode
