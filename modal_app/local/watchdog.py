"""The local backend's background duty: ending expired sandboxes, enforcing the disk quota."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modal_app.base import SandboxError
from modal_app.local.live import LiveSandbox, expired, stop
from modal_app.local.meta import MetaStore
from modal_app.local.quota import DiskQuota

_log = logging.getLogger(__name__)


@dataclass
class Watchdog:
    """Every ``interval_s``: terminate what expired, measure the disk of what runs."""

    live: dict[str, LiveSandbox]
    store: MetaStore
    quota: DiskQuota
    interval_s: float
    terminate: Callable[[str], Awaitable[None]]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for sandbox_id, live in list(self.live.items()):
                if live.terminated:
                    continue
                try:
                    # The entry in the map now (None once removed), as the backend sees it.
                    if expired(live.meta, self.live.get(live.meta.id)):
                        await self.terminate(sandbox_id)
                    elif live.handles:
                        await self._check_disk(sandbox_id, live)
                except SandboxError:
                    continue  # removed meanwhile
                except Exception:
                    # Quota and lifetime enforcement must outlive one bad round.
                    _log.exception("sandbox watchdog failed for %s", sandbox_id)

    async def _check_disk(self, sandbox_id: str, live: LiveSandbox) -> None:
        paths = [str(self.store.workspace(sandbox_id)), str(self.store.home(sandbox_id))]
        used, inodes = await asyncio.to_thread(self.quota.measure, paths)
        message = self.quota.verdict(live.quota, used, inodes)
        if message is None:
            return
        await stop(list(live.handles), "quota", note=message)
        # What was written between measuring and killing counts as the
        # baseline, so cleaning up afterwards is not mistaken for growth.
        used, _ = await asyncio.to_thread(self.quota.measure, paths)
        self.quota.rebase(live.quota, used)
