"""The sandbox registry: which sandbox serves which session, on which backend.

It lives in the database so that it survives restarts and is shared by every
replica; on start-up each replica reconciles it with its backend.
"""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.account import Account
    from models.session import InterviewSession


class SandboxState(enum.StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"


class SandboxRecord(Model):
    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="sandboxes", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="sandboxes", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    backend = fields.CharField(max_length=20)
    backend_id = fields.CharField(max_length=200, null=True)
    # "hostname:pid" of the replica that created it: local sandboxes die with
    # that process, so only it (or its successor on that host) may vouch for one.
    owner = fields.CharField(max_length=300)
    # Only one live sandbox per session: set to the session id while live,
    # cleared when it ends, so a unique index enforces it across replicas.
    live_key = fields.UUIDField(null=True, unique=True)
    state = fields.CharEnumField(SandboxState, max_length=20, default=SandboxState.STARTING)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_activity_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    end_reason = fields.CharField(max_length=200, null=True)
    workspace_removed_at = fields.DatetimeField(null=True)
    # The configuration it was started with, JSON (resolvers.sandbox_config): a restart
    # of the session's sandbox without a new one keeps it.
    config_json = fields.TextField(null=True)

    class Meta:
        table = "sandbox"
