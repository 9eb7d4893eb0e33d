"""Claude agent runs: one prompt, answered by the agent working inside the sandbox."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.session import InterviewSession


class ClaudeRunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ClaudeRun(Model):
    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="claude_runs", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    prompt = fields.TextField()
    status = fields.CharEnumField(ClaudeRunStatus, max_length=10, default=ClaudeRunStatus.RUNNING)
    # Set to the session id while running: a second concurrent run is a CONFLICT.
    live_key = fields.UUIDField(null=True, unique=True)
    owner = fields.CharField(max_length=300)
    log_seq = fields.BigIntField(default=0)
    # The CLI's conversation id, for --resume on the session's next prompt.
    conversation_id = fields.CharField(max_length=100, null=True)
    error = fields.TextField(null=True)
    cost_usd = fields.FloatField(null=True)
    num_turns = fields.IntField(null=True)
    duration_ms = fields.IntField(null=True)
    # The agent's per-run API token (issue 9): only its SHA-256 is stored, so
    # any replica's proxy can check it; cleared when the run ends, which is
    # what makes the token useless afterwards.
    token_hash = fields.CharField(max_length=64, null=True, unique=True)
    token_expires_at = fields.DatetimeField(null=True)
    # Usage as the proxy saw it in the API's answers (authoritative: the
    # agent's own report is written by a process the candidate can influence).
    # db_default too: migration 0006 added these to tables that had runs.
    api_requests = fields.IntField(default=0, db_default=0)
    input_tokens = fields.BigIntField(default=0, db_default=0)
    output_tokens = fields.BigIntField(default=0, db_default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "claude_run"
