"""Greenhouse's Assessment Partner API: list_tests, send_test, test_status and the PATCH.

The end-to-end test runs the real server (uvicorn, its webhook delivery worker and
the local sandbox) against a stand-in Greenhouse on loopback that records what it
receives (``tests.greenhouse_standin``): Greenhouse lists the tests, sends one, the
candidate solves it in the sandbox and ends the session, the empty ``PATCH`` reaches
the stand-in (after two failed attempts it answers with 500 and 503: the outbox
retries), which then reads ``test_status`` as Greenhouse does. The other tests drive
the app in process: idempotency (also of concurrent twins), the PATCH queued with the
completion (and not for a cancellation), credentials, other accounts, bad bodies,
callback URLs to private networks.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from models.greenhouse import GreenhouseInterview
from models.session import InterviewSession, SessionStatus
from models.webhook import WebhookDelivery, WebhookEndpoint
from resolvers.credentials import PREFIX as SEALED
from resolvers.webhooks.config import WebhookConfig
from resolvers.webhooks.worker import DeliveryWorker
from tests.conftest import Account
from tests.greenhouse_standin import CALLBACK_PATH, Greenhouse, basic
from tests.server import ServerProcess, start_server
from tests.support import Api, wait_until
from tests.test_testruns import RUN_TESTS, SOLUTIONS, TEST_RUN
from tests.workspace_support import START, WRITE

PREFIX = "/integrations/greenhouse"
CALLBACK = "https://app.greenhouse.io" + CALLBACK_PATH + "12345"
PUBLIC_URL = "http://interviewlm.test"
END = "mutation($s: ID!) { endSession(sessionId: $s) { id status } }"


def send_body(test_id: str, *, application_id: int = 26234709, **overrides: Any) -> dict[str, Any]:
    """The documented send_test body (developers.greenhouse.io/assessment.html#send-test)."""
    return {
        "partner_test_id": test_id,
        "candidate": {
            "first_name": "Harry",
            "last_name": "Potter",
            "resume_url": "https://hogwarts.example/resume",
            "phone_number": "123-456-7890",
            "email": "hpotter@hogwarts.example",
            "greenhouse_profile_url": (
                f"https://app.greenhouse.io/people/17681532?application_id={application_id}"
            ),
        },
        "url": CALLBACK,
        **overrides,
    }


async def send_test(client: httpx.AsyncClient, key: str, body: Any) -> httpx.Response:
    # json.dumps escapes to ASCII, so a lone surrogate travels as "\\ud800", as it may in the wild.
    headers = {"authorization": basic(key), "content-type": "application/json"}
    return await client.post(f"{PREFIX}/send_test", content=json.dumps(body), headers=headers)


async def status_of(client: httpx.AsyncClient, key: str, interview_id: str) -> httpx.Response:
    return await client.get(
        f"{PREFIX}/test_status",
        params={"partner_interview_id": interview_id},
        headers={"authorization": basic(key)},
    )


# -- the flow, end to end on a real server -----------------------------------------------


FAST_RETRIES = (0.05, 0.05, 0.05)


@pytest.fixture
def greenhouse_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, app: Starlette
) -> Iterator[ServerProcess]:
    """The real server, allowed to deliver to loopback (where the stand-in listens), with
    retries in a blink rather than after 5 s, 5 min... This test process's app is a second
    replica on the same outbox: its worker gets the same settings, as replicas do, since
    either may deliver the PATCH."""
    worker: DeliveryWorker = app.state.webhooks
    saved = worker.config
    worker.config = WebhookConfig(
        allow_private_networks=True,
        retry_schedule_s=FAST_RETRIES,
        credentials=saved.credentials,  # CREDENTIAL_KEY is shared with the server (server_env)
    )
    env = {
        **server_env,
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, FAST_RETRIES)),
        "WEBHOOK_CONCURRENCY": "16",
        "PUBLIC_URL": PUBLIC_URL,
    }
    server = start_server(env, tmp_path_factory.mktemp("greenhouse-server"))
    try:
        yield server
    finally:
        server.stop()
        worker.config = saved


