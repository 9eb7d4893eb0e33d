"""``GET /reports/{token}``: what the page shows, what it never shows, and its headers."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

import httpx
from starlette.applications import Starlette

from tests.conftest import Account
from tests.report_support import (
    CREATE_SESSION,
    HIDDEN_MARKERS,
    NO_NEGATIVES,
    NOTE,
    RUN_COMMAND,
    SCORECARD,
    get_page,
    judged,
    links,
)
from tests.support import Api
from tests.test_terminal import INPUT, OPEN, wait_for_output
from tests.test_testruns import run_tests, write
from tests.workspace_support import start

EXPECTED_HEADERS = {
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex, nofollow, noarchive",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


async def page_of(app: Starlette, client: httpx.AsyncClient, session_id: str) -> httpx.Response:
    url = await links(app).url_for(uuid.UUID(session_id))
    return await get_page(client, url)


def text_of(html: str) -> str:
    """The page's text, tags removed and entities kept (enough for ``in`` checks)."""
    return re.sub(r"<[^>]+>", "", html)


async def test_the_page_shows_the_result_and_hides_hidden_cases(
    api: Api, app: Starlette, account: Account, client: httpx.AsyncClient
) -> None:
    await judged(api, account, NO_NEGATIVES)
    s = account["sessionId"]
    (
        await api(RUN_COMMAND, {"s": s, "c": "echo hello-report"}, token=account["candidateToken"])
    ).ok()
    (await api(NOTE, {"s": s, "t": "solid reasoning"}, token=account["interviewerToken"])).ok()
    card = {"s": s, "c": "Problem solving", "x": "clear and tested"}
    (await api(SCORECARD, card, token=account["interviewerToken"])).ok()

    page = await page_of(app, client, s)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    text = text_of(html)
    assert "Ada Candidate" in text
    assert "Two Sum" in text
    assert re.search(r'id="score">80<', html)
    assert 'id="visible">3/3<' in html
    assert 'id="hidden">1/2<' in html
    for name in ("example", "middle", "duplicates"):
        assert name in text
    # Hidden cases: pass/fail only -- no name, input, expected value or output.
    assert html.count('class="hidden-case"') == 2
    for marker in HIDDEN_MARKERS:
        assert marker not in html, marker
    assert "solid reasoning" in text
    assert "$ echo hello-report" in text
    assert "hello-report\n" in text  # its output, under the command
    assert "Tests: 4/5 passed" in text
    # The final code, highlighted (Pygments marks the function's name).
    assert '<span class="nf">two_sum</span>' in html
    assert "as tested in the final run" in text
    # The scorecard, whole: who, the verdict, the ratings and the summary.
    assert "Demo Admin" in text
    assert "Problem solving" in text
    assert "3/4" in text
    assert "clear and tested" in text


async def hostile_session(api: Api, account: Account) -> dict[str, str]:
    """A session in which the candidate (and the ATS) put markup everywhere they can."""
    created = await api(
        CREATE_SESSION,
        {
            "q": account["questionId"],
            "n": "<script>alert('name')</script>",
            "e": "x@example.com",
        },
        token=account["interviewerToken"],
    )
    session = {
        **account,
        "sessionId": created.ok()["createSession"]["session"]["id"],
        "candidateToken": created.ok()["createSession"]["candidateToken"],
    }
    token, s = session["candidateToken"], session["sessionId"]
    await start(api, session)
    await write(
        api,
        session,
        "solution.py",
        "def two_sum(nums, target):\n"
        "    print('<script>alert(\"printed\")</script>')\n"
        "    raise ValueError('<img src=x onerror=alert(1)>')\n"
        "# </code></pre><script>alert('code')</script>\n",
    )
    await write(api, session, "<img src=x onerror=alert(2)>.py", "x = '</style><script>'\n")
    ran = await api(RUN_COMMAND, {"s": s, "c": "echo '<script>alert(3)</script>'"}, token=token)
    ran.ok()
    terminal = await api(OPEN, {"s": s, "c": 80, "r": 24}, token=token)
    tid = terminal.ok()["openTerminal"]["id"]
    await api(INPUT, {"t": tid, "d": "echo '<script>alert(4)</script>' done-tty\n"}, token=token)
    await wait_for_output(api, session, tid, "done-tty\r\n")
    note = "<script>alert('note')</script>"
    (await api(NOTE, {"s": s, "t": note}, token=account["interviewerToken"])).ok()
    card = {"s": s, "c": "<b>bold</b>", "x": "<script>alert('card')</script>"}
    (await api(SCORECARD, card, token=account["interviewerToken"])).ok()
    run = await run_tests(api, session, "PYTHON", token="interviewerToken")
    assert run["status"] == "FINISHED", run
    return session


async def test_markup_from_the_candidate_is_shown_as_text(
    api: Api, app: Starlette, account: Account, client: httpx.AsyncClient
) -> None:
    session = await hostile_session(api, account)
    html = (await page_of(app, client, session["sessionId"])).text
    lowered = html.lower()
    # The page has no script and no image of its own: any here came from the session.
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<b>" not in lowered
    assert lowered.count("</style>") == 1
    # ... and what the candidate wrote is there, as text.
    text = text_of(html)
    for shown in (
        "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;",  # name, in the title and header
        "&lt;img src=x onerror=alert(2)&gt;.py",  # a file name
        "&lt;script&gt;alert(3)&lt;/script&gt;",  # a command and its output
        "&lt;script&gt;alert(4)&lt;/script&gt;",  # terminal output
        "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;",  # a note
        "&lt;img src=x onerror=alert(1)&gt;",  # a visible case's error
        "&lt;b&gt;bold&lt;/b&gt;",  # a scorecard's criterion
        "&lt;script&gt;alert(&#39;card&#39;)&lt;/script&gt;",  # its comment and summary
    ):
        assert shown in text, shown
    # What the solution printed, in the visible cases' rows.
    assert "&lt;script&gt;alert(&#34;printed&#34;)&lt;/script&gt;" in html


def style_hash(html: str) -> str:
    match = re.search(r"<style>(.*?)</style>", html, re.S)
    assert match is not None
    return base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()


def assert_strict_headers(response: httpx.Response) -> dict[str, str]:
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers[name] == value, name
    csp = dict(
        [*part.strip().split(" ", 1), ""][:2]
        for part in response.headers["content-security-policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    assert "script-src" not in csp  # default-src 'none': no script runs
    assert csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert csp["form-action"] == "'none'"
    # The one inline stylesheet is allowed by its hash, nothing else inline.
    assert csp["style-src"] == f"'sha256-{style_hash(response.text)}'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    return csp


async def test_strict_security_headers(
    app: Starlette, account: Account, client: httpx.AsyncClient
) -> None:
    page = await page_of(app, client, account["sessionId"])
    assert page.status_code == 200
    assert_strict_headers(page)
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    missing = await client.get("/reports/ilmr_" + "C" * 43)
    assert missing.status_code == 404
    assert_strict_headers(missing)
    # Nothing about the session or why: the same page for every wrong token.
    assert account["sessionId"] not in missing.text


async def test_every_section_renders_for_a_fresh_session(
    app: Starlette, account: Account, client: httpx.AsyncClient
) -> None:
    """Before anything happened: no run, no code, no agent -- still a whole page."""
    html = (await page_of(app, client, account["sessionId"])).text
    text = text_of(html)
    for shown in (
        "No finished test run",
        "Claude was not used.",
        "No notes.",
        "Session scheduled",
    ):
        assert shown in text, shown
    assert re.search(r'id="score">\u2013<', html)
