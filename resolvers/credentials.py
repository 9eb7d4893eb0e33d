"""Credentials the server must present later, sealed at rest.

Tokens the server *checks* are stored as SHA-256 hashes. A credential it must *send*
cannot be: Greenhouse's completion PATCH presents the partner key (the account's ATS
token) that Greenhouse gave with ``send_test``. It is stored sealed instead (AES-256-GCM
under a key derived from ``CREDENTIAL_KEY``), so a copy of the database alone does not
hand out API access. Every replica must share ``CREDENTIAL_KEY``; unset, each process
draws its own, and what another process sealed cannot be opened (its callback fails and
is retried until a process with the right key takes it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1."
_CONTEXT = b"interviewlm credentials v1\0"
_NONCE_BYTES = 12


class CredentialError(Exception):
    """A sealed credential that this key cannot open (another key, or tampered with)."""


@dataclass(frozen=True, slots=True)
class CredentialBox:
    key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str) -> CredentialBox:
        return cls(hashlib.sha256(_CONTEXT + secret.encode()).digest())

    @classmethod
    def random(cls) -> CredentialBox:
        return cls(os.urandom(32))

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), _CONTEXT)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise CredentialError("not a sealed credential")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
            nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return AESGCM(self.key).decrypt(nonce, body, _CONTEXT).decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise CredentialError("the sealed credential does not open with this key") from exc
