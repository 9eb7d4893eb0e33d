"""Opening, migrating and closing the database (Tortoise ORM); telling an unreachable
database from other failures."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from tortoise import Tortoise
from tortoise.backends.base.client import TransactionContextPooled
from tortoise.backends.sqlite.client import SqliteTransactionWrapper
from tortoise.connection import get_connections
from tortoise.exceptions import DBConnectionError, TransactionManagementError
from tortoise.migrations.api import migrate as tortoise_migrate

from models import APP_LABEL, MIGRATIONS_MODULE, MODEL_MODULES
from resolvers.errors import ApiError

logger = logging.getLogger("interviewlm.database")

PING_TIMEOUT_S = 1.0
"""How long /healthz waits for ``SELECT 1``: a database that does not answer is down."""

# Failures that say the database cannot be reached right now (down, restarting, the
# connection cut) or that it rolled the work back (deadlock, serialization): trying the
# same work again later is right. ConnectionError: refused, reset, aborted sockets.
_TRANSIENT = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.TransactionRollbackError,
    # The database or the role is gone (dropped, renamed, access revoked): an outage to
    # the API's callers (503 UNAVAILABLE, appends wait), not a bug of the request.
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    DBConnectionError,
)
CONNECT_TIMEOUT_S = 5
"""asyncpg waits 60 s for a server that accepts connections and never answers; every
request needing a new connection would wait that long. ``?timeout=`` in DATABASE_URL
overrides it."""


class DatabaseUnavailable(ApiError):
    """The database could not be reached (within the retry budget, where there is one)."""

    code = "UNAVAILABLE"

    def __init__(self, message: str = "The database is unavailable; try again shortly.") -> None:
        super().__init__(message)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: Tortoise wraps some) is a transient database
    failure, rather than a bug or a refusal that would come back the same."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (DatabaseUnavailable, *_TRANSIENT)):
            return True
        if isinstance(current, TimeoutError) and _raised_by_the_driver(current):
            return True
        # asyncpg says "connection is closed" for a connection the server dropped.
        if isinstance(current, asyncpg.InterfaceError) and "closed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_by_the_driver(exc: BaseException) -> bool:
    """A timeout from asyncpg or Tortoise (connecting, acquiring from the pool) is the
    database's; one from anywhere else (a sandbox, an HTTP call) is not."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("asyncpg.", "tortoise.backends.")):
            return True
        tb = tb.tb_next
    return False


def normalize_url(url: str) -> str:
    """Tortoise spells PostgreSQL ``postgres://``; accept the common alias too."""
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


def tortoise_config(database_url: str) -> dict[str, Any]:
    url = normalize_url(database_url)
    if url.startswith("sqlite://") and not url.startswith("sqlite://:memory:"):
        Path(url.removeprefix("sqlite://").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)
        if "busy_timeout" not in url:
            # Several processes (CLI, a second server) may share the file:
            # wait for the writer's lock instead of failing at once.
            url += ("&" if "?" in url else "?") + "busy_timeout=30000"
    elif url.startswith("postgres://") and not re.search(r"[?&]timeout=", url):
        url += ("&" if "?" in url else "?") + f"timeout={CONNECT_TIMEOUT_S}"
    return {
        "connections": {"default": url},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def migrate(database_url: str) -> None:
    """Apply every committed migration not yet applied."""
    await tortoise_migrate(config=tortoise_config(database_url))
    await Tortoise.close_connections()


def _release_when_begin_fails() -> None:
    """Tortoise 1.1.9's pooled transaction (``in_transaction()`` on PostgreSQL) acquires a
    connection, points the task's context at the transaction, then sends BEGIN; when BEGIN
    fails (the connection died in between: the server restarted) it neither releases the
    connection nor restores the context. The pool loses a connection for good, and every
    later query of that task -- a long-lived loop's: the reaper, the lease heartbeat --
    goes to the dead transaction. This puts both back before the failure goes on."""
    enter = TransactionContextPooled.__aenter__
    if getattr(enter, "releases_on_failure", False):
        return

    async def __aenter__(self: TransactionContextPooled) -> Any:
        try:
            return await enter(self)
        except BaseException:
            token = getattr(self, "token", None)
            if token is not None:
                get_connections().reset(token)
            connection = getattr(self.client, "_connection", None)
            pool = getattr(self.client._parent, "_pool", None)
            if connection is not None and pool is not None:
                try:
                    await pool.release(connection)
                except Exception:  # it is dead anyway: the pool replaces it on next acquire
                    logger.warning("releasing a connection whose BEGIN failed", exc_info=True)
            raise

    __aenter__.releases_on_failure = True  # type: ignore[attr-defined]
    TransactionContextPooled.__aenter__ = __aenter__  # type: ignore[method-assign]


def _immediate_sqlite_transactions() -> None:
    """SQLite transactions take the write lock when they begin (``BEGIN IMMEDIATE``).

    Tortoise begins them deferred: a transaction that reads, then writes, must upgrade
    its lock, and in WAL mode that upgrade fails at once ("database is locked", no busy
    wait) if another connection wrote in between -- any other process on the same file
    (a second server, the CLI, the test suite's child servers). Taken at BEGIN, the lock
    is waited for under ``busy_timeout`` like any write. Within one process Tortoise
    already runs one transaction at a time, so this costs nothing there."""
    wrapper = SqliteTransactionWrapper
    if getattr(wrapper.begin, "immediate", False):
        return

    async def begin(self: SqliteTransactionWrapper) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc

    begin.immediate = True  # type: ignore[attr-defined]
    wrapper.begin = begin  # type: ignore[method-assign]


async def open_database(database_url: str) -> None:
    _release_when_begin_fails()
    _immediate_sqlite_transactions()
    # Under uvicorn, requests run in tasks that do not inherit the context in
    # which the lifespan initialised Tortoise; the global fallback serves them.
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close_database() -> None:
    await Tortoise.close_connections()


async def ping_database(timeout_s: float = PING_TIMEOUT_S) -> None:
    """``SELECT 1`` within ``timeout_s`` (a stopped server refuses at once, but a hung one
    or a dropped network would hold /healthz for the connect timeout: a minute)."""
    conn = Tortoise.get_connection("default")
    async with asyncio.timeout(timeout_s):
        await conn.execute_query("SELECT 1")


# What ``interviewlm makemigrations`` hands to Tortoise's autodetector: it
# compares the models with the committed migrations, not with a database.
MAKEMIGRATIONS_CONFIG = tortoise_config("sqlite://:memory:")
