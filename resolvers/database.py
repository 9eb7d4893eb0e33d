"""Opening, migrating and closing the database (Tortoise ORM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from models import APP_LABEL, MIGRATIONS_MODULE, MODEL_MODULES


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


async def ping_database() -> None:
    conn = Tortoise.get_connection("default")
    await conn.execute_query("SELECT 1")


# What ``interviewlm makemigrations`` hands to Tortoise's autodetector: it
# compares the models with the committed migrations, not with a database.
MAKEMIGRATIONS_CONFIG = tortoise_config("sqlite://:memory:")
