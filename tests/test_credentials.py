"""Credentials the server sends later are sealed at rest (resolvers.credentials).

That the Greenhouse partner key is stored sealed and still sent in the clear on the
PATCH is checked in tests/test_greenhouse.py."""

from __future__ import annotations

import pytest

from resolvers.credentials import PREFIX, CredentialBox, CredentialError


def test_sealing_round_trips_and_refuses_other_keys_and_tampering() -> None:
    box = CredentialBox.from_secret("a" * 40)
    sealed = box.seal("ats_token_value")
    assert sealed.startswith(PREFIX)
    assert "ats_token_value" not in sealed
    assert box.seal("ats_token_value") != sealed  # a fresh nonce each time
    assert CredentialBox.from_secret("a" * 40).open(sealed) == "ats_token_value"
    with pytest.raises(CredentialError):
        CredentialBox.from_secret("b" * 40).open(sealed)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(CredentialError):
        box.open(flipped)
    with pytest.raises(CredentialError):
        box.open("ats_token_value")  # stored as given: refused, never sent
