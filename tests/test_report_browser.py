"""The report page in headless Chromium (tests/browser.py) served by a real
``interviewlm serve``: it renders, runs nothing the candidate wrote, loads nothing from
elsewhere, and prints."""

from __future__ import annotations

import asyncio
import re
import uuid

from playwright.async_api import Dialog
from starlette.applications import Starlette

from tests.browser import BrowserPage
from tests.conftest import Account
from tests.report_support import links, page_path
from tests.server import ServerProcess
from tests.support import Api
from tests.test_report_page import hostile_session

pytest_plugins = ["tests.browser"]

HOSTILE_NAME = "<script>alert('name')</script>"


async def test_the_report_renders_and_runs_nothing_of_the_candidates(
    browser_page: BrowserPage,
    live_server: ServerProcess,
    api: Api,
    app: Starlette,
    account: Account,
) -> None:
    session = await hostile_session(api, account)
    url = await links(app).url_for(uuid.UUID(session["sessionId"]))
    page = browser_page.page
    dialogs: list[str] = []
    dismissing: list[asyncio.Future[None]] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dismissing.append(asyncio.ensure_future(dialog.dismiss()))

    page.on("dialog", on_dialog)
    response = await page.goto(live_server.url + page_path(url), wait_until="load")
    assert response is not None
    assert response.status == 200
    assert await page.title() == f"Interview report: {HOSTILE_NAME} · Two Sum"
    assert await page.locator("#candidate").inner_text() == HOSTILE_NAME
    assert await page.locator("#score").inner_text() == "0"  # the solution always raises
    # What the candidate wrote is text on the page, never elements or scripts.
    assert await page.locator("script, img, iframe, object, embed").count() == 0
    assert "<script>alert(4)</script>" in await page.locator("#terminals").inner_text()
    assert not dialogs
    assert not browser_page.page_errors
    # Self-contained (nothing requested from elsewhere), and the CSP refused nothing of
    # ours: a refused stylesheet or resource is a console error in Chromium.
    assert not browser_page.blocked
    assert not browser_page.console_errors, browser_page.console_errors
    # The stylesheet applied (allowed by its hash): the page's background is its own.
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(246, 247, 250)"

    # Printing: long blocks unfold, the page is white, and Chromium makes a PDF of it.
    assert (
        await page.evaluate("getComputedStyle(document.querySelector('.block')).maxHeight")
        == "420px"
    )
    await page.emulate_media(media="print")
    assert (
        await page.evaluate("getComputedStyle(document.querySelector('.block')).maxHeight")
        == "none"
    )
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") in {
        "rgb(255, 255, 255)",
        "rgba(0, 0, 0, 0)",
    }
    pdf = await page.pdf(format="A4", print_background=False)
    assert pdf.startswith(b"%PDF-")
    pages = re.search(rb"/Type /Pages\b[^>]*?/Count (\d+)", pdf) or re.search(rb"/Count (\d+)", pdf)
    assert pages is not None
    assert int(pages.group(1)) >= 2  # the whole report, not a clipped screen
    assert len(pdf) > 20_000


async def test_a_wrong_link_is_a_bare_404_in_the_browser(
    browser_page: BrowserPage, live_server: ServerProcess
) -> None:
    page = browser_page.page
    response = await page.goto(f"{live_server.url}/reports/ilmr_{'D' * 43}", wait_until="load")
    assert response is not None
    assert response.status == 404
    assert await page.title() == "Report not found"
    assert not browser_page.blocked
    assert not browser_page.page_errors
