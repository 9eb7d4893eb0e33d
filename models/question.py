"""Questions: a prompt, per-language starter code, and test cases (some hidden).

A question is edited by adding a revision: every revision is its own ``Question``
row with its own languages and test cases, so a session (which refers to one
row) keeps the revision it started with. The revisions of one question share a
``lineage_id`` (the id of the first one), which is the question's public id.
"""

from __future__ import annotations

import enum
import json
import uuid
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

from models.jsonvalue import JSONValueField, JSONValueModel

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tortoise.backends.base.client import BaseDBAsyncClient

    from models.account import Account


class Difficulty(enum.StrEnum):
    EASY = "EASY"
    MEDIUM = "MEDIUM"
    HARD = "HARD"


class Question(Model):
    """One revision of a question."""

    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="questions", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    lineage_id = fields.UUIDField()
    revision = fields.IntField(db_default=1)
    # Exactly one row per lineage is the latest; it alone carries ``archived_at``.
    is_latest = fields.BooleanField(db_default=True)
    title = fields.CharField(max_length=200)
    prompt = fields.TextField()
    float_tolerance = fields.FloatField(null=True)
    difficulty = fields.CharEnumField(Difficulty, max_length=10, null=True)
    # A JSON list of normalized tags, kept as text so that one ``LIKE '%"tag"%'``
    # filters by tag on SQLite and PostgreSQL alike; tags cannot hold a quote or a
    # backslash (resolvers.questions), so a match is always a whole tag.
    tags_json = fields.TextField(db_default="[]")
    archived_at = fields.DatetimeField(null=True)
    # Starter files from S3 (resolvers.s3sync): a prefix relative to the account's own
    # area of the bucket (``<S3_PREFIX>/<account>/``), never a bucket-wide key.
    starter_s3_prefix = fields.CharField(max_length=500, null=True)
    # The sandbox's default environment, JSON (resolvers.sandbox_config.SandboxConfig).
    environment_json = fields.TextField(null=True)
    # When the question was first created: the same on every revision (lists sort on it).
    created_at = fields.DatetimeField(auto_now_add=True)
    revised_at = fields.DatetimeField(auto_now_add=True)

    languages: fields.ReverseRelation[QuestionLanguage]
    test_cases: fields.ReverseRelation[TestCase]

    class Meta:
        table = "question"
        unique_together = (("lineage_id", "revision"),)

    @property
    def tags(self) -> list[str]:
        loaded: list[str] = json.loads(self.tags_json)
        return loaded

    async def save(
        self,
        using_db: BaseDBAsyncClient | None = None,
        update_fields: Iterable[str] | None = None,
        force_create: bool = False,
        force_update: bool = False,
    ) -> None:
        if self.lineage_id is None:  # a first revision starts its own lineage
            self.lineage_id = self.id
        await super().save(using_db, update_fields, force_create, force_update)


class QuestionLanguage(JSONValueModel):
    id = fields.IntField(primary_key=True)
    question: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="languages", on_delete=fields.CASCADE
    )
    question_id: uuid.UUID  # the FK's column, for typed access
    language = fields.CharField(max_length=20)
    entrypoint = fields.CharField(max_length=200)
    solution_path = fields.CharField(max_length=500)
    # [{"path": str, "content": str}, ...]
    starter_files: Any = JSONValueField(default=list)

    class Meta:
        table = "question_language"
        unique_together = (("question", "language"),)


class TestCase(JSONValueModel):
    id = fields.IntField(primary_key=True)
    question: fields.ForeignKeyRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="test_cases", on_delete=fields.CASCADE
    )
    question_id: uuid.UUID  # the FK's column, for typed access
    position = fields.IntField()
    name = fields.CharField(max_length=200)
    hidden = fields.BooleanField(default=False)
    timeout_ms = fields.IntField(default=2000)
    # Function mode: JSON list of positional args and the JSON value expected.
    # Any JSON value, a string included (see models.jsonvalue).
    input: Any = JSONValueField(null=True)
    expected: Any = JSONValueField(null=True)
    # Program mode: stdin and the stdout expected.
    stdin = fields.TextField(null=True)
    expected_stdout = fields.TextField(null=True)

    class Meta:
        table = "test_case"
        ordering = ["position"]
