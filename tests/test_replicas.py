"""Several replicas on one database and one Redis: fan-out, and surviving a Redis restart."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, Account
from tests.server import ServerProcess, free_port, start_server
from tests.test_live import add_notes, watch
from tests.workspace_support import RUN, START
from tests.wsclient import collect_events, collect_seqs

pytestmark = pytest.mark.redis


class RedisServer:
    """A private redis-server on a free loopback port, to be stopped and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return
            subprocess.run(["sleep", "0.05"], check=False)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


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
    await asyncio.sleep(1.5)  # the replicas notice and reconnect
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
        last = await http_last_seq(runner, account)
        for client in clients:
            events = await collect_events(client, until_seq=last)
            assert [e["seq"] for e in events] == list(range(1, last + 1))
            output = "".join(e.get("data", "") for e in events)
            assert output == "".join(f"line-{i}\n" for i in range(1, 6))
            await client.close()
    finally:
        runner.stop()
        watcher.stop()


async def http_last_seq(server: ServerProcess, account: Account) -> int:
    headers = {"authorization": f"Bearer {account['interviewerToken']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": "query($s: ID!) { session(id: $s) { lastSeq } }",
                "variables": {"s": account["sessionId"]},
            },
        )
        return int(response.json()["data"]["session"]["lastSeq"])