async def test_greenhouse_flow_end_to_end(
    greenhouse_server: ServerProcess, account: Account
) -> None:
    # Endpoints earlier tests left behind (receivers gone) would take this server's
    # delivery slots for their retries first (see test_webhooks_replicas).
    await WebhookEndpoint.filter(enabled=True).update(enabled=False)
    greenhouse = Greenhouse(greenhouse_server.url + PREFIX, account["atsToken"]).start()
    greenhouse.answers = [500, 503]  # the first two PATCHes fail: the outbox retries
    try:
        listed = await asyncio.to_thread(greenhouse.list_tests)
        assert listed.status_code == 200, listed.text
        tests = listed.json()
        assert {"partner_test_id": account["questionId"], "partner_test_name": "Two Sum"} in tests

        sent = await asyncio.to_thread(greenhouse.send_test, account["questionId"])
        assert sent.status_code == 200, sent.text
        interview = sent.json()["partner_interview_id"]
        invite = sent.json()["invite_url"]
        assert invite.endswith(f"/interview/{interview}" + invite[invite.index("#") :])
        candidate_token = invite.split("#token=", 1)[1]

        pending = (await asyncio.to_thread(greenhouse.test_status, interview)).json()
        assert pending["partner_status"] == "incomplete"
        assert pending["partner_profile_url"] is None

        # The candidate opens the invite, solves the question in the sandbox, hands in.
        async with httpx.AsyncClient(base_url=greenhouse_server.url, timeout=120) as http:
            api = Api(http)
            assert (await api(START, {"s": interview}, token=candidate_token)).ok()
            path, code = SOLUTIONS["PYTHON"]
            write = {"s": interview, "p": path, "c": code}
            assert (await api(WRITE, write, token=candidate_token)).ok()
            run = (await api(RUN_TESTS, {"s": interview}, token=candidate_token)).ok()["runTests"]

            async def finished() -> Any:
                got = (await api(TEST_RUN, {"id": run["id"]}, token=candidate_token)).ok()
                return got["testRun"]["status"] == "FINISHED" and got["testRun"]

            judged = await wait_until(finished, timeout=120, what="the test run")
            assert judged["passed"] == judged["total"] == 5
            ended = await api(END, {"s": interview}, token=candidate_token)
            assert ended.ok()["endSession"]["status"] == "COMPLETED"

        # The outbox delivers the PATCH; the stand-in then reads test_status, as Greenhouse does.
        await wait_until(lambda: greenhouse.statuses, timeout=60, what="the PATCH and its poll")
        patches = greenhouse.patches()
        assert len(patches) == 3
        for patch in patches:
            assert patch.path == next(iter(greenhouse.interviews))
            assert patch.body == b""
            assert patch.headers["authorization"] == basic(account["atsToken"])
            assert not any(h.startswith("webhook-") for h in patch.headers)
        [status] = greenhouse.statuses
        assert status["status_code"] == 200
        assert status["partner_status"] == "complete"
        assert status["partner_score"] == 100
        assert status["metadata"]["Status"] == "Completed"
        # The profile URL is the report, which opens without an API token.
        assert status["partner_profile_url"].startswith(PUBLIC_URL + "/reports/")
        report_path = status["partner_profile_url"].removeprefix(PUBLIC_URL)
        async with httpx.AsyncClient(base_url=greenhouse_server.url, timeout=30) as http:
            report = await http.get(report_path)
        assert report.status_code == 200
        assert "Harry Potter" in report.text
    finally:
        greenhouse.stop()


# -- send_test ---------------------------------------------------------------------------


