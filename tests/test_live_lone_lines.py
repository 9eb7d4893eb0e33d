"""Lines printed one at a time by a command on replica A reach watchers on A and on B.

bench/stream.py flagged runs "incomplete" (a watcher missing lines or the end marker
for 60 s), most often in its low-rate scenario: a line every 200 ms, so every piece of
output is emitted alone by the output coalescer, with nothing in flight. Here the same
shape runs through the real server (two replicas sharing the database and Redis): every
watcher must get every line exactly once and in order, the command's ``command.exited``
after its last output, and the stored recording must hold the same. It does: the stall
was the bench's own watcher (``test_bench_watcher_finds_a_marker_cut_over_two_events``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bench.stream import Watch
from tests.conftest import REDIS_URL, Account
from tests.server import ServerProcess, start_server
from tests.test_live import last_seq
from tests.workspace_support import RUN, START
from tests.wsclient import GraphQLWS, ProtocolError

LINES = 12
RECORDING = """query($s: ID!, $a: Int!) { recording(sessionId: $s, afterSeq: $a, first: 500) {
  hasMore events { seq type ... on CommandOutputEvent { commandId data }
                            ... on CommandEvent { commandId exitCode } } } }"""
EVENTS = """subscription($s: ID!, $a: Int!) { sessionEvents(sessionId: $s, afterSeq: $a) {
  lastSeq events { seq type ... on CommandOutputEvent { commandId data }
                            ... on CommandEvent { commandId exitCode } } } }"""


def lone_lines(pause: float) -> str:
    """A line at a time, ``pause`` apart (each one alone in the coalescer), then the marker."""
    return (
        "python3 -c 'import time\n"
        f"for i in range({LINES}):\n"
        '    print("L", i, flush=True)\n'
        f"    time.sleep({pause})\n"
        'print("Z DONE", flush=True)\''
    )


def bursts() -> str:
    """Three lines in a burst (separate writes), then a pause: emits while one is in flight."""
    return (
        "python3 -c 'import time\n"
        f"for i in range({LINES}):\n"
        '    print("L", i, flush=True)\n'
        "    if i % 3 == 2:\n"
        "        time.sleep(0.2)\n"
        'print("Z DONE", flush=True)\''
    )


EXPECTED = "".join(f"L {i}\n" for i in range(LINES)) + "Z DONE\n"


@pytest.fixture(scope="module")
def replicas(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # Logs at INFO: when a watcher stalls, the replicas' logs say what they were doing.
    env = {**server_env, "REDIS_URL": server_env.get("REDIS_URL", REDIS_URL), "LOG_LEVEL": "INFO"}
    logs = tmp_path_factory.mktemp("lone-lines")
    a = start_server(env, logs)
    try:
        b = start_server(env, logs)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


async def until_exited(client: GraphQLWS, command_id: str) -> list[dict[str, Any]]:
    """Events of the subscription up to the command's ``command.exited`` (30 s at most:
    a stall fails the test instead of hanging it)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        async for message in client.messages():
            if message["type"] != "next":
                raise ProtocolError(f"unexpected {message}")
            events += message["payload"]["data"]["sessionEvents"]["events"]
            if any(
                e["type"] == "command.exited" and e.get("commandId") == command_id for e in events
            ):
                return events
    raise ProtocolError("subscription ended")


def check_stream(events: list[dict[str, Any]], after: int, command_id: str, where: str) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), f"{where}: seqs {seqs}"
    mine = [e for e in events if e.get("commandId") == command_id]
    assert mine[0]["type"] == "command.started", where
    assert mine[-1]["type"] == "command.exited", where
    outputs = [e for e in mine if e["type"] == "command.output"]
    # Every output before the exit: nothing of the command comes after it.
    assert all(e["seq"] < mine[-1]["seq"] for e in outputs), where
    assert "".join(e["data"] for e in outputs) == EXPECTED, f"{where}: {outputs}"


