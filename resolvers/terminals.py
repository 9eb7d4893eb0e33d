"""Interactive terminals: a PTY shell in the session's sandbox that everyone sees.

The PTY lives in the replica that opened it (``owner``). Its output becomes
coalesced ``terminal.output`` events, so the candidate and every watcher see
the same screen through ``sessionEvents``/``terminalOutput``. Input, resizes
and close requests may arrive at any replica: the owner applies its own
directly and listens on the terminal's bus channel for the others'.
Input is recorded (``terminal.input``) by the owner once written to the PTY.

Each open terminal is a shell process tree (and, on the local backend, its own
bwrap invocation), so a session may hold at most ``max_per_session`` open at a
time (``MAX_TERMINALS_PER_SESSION``); counted from the database, so the cap
holds across replicas, and serialized per session within a replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modal_app.base import PtyHandle, SandboxError
from models.sandbox import SandboxRecord
from models.session import InterviewSession
from models.terminal import TerminalRecord, TerminalState
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.bus import EventBus, follow_channel
from resolvers.errors import BadUserInput, Conflict, NotFound, RateLimited, SandboxUnavailable
from resolvers.event_kinds import (
    TerminalClosed,
    TerminalInput,
    TerminalOpened,
    TerminalOutput,
    TerminalResized,
)
from resolvers.output import OutputCoalescer, capped_emit
from resolvers.sandboxes import Sandboxes
from resolvers.sessions import require_session_access

logger = logging.getLogger("interviewlm.terminals")
MAX_INPUT_BYTES = 64 * 1024
# How long openTerminal waits for the bus to confirm the terminal's control channel.
CONTROL_SUBSCRIBE_TIMEOUT_S = 5.0


def control_channel(terminal_id: uuid.UUID) -> str:
    return f"terminal:{terminal_id}"


@dataclass(eq=False)
class _LiveTerminal:
    record: TerminalRecord
    pty: PtyHandle
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Terminals:
    def __init__(self, sandboxes: Sandboxes, bus: EventBus, *, max_per_session: int = 4) -> None:
        self.sandboxes = sandboxes
        self.bus = bus
        self.log = sandboxes.log
        self.max_per_session = max_per_session
        self._live: dict[uuid.UUID, _LiveTerminal] = {}
        # Weak: a session's lock lives as long as someone is opening a terminal in it.
        self._opening: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def open(
        self, principal: Principal, session_id: str, *, cols: int, rows: int
    ) -> TerminalRecord:
        _check_size(cols, rows)
        session, sandbox = await self.sandboxes.require_live(principal, session_id)
        # Count and open under one lock, so concurrent opens cannot all pass the count.
        lock = self._opening.setdefault(session.id, asyncio.Lock())
        async with lock:
            open_now = await TerminalRecord.filter(
                session_id=session.id, state=TerminalState.OPEN
            ).count()
            if open_now >= self.max_per_session:
                raise RateLimited(
                    f"this session already has {open_now} open terminals (at most "
                    f"{self.max_per_session}); close one with closeTerminal first"
                )
            return await self._open(session, sandbox, cols=cols, rows=rows)

    async def _open(
        self, session: InterviewSession, sandbox: SandboxRecord, *, cols: int, rows: int
    ) -> TerminalRecord:
        backend_id = sandbox.backend_id or ""
        try:
            pty = await self.sandboxes.call(
                lambda: self.sandboxes.backend.open_pty(backend_id, cols=cols, rows=rows),
                scope=backend_id,
            )
        except SandboxError as exc:
            raise SandboxUnavailable(f"could not open a terminal: {exc}") from exc
        record = await TerminalRecord.create(
            session_id=session.id,
            sandbox_id=sandbox.id,
            owner=self.sandboxes.owner,
            cols=cols,
            rows=rows,
        )
        live = _LiveTerminal(record, pty)
        self._live[record.id] = live
        await self.log.append(session.id, TerminalOpened(str(record.id), cols=cols, rows=rows))
        # Input typed on another replica arrives over the bus, which keeps nothing
        # for late subscribers: answer only once the control channel is followed
        # (or the bus said it is down: then the first call fails soft, as before).
        following = asyncio.Event()

        async def subscribed() -> None:
            following.set()

        live.tasks = [
            asyncio.create_task(self._pump_output(live)),
            asyncio.create_task(
                follow_channel(
                    self.bus,
                    control_channel(record.id),
                    lambda message: self._apply(live, json.loads(message)),
                    subscribed,
                )
            ),
        ]
        try:
            async with asyncio.timeout(CONTROL_SUBSCRIBE_TIMEOUT_S):
                await following.wait()
        except TimeoutError:
            logger.warning("terminal %s: control channel not followed yet", record.id)
        return record

    async def _pump_output(self, live: _LiveTerminal) -> None:
        terminal_id = str(live.record.id)

        async def emit(stream: str, text: str) -> None:
            await self.log.append(live.record.session_id, TerminalOutput(terminal_id, text))

        coalescer = OutputCoalescer(
            capped_emit(self.log, live.record.session_id, emit, terminal_id=terminal_id)
        )
        try:
            async for chunk in live.pty.output():
                await coalescer.feed("pty", chunk)
        finally:
            await coalescer.close()
        exit_code = await live.pty.wait()
        await self._finish(live, exit_code)

    async def _finish(self, live: _LiveTerminal, exit_code: int | None) -> None:
        self._live.pop(live.record.id, None)
        changed = await TerminalRecord.filter(id=live.record.id, state=TerminalState.OPEN).update(
            state=TerminalState.CLOSED, exit_code=exit_code, closed_at=datetime.now(UTC)
        )
        if changed:
            await self.log.append(
                live.record.session_id, TerminalClosed(str(live.record.id), exit_code=exit_code)
            )
            sandbox = await live.record.sandbox
            with contextlib.suppress(SandboxError, SandboxUnavailable):
                await self.sandboxes.sync_workspace(sandbox)
        for task in live.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _apply(self, live: _LiveTerminal, op: dict[str, Any]) -> None:
        """Carry out one control operation on a terminal this replica owns."""
        terminal_id = str(live.record.id)
        session_id = live.record.session_id
        if op["op"] == "input":
            await live.pty.write(op["data"].encode())

            async def record_input(_stream: str, text: str) -> None:
                await self.log.append(session_id, TerminalInput(terminal_id, text))

            # Typed input counts against the session's recorded-output cap too:
            # otherwise a flood of terminalInput would be the uncapped channel.
            capped = capped_emit(self.log, session_id, record_input, terminal_id=terminal_id)
            await capped("input", op["data"])
        elif op["op"] == "resize":
            await live.pty.resize(op["cols"], op["rows"])
            await TerminalRecord.filter(id=live.record.id).update(cols=op["cols"], rows=op["rows"])
            await self.log.append(
                session_id, TerminalResized(terminal_id, cols=op["cols"], rows=op["rows"])
            )
        elif op["op"] == "close":
            await live.pty.close()

    async def _load(self, principal: Principal, terminal_id: str) -> TerminalRecord:
        tid = check.object_id("terminalId", terminal_id)
        record = await TerminalRecord.get_or_none(id=tid)
        if record is None:
            raise NotFound("terminal")
        await require_session_access(principal, record.session_id, kind="terminal")
        return record

    async def _send(self, record: TerminalRecord, op: dict[str, Any]) -> None:
        if record.state is not TerminalState.OPEN:
            raise Conflict("the terminal is closed")
        live = self._live.get(record.id)
        if live is not None:
            await self._apply(live, op)
        elif not await self.bus.publish(control_channel(record.id), json.dumps(op)):
            raise SandboxUnavailable("the terminal's server cannot be reached; retry")

    async def input(self, principal: Principal, terminal_id: str, data: str) -> TerminalRecord:
        if len(check.unicode_text("data", data).encode()) > MAX_INPUT_BYTES:
            raise BadUserInput("data", f"at most {MAX_INPUT_BYTES} bytes at a time")
        record = await self._load(principal, terminal_id)
        await self._send(record, {"op": "input", "data": data})
        return record

    async def resize(
        self, principal: Principal, terminal_id: str, *, cols: int, rows: int
    ) -> TerminalRecord:
        _check_size(cols, rows)
        record = await self._load(principal, terminal_id)
        await self._send(record, {"op": "resize", "cols": cols, "rows": rows})
        return await TerminalRecord.get(id=record.id)

    async def close(self, principal: Principal, terminal_id: str) -> TerminalRecord:
        record = await self._load(principal, terminal_id)
        if record.state is TerminalState.OPEN:
            live = self._live.get(record.id)  # before: closing removes it
            await self._send(record, {"op": "close"})
            if live is not None and live.tasks:
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(live.tasks[0]), 10)
        return await TerminalRecord.get(id=record.id)

    async def close_all(self) -> None:
        for live in list(self._live.values()):
            try:
                await live.pty.close()
            except Exception:
                # Shutting down: the other terminals must still be closed, and the
                # sandbox's own teardown (or its lifetime limit) ends this shell.
                logger.warning("closing terminal %s failed", live.record.id, exc_info=True)
            for task in live.tasks:
                task.cancel()
        self._live.clear()


def _check_size(cols: int, rows: int) -> None:
    check.int_range("cols", cols, low=1, high=1000)
    check.int_range("rows", rows, low=1, high=1000)
