"""PostgreSQL restarted mid-session (issue 13): a private cluster, stopped as if it crashed
while a sandbox prints lines, kept down a few seconds, started again.

Appends wait through the outage (resolvers.events retries), so the watcher sees every
line exactly once and the log's seqs have no gap; /healthz answers 503 naming the
database while it is down, quickly, and 200 after; other requests get a GraphQL error
with ``extensions.code`` UNAVAILABLE, never a 500.

Also: a connection that dies between the pool's acquire and BEGIN is given back.

Runs in the PostgreSQL pass only (the ``postgres`` marker; tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from tortoise import Tortoise
from tortoise.backends.asyncpg.client import TransactionWrapper
from tortoise.transactions import in_transaction

from models.session import InterviewSession
from tests.conftest import TEST_CREDENTIAL_KEY, sandbox_root
from tests.postgres_server import PostgresServer
from tests.server import ROOT, ServerProcess, start_server
from tests.support import wait_until
from tests.test_live import watch
from tests.workspace_support import RUN, START
from tests.wsclient import GraphQLWS

pytestmark = [pytest.mark.postgres, pytest.mark.db]

LINES = 400
SESSION = "query($s: ID!) { session(id: $s) { lastSeq } }"


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def served(
    private_postgres: PostgresServer, tmp_path: Path
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    env = {
        "DATABASE_URL": private_postgres.url,
        "SANDBOX_ROOT": str(sandbox_root()),
        "LOG_LEVEL": "WARNING",
        "CREDENTIAL_KEY": TEST_CREDENTIAL_KEY,
        "WEBHOOK_CONCURRENCY": "0",
        "REDIS_URL": "",  # one replica: the in-memory bus
    }
    seeded = subprocess.run(
        [sys.executable, "-m", "gql", "seed-demo"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    account = json.loads(seeded.stdout.strip().splitlines()[-1])
    server = start_server(env, tmp_path)
    yield server, account
    server.stop()


async def _gql(http: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> httpx.Response:
    return await http.post("/graphql", json={"query": query, "variables": variables})


async def _watch_all(client: GraphQLWS, into: list[dict[str, Any]]) -> None:
    async for message in client.messages():
        assert message["type"] == "next", message
        into.extend(message["payload"]["data"]["sessionEvents"]["events"])


async def test_postgres_restart_mid_stream_loses_nothing(
    served: tuple[ServerProcess, dict[str, str]], private_postgres: PostgresServer
) -> None:
    server, account = served
    session = account["sessionId"]
    candidate = {"authorization": f"Bearer {account['candidateToken']}"}
    interviewer = {"authorization": f"Bearer {account['interviewerToken']}"}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=candidate, timeout=120) as http,
        httpx.AsyncClient(base_url=server.url, headers=interviewer, timeout=30) as staff,
    ):
        started = await _gql(http, START, {"s": session})
        assert started.json()["data"]["startSandbox"]["state"] == "RUNNING", started.text
        client = await watch(server, account, "interviewerToken")
        seen: list[dict[str, Any]] = []
        watcher = asyncio.create_task(_watch_all(client, seen))
        command = f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.02; done"
        run = asyncio.create_task(_gql(http, RUN, {"s": session, "c": command, "t": 120}))

        def printed() -> bool:
            return sum(e.get("data", "").count("line-") for e in seen) >= 50

        await wait_until(printed, 30, what="the command is printing")

        await asyncio.to_thread(private_postgres.stop, "immediate")
        down_since = time.monotonic()
        health_down: list[tuple[int, dict[str, Any], float]] = []
        answers: list[httpx.Response] = []
        while time.monotonic() - down_since < 4:
            asked = time.monotonic()
            health = await staff.get("/healthz")
            health_down.append((health.status_code, health.json(), time.monotonic() - asked))
            answers.append(await _gql(staff, SESSION, {"s": session}))
            await asyncio.sleep(0.3)
        assert not run.done(), "the command outlasts the outage"
        await asyncio.to_thread(private_postgres.start)

        async def healthy() -> bool:
            return (await staff.get("/healthz")).status_code == 200

        await wait_until(healthy, 30, what="/healthz is 200 again")
        ran = (await run).json()
        assert ran["data"]["runCommand"]["exitCode"] == 0, ran

        last = (await _gql(staff, SESSION, {"s": session})).json()["data"]["session"]["lastSeq"]
        await wait_until(
            lambda: bool(seen) and seen[-1]["seq"] >= last, 30, what="the watcher caught up"
        )
        watcher.cancel()
        await client.close()
    db = await asyncpg.connect(private_postgres.url)
    try:
        rows = await db.fetch(
            "SELECT seq, payload FROM session_event WHERE session_id = $1 ORDER BY seq",
            uuid.UUID(session),
        )
    finally:
        await db.close()
    stored = [{"seq": r["seq"], **json.loads(r["payload"])} for r in rows]

    # /healthz: 503 naming the database while it was down, each answer within ~the probe's
    # bound; other requests: a GraphQL error with a code, never a 500.
    assert health_down
    assert all(status == 503 for status, _, _ in health_down), health_down
    assert all(body["database"] == "unavailable" for _, body, _ in health_down)
    assert max(took for _, _, took in health_down) < 2.5
    for answer in answers:
        assert answer.status_code != 500, answer.text
        codes = {e["extensions"]["code"] for e in answer.json()["errors"]}
        assert codes == {"UNAVAILABLE"}, answer.text

    # The outage was met mid-output: appends waited for the database and retried.
    assert "retrying" in server.log(), server.log()[-3000:]

    # The watcher saw every event once, in order, without a gap; every line exactly once.
    assert [e["seq"] for e in seen] == list(range(1, last + 1))
    assert [e["seq"] for e in stored] == list(range(1, last + 1))
    for events in (seen, stored):
        output = "".join(e.get("data", "") for e in events)
        assert output == "".join(f"line-{i}\n" for i in range(1, LINES + 1))


async def test_a_failed_begin_gives_back_its_connection_and_the_tasks_context(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies between the pool's acquire and BEGIN (as when the server
    restarts): Tortoise 1.1.9 kept the connection and left the task's context on the dead
    transaction (resolvers.database._release_when_begin_fails puts both back)."""
    client = Tortoise.get_connection("default")

    async def dead_begin(self: TransactionWrapper) -> None:
        raise ConnectionResetError("connection reset by peer")

    async def a_long_lived_loop() -> int:
        with monkeypatch.context() as patched:
            patched.setattr(TransactionWrapper, "begin", dead_begin)
            for _ in range(client.pool_maxsize + 1):  # more than the pool holds
                with pytest.raises(ConnectionResetError):
                    async with in_transaction():
                        pass
        assert Tortoise.get_connection("default") is client, "not the dead transaction"
        async with asyncio.timeout(10):  # the pool still has its connections
            return await InterviewSession.all().count()

    assert await asyncio.create_task(a_long_lived_loop()) >= 0
