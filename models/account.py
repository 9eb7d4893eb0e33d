"""Accounts own everything; users are the people who act within one."""

from __future__ import annotations

import enum
import uuid

from tortoise import fields
from tortoise.models import Model


class UserRole(enum.StrEnum):
    ADMIN = "admin"
    INTERVIEWER = "interviewer"


class Account(Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "account"


class User(Model):
    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="users", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    email = fields.CharField(max_length=320)
    name = fields.CharField(max_length=200)
    role = fields.CharEnumField(UserRole, max_length=20, default=UserRole.INTERVIEWER)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "app_user"
        unique_together = (("account", "email"),)
