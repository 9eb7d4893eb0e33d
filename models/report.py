"""Report links: unguessable, expiring, revocable URLs that open one session's report
without an API token (``GET /reports/{token}``).

Only the SHA-256 of a link's token is stored. The token itself is an HMAC of the
link's id under a server secret (``resolvers.report_links``): the server can hand
out the same URL again while the link lives, and a copy of the database alone
yields no working URL.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.session import InterviewSession


class ReportLink(Model):
    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="report_links", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "report_link"
