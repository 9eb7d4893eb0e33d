"""Headless Chromium driven by Playwright, for pages the server renders (the session
report; later the web console).

The browser is Debian's ``chromium`` (installed by scripts/setup): Playwright's own
browser download is not reachable from this project's machines, so it is launched
through ``executable_path`` (``TEST_CHROMIUM`` overrides the path). One browser per
test run; each test gets a fresh context (no cookies or storage shared between
tests) and a page in it.

Pages may reach the loopback servers of the test and nothing else: every other
request is aborted and listed in ``BrowserPage.blocked``, so a page that needs a
CDN shows it the same way on every machine, online or not, and a test can assert
that a page is self-contained.

Use it from a test module with ``pytest_plugins = ["tests.browser"]``, or import the
fixtures::

    async def test_x(browser_page: BrowserPage, live_server: ServerProcess) -> None:
        await browser_page.page.goto(f"{live_server.url}/...")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, Route, async_playwright

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Chromium cannot use its own sandbox as root (tests and CI run as root), and
# /dev/shm is small in containers: shared memory goes to /tmp instead.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def chromium_path() -> str | None:
    return os.environ.get("TEST_CHROMIUM") or shutil.which("chromium")


@dataclass
class BrowserPage:
    page: Page
    blocked: list[str] = field(default_factory=list)
    """URLs of the requests aborted because they left loopback."""
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    """Uncaught exceptions in the page's scripts."""


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (bash scripts/setup installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _loopback_only(route: Route, request: Request, blocked: list[str]) -> None:
    host = urlsplit(request.url).hostname or ""
    if request.url.startswith(("data:", "blob:", "about:")) or host in LOOPBACK_HOSTS:
        await route.continue_()
    else:
        blocked.append(request.url)
        await route.abort("blockedbyclient")


@pytest.fixture
async def browser_page(browser: Browser) -> AsyncIterator[BrowserPage]:
    context = await browser.new_context()
    page = await context.new_page()
    watched = BrowserPage(page)

    async def route(route: Route, request: Request) -> None:
        await _loopback_only(route, request, watched.blocked)

    await context.route("**/*", route)
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    try:
        yield watched
    finally:
        await context.close()
