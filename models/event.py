"""The session event log: the recording, one row per event, ``seq`` gap-free per session."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.session import InterviewSession


class Event(Model):
    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="events", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    seq = fields.BigIntField()
    type = fields.CharField(max_length=64)
    at = fields.DatetimeField()
    payload: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)

    class Meta:
        table = "session_event"
        unique_together = (("session", "seq"),)
