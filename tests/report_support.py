"""Shared steps of the report tests: a judged session, its report, its link."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from starlette.applications import Starlette

from resolvers.report_links import ReportLinks
from tests.conftest import Account
from tests.support import Api
from tests.test_testruns import run_tests, write
from tests.workspace_support import start

REPORT = """query($s: ID!) { session(id: $s) { id candidateName report {
  score visible { passed total } hidden { passed total }
  finalTestRun { id status passed total language }
  durationSeconds
  agent { runs turns apiRequests inputTokens outputTokens costUsd }
  activity { commands fileChanges testRuns }
  recommendations { interviewer { name } recommendation submittedAt }
  reportUrl
} } }"""
REPORT_URL = "query($s: ID!) { session(id: $s) { report { reportUrl } } }"
REVOKE = "mutation($s: ID!) { revokeReportLinks(sessionId: $s) }"
CREATE_SESSION = """mutation($q: ID!, $n: String!, $e: String!) {
  createSession(input: {questionId: $q, candidateName: $n, candidateEmail: $e,
                        language: PYTHON}) {
    session { id } candidateToken
  }
}"""
RUN_COMMAND = """mutation($s: ID!, $c: String!) {
  runCommand(sessionId: $s, command: $c) { exitCode stdout }
}"""
NOTE = "mutation($s: ID!, $t: String!) { addNote(sessionId: $s, text: $t) { seq } }"
SCORECARD = """mutation($s: ID!, $c: String!, $x: String!) {
  submitScorecard(sessionId: $s, input: {recommendation: YES, summary: $x,
    ratings: [{criterion: $c, score: 3, comment: $x}]}) { id }
}"""

CORRECT = """def two_sum(nums, target):
    seen = {}
    for i, n in enumerate(nums):
        if target - n in seen:
            return [seen[target - n], i]
        seen[n] = i
"""
# Passes the three visible cases and the hidden "large" one, fails hidden "negatives".
NO_NEGATIVES = """def two_sum(nums, target):
    seen = {}
    for i, n in enumerate(nums):
        if n < 0:
            return []
        if target - n in seen:
            return [seen[target - n], i]
        seen[n] = i
"""
# What only the hidden cases hold (see resolvers.seed.CASES): never on a report page.
HIDDEN_MARKERS = ("negatives", "-1, -2, -3", "1997", "998, 999", "5000")


async def report_of(api: Api, account: Account, token: str = "interviewerToken") -> Any:
    result = await api(REPORT, {"s": account["sessionId"]}, token=account[token])
    return result.ok()["session"]["report"]


async def report_url(api: Api, account: Account) -> str:
    result = await api(REPORT_URL, {"s": account["sessionId"]}, token=account["interviewerToken"])
    return str(result.ok()["session"]["report"]["reportUrl"])


def page_path(url: str) -> str:
    """The path of a report URL (minted under the test app's PUBLIC_URL)."""
    match = re.fullmatch(r"http://interviewlm\.test(/reports/ilmr_[A-Za-z0-9_-]{43})", url)
    assert match, url
    return match.group(1)


async def judged(api: Api, account: Account, *solutions: str) -> list[dict[str, Any]]:
    """Start the sandbox and run the tests once per solution (in PYTHON), in order."""
    await start(api, account)
    runs = []
    for body in solutions:
        await write(api, account, "solution.py", body)
        run = await run_tests(api, account, "PYTHON", token="interviewerToken")
        assert run["status"] == "FINISHED", run
        runs.append(run)
    return runs


async def get_page(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.get(page_path(url))


def links(app: Starlette, *, secret: str | None = None, ttl_s: int = 3600) -> ReportLinks:
    """The app's report links (its secret and PUBLIC_URL), with another secret or TTL."""
    settings = app.state.services.settings
    return ReportLinks(
        public_url=settings.public_url,
        secret=secret or settings.report_link_secret,
        ttl=timedelta(seconds=ttl_s),
    )
