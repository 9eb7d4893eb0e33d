"""Workspaces in S3 (seed 003's sync): starter files from a prefix, the final workspace out.

Configured by ``S3_BUCKET`` (with ``S3_PREFIX``, ``S3_ENDPOINT_URL``, ``S3_REGION`` and the
usual ``AWS_*`` credentials), read by the app factory (``gql.settings``).

- Import: a question may name ``starterS3Prefix``, a path *relative to*
  ``<S3_PREFIX>/<account>/``: one account's questions can never read another account's
  objects (nor anything else in the bucket), whoever wrote the question. Each object is
  streamed into the new sandbox in chunks (an ``exec`` of ``cat`` fed through stdin), so a
  large object never sits in memory whole; keys that are not a clean workspace path
  (``..``, absolute, empty segments) are refused and counted as skipped. The recording
  then picks the files up like any change made in the sandbox (its size limits apply).
- Export: after a session ends, in the background, the recorded final workspace goes to
  ``<S3_PREFIX>/<account>/<session>/workspace/`` and its events, one JSON object a line,
  to ``.../recording.jsonl``. The source is the database recording, which the export only
  reads: a failure loses nothing, it is a ``workspace.exportFailed`` event.

Attempts are bounded: botocore's own retries (``max_attempts``) within each of at most
``attempts`` tries, with short connect and read timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import aioboto3
from aiobotocore.config import AioConfig

from modal_app.base import InvalidPath, SandboxError
from modal_app.paths import normalize_workspace_path, workspace_abspath
from models.event import Event
from resolvers import event_kinds as ek
from resolvers.errors import BadUserInput

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

    from models.sandbox import SandboxRecord
    from resolvers.sandboxes import Sandboxes

logger = logging.getLogger("interviewlm.s3sync")
_PREFIX = re.compile(r"^[A-Za-z0-9._\-/]{1,400}$")
MAX_IMPORT_OBJECTS = 2_000
_WRITE = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    chunk_bytes: int = 256 << 10
    attempts: int = 2
    max_attempts: int = 3
    """botocore's retries per try (``standard`` mode)."""
    timeout_s: float = 10.0

    def base(self, account_id: uuid.UUID) -> str:
        """Every key of an account lies under this."""
        head = self.prefix.strip("/")
        return f"{head}/{account_id}/" if head else f"{account_id}/"


def s3_config(env: Mapping[str, str]) -> S3Config | None:
    bucket = env.get("S3_BUCKET", "").strip()
    if not bucket:
        return None
    return S3Config(
        bucket=bucket,
        prefix=env.get("S3_PREFIX", "").strip().strip("/"),
        endpoint_url=env.get("S3_ENDPOINT_URL", "").strip() or None,
        region=(env.get("S3_REGION") or env.get("AWS_REGION") or "").strip() or None,
        access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
    )


def check_prefix(field_name: str, value: str | None) -> str | None:
    """A question's ``starterS3Prefix``: relative, no ``..``, ends up a directory."""
    if value is None or not value.strip():
        return None
    if value.startswith("/"):
        raise BadUserInput(field_name, "relative to the account's area: no leading '/'")
    raw = value.strip().rstrip("/")
    parts = raw.split("/")
    if not _PREFIX.match(raw) or any(p in {"", ".", ".."} for p in parts):
        raise BadUserInput(field_name, "a relative prefix of letters, digits and . _ - / (no '..')")
    return raw + "/"


def object_path(relative_key: str) -> str | None:
    """The workspace path of an object (its key below the prefix), or None if the key is
    not plainly one: absolute, empty, ``.`` or ``..`` segments are refused, not repaired."""
    parts = relative_key.split("/")
    if any(p in {"", ".", ".."} for p in parts):
        return None
    try:
        return normalize_workspace_path(relative_key)
    except InvalidPath:
        return None


@asynccontextmanager
async def client(config: S3Config) -> AsyncIterator[S3Client]:
    session = aioboto3.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        region_name=config.region or "us-east-1",
    )
    botocore_config = AioConfig(
        retries={"max_attempts": config.max_attempts, "mode": "standard"},
        connect_timeout=config.timeout_s,
        read_timeout=config.timeout_s,
    )
    async with session.client("s3", endpoint_url=config.endpoint_url, config=botocore_config) as s3:
        yield s3


@dataclass(slots=True)
class SyncStats:
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def duration_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


# --- import -----------------------------------------------------------------


async def import_starters(
    sandboxes: Sandboxes, config: S3Config, record: SandboxRecord, prefix: str
) -> None:
    """Stream ``<base>/<prefix>`` into the new sandbox; an event says how it went.

    Never raises for S3 or for one object: the sandbox starts with what arrived.
    """
    stats = SyncStats()
    location = config.base(record.account_id) + prefix
    try:
        async with client(config) as s3:
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=config.bucket, Prefix=location):
                for obj in page.get("Contents", []):
                    if stats.files + stats.skipped >= MAX_IMPORT_OBJECTS:
                        stats.skipped += 1
                        continue
                    await _import_one(_Import(sandboxes, config, s3, record, location), obj, stats)
    except Exception as exc:  # S3 down, bad credentials: the start goes on
        logger.warning("importing %s failed: %s", location, exc)
        await sandboxes.log.append(
            record.session_id,
            ek.WorkspaceImportFailed(reason=_reason(exc), location=_url(config, location)),
        )
        return
    await sandboxes.log.append(
        record.session_id,
        ek.WorkspaceImported(
            files=stats.files,
            bytes=stats.bytes,
            skipped=stats.skipped,
            duration_ms=stats.duration_ms,
            location=_url(config, location),
        ),
    )


@dataclass(frozen=True, slots=True)
class _Import:
    sandboxes: Sandboxes
    config: S3Config
    s3: S3Client
    record: SandboxRecord
    location: str


async def _import_one(job: _Import, obj: Mapping[str, Any], stats: SyncStats) -> None:
    sandboxes, config, s3, record, location = (
        job.sandboxes,
        job.config,
        job.s3,
        job.record,
        job.location,
    )
    key = str(obj["Key"])
    size = int(obj.get("Size", 0))
    if key.endswith("/"):
        return  # a "directory" marker: directories come with their files
    path = object_path(key[len(location) :])
    if path is None:
        stats.skipped += 1  # ../../etc/passwd, /abs, a//b: never written anywhere
        return
    sandbox_id = record.backend_id or ""
    try:
        handle = await sandboxes.call(
            partial(
                sandboxes.backend.exec,
                sandbox_id,
                ["sh", "-c", _WRITE, "sh", workspace_abspath(path)],
            ),
            scope=sandbox_id,
        )
        written = 0
        try:
            response = await s3.get_object(Bucket=config.bucket, Key=key)
            async for chunk in response["Body"].iter_chunks(config.chunk_bytes):
                await handle.write_stdin(chunk)
                written += len(chunk)
        finally:
            await handle.close_stdin()
        status = await handle.wait()
    except SandboxError:
        stats.skipped += 1
        return
    if status.exit_code != 0:
        stats.skipped += 1
        return
    stats.files += 1
    stats.bytes += written if written else size


# --- export -----------------------------------------------------------------


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
            reason = _reason(exc)
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
                location=_url(config, base),
            ),
        )
        return
    await sandboxes.log.append(
        session_id,
        ek.WorkspaceExportFailed(
            reason=reason, location=_url(config, base), attempts=config.attempts
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


def _url(config: S3Config, key: str) -> str:
    return f"s3://{config.bucket}/{key}"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
