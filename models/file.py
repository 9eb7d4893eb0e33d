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
