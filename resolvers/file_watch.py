"""Live file changes: what changes in a running sandbox is recorded as it happens.

For each sandbox this replica runs, a task follows the backend's change
stream (``SandboxBackend.watch_workspace``: inotify on the host for local
sandboxes, the SDK's watch or a poll on Modal) and records the changed paths
through ``workspace_sync.sync_paths``: the same reading, redaction, storage
budget and ``file.written`` / ``file.deleted`` events (``source: "sandbox"``,
or ``"agent"`` while a Claude run is going on) as a sync point, under the same
per-session lock, so nothing is recorded twice.

Debounced: changes are gathered for ``debounce_s`` and each path is looked
at once however often it changed.  Rate-capped per session by a token bucket
(``events_per_s``, ``burst``): every path looked at costs a token, so a build
writing thousands of files (or a loop touching one) records at most
``burst + events_per_s * t`` in ``t`` seconds; the rest stays pending and is
recorded as tokens come back, or by the next sync point (a full sync covers
every path that changed before it began, which is then dropped here).

Degrading: a backend that lost changes (a watch budget or kernel queue ran
out, ``complete=False``) or a pending set past ``max_pending`` leaves them to
the next sync point.  Watching stops when the sandbox ends, is terminated or
the server shuts down.  Only the replica that started a sandbox watches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

from modal_app.base import SandboxError
from models.claude import ClaudeRun
from models.sandbox import SandboxRecord
from resolvers.errors import SandboxUnavailable
from resolvers.sandboxes import Sandboxes
from resolvers.workspace_sync import PathsSynced, last_full_sync, sync_paths, worth_entering

logger = logging.getLogger("interviewlm.file_watch")
_BATCH = 20
"""Paths recorded per step, so one session's burst interleaves with other work."""


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    enabled: bool = True
    events_per_s: float = 50.0
    burst: int = 100
    debounce_s: float = 0.05
    max_pending: int = 10_000


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def available(self) -> int:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return max(0, math.floor(self._tokens))

    def spend(self, tokens: int) -> None:
        self.available()
        self._tokens -= tokens

    def wait_s(self) -> float:
        """Seconds until one token is back."""
        return max(0.0, 1 - self._tokens) / self.rate if self.rate > 0 else 3600.0


@dataclass(eq=False)
class _Pending:
    bucket: TokenBucket
    max_pending: int
    paths: dict[str, float] = field(default_factory=dict)
    """Path -> when (monotonic) it last changed."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, paths: frozenset[str]) -> None:
        now = time.monotonic()
        for path in paths:
            self.paths.pop(path, None)  # re-inserted last: oldest first stays true
            self.paths[path] = now
        if len(self.paths) > self.max_pending:
            self.paths.clear()  # a flood: the next sync point records it
        self.wake.set()

    def take(self, count: int, covered_before: float) -> list[str]:
        for path, changed_at in list(self.paths.items()):
            if changed_at < covered_before:
                del self.paths[path]  # a full sync began after this change
        taken = list(self.paths)[:count]
        for path in taken:
            del self.paths[path]
        return taken

    def put_back(self, paths: tuple[str, ...], at: float) -> None:
        for path in paths:
            self.paths.setdefault(path, at)


class FileWatch:
    """The watchers of the sandboxes this replica started (see the module docstring)."""

    def __init__(self, sandboxes: Sandboxes, policy: WatchPolicy) -> None:
        self.sandboxes = sandboxes
        self.policy = policy
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    def running(self, record: SandboxRecord) -> None:
        """A sandbox started here is RUNNING: follow its changes."""
        if not self.policy.enabled or not record.backend_id or record.id in self._tasks:
            return
        task = asyncio.create_task(self._watch(record), name=f"file-watch {record.id}")
        self._tasks[record.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record.id, None))

    def ended(self, record: SandboxRecord) -> None:
        task = self._tasks.get(record.id)
        if task is not None:
            task.cancel()

    @property
    def watching(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, record: SandboxRecord) -> None:
        policy = self.policy
        pending = _Pending(TokenBucket(policy.events_per_s, policy.burst), policy.max_pending)
        flusher = asyncio.create_task(
            self._flush(record, pending), name=f"file-watch flush {record.id}"
        )
        stream = self.sandboxes.backend.watch_workspace(
            record.backend_id or "", enter=worth_entering
        )
        warned = False
        try:
            async for changes in stream:
                pending.add(changes.paths)
                if not changes.complete and not warned:
                    warned = True
                    logger.info(
                        "sandbox %s: some changes are not watched; sync points record them",
                        record.id,
                    )
        except SandboxError as exc:
            logger.info("sandbox %s: watching stopped: %s", record.id, exc)
        finally:
            await stream.aclose()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _flush(self, record: SandboxRecord, pending: _Pending) -> None:
        sandbox_id = record.backend_id or ""
        while True:
            await pending.wake.wait()
            await asyncio.sleep(self.policy.debounce_s)  # let a burst of writes settle
            pending.wake.clear()
            while pending.paths:
                budget = pending.bucket.available()
                if budget < 1:
                    await asyncio.sleep(pending.bucket.wait_s())
                    continue
                started = time.monotonic()
                batch = pending.take(min(budget, _BATCH), last_full_sync(sandbox_id))
                if not batch:
                    break
                # Shielded: stopping the watcher never cuts a recording in half.
                task = asyncio.create_task(
                    self._record(record, batch, budget), name=f"file-watch record {record.id}"
                )
                try:
                    synced = await asyncio.shield(task)
                except asyncio.CancelledError:
                    await task  # finish the batch in hand (the database closes next)
                    raise
                # A token per path looked at, at least one per event (a directory
                # can hold many): events never outrun the bucket.
                pending.bucket.spend(max(synced.changed, len(batch) - len(synced.left), 1))
                pending.put_back(synced.left, started)

    async def _record(self, record: SandboxRecord, batch: list[str], budget: int) -> PathsSynced:
        # Changes made while the Claude agent runs are attributed to it, as the
        # sync at the end of its run does.
        try:
            agent_runs = await ClaudeRun.exists(live_key=record.session_id)
            source = "agent" if agent_runs else "sandbox"
            return await sync_paths(
                self.sandboxes, record, batch, source=source, max_changes=budget
            )
        except (SandboxError, SandboxUnavailable) as exc:
            # The sandbox is going away, or its backend fails: sync points take over.
            logger.debug("sandbox %s: live sync failed: %s", record.id, exc)
        except Exception:
            # A background task with nobody to raise to: one bad batch must not
            # end live recording for the session (sync points still cover it).
            logger.exception("sandbox %s: live sync failed", record.id)
        return PathsSynced(0)
