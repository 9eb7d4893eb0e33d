"""Live file changes: what changes in a running sandbox is recorded as it happens.

For each sandbox this replica runs, a task follows the backend's change
stream (``SandboxBackend.watch_workspace``: inotify on the host for local
sandboxes, the SDK's watch or a poll on Modal) and records the changed paths
through ``workspace_sync.sync_paths``: the same reading, redaction, storage
budget and ``file.written`` / ``file.deleted`` events (``source: "sandbox"``,
or ``"agent"`` while a Claude run is going on) as a sync point, under the same
per-session lock, so nothing is recorded twice.

Debounced: changes are gathered for ``debounce_s`` and each path is looked
at once however often it changed.  Paced per path: a path looked at live
waits ``path_interval_s`` before its next look, doubling (up to
``max_path_interval_s``) while it keeps changing and back to the base once it
went quiet, so a loop rewriting one file or a growing log is recorded a few
times rather than twenty times a second; changes meanwhile coalesce into the
next look (and sync points record the latest content whatever the pace).
Rate-capped per session by a token bucket (``events_per_s``, ``burst``):
every path looked at costs a token, so a build writing thousands of files
records at most ``burst + events_per_s * t`` in ``t`` seconds; the rest stays
pending and is recorded as tokens come back, or by the next sync point (a
full sync covers every path that changed before it began, which is then
dropped here).

Ordered so an edit is not stuck behind a burst: lone changes (a directory
with few pending changes: the candidate's edit) come first, then files the
recording already has, then the rest of a burst, oldest first within each.
A pending directory takes what is pending under it along (a tree removed
whole is one ``file.deleted``).  Each look records at most ``_BATCH`` changes
under the session's lock, so a sync point never waits long behind it.

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
from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from modal_app.base import SandboxError
from models.claude import ClaudeRun
from models.sandbox import SandboxRecord
from resolvers.errors import SandboxUnavailable
from resolvers.files import within
from resolvers.sandboxes import Sandboxes
from resolvers.workspace_sync import (
    PathsSynced,
    last_full_sync,
    read_paths,
    sync_paths,
    worth_entering,
)

logger = logging.getLogger("interviewlm.file_watch")
_BATCH = 20
"""Changes recorded per step (one hold of the session's lock): a sync point waits one step."""
_FEW = 8
"""Pending changes in one directory still counted as lone changes (an editor's save is a few)."""


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    enabled: bool = True
    events_per_s: float = 50.0
    burst: int = 100
    debounce_s: float = 0.05
    max_pending: int = 10_000
    path_interval_s: float = 1.0
    max_path_interval_s: float = 30.0


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


@dataclass(slots=True)
class _Pace:
    """When a path was last looked at live, and how long its next look waits."""

    looked_at: float
    interval: float
    held: bool = False
    """A change came before ``due``: the path keeps changing."""

    @property
    def due(self) -> float:
        return self.looked_at + self.interval


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


@dataclass(eq=False)
class _Pending:
    bucket: TokenBucket
    policy: WatchPolicy
    paths: dict[str, float] = field(default_factory=dict)
    """Path -> when (monotonic) it last changed, oldest first."""
    paces: dict[str, _Pace] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, paths: frozenset[str]) -> None:
        now = time.monotonic()
        for path in paths:
            self.paths.pop(path, None)  # re-inserted last: oldest first stays true
            self.paths[path] = now
            pace = self.paces.get(path)
            if pace is not None and now < pace.due:
                pace.held = True
        if len(self.paths) > self.policy.max_pending:
            self.paths.clear()  # a flood: the next sync point records it
        self.wake.set()

    def _due(self, path: str) -> float:
        pace = self.paces.get(path)
        return pace.due if pace is not None else -math.inf

    def due_in(self, now: float) -> float | None:
        """Seconds until a pending path may be looked at; None when nothing is pending."""
        if not self.paths:
            return None
        return max(0.0, min(self._due(path) for path in self.paths) - now)

    def take(self, count: int, covered_before: float, recorded: Container[str]) -> list[str]:
        now = time.monotonic()
        for path, changed_at in list(self.paths.items()):
            if changed_at < covered_before:
                del self.paths[path]  # a full sync began after this change
        per_directory = Counter(_parent(path) for path in self.paths)

        def rank(path: str) -> int:
            if per_directory[_parent(path)] <= _FEW:
                return 0
            return 1 if path in recorded else 2

        # Stable: oldest first within a rank.
        ready = sorted((p for p in self.paths if self._due(p) <= now), key=rank)
        taken: list[str] = []
        for path in ready:
            if len(taken) >= count:
                break
            if path in self.paths:
                taken.append(path)
                # A directory is looked at whole: what is pending under it comes along.
                for inside in [p for p in self.paths if within(path, p)]:
                    del self.paths[inside]
        return taken

    def put_back(self, paths: tuple[str, ...], at: float) -> None:
        for path in paths:
            self.paths.setdefault(path, at)

    def looked_at(self, paths: Iterable[str], at: float) -> None:
        """Pace these paths: doubled while they keep changing, the base once quiet."""
        policy = self.policy
        for path in paths:
            pace = self.paces.get(path)
            held = pace is not None and pace.held
            interval = (
                min(pace.interval * 2, policy.max_path_interval_s)
                if pace is not None and held
                else policy.path_interval_s
            )
            self.paces[path] = _Pace(at, interval)
        # Past its due time with nothing pending, a path is quiet: its next change
        # is looked at at once, at the base interval, as if it had never changed.
        for path in [p for p, pace in self.paces.items() if pace.due < at and p not in self.paths]:
            del self.paces[path]


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
        pending = _Pending(TokenBucket(policy.events_per_s, policy.burst), policy)
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
            await self._work_due(pending)
            budget = pending.bucket.available()
            if budget < 1:
                await asyncio.sleep(pending.bucket.wait_s())
                continue
            started = time.monotonic()
            step = min(budget, _BATCH)
            batch = pending.take(step, last_full_sync(sandbox_id), read_paths(sandbox_id))
            if not batch:
                continue
            # Shielded: stopping the watcher never cuts a recording in half.
            task = asyncio.create_task(
                self._record(record, batch, step), name=f"file-watch record {record.id}"
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
            left = set(synced.left)
            pending.looked_at([path for path in batch if path not in left], started)

    async def _work_due(self, pending: _Pending) -> None:
        """Wait until a pending path may be looked at."""
        due = pending.due_in(time.monotonic())
        if due == 0:
            return
        pending.wake.clear()
        try:
            await asyncio.wait_for(pending.wake.wait(), due)
        except TimeoutError:
            return  # a change held back by its path's pace is due
        await asyncio.sleep(self.policy.debounce_s)  # new changes: let a burst settle

    async def _record(
        self, record: SandboxRecord, batch: list[str], max_changes: int
    ) -> PathsSynced:
        # Changes made while the Claude agent runs are attributed to it, as the
        # sync at the end of its run does.
        try:
            agent_runs = await ClaudeRun.exists(live_key=record.session_id)
            source = "agent" if agent_runs else "sandbox"
            return await sync_paths(
                self.sandboxes, record, batch, source=source, max_changes=max_changes
            )
        except (SandboxError, SandboxUnavailable) as exc:
            # The sandbox is going away, or its backend fails: sync points take over.
            logger.debug("sandbox %s: live sync failed: %s", record.id, exc)
        except Exception:
            # A background task with nobody to raise to: one bad batch must not
            # end live recording for the session (sync points still cover it).
            logger.exception("sandbox %s: live sync failed", record.id)
        return PathsSynced(0)
