"""Test runs: one judged execution of a session's code against its question's cases."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.question import TestCase
    from models.session import InterviewSession


class TestRunStatus(enum.StrEnum):
    __test__ = False  # not a pytest class

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ERROR = "ERROR"


class Verdict(enum.StrEnum):
    PASSED = "PASSED"
    WRONG_ANSWER = "WRONG_ANSWER"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    COMPILE_ERROR = "COMPILE_ERROR"


class TestRun(Model):
    __test__ = False

    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[InterviewSession] = fields.ForeignKeyField(
        "models.InterviewSession", related_name="test_runs", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    language = fields.CharField(max_length=20)
    status = fields.CharEnumField(TestRunStatus, max_length=10, default=TestRunStatus.QUEUED)
    # Set to the session id while the run is queued or running: a unique
    # index makes a second concurrent run of the session a CONFLICT.
    live_key = fields.UUIDField(null=True, unique=True)
    owner = fields.CharField(max_length=300)
    # The session's last seq when the run was created: its events come after.
    log_seq = fields.BigIntField(default=0)
    total = fields.IntField(default=0)
    passed = fields.IntField(default=0)
    failed = fields.IntField(default=0)
    duration_ms = fields.IntField(null=True)
    compile_error = fields.TextField(null=True)
    error = fields.TextField(null=True)
    # {path: sha256} of the workspace that was tested: the code snapshot.
    files: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "test_run"


class TestCaseResult(Model):
    __test__ = False

    id = fields.BigIntField(primary_key=True)
    run: fields.ForeignKeyRelation[TestRun] = fields.ForeignKeyField(
        "models.TestRun", related_name="results", on_delete=fields.CASCADE
    )
    run_id: uuid.UUID  # the FK's column, for typed access
    case: fields.ForeignKeyNullableRelation[TestCase] = fields.ForeignKeyField(
        "models.TestCase", related_name="results", null=True, on_delete=fields.SET_NULL
    )
    position = fields.IntField()
    name = fields.CharField(max_length=200)
    hidden = fields.BooleanField()
    verdict = fields.CharEnumField(Verdict, max_length=20)
    duration_ms = fields.IntField(null=True)
    actual = fields.TextField(null=True)
    """Function mode: the returned JSON; program mode: the stdout."""
    output = fields.TextField(null=True)
    """What the solution printed (function mode) or wrote to stderr."""
    error = fields.TextField(null=True)
    signal = fields.IntField(null=True)

    class Meta:
        table = "test_case_result"
        unique_together = (("run", "position"),)
        ordering = ["position"]
