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
- Export (``resolvers.s3export``): after a session ends, in the background, the recorded
  final workspace and the recording go to ``<S3_PREFIX>/<account>/<session>/``.

Attempts are bounded: botocore's own retries (``max_attempts``) within each of at most
``attempts`` tries, with short connect and read timeouts.
"""

from __future__ import annotations

import logging
import re
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
            ek.WorkspaceImportFailed(reason=short_reason(exc), location=s3_url(config, location)),
        )
        return
    await sandboxes.log.append(
        record.session_id,
        ek.WorkspaceImported(
            files=stats.files,
            bytes=stats.bytes,
            skipped=stats.skipped,
            duration_ms=stats.duration_ms,
            location=s3_url(config, location),
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


def s3_url(config: S3Config, key: str) -> str:
    return f"s3://{config.bucket}/{key}"


def short_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