async def test_send_test_is_idempotent_per_application_and_test(
    client: httpx.AsyncClient, account: Account
) -> None:
    key, test_id = account["atsToken"], account["questionId"]
    first = await send_test(client, key, send_body(test_id))
    assert first.status_code == 200, first.text
    again = await send_test(client, key, send_body(test_id))
    assert again.status_code == 200, again.text
    interview = first.json()["partner_interview_id"]
    assert again.json()["partner_interview_id"] == interview
    # A retry may mean the first answer never arrived: a working link again, a new one.
    assert again.json()["invite_url"] != first.json()["invite_url"]
    for answer in (first, again):
        token = answer.json()["invite_url"].split("#token=", 1)[1]
        viewer = await client.post(
            "/graphql",
            json={"query": "{ viewer { session { id } } }"},
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        )
        assert viewer.json()["data"]["viewer"]["session"]["id"] == interview

    # A profile URL without an application id: the URL stands for the application.
    bare = send_body(test_id)
    bare["candidate"]["greenhouse_profile_url"] = "https://app.greenhouse.io/people/" + "9" * 600
    bare_first, bare_again = [(await send_test(client, key, bare)).json() for _ in range(2)]
    assert bare_first["partner_interview_id"] == bare_again["partner_interview_id"] != interview

    other_application = await send_test(client, key, send_body(test_id, application_id=777))
    assert other_application.json()["partner_interview_id"] != interview
    assert await GreenhouseInterview.filter(account_id=account["accountId"]).count() == 3
    session = await InterviewSession.get(id=interview)
    assert session.candidate_name == "Harry Potter"
    mononym = send_body(test_id, application_id=1001)
    mononym["candidate"]["last_name"] = ""
    named = (await send_test(client, key, mononym)).json()["partner_interview_id"]
    assert (await InterviewSession.get(id=named)).candidate_name == "Harry"
    assert session.candidate_email == "hpotter@hogwarts.example"
    assert session.external_id == f"greenhouse:26234709:{test_id}"