@pytest.mark.redis
@pytest.mark.parametrize(
    "command", [lone_lines(0.2), lone_lines(0.012), bursts()], ids=["200ms", "12ms", "bursts"]
)
async def test_every_watcher_gets_every_line_once_in_order(
    replicas: tuple[ServerProcess, ServerProcess], account: Account, command: str
) -> None:
    a, b = replicas
    session = account["sessionId"]
    headers = {"authorization": f"Bearer {account['candidateToken']}"}
    async with httpx.AsyncClient(base_url=a.url, headers=headers, timeout=60) as http:
        started = await http.post("/graphql", json={"query": START, "variables": {"s": session}})
        assert started.json()["data"]["startSandbox"]["state"] == "RUNNING", started.text
        after = await last_seq(a, account)
        watchers = []
        for server in (a, b, a, b):
            client = await GraphQLWS.connect(server.ws_url, account["interviewerToken"])
            await client.subscribe(EVENTS, {"s": session, "a": after})
            watchers.append((server, client))
        ran = await http.post(
            "/graphql", json={"query": RUN, "variables": {"s": session, "c": command, "t": 60}}
        )
        result = ran.json()["data"]["runCommand"]
        assert result["exitCode"] == 0, ran.text
        assert result["stdout"] == EXPECTED
        command_id = result["commandId"]
        for i, (server, client) in enumerate(watchers):
            where = f"watcher {i} on {'A' if server is a else 'B'} (logs: {server.log_path})"
            events = await until_exited(client, command_id)
            check_stream(events, after, command_id, where)
            await client.close()
        staff = {"authorization": f"Bearer {account['interviewerToken']}"}
        stored = await http.post(
            "/graphql",
            json={"query": RECORDING, "variables": {"s": session, "a": after}},
            headers=staff,
        )
        recording = stored.json()["data"]["recording"]
        assert not recording["hasMore"]
        check_stream(recording["events"], after, command_id, "the recording")


def frame(seq: int, type_: str, data: str | None = None) -> str:
    event: dict[str, Any] = {"seq": seq, "type": type_, "at": "2026-11-26T20:18:41+00:00"}
    if data is not None:
        event["data"] = data
    batch = {"lastSeq": seq, "events": [event]}
    return json.dumps({"id": "1", "type": "next", "payload": {"data": {"sessionEvents": batch}}})


class Frames:
    """A stand-in WebSocket connection: the frames put in its queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            yield await self.queue.get()

    async def send(self, message: str) -> None:
        pass


class Client:
    def __init__(self) -> None:
        self.connection = Frames()


async def test_bench_watcher_finds_a_marker_cut_over_two_events() -> None:
    """What the bench's "incomplete" runs were: the sandbox's Python writes print()'s
    pieces one by one (PYTHONUNBUFFERED=1), the server emits a piece read alone at once,
    and "Z 106 DONE" came as "Z" (seq 342) and " 106 DONE\\n" (seq 343): every byte
    delivered, in order, and the bench's watcher, matching the marker within one frame,
    waited 60 s for it. The command's exit ends the wait; a stale exit does not."""
    client = Client()
    watch = Watch(client)
    try:
        watch.expect("Z 106 DONE")
        frames = client.connection.queue
        await frames.put(frame(300, "command.exited"))  # the previous command's
        await frames.put(frame(340, "command.output", "L"))
        await frames.put(frame(341, "command.output", " 106 14 1795724321.388945\n"))
        await frames.put(frame(342, "command.output", "Z"))
        await frames.put(frame(343, "command.output", " 106 DONE\n"))
        while not frames.empty():
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert not watch.done.is_set()  # neither the stale exit nor half a marker
        await frames.put(frame(344, "command.exited"))
        async with asyncio.timeout(5):
            await watch.done.wait()
        assert watch.got_marker
        assert len(watch.frames) == 6
    finally:
        watch.task.cancel()
