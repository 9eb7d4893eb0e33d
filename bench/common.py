"""What the in-process benchmarks share: a throwaway PostgreSQL database, a sandbox root
the sandbox uids can traverse, and the real app (migrated, lifespan running) on either.

Imported after the benchmark has put the repository on ``sys.path``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

PG_ADMIN = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/postgres")


def traversable_tempdir() -> Path:
    """A SANDBOX_ROOT the sandbox uids can traverse (temporary dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="interviewlm-bench-sandboxes-"))
    root.chmod(0o711)
    return root


def machine_state() -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} cores, load average {load}"


async def postgres_database() -> str:
    """A new, empty database on the local server: its name (drop it with drop_postgres)."""
    import asyncpg

    name = f"interviewlm_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


def postgres_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def running_app(
    database_url: str, sandbox_root: Path, **env: str
) -> AsyncIterator[Starlette]:
    """The app on ``database_url`` (migrated first), its lifespan running; ``env`` adds
    settings to the defaults a benchmark runs with."""
    from gql.app import create_app
    from gql.settings import Settings
    from resolvers.database import migrate

    await migrate(database_url)
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "SANDBOX_ROOT": str(sandbox_root),
            "PUBLIC_URL": "http://bench",
            "LOG_LEVEL": "WARNING",
            **env,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app
