"""Questions: a prompt, per-language starter code, and test cases (some hidden)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

from models.jsonvalue import JSONValueField, JSONValueModel

if TYPE_CHECKING:
    from models.account import Account


class Question(Model):
    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="questions", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    title = fields.CharField(max_length=200)
    prompt = fields.TextField()
    float_tolerance = fields.FloatField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    languages: fields.ReverseRelation[QuestionLanguage]
    test_cases: fields.ReverseRelation[TestCase]

    class Meta:
        table = "question"


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