async def test_concurrent_identical_send_tests_make_one_interview(
    client: httpx.AsyncClient, account: Account
) -> None:
    key, test_id = account["atsToken"], account["questionId"]
    body = send_body(test_id, application_id=4242)
    answers = await asyncio.gather(*(send_test(client, key, body) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert len({a.json()["partner_interview_id"] for a in answers}) == 1
    interview = answers[0].json()["partner_interview_id"]
    assert await GreenhouseInterview.filter(application_key="4242").count() == 1
    external = f"greenhouse:4242:{test_id}"
    open_ones = await InterviewSession.filter(
        external_id=external, status__in=[SessionStatus.SCHEDULED, SessionStatus.ACTIVE]
    ).values_list("id", flat=True)
    assert [str(s) for s in open_ones] == [interview]


async def test_completion_queues_the_patch_in_the_outbox_with_the_change(
    client: httpx.AsyncClient, api: Api, account: Account
) -> None:
    key, test_id = account["atsToken"], account["questionId"]
    sent = (await send_test(client, key, send_body(test_id, application_id=123))).json()
    interview = sent["partner_interview_id"]
    link = await GreenhouseInterview.get(session_id=interview)
    assert await WebhookDelivery.filter(endpoint_id=link.callback_id).count() == 0
    # The partner key goes back on the PATCH, so it cannot be hashed: it is kept sealed.
    callback = await WebhookEndpoint.get(id=link.callback_id)
    assert callback.secret.startswith(SEALED)
    assert key not in callback.secret
    candidate = sent["invite_url"].split("#token=", 1)[1]
    assert (await api(END, {"s": interview}, token=candidate)).ok()
    [queued] = await WebhookDelivery.filter(endpoint_id=link.callback_id)
    assert (queued.event_type, queued.body) == ("session.completed", "")

    # The callback is the interview's, not one of the account's endpoints in the API.
    staff = account["interviewerToken"]
    listed = await api("{ webhookEndpoints { id url } }", token=staff)
    assert CALLBACK not in str(listed.ok())
    deliveries = "query($e: ID!) { webhookDeliveries(endpointId: $e) { edges { node { id } } } }"
    hidden = await api(deliveries, {"e": str(link.callback_id)}, token=staff)
    assert hidden.codes == ["NOT_FOUND"]


async def test_a_finished_interview_is_answered_again_without_a_new_link(
    client: httpx.AsyncClient, api: Api, account: Account
) -> None:
    key, test_id = account["atsToken"], account["questionId"]
    first = (await send_test(client, key, send_body(test_id, application_id=99))).json()
    cancel = "mutation($s: ID!) { endSession(sessionId: $s, cancel: true) { status } }"
    assert (await api(cancel, {"s": first["partner_interview_id"]}, token=key)).ok()
    # Nothing to tell Greenhouse: a cancelled interview has no result.
    link = await GreenhouseInterview.get(session_id=first["partner_interview_id"])
    assert await WebhookDelivery.filter(endpoint_id=link.callback_id).count() == 0
    again = await send_test(client, key, send_body(test_id, application_id=99))
    assert again.json() == {
        "partner_interview_id": first["partner_interview_id"],
        "invite_url": None,
    }


# -- list_tests, test_status ---------------------------------------------------------------


async def test_list_tests_is_the_accounts_questions_that_take_sessions(
    client: httpx.AsyncClient, api: Api, account: Account, account_factory: Any
) -> None:
    other = await account_factory()
    auth = {"authorization": basic(account["atsToken"])}
    listed = (await client.get(f"{PREFIX}/list_tests", headers=auth)).json()
    assert listed == [{"partner_test_id": account["questionId"], "partner_test_name": "Two Sum"}]
    archive = "mutation($id: ID!) { archiveQuestion(id: $id) { id } }"
    assert (
        await api(archive, {"id": account["questionId"]}, token=account["interviewerToken"])
    ).ok()
    assert (await client.get(f"{PREFIX}/list_tests", headers=auth)).json() == []
    assert other["questionId"] not in str(listed)
    refused = await send_test(client, account["atsToken"], send_body(account["questionId"]))
    assert refused.status_code == 409


async def test_status_of_other_accounts_and_other_sessions_is_not_found(
    client: httpx.AsyncClient, account: Account, account_factory: Any
) -> None:
    other = await account_factory()
    sent = await send_test(
        client, account["atsToken"], send_body(account["questionId"], application_id=5)
    )
    interview = sent.json()["partner_interview_id"]
    mine = await status_of(client, account["atsToken"], interview)
    assert mine.status_code == 200
    assert mine.json()["partner_status"] == "incomplete"
    assert set(mine.json()) == {
        "partner_status",
        "partner_profile_url",
        "partner_score",
        "metadata",
    }
    assert all(not isinstance(v, dict | list) for v in mine.json()["metadata"].values())

    theirs = await status_of(client, other["atsToken"], interview)
    assert theirs.status_code == 404
    assert theirs.json()["message"] == "interview not found"
    # A session of the account that Greenhouse did not order is not an interview of its.
    not_ordered = await status_of(client, account["atsToken"], account["sessionId"])
    assert not_ordered.status_code == 404
    for unknown in ("not-an-id", "00000000-0000-0000-0000-000000000000"):
        assert (await status_of(client, account["atsToken"], unknown)).status_code == 404
    missing = await client.get(
        f"{PREFIX}/test_status", headers={"authorization": basic(account["atsToken"])}
    )
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "partner_interview_id"
    # Nor can another account order its interviews with this account's tests.
    stolen = await send_test(client, other["atsToken"], send_body(account["questionId"]))
    assert stolen.status_code == 404
    assert stolen.json()["message"] == "test not found"


# -- credentials -------------------------------------------------------------------------------


async def test_anything_but_an_ats_token_with_an_empty_password_is_401(
    client: httpx.AsyncClient, api: Api, account: Account
) -> None:
    created = await api(
        'mutation { createApiToken(input: {name: "gh", scope: ATS}) { token apiToken { id } } }',
        token=account["interviewerToken"],
    )
    revoked = created.ok()["createApiToken"]
    revoke = "mutation($id: ID!) { revokeApiToken(id: $id) { id } }"
    assert (
        await api(revoke, {"id": revoked["apiToken"]["id"]}, token=account["interviewerToken"])
    ).ok()
    ats = account["atsToken"]
    refused: dict[str, dict[str, str]] = {
        "none": {},
        "bearer": {"authorization": f"Bearer {ats}"},
        "a password": {"authorization": basic(ats, "secret")},
        "no colon": {"authorization": "Basic " + base64.b64encode(ats.encode()).decode()},
        "not base64": {"authorization": "Basic !!!"},
        "empty": {"authorization": "Basic "},
        "interviewer": {"authorization": basic(account["interviewerToken"])},
        "candidate": {"authorization": basic(account["candidateToken"])},
        "unknown": {"authorization": basic("ilma_" + "x" * 43)},
        "revoked": {"authorization": basic(revoked["token"])},
        "too long": {"authorization": basic("a" * 500)},
    }
    for what, headers in refused.items():
        for method, path in (("GET", "list_tests"), ("POST", "send_test"), ("GET", "test_status")):
            answer = await client.request(method, f"{PREFIX}/{path}", headers=headers)
            assert answer.status_code == 401, (what, path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Basic realm="), what
            assert answer.json()["errors"][0]["message"], what
    ok = await client.get(f"{PREFIX}/list_tests", headers={"authorization": basic(ats)})
    assert ok.status_code == 200


# -- bad requests ------------------------------------------------------------------------------


async def test_bad_send_test_bodies_are_400_naming_the_field(
    client: httpx.AsyncClient, account: Account
) -> None:
    key, test_id = account["atsToken"], account["questionId"]
    good = send_body(test_id, application_id=31337)
    candidate = good["candidate"]
    cases: list[tuple[Any, str]] = [
        ([good], "body"),
        ("text", "body"),
        ({**good, "candidate": None}, "candidate"),
        ({**good, "partner_test_id": None}, "partner_test_id"),
        ({**good, "partner_test_id": 12345}, "partner_test_id"),
        ({**good, "partner_test_id": "12345"}, "partner_test_id"),
        ({**good, "url": None}, "url"),
        ({**good, "url": "ftp://app.greenhouse.io/x"}, "url"),
        ({**good, "url": "/relative"}, "url"),
        ({**good, "url": "https://" + "a" * 3000 + ".example"}, "url"),
        ({**good, "candidate": {**candidate, "email": "nope"}}, "candidate.email"),
        ({**good, "candidate": {**candidate, "first_name": ""}}, "candidate.first_name"),
        ({**good, "candidate": {**candidate, "first_name": "a" * 100}}, "candidate.first_name"),
        ({**good, "candidate": {**candidate, "last_name": 7}}, "candidate.last_name"),
        ({**good, "candidate": {**candidate, "first_name": "\ud800"}}, "candidate.first_name"),
        (
            {**good, "candidate": {**candidate, "greenhouse_profile_url": None}},
            "candidate.greenhouse_profile_url",
        ),
    ]
    for body, field in cases:
        answer = await send_test(client, key, body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["errors"][0]["field"] == field, (body, answer.json())
    raw = {"authorization": basic(key), "content-type": "application/json"}
    for content in (b"{", b"\xff\xfe", b"[" * 100_000):
        answer = await client.post(f"{PREFIX}/send_test", content=content, headers=raw)
        assert answer.status_code in {400, 413}, answer.text
        assert answer.json()["errors"]
    huge = await client.post(f"{PREFIX}/send_test", content=b" " * (65 << 10), headers=raw)
    assert huge.status_code == 413
    wrong = await client.get(f"{PREFIX}/send_test", headers=raw)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert await GreenhouseInterview.filter(application_key="31337").count() == 0


async def test_callback_urls_to_private_networks_are_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    """The test app keeps WEBHOOK_ALLOW_PRIVATE_NETWORKS off: the PATCH would carry the
    account's key, so it goes to public https addresses only."""
    for url in (
        "http://app.greenhouse.io/take_home_tests/1",
        "https://127.0.0.1/take_home_tests/1",
        "https://10.1.2.3/take_home_tests/1",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/take_home_tests/1",
    ):
        body = send_body(account["questionId"], application_id=606, url=url)
        answer = await send_test(client, account["atsToken"], body)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.json()["errors"][0]["field"] == "url"
    assert await GreenhouseInterview.filter(application_key="606").count() == 0


async def test_response_error_is_received_from_greenhouse_only(
    client: httpx.AsyncClient, account: Account
) -> None:
    """Greenhouse reports here a response of ours it could not accept."""
    report = {
        "api_call": "test_status",
        "errors": ["partner_status is 'complete' but partner_profile url is missing"],
        "partner_interview_id": "299506",
    }
    path = f"{PREFIX}/response_error"
    answer = await client.post(
        path, json=report, headers={"authorization": basic(account["atsToken"])}
    )
    assert (answer.status_code, answer.json()) == (200, {"status": 200})
    assert (await client.post(path, json=report)).status_code == 401
