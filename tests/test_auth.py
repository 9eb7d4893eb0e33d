"""Tokens: kinds, hashing at rest, revocation, expiry, malformed headers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from models.token import ApiToken, CandidateToken
from tests.conftest import Account
from tests.support import Api

VIEWER = "{ viewer { kind account { id } user { role } session { id } } }"


async def test_each_token_kind_authenticates_as_itself(api: Api, account: Account) -> None:
    interviewer = (await api(VIEWER, token=account["interviewerToken"])).ok()["viewer"]
    assert interviewer["kind"] == "INTERVIEWER"
    assert interviewer["account"]["id"] == account["accountId"]
    assert interviewer["user"]["role"] == "admin"
    ats = (await api(VIEWER, token=account["atsToken"])).ok()["viewer"]
    assert ats == {
        "kind": "ATS",
        "account": {"id": account["accountId"]},
        "user": None,
        "session": None,
    }
    candidate = (await api(VIEWER, token=account["candidateToken"])).ok()["viewer"]
    assert candidate["kind"] == "CANDIDATE"
    assert candidate["session"] == {"id": account["sessionId"]}


async def test_tokens_are_stored_only_as_hashes(account: Account) -> None:
    for token, model in (
        (account["interviewerToken"], ApiToken),
        (account["atsToken"], ApiToken),
        (account["candidateToken"], CandidateToken),
    ):
        digest = hashlib.sha256(token.encode()).hexdigest()
        row = await model.get(token_hash=digest)
        stored = " ".join(str(v) for v in row.__dict__.values())
        assert token not in stored
        assert token[12:] not in stored


async def test_missing_unknown_and_malformed_tokens_are_unauthenticated(
    api: Api, account: Account
) -> None:
    for token in (None, "ilmi_nope", account["interviewerToken"] + "x"):
        result = await api(VIEWER, token=token)
        assert result.codes == ["UNAUTHENTICATED"]
        assert result.data is None
    response = await api.client.post(
        "/graphql",
        json={"query": VIEWER},
        headers={"authorization": f"Basic {account['interviewerToken']}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token apiToken { id name scope prefix revokedAt } }
}
"""
REVOKE = "mutation($id: ID!) { revokeApiToken(id: $id) { id revokedAt } }"


async def test_created_token_works_until_revoked(api: Api, account: Account) -> None:
    admin = account["interviewerToken"]
    created = (
        await api(CREATE_TOKEN, {"input": {"name": "ci", "scope": "ATS"}}, token=admin)
    ).ok()["createApiToken"]
    token = created["token"]
    assert created["apiToken"]["scope"] == "ATS"
    assert token.startswith(created["apiToken"]["prefix"])
    assert (await api(VIEWER, token=token)).ok()["viewer"]["kind"] == "ATS"

    listed = (await api("{ apiTokens { id prefix lastUsedAt } }", token=admin)).ok()["apiTokens"]
    mine = next(t for t in listed if t["id"] == created["apiToken"]["id"])
    assert mine["lastUsedAt"] is not None
    assert token not in str(listed)

    revoked = (await api(REVOKE, {"id": created["apiToken"]["id"]}, token=admin)).ok()
    assert revoked["revokeApiToken"]["revokedAt"] is not None
    assert (await api(VIEWER, token=token)).codes == ["UNAUTHENTICATED"]
    again = await api(REVOKE, {"id": created["apiToken"]["id"]}, token=admin)
    assert again.codes == ["CONFLICT"]


async def test_expired_tokens_are_rejected(api: Api, account: Account) -> None:
    admin = account["interviewerToken"]
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = (
        await api(
            CREATE_TOKEN,
            {"input": {"name": "short", "scope": "INTERVIEWER", "expiresAt": soon}},
            token=admin,
        )
    ).ok()["createApiToken"]
    assert (await api(VIEWER, token=created["token"])).ok()
    past = datetime.now(UTC) - timedelta(seconds=1)
    await ApiToken.filter(id=created["apiToken"]["id"]).update(expires_at=past)
    assert (await api(VIEWER, token=created["token"])).codes == ["UNAUTHENTICATED"]

    digest = hashlib.sha256(account["candidateToken"].encode()).hexdigest()
    await CandidateToken.filter(token_hash=digest).update(expires_at=past)
    assert (await api(VIEWER, token=account["candidateToken"])).codes == ["UNAUTHENTICATED"]


async def test_only_interviewers_manage_tokens(api: Api, account: Account) -> None:
    for token in (account["atsToken"], account["candidateToken"]):
        result = await api(CREATE_TOKEN, {"input": {"name": "x", "scope": "ATS"}}, token=token)
        assert result.codes == ["FORBIDDEN"]
        assert (await api("{ apiTokens { id } }", token=token)).codes == ["FORBIDDEN"]
