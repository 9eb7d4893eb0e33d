"""Standard Webhooks signatures: secrets, and the headers of one attempt.

The spec (standardwebhooks.com): the signed content is ``{id}.{timestamp}.{body}``,
the key is the base64 part of ``whsec_...``, the signature ``v1,{base64 HMAC-SHA256}``.
Receivers verify with the ``standardwebhooks`` package (or a few lines of their own).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_webhook_id() -> str:
    """The message id: one per event, kept across retries and redeliveries."""
    return f"msg_{uuid.uuid4().hex}"


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt; ``timestamp`` is the attempt's (Unix seconds), so a
    retry carries a fresh one and passes receivers' replay windows."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
    }
