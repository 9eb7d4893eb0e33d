"""Scorecards: one per interviewer and session, staff only, never the candidate's; the
``scorecard.submitted`` event (staff-only in the recording) and webhook."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from starlette.applications import Starlette

from gql.context import Context
from gql.schema import build_schema
from models.webhook import WebhookDelivery, WebhookEndpoint
from resolvers import event_kinds as ek
from resolvers.accounts import issue_account_token
from resolvers.auth import Principal, PrincipalKind
from resolvers.events import EventRecord
from resolvers.scorecards import MAX_RATINGS, scorecards_by_session
from resolvers.visibility import visible
from tests import test_timeline_queries
from tests.conftest import Account
from tests.support import Api
from tests.timeline_support import new_session

SUBMIT = """mutation($id: ID!, $input: SubmitScorecardInput!) {
  submitScorecard(sessionId: $id, input: $input) {
    id sessionId recommendation summary createdAt updatedAt
    interviewer { email name }
    ratings { criterion score comment }
  }
}"""
LIST = """query($id: ID!) {
  scorecards(sessionId: $id) { id recommendation interviewer { email } ratings { score } }
}"""
RECORDING = """query($id: ID!) {
  recording(sessionId: $id) {
    events { type ... on ScorecardSubmittedEvent { scorecardId author recommendation replaced } }
  }
}"""
count_queries = test_timeline_queries.count_queries  # the fixture, for this module's tests
VERDICT: dict[str, Any] = {
    "recommendation": "YES",
    "ratings": [
        {"criterion": "Problem solving", "score": 4, "comment": "found the O(n) way"},
        {"criterion": "Communication", "score": 3},
    ],
    "summary": "Solid; would pair well.",
}


async def submit(api: Api, token: str, session_id: str, verdict: dict[str, Any] = VERDICT) -> Any:
    return await api(SUBMIT, {"id": session_id, "input": verdict}, token=token)


async def second_interviewer(account: Account, email: str = "bea@demo.test") -> str:
    created = await issue_account_token(
        account["accountId"], kind="interviewer", user_email=email, user_name="Bea"
    )
    return created.token


async def test_an_interviewer_submits_and_staff_read_it(api: Api, account: Account) -> None:
    card = (await submit(api, account["interviewerToken"], account["sessionId"])).ok()[
        "submitScorecard"
    ]
    assert card["sessionId"] == account["sessionId"]
    assert card["recommendation"] == "YES"
    assert card["summary"] == "Solid; would pair well."
    assert card["interviewer"]["name"] == "Demo Admin"
    assert card["ratings"] == [
        {"criterion": "Problem solving", "score": 4, "comment": "found the O(n) way"},
        {"criterion": "Communication", "score": 3, "comment": None},
    ]
    for token in (account["interviewerToken"], account["atsToken"]):
        listed = (await api(LIST, {"id": account["sessionId"]}, token=token)).ok()["scorecards"]
        assert [c["id"] for c in listed] == [card["id"]]
        assert listed[0]["ratings"] == [{"score": 4}, {"score": 3}]


async def test_resubmitting_replaces_and_each_interviewer_has_one(
    api: Api, account: Account
) -> None:
    sid = account["sessionId"]
    first = (await submit(api, account["interviewerToken"], sid)).ok()["submitScorecard"]
    changed = {"recommendation": "STRONG_NO", "ratings": [{"criterion": "Tests", "score": 1}]}
    again = (await submit(api, account["interviewerToken"], sid, changed)).ok()["submitScorecard"]
    assert again["id"] == first["id"]
    assert again["createdAt"] == first["createdAt"]
    assert again["updatedAt"] >= first["updatedAt"]
    assert (again["recommendation"], again["summary"]) == ("STRONG_NO", "")
    assert again["ratings"] == [{"criterion": "Tests", "score": 1, "comment": None}]

    bea = await second_interviewer(account)
    hers = (await submit(api, bea, sid)).ok()["submitScorecard"]
    assert hers["interviewer"] == {"email": "bea@demo.test", "name": "Bea"}
    listed = (await api(LIST, {"id": sid}, token=account["atsToken"])).ok()["scorecards"]
    assert [(c["id"], c["recommendation"]) for c in listed] == [
        (first["id"], "STRONG_NO"),
        (hers["id"], "YES"),
    ]


async def test_concurrent_submissions_by_one_interviewer_leave_one_scorecard(
    api: Api, account: Account
) -> None:
    """Racing first submissions: each succeeds, the session keeps one scorecard of theirs."""
    sid = account["sessionId"]
    verdicts = [{"recommendation": r} for r in ("STRONG_YES", "YES", "NO", "STRONG_NO")] * 2
    results = await asyncio.gather(
        *(submit(api, account["interviewerToken"], sid, v) for v in verdicts)
    )
    ids = {result.ok()["submitScorecard"]["id"] for result in results}
    listed = (await api(LIST, {"id": sid}, token=account["atsToken"])).ok()["scorecards"]
    assert [c["id"] for c in listed] == list(ids)


async def test_ats_tokens_read_but_do_not_sign(api: Api, account: Account) -> None:
    refused = await submit(api, account["atsToken"], account["sessionId"])
    assert refused.codes == ["FORBIDDEN"]
    listed = await api(LIST, {"id": account["sessionId"]}, token=account["atsToken"])
    assert listed.ok()["scorecards"] == []


async def test_the_candidate_never_sees_a_scorecard(api: Api, account: Account) -> None:
    sid, candidate = account["sessionId"], account["candidateToken"]
    card = (await submit(api, account["interviewerToken"], sid)).ok()["submitScorecard"]

    assert (await submit(api, candidate, sid)).codes == ["FORBIDDEN"]
    assert (await api(LIST, {"id": sid}, token=candidate)).codes == ["FORBIDDEN"]
    on_session = "query($id: ID!) { session(id: $id) { scorecards { id } } }"
    theirs_too = (await api(on_session, {"id": sid}, token=candidate)).ok()["session"]
    assert theirs_too == {"scorecards": []}  # like notes: empty, whatever exists
    staff_view = (await api(on_session, {"id": sid}, token=account["atsToken"])).ok()["session"]
    assert staff_view == {"scorecards": [{"id": card["id"]}]}
    theirs = (await api(RECORDING, {"id": sid}, token=candidate)).ok()["recording"]["events"]
    assert "scorecard.submitted" not in {e["type"] for e in theirs}
    staff = (await api(RECORDING, {"id": sid}, token=account["atsToken"])).ok()
    submitted = [e for e in staff["recording"]["events"] if e["type"] == "scorecard.submitted"]
    assert submitted == [
        {
            "type": "scorecard.submitted",
            "scorecardId": card["id"],
            "author": "Demo Admin",
            "recommendation": "YES",
            "replaced": False,
        }
    ]


LIVE = """subscription($s: ID!, $a: Int!) { sessionEvents(sessionId: $s, afterSeq: $a) {
  events { type ... on FileEvent { path } } } }"""


async def live_types_until(stream: Any, sentinel_path: str) -> list[str]:
    """Event types a live watcher receives, up to the file event ``sentinel_path``."""
    seen: list[str] = []
    while True:
        batch = await asyncio.wait_for(anext(stream), 10)
        assert not batch.errors, batch.errors
        for event in batch.data["sessionEvents"]["events"]:
            seen.append(event["type"])
            if event.get("path") == sentinel_path:
                return seen


async def test_the_live_stream_keeps_it_from_the_candidate(
    api: Api, app: Starlette, account: Account
) -> None:
    services = app.state.services
    sid = account["sessionId"]
    last = await services.log.last_seq(uuid.UUID(sid))
    streams = []
    for token in (account["candidateToken"], account["interviewerToken"]):
        context = Context(
            services=services,
            request=None,  # type: ignore[arg-type]  # not needed by subscriptions
            authorization=f"Bearer {token}",
        )
        streams.append(
            await build_schema().subscribe(
                LIVE, variable_values={"s": sid, "a": last}, context_value=context
            )
        )
    (await submit(api, account["interviewerToken"], sid)).ok()
    # After the scorecard's event: what both watchers see, the end of what to read.
    await services.log.append(uuid.UUID(sid), ek.FileWritten("sentinel.txt", size=1))
    candidate, staff = [await live_types_until(s, "sentinel.txt") for s in streams]
    for stream in streams:
        await stream.aclose()
    assert "scorecard.submitted" in staff
    assert "scorecard.submitted" not in candidate
    assert candidate[-1] == "file.written"


def test_the_event_is_staff_only_live_and_as_a_stored_row() -> None:
    """What the live stream and the recording filter with (``visibility.visible``),
    also for a stored row that no longer parses as its kind."""
    candidate = Principal(PrincipalKind.CANDIDATE, uuid.uuid4(), uuid.uuid4())
    ats = Principal(PrincipalKind.ATS, candidate.account_id, uuid.uuid4())
    payload = ek.ScorecardSubmitted("sc", author="Ann")
    for shown in (payload, ek.Unknown(ek.ScorecardSubmitted.KIND, {"junk": True})):
        record = EventRecord(uuid.uuid4(), 1, payload.kind, None, shown, shown.to_json())  # type: ignore[arg-type]
        assert visible(candidate, record) is None
        assert visible(ats, record) is record


async def test_other_accounts_find_nothing(
    api: Api, account: Account, account_factory: Any
) -> None:
    await submit(api, account["interviewerToken"], account["sessionId"])
    other = await account_factory()
    for token in (other["interviewerToken"], other["atsToken"]):
        assert (await api(LIST, {"id": account["sessionId"]}, token=token)).codes == ["NOT_FOUND"]
    stolen = await submit(api, other["interviewerToken"], account["sessionId"])
    assert stolen.codes == ["NOT_FOUND"]
    # Another session's candidate, in the same account or not.
    _, candidate = await new_session(api, account)
    assert (await submit(api, candidate, account["sessionId"])).codes == ["FORBIDDEN"]


async def test_bad_input_names_the_field(api: Api, account: Account) -> None:
    token, sid = account["interviewerToken"], account["sessionId"]

    async def field_of(ratings: list[dict[str, Any]], summary: str = "") -> str:
        result = await submit(
            api, token, sid, {"recommendation": "NO", "ratings": ratings, "summary": summary}
        )
        assert result.codes == ["BAD_USER_INPUT"], result.body
        field: str = result.errors[0]["extensions"]["field"]
        return field

    ok = {"criterion": "Design", "score": 2}
    assert await field_of([ok, {"criterion": "Speed", "score": 0}]) == "input.ratings[1].score"
    assert await field_of([{"criterion": "Speed", "score": 5}]) == "input.ratings[0].score"
    assert await field_of([ok, {"criterion": " ", "score": 2}]) == "input.ratings[1].criterion"
    assert await field_of([ok, {"criterion": "x" * 201, "score": 2}]) == (
        "input.ratings[1].criterion"
    )
    assert await field_of([ok, {"criterion": "design ", "score": 3}]) == (
        "input.ratings[1].criterion"
    )
    assert await field_of([{**ok, "comment": "c" * 5001}]) == "input.ratings[0].comment"
    many = [{"criterion": f"c{i}", "score": 2} for i in range(MAX_RATINGS + 1)]
    assert await field_of(many) == "input.ratings"
    assert await field_of([ok], summary="s" * 20_001) == "input.summary"
    bad_id = await submit(api, token, "not-an-id")
    assert bad_id.codes == ["BAD_USER_INPUT"]
    # Nothing was stored by the refused submissions.
    listed = await api(LIST, {"id": sid}, token=token)
    assert listed.ok()["scorecards"] == []


async def test_submission_queues_the_webhook_with_the_scorecard(api: Api, account: Account) -> None:
    endpoint = await WebhookEndpoint.create(
        account_id=uuid.UUID(account["accountId"]),
        url="https://receiver.invalid/hooks",
        events=["scorecard.submitted"],
        secret="whsec_test",
        # Disabled: the deliveries wait in the outbox, where this test reads them.
        enabled=False,
    )
    card = (await submit(api, account["interviewerToken"], account["sessionId"])).ok()[
        "submitScorecard"
    ]
    (delivery,) = await WebhookDelivery.filter(endpoint_id=endpoint.id)
    body = json.loads(delivery.body)
    assert body["type"] == "scorecard.submitted"
    assert body["data"]["sessionId"] == account["sessionId"]
    scorecard = body["data"]["scorecard"]
    assert scorecard["id"] == card["id"]
    assert scorecard["recommendation"] == "YES"
    assert scorecard["replaced"] is False
    assert scorecard["ratings"][0] == {
        "criterion": "Problem solving",
        "score": 4,
        "comment": "found the O(n) way",
    }


async def test_scorecards_of_many_sessions_in_one_query(
    api: Api, account: Account, account_factory: Any, count_queries: Any
) -> None:
    first, second = account["sessionId"], (await new_session(api, account))[0]
    await submit(api, account["interviewerToken"], first)
    await submit(api, account["interviewerToken"], second)
    await submit(api, await second_interviewer(account), second)
    other = await account_factory()
    await submit(api, other["interviewerToken"], other["sessionId"])
    ids = [uuid.UUID(s) for s in (first, second, other["sessionId"])]
    staff = Principal(PrincipalKind.ATS, uuid.UUID(account["accountId"]), uuid.uuid4())

    with count_queries() as queries:
        grouped = await scorecards_by_session(staff, ids)
    assert len(queries) == 1
    assert {sid: len(cards) for sid, cards in grouped.items()} == {ids[0]: 1, ids[1]: 2}
    # Oldest first, each with its author (loaded in that same query).
    assert [c.author.name for c in grouped[ids[1]]] == ["Demo Admin", "Bea"]
    candidate = Principal(
        PrincipalKind.CANDIDATE, staff.account_id, uuid.uuid4(), session_id=ids[0]
    )
    assert await scorecards_by_session(candidate, ids) == {}
