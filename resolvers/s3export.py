"""Exporting an ended session to S3 (``resolvers.s3sync`` has the bucket and the import).

After a session ends, in the background (``endSession`` does not wait), the recorded final
workspace goes to ``<S3_PREFIX>/<account>/<session>/workspace/`` and the session's events,
one JSON object a line, to ``.../recording.jsonl``; ``workspace.exported`` says how much
(files, bytes, skipped, duration). The source is the database recording, which the export
only reads: S3 down loses nothing, it is a ``workspace.exportFailed`` event after at most
``S3Config.attempts`` tries. An export runs once per session: a second request (another
replica's reaper stopping the sandbox) finds the outcome recorded and does nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from models.event import Event
from resolvers import event_kinds as ek
from resolvers.s3sync import S3Config, SyncStats, client, s3_url, short_reason

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

    from resolvers.sandboxes import Sandboxes

logger = logging.getLogger("interviewlm.s3export")


class Exports:
    """Background exports of ended sessions, one at a time per session in this process."""

    def __init__(self, sandboxes: Sandboxes, config: S3Config) -> None:
        self.sandboxes = sandboxes
        self.config = config
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.settle_s = 30.0
        """How long an export waits for the session's sandbox to stop (its final capture)."""

    def later(self, session_id: uuid.UUID, account_id: uuid.UUID) -> None:
        if session_id in self._tasks:
            return
        task = asyncio.create_task(self._run(session_id, account_id))
        self._tasks[session_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(session_id, None))

    async def wait(self) -> None:
        """Until every export started so far is over (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await self.wait()

    async def _run(self, session_id: uuid.UUID, account_id: uuid.UUID) -> None:
        try:
            done = (ek.WorkspaceExported.KIND, ek.WorkspaceExportFailed.KIND)
            if await Event.exists(session_id=session_id, type__in=done):
                return  # exported once (by this replica or another)
            await self._settled(session_id)
            await export_session(self.sandboxes, self.config, session_id, account_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("exporting session %s failed", session_id)

    async def _settled(self, session_id: uuid.UUID) -> None:
        # Polled: the sandbox may be stopped by another replica (its reaper).
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            if await self.sandboxes.live(session_id) is None:
                return
            await asyncio.sleep(0.2)


async def export_session(
    sandboxes: Sandboxes, config: S3Config, session_id: uuid.UUID, account_id: uuid.UUID
) -> None:
    """Upload the recorded workspace and recording; the outcome is an event, never raised."""
    base = f"{config.base(account_id)}{session_id}/"
    reason = ""
    for attempt in range(1, config.attempts + 1):
        stats = SyncStats()
        try:
            async with client(config) as s3:
                await _upload_workspace(sandboxes, config, s3, (session_id, base), stats)
                await _upload_recording(config, s3, session_id, base + "recording.jsonl", stats)
        except Exception as exc:  # the recording in the database is untouched
            reason = short_reason(exc)
            logger.warning("export of %s, try %d: %s", session_id, attempt, reason)
            if attempt < config.attempts:
                await asyncio.sleep(0.5 * attempt)
            continue
        await sandboxes.log.append(
            session_id,
            ek.WorkspaceExported(
                files=stats.files,
                bytes=stats.bytes,
                skipped=stats.skipped,
                duration_ms=stats.duration_ms,
                location=s3_url(config, base),
            ),
        )
        return
    await sandboxes.log.append(
        session_id,
        ek.WorkspaceExportFailed(
            reason=reason, location=s3_url(config, base), attempts=config.attempts
        ),
    )


async def _upload_workspace(
    sandboxes: Sandboxes,
    config: S3Config,
    s3: S3Client,
    where: tuple[uuid.UUID, str],
    stats: SyncStats,
) -> None:
    session_id, base = where
    files = await sandboxes.files.current(session_id)
    for stored in sorted(files.values(), key=lambda s: s.path):
        try:
            data = await sandboxes.files.content(stored.sha256)
        except Exception:  # hash only (storage budget reached): nothing to upload
            stats.skipped += 1
            continue
        await s3.put_object(Bucket=config.bucket, Key=f"{base}workspace/{stored.path}", Body=data)
        stats.files += 1
        stats.bytes += len(data)
    # Files the recording has no content of (over the size limit, unreadable).
    skipped: list[Any] = await Event.filter(
        session_id=session_id, type=ek.FileSkipped.KIND
    ).values_list("payload", flat=True)
    stats.skipped += len({p.get("path") for p in skipped if isinstance(p, dict)} - set(files))


async def _upload_recording(
    config: S3Config, s3: S3Client, session_id: uuid.UUID, key: str, stats: SyncStats
) -> None:
    """Events as JSON lines, spooled (to disk past 8 MB), uploaded as a stream."""
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        after = -1
        while True:
            rows = (
                await Event.filter(session_id=session_id, seq__gt=after)
                .order_by("seq")
                .limit(1000)
                .values("seq", "type", "at", "payload")
            )
            for row in rows:
                line = {
                    "seq": row["seq"],
                    "type": row["type"],
                    "at": row["at"].isoformat(),
                    "payload": row["payload"],
                }
                spool.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            if len(rows) < 1000:
                break
            after = rows[-1]["seq"]
        size = spool.tell()
        spool.seek(0)
        await s3.upload_fileobj(spool, config.bucket, key)
    stats.bytes += size
