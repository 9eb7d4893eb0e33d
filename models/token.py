"""Bearer tokens. Only a SHA-256 of each token is stored; the token is shown once.

Tokens carry 256 bits of randomness, so a fast hash is enough: there is no
low-entropy secret to slow-hash, and lookups stay one indexed equality.
"""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.account import Account, User
    from models.session import InterviewSession


class TokenScope(enum.StrEnum):
    INTERVIEWER = "interviewer"
    ATS = "ats"


class ApiToken(Model):
    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="api_tokens", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_tokens", null=True, on_delete=fields.SET_NULL
    )
    user_id: uuid.UUID | None  # the FK's column, for typed access
    name = fields.CharField(max_length=200)
    scope = fields.CharEnumField(TokenScope, max_length=20)
    token_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class CandidateToken(Model):
    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="candidate_tokens", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    token_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "candidate_token"
