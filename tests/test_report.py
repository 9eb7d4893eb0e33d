"""``InterviewSession.report``: score, tallies, usage, activity; who may see it; its links."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from models.report import ReportLink
from resolvers.auth import hash_token
from resolvers.report import Pricing
from tests.conftest import Account
from tests.report_support import (
    CORRECT,
    NO_NEGATIVES,
    REPORT,
    REVOKE,
    RUN_COMMAND,
    SCORECARD,
    get_page,
    judged,
    links,
    page_path,
    report_of,
    report_url,
)
from tests.support import Api
from tests.test_testruns import write


async def test_before_any_test_run_the_score_is_null(api: Api, account: Account) -> None:
    report = await report_of(api, account)
    assert report["score"] is None
    assert report["finalTestRun"] is None
    assert report["visible"] == {"passed": 0, "total": 3}
    assert report["hidden"] == {"passed": 0, "total": 2}
    assert report["durationSeconds"] is None  # not started yet
    assert report["agent"] == {
        "runs": 0,
        "turns": 0,
        "apiRequests": 0,
        "inputTokens": 0,
        "outputTokens": 0,
        "costUsd": 0.0,
    }
    assert report["activity"] == {"commands": 0, "fileChanges": 0, "testRuns": 0}
    assert report["recommendations"] == []


async def test_the_newest_finished_run_is_the_final_one(api: Api, account: Account) -> None:
    """A better run earlier does not count: the report is of the code as it was last judged."""
    first, second = await judged(api, account, CORRECT, NO_NEGATIVES)
    assert (first["passed"], second["passed"]) == (5, 4)
    for command in ("true", "echo hi"):
        (await api(RUN_COMMAND, {"s": account["sessionId"], "c": command},
                   token=account["candidateToken"])).ok()  # fmt: skip
    report = await report_of(api, account)
    assert report["finalTestRun"]["id"] == second["id"]
    assert report["score"] == 80  # 4 of 5
    assert report["visible"] == {"passed": 3, "total": 3}
    assert report["hidden"] == {"passed": 1, "total": 2}
    assert report["activity"]["commands"] == 2
    assert report["activity"]["testRuns"] == 2
    assert report["activity"]["fileChanges"] >= 2  # the two saves of solution.py
    assert report["durationSeconds"] is not None
    assert report["durationSeconds"] >= 0


async def test_a_run_in_another_language_is_not_the_final_one(api: Api, account: Account) -> None:
    (run,) = await judged(api, account, CORRECT)
    await write(api, account, "solution.js", "function twoSum() { return []; }\n")
    other = await api(
        "mutation($s: ID!) { runTests(sessionId: $s, language: JAVASCRIPT) { id } }",
        {"s": account["sessionId"]},
        token=account["interviewerToken"],
    )
    other_id = other.ok()["runTests"]["id"]
    from tests.support import wait_until

    async def finished() -> bool:
        result = await api(
            "query($id: ID!) { testRun(id: $id) { status } }",
            {"id": other_id},
            token=account["interviewerToken"],
        )
        return result.ok()["testRun"]["status"] in {"FINISHED", "ERROR"}

    await wait_until(finished, timeout=60, what="the JavaScript run to end")
    report = await report_of(api, account)
    assert report["finalTestRun"]["id"] == run["id"]
    assert report["score"] == 100


async def test_the_recommendations_of_the_scorecards(api: Api, account: Account) -> None:
    card = {"s": account["sessionId"], "c": "Testing", "x": "good"}
    (await api(SCORECARD, card, token=account["interviewerToken"])).ok()
    (recommendation,) = (await report_of(api, account))["recommendations"]
    assert recommendation["interviewer"] == {"name": "Demo Admin"}
    assert recommendation["recommendation"] == "YES"
    assert recommendation["submittedAt"]


async def test_candidates_may_not_see_the_report(api: Api, account: Account) -> None:
    result = await api(REPORT, {"s": account["sessionId"]}, token=account["candidateToken"])
    assert result.codes == ["FORBIDDEN"]
    # The rest of their session still answers: only the report is refused.
    assert result.data["session"]["candidateName"] == "Ada Candidate"
    assert result.data["session"]["report"] is None
    revoked = await api(REVOKE, {"s": account["sessionId"]}, token=account["candidateToken"])
    assert revoked.codes == ["FORBIDDEN"]


async def test_another_account_finds_nothing(
    api: Api, account: Account, account_factory: object
) -> None:
    other = await account_factory()  # type: ignore[operator]
    url = await report_url(api, account)
    for query in (REPORT, REVOKE):
        result = await api(query, {"s": account["sessionId"]}, token=other["interviewerToken"])
        assert result.codes == ["NOT_FOUND"], result.body
    # Still live: the other account's revoke did nothing.
    assert await ReportLink.filter(token_hash=hash_token(url.rsplit("/", 1)[1])).count() == 1
    assert (await ReportLink.get(token_hash=hash_token(url.rsplit("/", 1)[1]))).revoked_at is None


async def test_the_ats_token_gets_the_report_too(api: Api, account: Account) -> None:
    report = await report_of(api, account, token="atsToken")
    assert report["reportUrl"].startswith("http://interviewlm.test/reports/ilmr_")


async def test_the_same_url_is_handed_out_again_and_revocation_ends_it(
    api: Api, account: Account, client: httpx.AsyncClient
) -> None:
    first = await report_url(api, account)
    assert await report_url(api, account) == first
    assert (await get_page(client, first)).status_code == 200
    # Only a hash is stored: the token itself is nowhere in the database.
    token = first.rsplit("/", 1)[1]
    link = await ReportLink.get(session_id=account["sessionId"])
    assert link.token_hash == hash_token(token)
    assert token not in repr(await ReportLink.filter(session_id=account["sessionId"]).values())

    revoked = await api(REVOKE, {"s": account["sessionId"]}, token=account["interviewerToken"])
    assert revoked.ok()["revokeReportLinks"] == 1
    assert (await get_page(client, first)).status_code == 404
    second = await report_url(api, account)
    assert second != first
    assert (await get_page(client, second)).status_code == 200
    assert (await get_page(client, first)).status_code == 404


async def test_an_expired_link_is_a_404_and_is_not_handed_out_again(
    app: Starlette, account: Account, client: httpx.AsyncClient
) -> None:
    session_id = uuid.UUID(account["sessionId"])
    issuer = links(app, ttl_s=3600)
    now = datetime.now(UTC)
    expired = await issuer.url_for(session_id, now=now - timedelta(hours=2))
    missing = await get_page(client, expired)
    assert missing.status_code == 404
    # Past half its life a link is not handed out again; it still opens until it expires.
    aging = await issuer.url_for(session_id, now=now - timedelta(minutes=40))
    assert (await get_page(client, aging)).status_code == 200
    fresh = await issuer.url_for(session_id, now=now)
    assert fresh not in {expired, aging}
    assert await issuer.url_for(session_id, now=now) == fresh


async def test_a_link_minted_under_another_secret_still_opens_but_is_not_reused(
    app: Starlette, account: Account, client: httpx.AsyncClient
) -> None:
    """Replicas without a shared REPORT_LINK_SECRET (or a rotated one) each mint their own
    link; every link opens on every replica, as links are checked by their stored hash."""
    session_id = uuid.UUID(account["sessionId"])
    old = await links(app, secret="a" * 40).url_for(session_id)
    new = await links(app, secret="b" * 40).url_for(session_id)
    assert old != new
    for url in (old, new):
        assert (await get_page(client, url)).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "nothing",
        "ilmr_" + "A" * 43,
        "ilmr_" + "A" * 42,
        "ilmr_" + "A" * 43 + "%00",
        "ilmi_" + "A" * 43,
    ],
)
async def test_wrong_tokens_get_the_same_bare_404(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(f"/reports/{token}")
    assert response.status_code == 404
    reference = await client.get("/reports/ilmr_" + "B" * 43)
    assert response.text == reference.text
    assert "Report not found" in response.text


async def test_a_link_shows_its_own_session_only(
    api: Api, account: Account, account_factory: object, client: httpx.AsyncClient
) -> None:
    other = await account_factory()  # type: ignore[operator]
    mine, theirs = await report_url(api, account), await report_url(api, other)
    mine_page, their_page = await get_page(client, mine), await get_page(client, theirs)
    assert account["sessionId"] != other["sessionId"]
    assert page_path(mine) != page_path(theirs)
    for page, own, foreign in ((mine_page, account, other), (their_page, other, account)):
        assert page.status_code == 200
        # Seeded candidates' emails differ per account (ada+<suffix>@...).
        email = await _email(api, own)
        assert email in page.text
        assert await _email(api, foreign) not in page.text


async def _email(api: Api, account: Account) -> str:
    result = await api(
        "query($s: ID!) { session(id: $s) { candidateEmail } }",
        {"s": account["sessionId"]},
        token=account["interviewerToken"],
    )
    return str(result.ok()["session"]["candidateEmail"])


def test_cost_is_metered_tokens_at_the_configured_prices() -> None:
    pricing = Pricing(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)
    assert pricing.cost(1_000_000, 0) == 3.0
    assert pricing.cost(120, 30) == pytest.approx((120 * 3 + 30 * 15) / 1e6)
    assert pricing.cost(0, 0) == 0.0
