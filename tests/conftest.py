"""Test fixtures: one real database per run, the real app, a fresh account per test.

The suite runs once per database, in separate processes (Tortoise caches SQL
per dialect): ``TEST_DATABASE=sqlite`` (the default; bus in memory) and
``TEST_DATABASE=postgres`` (PostgreSQL on 127.0.0.1:5432 with the bus on the
real Redis at 127.0.0.1:6379). In CI both run and nothing of them skips.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from gql.app import create_app
from gql.settings import Settings
from resolvers.database import migrate
from resolvers.file_watch import FileWatch
from resolvers.seed import seed_demo
from tests.server import ServerProcess, start_server
from tests.support import Api

POSTGRES_ADMIN_DSN = os.environ.get(
    "TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_CREDENTIAL_KEY = secrets.token_urlsafe(32)
DB_FIXTURES = {"app", "client", "api", "account", "account_factory", "database_url", "live_server"}


def test_database() -> str:
    kind = os.environ.get("TEST_DATABASE", "sqlite")
    assert kind in {"sqlite", "postgres"}, f"TEST_DATABASE must be sqlite or postgres, not {kind}"
    return kind


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
    # Tests of PostgreSQL itself (a private cluster they start) run in its pass only;
    # tests of SQLite's own behaviour (its locking) in the SQLite pass only.
    other = "postgres" if test_database() != "postgres" else "sqlite"
    elsewhere = [item for item in items if item.get_closest_marker(other)]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses the database (runs in both database passes)")
    config.addinivalue_line("markers", "sqlite: runs in the SQLite pass only")


# -- in CI nothing skips but Modal's credential-gated tests -----------------------

ALLOWED_CI_SKIP = "Modal credentials not set"
"""The one skip reason (a prefix) CI accepts: Modal's API cannot be reached without them."""


def forbid_skips() -> bool:
    """CI (``CI`` set to anything but empty/0/false; scripts/test sets it) forbids skips."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skip in CI is a failure: a missing tool or service there would otherwise turn its
    tests into a green "s", and the containment they prove would silently go unchecked."""
    report = yield
    if not forbid_skips() or not report.skipped or hasattr(report, "wasxfail"):
        return report
    reason = skip_reason(report)
    if reason.startswith(ALLOWED_CI_SKIP):
        return report
    report.outcome = "failed"
    report.longrepr = (
        f"{item.nodeid} skipped in CI: {reason}\n"
        f"Only Modal's credential-gated tests may skip in CI ({ALLOWED_CI_SKIP!r}); "
        "install what the test needs (bash scripts/setup, bash scripts/services) "
        "or run as root, or unset CI to allow skips locally."
    )
    return report


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if test_database() == "sqlite":
        yield f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        return
    async with postgres_database("interviewlm_test") as url:
        yield url


@asynccontextmanager
async def postgres_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def sandbox_root() -> Path:
    """A SANDBOX_ROOT the sandbox uids can traverse (pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="interviewlm-sandboxes-"))
    root.chmod(0o711)
    return root


def make_settings(database_url: str, sandbox_root: Path, **overrides: Any) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "SANDBOX_ROOT": str(sandbox_root),
        "PUBLIC_URL": "http://interviewlm.test",
        # Shared with the server processes tests start (server_env), as replicas share it.
        "CREDENTIAL_KEY": TEST_CREDENTIAL_KEY,
        # The test app's loop stops whenever a test runs sync code (starting a child
        # server takes seconds): a long lease keeps child servers from declaring it lost.
        "REPLICA_LEASE_SECONDS": "600",
    }
    if test_database() == "postgres":
        env["REDIS_URL"] = REDIS_URL
    settings = Settings.from_env(env)
    return settings if not overrides else type(settings)(**{**_fields(settings), **overrides})


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


@pytest.fixture(scope="session")
async def app(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    await migrate(database_url)
    application = create_app(make_settings(database_url, sandbox_root()))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture(scope="session")
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


Account = dict[str, str]


@pytest.fixture
async def account(app: Starlette) -> AsyncIterator[Account]:
    """A fresh demo account (see ``interviewlm seed-demo``): tokens, question, session.

    Afterwards the app's live file watchers stop: a sandbox the test left writing would
    go on recording into the SQLite file later tests' child servers share, and their
    transactions would fail with "database is locked".
    """
    yield await new_account(app)
    for listener in app.state.services.sandboxes.listeners:
        if isinstance(listener, FileWatch):
            await listener.close()


async def new_account(app: Starlette) -> Account:
    services = app.state.services
    return await seed_demo(
        log=services.log,
        public_url=services.settings.public_url,
        max_file_bytes=services.settings.max_file_bytes,
    )


@pytest.fixture
def account_factory(app: Starlette) -> Callable[[], Awaitable[Account]]:
    return lambda: new_account(app)


def random_email() -> str:
    return f"cand-{secrets.token_hex(4)}@example.com"


@pytest.fixture(scope="session")
def server_env(app: Starlette) -> dict[str, str]:
    """Environment for child server processes sharing this run's database and bus."""
    settings = app.state.services.settings
    env = {
        "DATABASE_URL": settings.database_url,
        "SANDBOX_ROOT": str(settings.sandbox_root),
        "LOG_LEVEL": "WARNING",
        "CREDENTIAL_KEY": TEST_CREDENTIAL_KEY,
        # Child servers deliver no webhooks unless a test asks: with their default policy
        # (no private targets, retries after 5 s, 5 min...) they would take deliveries
        # the test app's worker is running on a fast schedule and push them out of reach.
        "WEBHOOK_CONCURRENCY": "0",
    }
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


@pytest.fixture(scope="session")
def live_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # Tests flood it (600 notes a test, from one token): writes get a roomier bucket than
    # the default, which tests/test_rate_limits.py covers.
    env = {**server_env, "RATE_LIMIT_WRITE": "5000/60s"}
    server = start_server(env, tmp_path_factory.mktemp("server"))
    yield server
    server.stop()
