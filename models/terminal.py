"""Interactive terminals: a PTY shell in a session's sandbox, owned by one replica."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.sandbox import SandboxRecord
    from models.session import InterviewSession


class TerminalState(enum.StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class TerminalRecord(Model):
    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="terminals", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    sandbox: fields.ForeignKeyRelation[SandboxRecord] = fields.ForeignKeyField(
        "models.SandboxRecord", related_name="terminals", on_delete=fields.CASCADE
    )
    sandbox_id: uuid.UUID  # the FK's column, for typed access
    # The replica whose process holds the PTY; input typed elsewhere is
    # relayed to it over the bus.
    owner = fields.CharField(max_length=300)
    state = fields.CharEnumField(TerminalState, max_length=10, default=TerminalState.OPEN)
    cols = fields.IntField()
    rows = fields.IntField()
    exit_code = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "terminal"
