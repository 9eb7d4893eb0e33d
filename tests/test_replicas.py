"""Several replicas on one database and one Redis: fan-out, and surviving a Redis restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from resolvers.events import channel_for
from tests.conftest import REDIS_URL, Account
from tests.redis_server import RedisServer
from tests.server import ServerProcess, start_server
from tests.support import wait_until
from tests.test_live import add_notes, last_seq, watch
from tests.workspace_support import RUN, START
from tests.wsclient import collect_events, collect_seqs

pytestmark = pytest.mark.redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def replicas(
    server_env: dict[str, str], private_redis: RedisServer, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {**server_env, "REDIS_URL": private_redis.url}
    first = start_server(env, tmp_path)
    second = start_server(env, tmp_path)
    yield first, second
    first.stop()
    second.stop()


async def test_redis_restart_mid_stream_loses_nothing(
    replicas: tuple[ServerProcess, ServerProcess], private_redis: RedisServer, account: Account
) -> None:
    writer, reader = replicas
    client = await watch(reader, account, "interviewerToken")
    before = await add_notes(writer, account, 20)
    assert await collect_seqs(client, until_seq=before[-1]) == list(range(1, before[-1] + 1))

    private_redis.stop()
    during = await add_notes(writer, account, 20)  # stored; publishing fails quietly
    private_redis.start()
    # The reader's hub resubscribes once its bus has noticed Redis is back and reconnected.
    channel = channel_for(uuid.UUID(account["sessionId"]))
    await wait_until(lambda: private_redis.subscribers(channel) >= 1, 20, what="resubscribed")
    after = await add_notes(writer, account, 20)

    seqs = await collect_seqs(client, until_seq=after[-1], timeout=30)
    await client.close()
    assert seqs == list(range(before[-1] + 1, after[-1] + 1))
    assert set(during) <= set(seqs)
    async with httpx.AsyncClient() as http:
        for server in replicas:
            health = await http.get(f"{server.url}/healthz")
            assert health.json()["bus"] == "ok"


async def test_commands_on_one_replica_reach_watchers_on_another(
    server_env: dict[str, str], account: Account, tmp_path: Path
) -> None:
    env = {**server_env, "REDIS_URL": server_env.get("REDIS_URL", REDIS_URL)}
    runner, watcher = start_server(env, tmp_path), start_server(env, tmp_path)
    try:
        clients = [await watch(watcher, account, "interviewerToken") for _ in range(3)]
        headers = {"authorization": f"Bearer {account['candidateToken']}"}
        async with httpx.AsyncClient(base_url=runner.url, headers=headers, timeout=60) as http:
            started = await http.post(
                "/graphql", json={"query": START, "variables": {"s": account["sessionId"]}}
            )
            assert started.json()["data"]["startSandbox"]["state"] == "RUNNING"
            ran = await http.post(
                "/graphql",
                json={
                    "query": RUN,
                    "variables": {
                        "s": account["sessionId"],
                        "c": "for i in 1 2 3 4 5; do echo line-$i; done",
                        "t": 10,
                    },
                },
            )
            assert ran.json()["data"]["runCommand"]["exitCode"] == 0
        last = await last_seq(runner, account)
        for client in clients:
            events = await collect_events(client, until_seq=last)
            assert [e["seq"] for e in events] == list(range(1, last + 1))
            output = "".join(e.get("data", "") for e in events)
            assert output == "".join(f"line-{i}\n" for i in range(1, 6))
            await client.close()
    finally:
        runner.stop()
        watcher.stop()
