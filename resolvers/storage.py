"""Per-session caps on what the recording stores: output bytes, blob bytes; blob collection.

A candidate controls how much their programs print and how many files they
change, and before these caps every byte of it went into the database
forever (8 MB printed became 8 MB of events). Now:

- Output (terminal and command output events) is capped per session at
  ``output_cap_bytes`` across all replicas. Replicas take the allowance from
  the session's ``SessionStorage`` row in leases of ``output_lease_bytes``
  (one row-locked update per lease, not per chunk), so the cap holds to
  within a lease per replica. Whoever reaches it first records one
  ``output.truncated`` event; later output is still streamed to nobody and
  returned to ``runCommand`` up to its own cap, but not stored.
- File blobs are charged to the session once per distinct content
  (``SessionBlob``) against ``storage_budget_bytes``; past it, changed files
  are recorded as ``file.skipped`` with path, size and hash only, after one
  ``storage.budgetReached`` event.
- ``collect_blobs`` deletes blobs no session refers to any more (sessions
  deleted), after a grace period that covers a write between storing the
  reference and the blob.

A cap of 0 means no cap.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from models.file import FileBlob, FileSnapshot, SessionBlob, SessionStorage

K = TypeVar("K")
V = TypeVar("V")
_REMEMBERED_SESSIONS = 10_000
GC_BATCH = 500


@dataclass(frozen=True, slots=True)
class StorageLimits:
    output_cap_bytes: int = 4 << 20
    storage_budget_bytes: int = 64 << 20
    output_lease_bytes: int = 64 << 10


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    """How many of the asked bytes may be recorded."""
    capped_now: bool
    """This call reached the cap first (its caller records the truncation event)."""


async def _locked_row(session_id: uuid.UUID, conn: BaseDBAsyncClient) -> SessionStorage:
    query = SessionStorage.filter(session_id=session_id).select_for_update().using_db(conn)
    row = await query.first()
    if row is None:
        await SessionStorage.bulk_create(
            [SessionStorage(session_id=session_id)], ignore_conflicts=True, using_db=conn
        )
        row = await query.get()
    return row


class OutputQuota:
    """The per-session output cap, shared by every replica through the database."""

    def __init__(self, limits: StorageLimits) -> None:
        self.limits = limits
        self._leases: OrderedDict[uuid.UUID, int] = OrderedDict()
        self._capped: OrderedDict[uuid.UUID, None] = OrderedDict()

    async def take(self, session_id: uuid.UUID, size: int) -> Grant:
        cap = self.limits.output_cap_bytes
        if not cap or size <= 0:
            return Grant(size, False)
        if session_id in self._capped:
            return Grant(0, False)
        capped_now = False
        lease = self._leases.get(session_id, 0)
        if lease < size:
            want = max(size - lease, self.limits.output_lease_bytes)
            granted, capped_now, capped = await self._reserve(session_id, size - lease, want)
            if capped:
                _remember(self._capped, session_id, None)
            lease = self._leases.get(session_id, 0) + granted  # re-read: others ran meanwhile
        give = min(size, lease)
        _remember(self._leases, session_id, lease - give)
        return Grant(give, capped_now)

    async def _reserve(self, session_id: uuid.UUID, need: int, want: int) -> tuple[int, bool, bool]:
        """Take up to ``want`` bytes; (granted, capped by this call, capped)."""
        cap = self.limits.output_cap_bytes
        async with in_transaction() as conn:
            row = await _locked_row(session_id, conn)
            room = max(0, cap - row.output_bytes)
            granted = min(want, room)
            capped = room < need
            capped_now = capped and not row.output_capped
            await (
                SessionStorage.filter(id=row.id)
                .using_db(conn)
                .update(
                    output_bytes=row.output_bytes + granted,
                    output_capped=capped or row.output_capped,
                )
            )
        return granted, capped_now, capped


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _REMEMBERED_SESSIONS:
        cache.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Charge:
    stored: bool
    """The blob may be (or already is) stored for this session."""
    reached_now: bool
    """This call found the budget reached first (its caller records the event)."""
    used_bytes: int


async def charge_blob(session_id: uuid.UUID, sha256: str, size: int, budget: int) -> Charge:
    """Charge a blob to the session once; refuse it past the budget."""
    if await SessionBlob.exists(session_id=session_id, sha256=sha256):
        return Charge(True, False, 0)  # the common case (unchanged content) takes no lock
    async with in_transaction() as conn:
        row = await _locked_row(session_id, conn)
        if await SessionBlob.filter(session_id=session_id, sha256=sha256).using_db(conn).exists():
            return Charge(True, False, row.blob_bytes)
        if budget and row.blob_bytes + size > budget:
            if not row.budget_reached:
                await SessionStorage.filter(id=row.id).using_db(conn).update(budget_reached=True)
            return Charge(False, not row.budget_reached, row.blob_bytes)
        # The reference goes in before the blob: collect_blobs never sees a
        # stored blob of a live session without its reference.
        await SessionBlob.bulk_create(
            [SessionBlob(session_id=session_id, sha256=sha256, size=size)],
            ignore_conflicts=True,
            using_db=conn,
        )
        await (
            SessionStorage.filter(id=row.id).using_db(conn).update(blob_bytes=row.blob_bytes + size)
        )
    return Charge(True, False, row.blob_bytes + size)


async def collect_blobs(*, grace: timedelta = timedelta(hours=1), batch: int = GC_BATCH) -> int:
    """Delete blobs that no session refers to (and no snapshot); returns how many."""
    cutoff = datetime.now(UTC) - grace
    removed = 0
    while True:
        orphans = (
            await FileBlob.filter(created_at__lt=cutoff)
            .exclude(sha256__in=Subquery(SessionBlob.all().values("sha256")))
            .exclude(
                sha256__in=Subquery(FileSnapshot.filter(sha256__isnull=False).values("sha256"))
            )
            .limit(batch)
            .values_list("sha256", flat=True)
        )
        if not orphans:
            return removed
        removed += await FileBlob.filter(sha256__in=list(orphans)).delete()
        if len(orphans) < batch:
            return removed


_last_collection: list[float] = []


async def collect_blobs_now_and_then(*, every_s: float = 3600.0) -> int:
    """``collect_blobs`` at most once per ``every_s`` in this process (the reaper's pass).

    The orphan query reads the whole blob table; blobs only become orphans
    when sessions are deleted, so an hourly pass is plenty.
    """
    now = time.monotonic()
    if _last_collection and now - _last_collection[-1] < every_s:
        return 0
    _last_collection[:] = [now]
    return await collect_blobs()
