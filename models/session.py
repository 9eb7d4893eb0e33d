"""Interview sessions: one candidate, one question, one workspace, one event log."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.account import Account
    from models.question import Question


class SessionStatus(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"

    @property
    def is_open(self) -> bool:
        return self in {SessionStatus.SCHEDULED, SessionStatus.ACTIVE}


class InterviewSession(Model):
    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="sessions", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    question: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="sessions", on_delete=fields.RESTRICT
    )
    question_id: uuid.UUID  # the FK's column, for typed access
    language = fields.CharField(max_length=20)
    candidate_name = fields.CharField(max_length=200)
    candidate_email = fields.CharField(max_length=320, db_index=True)
    external_id = fields.CharField(max_length=200, null=True, db_index=True)
    status = fields.CharEnumField(SessionStatus, max_length=20, default=SessionStatus.SCHEDULED)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    started_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    # Indexed: the reaper looks for open sessions past it (resolvers.sessions.expire_due).
    expires_at = fields.DatetimeField(null=True, db_index=True)
    # Highest event seq handed out; bumped in the same transaction as the insert
    # so seqs stay gap-free across replicas (see resolvers.events).
    last_seq = fields.BigIntField(default=0)

    class Meta:
        table = "interview_session"
