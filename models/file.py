"""Workspace files as recorded: content-addressed blobs and per-session snapshots.

Every write stores its content once by SHA-256 (``FileBlob``) and moves the
session's snapshot of that path (``FileSnapshot``); the file events in the log
carry the hash, so any file can be rebuilt at any seq after the sandbox is gone.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.session import InterviewSession


class FileBlob(Model):
    sha256 = fields.CharField(max_length=64, primary_key=True)
    size = fields.BigIntField()
    content = fields.BinaryField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "file_blob"


class FileSnapshot(Model):
    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="files", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    path = fields.CharField(max_length=1024)
    sha256 = fields.CharField(max_length=64, null=True)
    """None once deleted (the row stays, so the deletion is part of the snapshot)."""
    size = fields.BigIntField(default=0)
    seq = fields.BigIntField()
    """The seq of the event that last changed this path."""
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "file_snapshot"
        unique_together = (("session", "path"),)


class FileVersion(Model):
    """One version of one path: what the path held right after event ``seq``.

    Written by ``FileRecorder`` next to the snapshot, one row per path a
    ``file.written`` / ``file.deleted`` event changed (a deleted directory: one
    row per file under it). The file at seq N is the path's row with the
    greatest ``seq <= N``, one index lookup, instead of a replay of the log.
    """

    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="file_versions", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID
    path = fields.CharField(max_length=1024)
    seq = fields.BigIntField()
    sha256 = fields.CharField(max_length=64, null=True)
    """None: the path was deleted at ``seq``."""
    size = fields.BigIntField(default=0)

    class Meta:
        table = "file_version"
        unique_together = (("session", "path", "seq"),)


class SessionBlob(Model):
    """A blob that one session's recording refers to (any version of any of its files).

    The session's storage budget counts each of its blobs once, and blob
    collection keeps every blob some session still refers to: deleting a
    session (cascade) is what makes its blobs collectable.
    """

    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="blobs", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID
    sha256 = fields.CharField(max_length=64, db_index=True)
    size = fields.BigIntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "session_blob"
        unique_together = (("session", "sha256"),)


class SessionStorage(Model):
    """What one session's recording holds, against its caps (one row per session, made lazily)."""

    id = fields.BigIntField(primary_key=True)
    session: fields.OneToOneRelation[InterviewSession] = fields.OneToOneField(
        "models.InterviewSession", related_name="storage", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID
    output_bytes = fields.BigIntField(default=0)
    """Terminal and command output recorded (UTF-8 bytes), up to SESSION_OUTPUT_CAP_BYTES."""
    output_capped = fields.BooleanField(default=False)
    blob_bytes = fields.BigIntField(default=0)
    """Sum of the sizes of the session's distinct blobs, up to SESSION_STORAGE_BUDGET_BYTES."""
    budget_reached = fields.BooleanField(default=False)

    class Meta:
        table = "session_storage"
