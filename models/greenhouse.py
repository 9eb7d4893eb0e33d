"""Greenhouse Assessment Partner API: the sessions Greenhouse ordered through ``send_test``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.account import Account
    from models.session import InterviewSession
    from models.webhook import WebhookEndpoint


class GreenhouseInterview(Model):
    """One ``send_test``: a Greenhouse application given one test, and the session it got.

    The unique (account, application, test) triple is what makes ``send_test``
    idempotent: of two concurrent identical requests, the database lets one row in.
    """

    id = fields.UUIDField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="greenhouse_interviews", on_delete=fields.CASCADE
    )
    account_id: uuid.UUID  # the FK's column, for typed access
    session: fields.OneToOneRelation[InterviewSession] = fields.OneToOneField(
        "models.InterviewSession", related_name="greenhouse_interview", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # the FK's column, for typed access
    # Greenhouse's application id (from ``greenhouse_profile_url``), or that URL when it
    # carries none: what identifies "the same application" on a retried request.
    application_key = fields.CharField(max_length=500)
    # The question's public id (its lineage), as list_tests offered it.
    partner_test_id = fields.UUIDField()
    # Greenhouse's ``url``: where the empty PATCH goes when the session completes, as an
    # outbox endpoint of its own (models.webhook.EndpointKind.GREENHOUSE_CALLBACK).
    callback: fields.OneToOneRelation[WebhookEndpoint] = fields.OneToOneField(
        "models.WebhookEndpoint", related_name="greenhouse_interview", on_delete=fields.CASCADE
    )
    callback_id: uuid.UUID  # the FK's column, for typed access
    greenhouse_profile_url = fields.CharField(max_length=2000, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "greenhouse_interview"
        unique_together = (("account", "application_key", "partner_test_id"),)
