"""Opening, migrating and closing the database (Tortoise ORM); telling an unreachable
database from other failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from tortoise import Tortoise
from tortoise.exceptions import DBConnectionError
from tortoise.migrations.api import migrate as tortoise_migrate

from models import APP_LABEL, MIGRATIONS_MODULE, MODEL_MODULES
from resolvers.errors import ApiError

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
    DBConnectionError,
)


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
        # asyncpg says "connection is closed" for a connection the server dropped.
        if isinstance(current, asyncpg.InterfaceError) and "closed" in str(current):
            return True
        current = current.__cause__ or current.__context__
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
            url += ("&" if "?" in url else "?") + "busy_timeout=10000"
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


async def open_database(database_url: str) -> None:
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
