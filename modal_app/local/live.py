"""What this process tracks about a local sandbox: its running handles, activity and quota."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from modal_app.local.exec import KillReason, LocalExecHandle
from modal_app.local.meta import SandboxMeta
from modal_app.local.quota import QuotaState
from modal_app.local.runner import Handle


@dataclass
class LiveSandbox:
    """What this process knows about a sandbox beyond its metadata."""

    meta: SandboxMeta
    handles: set[Handle] = field(default_factory=set)
    last_activity: float = field(default_factory=time.monotonic)
    terminated: bool = False
    quota: QuotaState = field(default_factory=QuotaState)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def track(self, handle: Handle) -> None:
        self.handles.add(handle)
        if self.terminated:
            # terminate() ran while this one was starting: it must not outlive it.
            handle.kill_nowait("terminate")

    def exited(self, handle: Handle) -> None:
        """A handle's ``on_exit``: forget it; its end counts as activity."""
        self.handles.discard(handle)
        self.touch()


def expired(meta: SandboxMeta, live: LiveSandbox | None) -> bool:
    """Whether the sandbox's lifetime, or its idle time while nothing runs, ran out."""
    if time.time() > meta.created_at + meta.timeout_s:
        return True
    if meta.idle_timeout_s is None or live is None or live.handles:
        return False
    return time.monotonic() - live.last_activity > meta.idle_timeout_s


async def stop(handles: Sequence[Handle], reason: KillReason, *, note: str | None = None) -> None:
    """Kill handles (an exec's stderr gets ``note`` first) and wait until they are reaped."""
    for handle in handles:
        if note is not None and isinstance(handle, LocalExecHandle):
            handle.note(note)
        handle.kill_nowait(reason)
    await settle(handles)


async def settle(handles: Sequence[Handle], timeout_s: float = 5.0) -> None:
    """Wait (bounded) until killed handles have been reaped."""
    if handles:
        await asyncio.wait([asyncio.ensure_future(h.wait()) for h in handles], timeout=timeout_s)
