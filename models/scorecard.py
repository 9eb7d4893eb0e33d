"""Scorecards: an interviewer's verdict on a session. Staff only, never the candidate's."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.account import User
    from models.session import InterviewSession


class Recommendation(enum.StrEnum):
    STRONG_YES = "STRONG_YES"
    YES = "YES"
    NO = "NO"
    STRONG_NO = "STRONG_NO"


class Scorecard(Model):
    """One per interviewer and session: submitting again replaces it (same row, same id)."""

    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="scorecards", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="scorecards", on_delete=fields.CASCADE
    )
    author_id: uuid.UUID  # the FK's column, for typed access
    recommendation = fields.CharEnumField(Recommendation, max_length=10)
    # [{"criterion", "score", "comment"}], in the order given: a scorecard is read and
    # replaced whole, never queried by rating, so the ratings need no table of their own.
    ratings: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    summary = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    """When the interviewer first submitted it."""
    updated_at = fields.DatetimeField(auto_now=True)
    """When it was last submitted."""

    class Meta:
        table = "scorecard"
        unique_together = (("session", "author"),)
