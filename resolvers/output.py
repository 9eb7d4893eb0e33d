"""Coalescing command and terminal output into events.

Output is emitted like a group commit: a write that finds nothing in flight,
and no emit begun within the last ``max_delay_s``, is emitted at once (a line
printed alone reaches watchers without waiting for any window). Writes that
arrive while an emit is in flight, or within ``max_delay_s`` of the last one
(a flood), wait in a buffer and go together when ``max_bytes`` are waiting or
the window is over, whichever comes first: a flood still becomes at most ~100
events a second per stream, each fanned out to every watcher once
(bench/stream.py). Emits run in a task of their own: the reader is held up
only by a full buffer, never by a commit, so output read while the log is slow
joins the next emit instead of queueing one emit per read. Text is decoded
incrementally, so a UTF-8 character split across reads is never mangled.

``capped_emit`` puts the session's recorded-output cap (resolvers.storage)
in front of an emitter: past it, output is no longer stored, and one
``output.truncated`` event says so.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import uuid
from collections.abc import Awaitable, Callable

from resolvers.event_kinds import OutputTruncated
from resolvers.events import EventLog

Emit = Callable[[str, str], Awaitable[None]]
logger = logging.getLogger("interviewlm.output")


class OutputCoalescer:
    def __init__(self, emit: Emit, *, max_bytes: int = 16 * 1024, max_delay_s: float = 0.010):
        self.emit = emit
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        # Waiting output, in order: (stream, bytes) runs, one per change of stream.
        self._segments: list[tuple[str, bytearray]] = []
        self._size = 0
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._timer: asyncio.Task[None] | None = None
        # Held for every emit: one at a time, in order. Output arriving while it
        # is held goes with the next emit (group commit).
        self._lock = asyncio.Lock()
        self._last_emit = float("-inf")  # loop time the last emit began

    async def feed(self, stream: str, data: bytes) -> None:
        if self._segments and self._segments[-1][0] == stream:
            self._segments[-1][1].extend(data)
        else:
            self._segments.append((stream, bytearray(data)))
        self._size += len(data)
        if self._size < self.max_bytes:
            # Never awaited here: while the emit runs, the reader goes on reading,
            # and whatever it reads joins the next emit (group commit).
            self._schedule()
            return
        async with self._lock:  # a full buffer: back-pressure on the reader
            if self._size:
                if self._timer is not None:  # (it has not emitted: it needs the lock)
                    self._timer.cancel()
                    self._timer = None
                await self._flush_locked()

    def _wait(self) -> float:
        return self._last_emit + self.max_delay_s - asyncio.get_running_loop().time()

    def _schedule(self) -> None:
        """An emit at the end of the window (at once when none began within it), or
        as soon as the one in flight is done."""
        if self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(max(self._wait(), 0.0)))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            self._timer = None
            try:
                await self._flush_locked()
            except Exception:  # nobody awaits the timer: report it here
                logger.exception("emitting coalesced output failed")

    async def _flush_locked(self, *, final: bool = False) -> None:
        segments, self._segments, self._size = self._segments, [], 0
        if segments:
            self._last_emit = asyncio.get_running_loop().time()
        for stream, data in segments:
            decoder = self._decoders.setdefault(
                stream, codecs.getincrementaldecoder("utf-8")(errors="replace")
            )
            text = decoder.decode(bytes(data), final=final)
            if text:
                await self.emit(stream, text)

    async def close(self) -> None:
        async with self._lock:
            # Holding the lock, the timer is asleep or waiting for it, never
            # mid-emit: cancelling it cannot cut an event in half.
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await self._flush_locked(final=True)
            for stream, decoder in self._decoders.items():
                tail = decoder.decode(b"", final=True)
                if tail:
                    await self.emit(stream, tail)


def capped_emit(
    log: EventLog,
    session_id: uuid.UUID,
    emit: Emit,
    *,
    command_id: str | None = None,
    terminal_id: str | None = None,
) -> Emit:
    """``emit`` within the session's output cap, for the command or the terminal named."""

    async def capped(stream: str, text: str) -> None:
        data = text.encode()
        grant = await log.output_quota.take(session_id, len(data))
        if grant.granted:
            # Cut at the byte cap; "ignore" drops a character the cut split in two.
            kept = (
                text
                if grant.granted >= len(data)
                else data[: grant.granted].decode(errors="ignore")
            )
            if kept:
                await emit(stream, kept)
        if grant.capped_now:
            await log.append(
                session_id,
                OutputTruncated(
                    log.limits.output_cap_bytes, command_id=command_id, terminal_id=terminal_id
                ),
            )

    return capped
