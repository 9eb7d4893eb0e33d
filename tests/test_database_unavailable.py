"""Telling an unreachable database from a bug (resolvers.database.is_unavailable), with
the exceptions the real driver raises: a server that accepts connections and never
answers, a database that was dropped. Both must reach callers as UNAVAILABLE (503), not
as a 500 after asyncpg's 60 s default connect timeout. And SQLite shared by processes:
a transaction is not refused because another process wrote in the middle of it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid

import asyncpg  # type: ignore[import-untyped]
import pytest
from starlette.applications import Starlette
from tortoise import connections
from tortoise.transactions import in_transaction

from resolvers.database import CONNECT_TIMEOUT_S, is_unavailable, tortoise_config
from tests.conftest import POSTGRES_ADMIN_DSN


async def test_a_server_that_never_answers_is_unavailable_not_a_bug() -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_hang(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answers the startup message

    server = await asyncio.start_server(accept_and_hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError) as raised:
            await asyncpg.connect(f"postgres://x@127.0.0.1:{port}/db", timeout=0.3)
        assert is_unavailable(raised.value)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    # A timeout that is not the driver's (a sandbox's, an HTTP call's) is not an outage.
    with pytest.raises(TimeoutError) as elsewhere:
        await asyncio.wait_for(asyncio.sleep(1), 0.01)
    assert not is_unavailable(elsewhere.value)


async def test_a_dropped_database_is_unavailable() -> None:
    missing = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + f"/gone_{uuid.uuid4().hex[:8]}"
    with pytest.raises(asyncpg.InvalidCatalogNameError) as raised:
        await asyncpg.connect(missing)
    assert is_unavailable(raised.value)


def test_postgres_connections_time_out_in_seconds_not_a_minute() -> None:
    url = tortoise_config("postgres://u@h:5432/db")["connections"]["default"]
    assert url.endswith(f"?timeout={CONNECT_TIMEOUT_S}")
    kept = tortoise_config("postgres://u@h:5432/db?timeout=30")["connections"]["default"]
    assert kept == "postgres://u@h:5432/db?timeout=30"
    sqlite = tortoise_config("sqlite://:memory:")["connections"]["default"]
    assert "timeout=" not in sqlite


@pytest.mark.sqlite
async def test_a_transaction_that_reads_then_writes_survives_another_writer(
    app: Starlette,
) -> None:
    """SQLite (the SQLite pass): another process writing between a transaction's read and
    its write made the write fail at once ("database is locked": a WAL snapshot cannot
    be upgraded). Transactions take the write lock at BEGIN (resolvers.database), so the
    other writer waits for the commit instead."""
    path = app.state.services.settings.database_url.removeprefix("sqlite://").split("?")[0]
    table = f"lock_probe_{uuid.uuid4().hex[:8]}"
    db = connections.get("default")
    await db.execute_script(f"CREATE TABLE {table} (who TEXT)")
    other_done = threading.Event()

    def another_process_writes() -> None:
        with sqlite3.connect(path, timeout=10) as other:
            other.execute(f"INSERT INTO {table} VALUES ('other')")
        other_done.set()

    async with in_transaction() as conn:
        await conn.execute_query(f"SELECT count(*) FROM {table}")
        writer = asyncio.create_task(asyncio.to_thread(another_process_writes))
        await asyncio.sleep(0.3)
        assert not other_done.is_set()  # waiting for this transaction's lock
        await conn.execute_query(f"INSERT INTO {table} VALUES ('mine')")
    await writer
    _, rows = await db.execute_query(f"SELECT who FROM {table} ORDER BY rowid")
    assert [row["who"] for row in rows] == ["mine", "other"]
    await db.execute_script(f"DROP TABLE {table}")
