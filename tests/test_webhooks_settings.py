"""Webhook settings, the retry schedule and the signature format, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from gql.settings import Settings, SettingsError
from resolvers.webhooks.claims import backoff_s
from resolvers.webhooks.config import JITTER, WebhookConfig
from resolvers.webhooks.signing import new_secret, sign


def test_the_default_schedule_retries_within_seconds_then_for_about_a_day() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_allow_private_networks is False
    assert settings.webhook_timeout_s == 10
    config = WebhookConfig(retry_schedule_s=settings.webhook_retry_schedule_s)
    assert config.max_attempts == 8
    assert config.lease_s > 2 * config.timeout_s  # only a dead replica loses a delivery
    first = [backoff_s(config, 1) for _ in range(200)]
    assert all(4 <= wait <= 6 for wait in first)
    assert len(set(first)) > 1  # jittered
    total = sum(backoff_s(config, n) for n in range(1, config.max_attempts))
    assert 20 * 3600 < total < 34 * 3600
    low, high = JITTER
    assert low * 36000 <= backoff_s(config, 99) <= high * 36000  # past the end: the last


def test_webhook_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
            "WEBHOOK_RETRY_SCHEDULE": "0.5, 2,60",
            "WEBHOOK_TIMEOUT_SECONDS": "3",
            "WEBHOOK_POLL_INTERVAL_MS": "250",
            "WEBHOOK_CONCURRENCY": "0",
        }
    )
    assert settings.webhook_allow_private_networks is True
    assert settings.webhook_retry_schedule_s == (0.5, 2.0, 60.0)
    assert settings.webhook_timeout_s == 3
    assert settings.webhook_poll_interval_ms == 250
    assert settings.webhook_concurrency == 0
    assert Settings.from_env({}).webhook_concurrency == 16
    for name, value in [
        ("WEBHOOK_RETRY_SCHEDULE", "soon"),
        ("WEBHOOK_RETRY_SCHEDULE", "5,-1"),
        ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "maybe"),
        ("WEBHOOK_TIMEOUT_SECONDS", "ten"),
        ("WEBHOOK_CONCURRENCY", "many"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


def test_signatures_match_the_reference_implementation() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = '{"type":"webhook.test","data":{"é":1}}'
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    reference = Webhook(secret).sign("msg_1", at, body)
    assert sign(secret, "msg_1", int(at.timestamp()), body.encode()) == reference
