"""Sessions: creation by ATS, Relay pagination, filters, ending, expiry, the recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.session import InterviewSession
from tests.conftest import Account, random_email
from tests.support import Api

CREATE = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) {
    session { id status externalId language } candidateToken inviteUrl
  }
}"""
PAGE = """query($first: Int!, $after: String, $email: String, $status: SessionStatus,
           $ext: String) {
  sessions(first: $first, after: $after, candidateEmail: $email, status: $status,
           externalId: $ext) {
    totalCount edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def _create(api: Api, account: Account, **extra: str) -> dict[str, str]:
    data = {
        "questionId": account["questionId"],
        "candidateName": "Lin",
        "candidateEmail": random_email(),
        **extra,
    }
    return (await api(CREATE, {"input": data}, token=account["atsToken"])).ok()["createSession"]


async def test_ats_creates_a_session_with_a_working_candidate_token(
    api: Api, account: Account
) -> None:
    created = await _create(api, account, externalId="greenhouse-123", language="GO")
    session = created["session"]
    assert session["status"] == "SCHEDULED"
    assert session["language"] == "GO"
    assert created["inviteUrl"].endswith(created["candidateToken"])
    viewer = await api("{ viewer { session { id externalId } } }", token=created["candidateToken"])
    assert viewer.ok()["viewer"]["session"] == {"id": session["id"], "externalId": "greenhouse-123"}
    duplicate = await api(
        CREATE,
        {
            "input": {
                "questionId": account["questionId"],
                "candidateName": "Lin",
                "candidateEmail": random_email(),
                "externalId": "greenhouse-123",
            }
        },
        token=account["atsToken"],
    )
    assert duplicate.codes == ["CONFLICT"]


async def test_relay_pagination_walks_every_session_once(api: Api, account: Account) -> None:
    made = [account["sessionId"]] + [
        (await _create(api, account))["session"]["id"] for _ in range(4)
    ]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = (
            await api(PAGE, {"first": 2, "after": after}, token=account["interviewerToken"])
        ).ok()["sessions"]
        pages += 1
        assert page["totalCount"] == 5
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += [e["node"]["id"] for e in page["edges"]]
        if page["edges"]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
            assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == list(reversed(made))  # newest first, each exactly once
    last = (await api(PAGE, {"first": 2, "after": after}, token=account["interviewerToken"])).ok()[
        "sessions"
    ]
    assert len(last["edges"]) == 1
    assert last["pageInfo"]["hasNextPage"] is False
    end = (
        await api(
            PAGE,
            {"first": 2, "after": last["edges"][0]["cursor"]},
            token=account["interviewerToken"],
        )
    ).ok()["sessions"]
    assert end["edges"] == []
    assert end["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }


async def test_filters(api: Api, account: Account) -> None:
    created = await _create(api, account, externalId="lever-9")
    email = (
        await api(
            "query($id: ID!) { session(id: $id) { candidateEmail } }",
            {"id": created["session"]["id"]},
            token=account["atsToken"],
        )
    ).ok()["session"]["candidateEmail"]
    for variables in ({"email": email.upper()}, {"ext": "lever-9"}):
        page = (await api(PAGE, {"first": 10, **variables}, token=account["atsToken"])).ok()[
            "sessions"
        ]
        assert [e["node"]["id"] for e in page["edges"]] == [created["session"]["id"]]
    await api(
        "mutation($id: ID!) { endSession(sessionId: $id, cancel: true) { id } }",
        {"id": created["session"]["id"]},
        token=account["atsToken"],
    )
    cancelled = (
        await api(PAGE, {"first": 10, "status": "CANCELLED"}, token=account["atsToken"])
    ).ok()["sessions"]
    assert [e["node"]["id"] for e in cancelled["edges"]] == [created["session"]["id"]]


END = "mutation($id: ID!) { endSession(sessionId: $id) { id status endedAt } }"
RECORDING = """query($id: ID!, $after: Int!, $first: Int!) {
  recording(sessionId: $id, afterSeq: $after, first: $first) {
    lastSeq hasMore events { seq type ... on SessionLifecycleEvent { status } }
  }
}"""


async def test_end_session_is_recorded_once(api: Api, account: Account) -> None:
    ended = (await api(END, {"id": account["sessionId"]}, token=account["candidateToken"])).ok()
    assert ended["endSession"]["status"] == "COMPLETED"
    assert ended["endSession"]["endedAt"]
    again = await api(END, {"id": account["sessionId"]}, token=account["interviewerToken"])
    assert again.codes == ["CONFLICT"]
    recording = (
        await api(
            RECORDING,
            {"id": account["sessionId"], "after": 0, "first": 10},
            token=account["interviewerToken"],
        )
    ).ok()["recording"]
    assert recording["events"] == [
        {"seq": 1, "type": "session.created", "status": "SCHEDULED"},
        {"seq": 2, "type": "session.ended", "status": "COMPLETED"},
    ]
    assert recording["lastSeq"] == 2
    assert recording["hasMore"] is False
    page = (
        await api(
            RECORDING,
            {"id": account["sessionId"], "after": 0, "first": 1},
            token=account["interviewerToken"],
        )
    ).ok()["recording"]
    assert [e["seq"] for e in page["events"]] == [1]
    assert page["hasMore"] is True


async def test_session_past_its_expiry_is_expired(api: Api, account: Account) -> None:
    await InterviewSession.filter(id=account["sessionId"]).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    session = (
        await api(
            "query($id: ID!) { session(id: $id) { status endedAt } }",
            {"id": account["sessionId"]},
            token=account["atsToken"],
        )
    ).ok()["session"]
    assert session["status"] == "EXPIRED"
    result = await api(END, {"id": account["sessionId"]}, token=account["atsToken"])
    assert result.codes == ["CONFLICT"]
