"""Scale benchmark: many live sessions over two replicas, and idle subscriptions on one.

Two API replicas (``interviewlm serve``) share a throwaway PostgreSQL database
and the local Redis, like bench/stream.py. Clients run in separate processes
(``--worker``): watcher processes hold the graphql-transport-ws connections, a
producer process sends the events. They share the machine (2 cores here) with
the servers: their CPU is reported as its own role.

Live (``--sessions N``): N sessions, each producing one line a second and
watched by one or two ``sessionEvents`` subscriptions (session i has 1 + i % 2),
the watchers of a session on alternating replicas. ``--sandboxes K`` of the
sessions print from a command in their real bubblewrap sandbox (``runCommand``,
a Python loop; sandboxes alternate between the replicas); the rest append
through the server's real GraphQL write path: ``addNote`` by the interviewer's
token over HTTP keep-alive, alternating replicas. Latency is line written
(the time in the line: printed in the sandbox, or just before the mutation is
sent) -> received by a watcher; "event->watcher" starts at the event's ``at``.
Reported: p50/p99, delivered/expected, CPU and RSS per replica, Redis (INFO)
and PostgreSQL (pg_stat_database deltas, our backends' CPU from /proc).

Idle (``--idle C``): fresh replicas (not in --quick). Replica A gets C plain connections (no
permessage-deflate) in three steps: connected (connection_ack) only, then one
subscription each, then a second subscription on C // 5 of them; RSS is read
after each step and CPU over ``--idle-seconds`` of idleness after the first
two (uvicorn's WebSocket pings, every 20 s by default, and the per-session
hubs' log polls). Replica B gets ``C // 5`` browser-like connections
(permessage-deflate, as browsers negotiate) with one subscription each: the
per-connection compression state.

    .venv/bin/python bench/scale.py [--quick] [--sessions 1000] [--sandboxes 20]
        [--idle 10000] [--seconds 60] [--idle-seconds 60] [--idle-sessions 100]
        [--db-pool N] [--server-env KEY=VALUE] [--ingest [ARGS]]

Recording ingest on PostgreSQL (the third scale target) is bench/ingest.py; ``--ingest``
runs it after the rest.

Cleans up what it starts: servers, client processes, sandboxes, the database
(``interviewlm_bench_<random>``, dropped). Redis gets no keys (pub/sub only;
the Redis database used is checked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_ADMIN = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = "redis://127.0.0.1:6379"
SUBSCRIPTION = """subscription($s: ID!, $a: Int!) {
  sessionEvents(sessionId: $s, afterSeq: $a) {
    lastSeq events { seq type at ... on NoteEvent { text } ... on CommandOutputEvent { data } }
  }
}"""
CREATE = """mutation($q: ID!, $n: String!, $e: String!) {
  createSession(input: {questionId: $q, candidateName: $n, candidateEmail: $e}) {
    session { id } } }"""
NOTE = "mutation($s: ID!, $t: String!) { addNote(sessionId: $s, text: $t) { seq } }"
START = "mutation($s: ID!) { startSandbox(sessionId: $s) { id state } }"
TERMINATE = "mutation($s: ID!) { terminateSandbox(sessionId: $s) { id state } }"
RUN = """mutation($s: ID!, $c: String!, $t: Int) {
  runCommand(sessionId: $s, command: $c, timeoutSeconds: $t) { exitCode timedOut truncated }
}"""


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------- clients


class RawHTTP:
    """HTTP/1.1 keep-alive POSTs on asyncio streams: a few µs of client CPU per request,
    where httpx would cost the shared 2 cores a good part of what the servers get."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: "
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        self.writer.write(f"{self.head}{len(data)}\r\n\r\n".encode() + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v.split(":")[1]) for v in lines if v.lower().startswith("content-length"))
        return status, json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)  # written -> received, s
    to_watcher: list[float] = field(default_factory=list)  # event at -> received, s
    written: list[float] = field(default_factory=list)  # write time of each sample
    kinds: list[str] = field(default_factory=list)


class Conn:
    """One graphql-transport-ws connection with any number of sessionEvents subscriptions."""

    def __init__(self, ws: Any, samples: Samples) -> None:
        self.ws = ws
        self.samples = samples
        self.ops = 0
        self.live: set[str] = set()  # subscriptions that delivered their first message
        self.recording = False
        self.task = asyncio.create_task(self.pump())

    @classmethod
    async def open(cls, url: str, token: str, deflate: bool, samples: Samples) -> Conn:
        import websockets

        ws = await websockets.connect(
            url,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            compression="deflate" if deflate else None,
            ping_interval=None,  # browsers send no pings; the server's are answered
            max_size=None,
            open_timeout=120,
        )
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await ws.recv())
        if ack["type"] != "connection_ack":
            raise RuntimeError(f"expected connection_ack, got {ack}")
        return cls(ws, samples)

    async def subscribe(self, session: str, after: int) -> None:
        self.ops += 1
        payload = {"query": SUBSCRIPTION, "variables": {"s": session, "a": after}}
        await self.ws.send(
            json.dumps({"id": str(self.ops), "type": "subscribe", "payload": payload})
        )

    async def pump(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                received = time.time()
                if '"next"' not in raw:
                    continue
                message = json.loads(raw)
                if len(self.live) < self.ops:
                    self.live.add(message["id"])
                if not self.recording:
                    continue
                for event in message["payload"]["data"]["sessionEvents"]["events"]:
                    text = event.get("text") or event.get("data") or ""
                    for line in text.split("\n"):
                        if line[:2] not in ("N ", "S "):
                            continue
                        written = float(line.rsplit(" ", 1)[1])
                        self.samples.latency.append(received - written)
                        at = datetime.fromisoformat(event["at"]).timestamp()
                        self.samples.to_watcher.append(received - at)
                        self.samples.written.append(written)
                        self.samples.kinds.append(line[0])


async def produce(
    targets: list[dict[str, Any]], token: str, start_at: float, seconds: float, pool: int
) -> dict[str, Any]:
    """addNote once a second per target session until ``start_at + seconds``; each session
    at its own phase within the second, so the load is even."""
    ports = sorted({t["port"] for t in targets})
    free: dict[int, asyncio.Queue[RawHTTP]] = {p: asyncio.Queue() for p in ports}
    for port in ports:
        for _ in range(pool):
            free[port].put_nowait(RawHTTP(port, token))
    sent = errors = late = 0
    durations: list[float] = []
    stop_at = start_at + seconds

    async def one(target: dict[str, Any], phase: float) -> None:
        nonlocal sent, errors, late
        tick = start_at + phase
        i = 0
        while tick < stop_at:
            await asyncio.sleep(max(0.0, tick - time.time()))
            client = await free[target["port"]].get()
            t0 = time.time()
            text = f"N {target['idx']} {i} {t0:.6f}"
            try:
                status, body = await client.post(
                    {"query": NOTE, "variables": {"s": target["session"], "t": text}}
                )
                if status != 200 or body.get("errors"):
                    errors += 1
                    if errors <= 3:
                        print(f"producer: {status} {body}", file=sys.stderr)
                else:
                    sent += 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors += 1
                client.close()
                if errors <= 3:
                    print(f"producer: {exc!r}", file=sys.stderr)
            finally:
                free[target["port"]].put_nowait(client)
            durations.append(time.time() - t0)
            i += 1
            tick += 1.0
            while tick < time.time():  # behind (the server is slower than a line a second):
                late += tick < stop_at  # a late line is skipped, not sent twice
                tick += 1.0

    n = len(targets)
    await asyncio.gather(*(one(t, k / max(n, 1)) for k, t in enumerate(targets)))
    for queue in free.values():
        while not queue.empty():
            queue.get_nowait().close()
    return {"sent": sent, "errors": errors, "late": late, "durations": durations}


async def all_live(conns: list[Conn]) -> int:
    """Wait until every subscription has delivered its first message (each subscribes one
    event before the session's last: the replay of that event says the subscription is
    set up); the number still waiting at the timeout."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        waiting = sum(c.ops - len(c.live) for c in conns)
        if not waiting:
            return 0
        await asyncio.sleep(0.2)
    return sum(c.ops - len(c.live) for c in conns)


async def worker() -> None:
    """Serve the harness: JSON commands on stdin, JSON replies on stdout."""
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    conns: list[Conn] = []
    samples = Samples()

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await stdin.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "connect":  # targets: [{url, session, after}]; session None: no subscription
            gate = asyncio.Semaphore(cmd.get("parallel", 50))
            failed = 0

            async def one(
                t: dict[str, Any], gate: asyncio.Semaphore = gate, cmd: dict[str, Any] = cmd
            ) -> Conn | None:
                nonlocal failed
                async with gate:
                    try:
                        conn = await Conn.open(t["url"], cmd["token"], cmd["deflate"], samples)
                        if t.get("session"):
                            await conn.subscribe(t["session"], t["after"])
                        return conn
                    except Exception as exc:
                        failed += 1
                        if failed <= 3:
                            print(f"worker: connect failed: {exc!r}", file=sys.stderr)
                        return None

            fresh = await asyncio.gather(*(one(t) for t in cmd["targets"]))
            conns += [c for c in fresh if c is not None]
            waiting = await all_live(conns)
            reply({"ok": True, "failed": failed, "conns": len(conns), "waiting": waiting})
        elif op == "subscribe":  # one more subscription on each of the first len(targets)
            for conn, t in zip(conns, cmd["targets"], strict=False):
                await conn.subscribe(t["session"], t["after"])
            reply({"ok": True, "waiting": await all_live(conns)})
        elif op == "record":
            for conn in conns:
                conn.recording = cmd["on"]
            reply({"ok": True, **({} if cmd["on"] else samples.__dict__)})
            samples.__init__()  # type: ignore[misc]
        elif op == "produce":
            reply(
                await produce(
                    cmd["targets"], cmd["token"], cmd["start_at"], cmd["seconds"], cmd["pool"]
                )
            )
        elif op == "close":
            gate = asyncio.Semaphore(200)

            async def shut(conn: Conn, gate: asyncio.Semaphore = gate) -> None:
                async with gate:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.ws.close(), 10)
                conn.task.cancel()

            await asyncio.gather(*(shut(c) for c in conns))
            conns = []
            reply({"ok": True})


# --------------------------------------------------------------------------- harness


class Client:
    """One client process (``--worker``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> Client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=1 << 28,
            cwd=ROOT,
        )
        return cls(proc)

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a client process died")
        return json.loads(line)  # type: ignore[no-any-return]

    async def call(self, obj: dict[str, Any]) -> dict[str, Any]:
        await self.send(obj)
        return await self.recv()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def all_call(clients: list[Client], cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for client, cmd in zip(clients, cmds, strict=True):
        await client.send(cmd)
    return [await c.recv() for c in clients]


def deal(items: list[Any], hands: int) -> list[list[Any]]:
    return [items[i::hands] for i in range(hands)]


# ---- load readings: /proc, Redis INFO, pg_stat_database


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu() -> dict[int, tuple[str, int, float]]:
    """pid -> (comm, ppid, user+system seconds) for every process."""
    out: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        f = raw.rsplit(")", 1)[1].split()
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        out[int(entry.name)] = (comm, int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK)
    return out


@dataclass
class Reading:
    at: float
    procs: dict[int, tuple[str, int, float]]
    redis: dict[str, Any]
    pg: dict[str, int]
    rss: dict[str, float]


class Probe:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    async def read(self) -> Reading:
        b = self.bench
        info: dict[str, Any] = {}
        for section in ("stats", "cpu", "memory", "clients"):
            info.update(await b.redis.info(section))
        row = await b.pg_admin.fetchrow(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched, tup_returned "
            "FROM pg_stat_database WHERE datname = $1",
            b.db_name,
        )
        rss = {name: rss_mb(s.process.pid) for name, s in zip("AB", b.servers, strict=False)}
        return Reading(time.time(), proc_cpu(), info, dict(row or {}), rss)

    def roles(self, reading: Reading) -> dict[int, str]:
        b = self.bench
        named = {s.process.pid: name for name, s in zip("AB", b.servers, strict=False)}
        named.update({c.proc.pid: "clients" for c in b.clients})
        named[os.getpid()] = "harness"
        ours = set()
        for pid, (comm, _, _) in reading.procs.items():
            if comm == "postgres":
                with contextlib.suppress(OSError):
                    if b.db_name in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                        ours.add(pid)
        roles: dict[int, str] = {}
        for pid, (comm, _, _) in reading.procs.items():
            seen = pid
            role = ""
            while seen > 1 and seen in reading.procs:
                if seen in named:
                    role = named[seen]
                    if seen != pid and role in "AB":
                        role = "sandboxes"  # commands in a replica's sandboxes
                    break
                seen = reading.procs[seen][1]
            if not role:
                role = "other"
                if comm == "postgres":
                    role = "pg ours" if pid in ours else "pg other"
            roles[pid] = role
        return roles

    def cores(self, r0: Reading, r1: Reading) -> dict[str, float]:
        roles = self.roles(r1)
        used: dict[str, float] = {}
        for pid, (_, _, cpu) in r1.procs.items():
            then = r0.procs.get(pid)
            role = roles[pid]
            used[role] = used.get(role, 0.0) + cpu - (then[2] if then else 0.0)
        wall = r1.at - r0.at
        redis_cpu = sum(float(r1.redis[k]) - float(r0.redis[k]) for k in CPU_KEYS)
        used["redis (INFO)"] = redis_cpu
        return {k: v / wall for k, v in used.items()}


CPU_KEYS = ("used_cpu_sys", "used_cpu_user")
ROLE_ORDER = (
    "A",
    "B",
    "sandboxes",
    "pg ours",
    "pg other",
    "redis (INFO)",
    "clients",
    "harness",
    "other",
)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.1f}" if values else "-"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="interviewlm-bench-scale-"))
        self.tmp.chmod(0o711)  # sandbox uids must traverse it to their roots
        self.db_name = f"interviewlm_bench_{secrets.token_hex(6)}"
        self.db_created = False
        self.redis_db = 1 + secrets.randbelow(15)
        self.redis_keys_before = 0
        self.redis: Any = None
        self.pg_admin: Any = None
        self.env: dict[str, str] = {}
        self.servers: list[Any] = []
        self.clients: list[Client] = []
        self.account: dict[str, str] = {}
        self.sessions: list[str] = []
        self.sandboxed: list[int] = []  # session indexes with a started sandbox
        self.probe = Probe(self)
        self.lines: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    # ---- set-up / tear-down

    async def setup(self) -> None:
        import asyncpg
        from redis import asyncio as aioredis

        self.pg_admin = await asyncpg.connect(PG_ADMIN)
        await self.pg_admin.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True
        redis_url = f"{REDIS_HOST}/{self.redis_db}"
        self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.redis_keys_before = await self.redis.dbsize()
        many = str(max(self.args.sandboxes * 2, 10))
        self.env = {
            "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0]
            + f"/{self.db_name}"
            + (f"?maxsize={self.args.db_pool}" if self.args.db_pool else ""),
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "ACCOUNT_SANDBOX_QUOTA": many,
            "COMMAND_TIMEOUT_MAX_SECONDS": "3600",
            "WEBHOOK_CONCURRENCY": "0",
            # One interviewer token writes for every session here (in production, one per
            # interviewer): the limiter still runs (a Redis call per write), never refuses.
            "RATE_LIMIT_WRITE": "1000000/1s",
            "RATE_LIMIT_PROCESS": "1000000/1s",
            # At the default 20 s lease, a replica this overloaded missed its renewals, was
            # declared lost, and the other ended its sandboxes mid-run (seen twice).
            "REPLICA_LEASE_SECONDS": "300",
        }
        self.env.update(dict(kv.split("=", 1) for kv in self.args.server_env))
        seeded = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gql", "seed-demo", "--json"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            check=True,
        )
        self.account = json.loads(seeded.stdout.decode().strip().splitlines()[-1])
        await self.start_servers()
        await self.create_sessions(self.args.sessions)

    async def start_servers(self) -> None:
        from tests.server import start_server

        for server in self.servers:
            await asyncio.to_thread(server.stop)
        self.servers = []
        for name in "ab":
            root = self.tmp / f"sandboxes-{name}"
            root.mkdir(exist_ok=True)
            root.chmod(0o711)
            env = {**self.env, "SANDBOX_ROOT": str(root)}
            self.servers.append(await asyncio.to_thread(start_server, env, self.tmp, timeout=60))

    async def create_sessions(self, n: int) -> None:
        started = time.monotonic()
        token = self.account["interviewerToken"]
        pool = [RawHTTP(self.servers[i % 2].port, token) for i in range(16)]
        made: list[str] = [""] * n
        todo = list(range(n))

        async def run(client: RawHTTP) -> None:
            while todo:
                i = todo.pop()
                variables = {"q": self.account["questionId"], "n": f"C {i}", "e": f"c{i}@x.dev"}
                status, body = await client.post({"query": CREATE, "variables": variables})
                if status != 200 or body.get("errors"):
                    raise RuntimeError(f"createSession: {status} {body}")
                made[i] = body["data"]["createSession"]["session"]["id"]

        try:
            await asyncio.gather(*(run(c) for c in pool))
        finally:
            for client in pool:
                client.close()
        self.sessions = made
        print(f"  {n} sessions created in {time.monotonic() - started:.1f}s", file=sys.stderr)

    async def gql(self, replica: int, query: str, **variables: Any) -> dict[str, Any]:
        client = RawHTTP(self.servers[replica].port, self.account["interviewerToken"])
        try:
            status, body = await client.post({"query": query, "variables": variables})
        finally:
            client.close()
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"GraphQL error: {status} {body}")
        return body["data"]  # type: ignore[no-any-return]

    async def last_seqs(self) -> dict[str, int]:
        import asyncpg

        conn = await asyncpg.connect(self.env["DATABASE_URL"].split("?")[0])
        try:
            rows = await conn.fetch("SELECT id::text, last_seq FROM interview_session")
        finally:
            await conn.close()
        return {r["id"]: r["last_seq"] for r in rows}

    async def teardown(self) -> None:
        async def step(what: str, action: Any) -> None:
            try:
                await action()
            except Exception as exc:
                print(f"cleanup: {what} failed: {exc!r}", file=sys.stderr)

        for client in self.clients:
            await step("client process", client.stop)
        await step("sandboxes", self.stop_sandboxes)
        for server in self.servers:
            await step(f"server {server.port}", lambda s=server: asyncio.to_thread(s.stop))
        if self.redis is not None:
            await step("redis", self.check_redis)
        if self.pg_admin is not None:
            await step(f"dropping {self.db_name}", self.drop_database)
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def stop_sandboxes(self) -> None:
        for i in self.sandboxed:
            await self.gql(i % 2, TERMINATE, s=self.sessions[i])
        self.sandboxed = []

    async def check_redis(self) -> None:
        try:
            after = await self.redis.dbsize()
            if after != self.redis_keys_before:  # someone else's keys: only reported
                print(f"note: redis db {self.redis_db}: {self.redis_keys_before} -> {after} keys")
        finally:
            await self.redis.aclose()

    async def drop_database(self) -> None:
        try:
            if self.db_created:
                await self.pg_admin.execute(
                    f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'
                )
        finally:
            await self.pg_admin.close()

    async def use_clients(self, n: int) -> list[Client]:
        while len(self.clients) < n:
            self.clients.append(await Client.start())
        return self.clients[:n]

    # ---- live: N sessions, a line a second each, 1-2 watchers each

    def sandbox_command(self, idx: int, start_at: float, stop_at: float) -> str:
        phase = idx / max(self.args.sessions, 1)
        return (
            "python3 -c 'import time\n"
            f"t = {start_at + phase:.6f}\n"
            "i = 0\n"
            f"while t < {stop_at:.6f}:\n"
            "    time.sleep(max(0, t - time.time()))\n"
            f'    print("S", {idx}, i, "%.6f" % time.time(), flush=True)\n'
            "    i += 1\n"
            "    t += 1\n'"
        )

    async def live(self) -> None:
        a = self.args
        n, k = a.sessions, min(a.sandboxes, a.sessions)
        clients = await self.use_clients(a.watcher_procs + 1)
        watchers, producer = clients[:-1], clients[-1]
        seqs = await self.last_seqs()
        token = self.account["interviewerToken"]
        targets = [
            {
                "url": self.servers[(i + j) % 2].ws_url,
                "session": sid,
                "after": seqs[sid] - 1,
            }
            for i, sid in enumerate(self.sessions)
            for j in range(1 + i % 2)
        ]
        random.Random(1).shuffle(targets)
        t0 = time.monotonic()
        replies = await all_call(
            watchers,
            [
                {"op": "connect", "targets": part, "token": token, "deflate": True}
                for part in deal(targets, len(watchers))
            ],
        )
        failed = sum(r["failed"] for r in replies)
        waiting = sum(r["waiting"] for r in replies)
        self.say(
            f"{len(targets)} watchers connected and subscribed in {time.monotonic() - t0:.1f}s "
            f"({failed} failed, {waiting} never delivered)"
        )
        t0 = time.monotonic()
        self.sandboxed = list(range(k))
        await asyncio.gather(*(self.gql(i % 2, START, s=self.sessions[i]) for i in range(k)))
        self.say(f"{k} sandboxes started in {time.monotonic() - t0:.1f}s")
        await asyncio.sleep(2)  # every subscription live before the first line
        warm, seconds = a.warmup, a.seconds
        start_at = time.time() + 2
        measure_from, measure_to = start_at + warm, start_at + warm + seconds
        await all_call(watchers, [{"op": "record", "on": True}] * len(watchers))
        notes = [
            {"idx": i, "session": self.sessions[i], "port": self.servers[i % 2].port}
            for i in range(k, n)
        ]
        await producer.send(
            {
                "op": "produce",
                "targets": notes,
                "token": token,
                "start_at": start_at,
                "seconds": warm + seconds,
                "pool": a.pool,
            }
        )
        commands = [
            asyncio.ensure_future(
                self.gql(
                    i % 2,
                    RUN,
                    s=self.sessions[i],
                    c=self.sandbox_command(i, start_at, measure_to),
                    t=int(warm + seconds + 120),
                )
            )
            for i in range(k)
        ]
        await asyncio.sleep(max(0.0, measure_from - time.time()))
        r0 = await self.probe.read()
        health = asyncio.ensure_future(self.health_probe(measure_to))
        await asyncio.sleep(max(0.0, measure_to - time.time()))
        r1 = await self.probe.read()
        load = loadavg()
        healthz = await health
        produced = await producer.recv()
        for outcome in await asyncio.gather(*commands, return_exceptions=True):
            if isinstance(outcome, BaseException):
                self.say(f"  a sandbox command failed: {outcome!r}")
        await asyncio.sleep(5)  # the last lines reach the watchers
        replies = await all_call(watchers, [{"op": "record", "on": False}] * len(watchers))
        await all_call(watchers, [{"op": "close"}] * len(watchers))
        await self.stop_sandboxes()
        self.report_live(replies, produced, r0, r1, healthz, load, measure_from, measure_to)

    async def health_probe(self, until: float) -> dict[str, list[float]]:
        """/healthz round trips per replica (a database and a Redis ping on the replica's
        event loop): how long a request waits behind the loop's other work."""
        out: dict[str, list[float]] = {"A": [], "B": []}
        clients = {name: s for name, s in zip("AB", self.servers, strict=True)}
        while time.time() < until:
            for name, server in clients.items():
                t0 = time.monotonic()
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    await reader.read()
                    writer.close()
                    out[name].append(time.monotonic() - t0)
            await asyncio.sleep(0.5)
        return out

    def report_live(
        self,
        replies: list[dict[str, Any]],
        produced: dict[str, Any],
        r0: Reading,
        r1: Reading,
        healthz: dict[str, list[float]],
        load: str,
        t_from: float,
        t_to: float,
    ) -> None:
        a = self.args
        n, k = a.sessions, min(a.sandboxes, a.sessions)
        lat: dict[str, list[float]] = {"S": [], "N": []}
        to_watcher: list[float] = []
        for r in replies:
            for latency, tw, written, kind in zip(
                r["latency"], r["to_watcher"], r["written"], r["kinds"], strict=True
            ):
                if t_from <= written < t_to:
                    lat[kind].append(latency)
                    to_watcher.append(tw)
        watchers_of = [1 + i % 2 for i in range(n)]
        expected = {
            "S": sum(watchers_of[:k]) * a.seconds,
            "N": sum(watchers_of[k:]) * a.seconds,
        }
        self.say()
        self.say(
            f"Live: {n} sessions ({k} sandboxes printing, {n - k} addNote producers), "
            f"1 line/s each, {sum(watchers_of)} watchers (1-2 per session, both replicas), "
            f"{a.seconds}s measured after {a.warmup}s; loadavg {load}"
        )
        header = (
            f"{'producer':<10} {'lines':>7} {'delivered':>10} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'max':>7}"
        )
        self.say(header)
        self.say("-" * len(header))
        for kind, name in (("S", "sandbox"), ("N", "addNote")):
            v = lat[kind]
            self.say(
                f"{name:<10} {expected[kind]:>7} "
                f"{len(v) / max(expected[kind], 1):>9.1%} "
                f"{ms(v, 50):>7} {ms(v, 99):>7} {ms(v, 100):>7}"
            )
        self.say(
            f"(lines = expected deliveries in the window: lines x watchers; event `at` -> "
            f"watcher p50 {ms(to_watcher, 50)} ms, p99 {ms(to_watcher, 99)} ms)"
        )
        d = produced["durations"]
        self.say(
            f"addNote requests: {produced['sent']} ok, {produced['errors']} failed, "
            f"{produced['late']} ticks skipped (the previous request still running), "
            f"{produced['sent'] / (a.warmup + a.seconds):.0f}/s; round trip p50 {ms(d, 50)} ms, "
            f"p99 {ms(d, 99)} ms"
        )
        self.report_load(r0, r1)
        for name, values in healthz.items():
            self.say(
                f"/healthz on {name}: p50 {ms(values, 50)} ms, p99 {ms(values, 99)} ms, "
                f"max {ms(values, 100)} ms (n={len(values)})"
            )

    def report_load(self, r0: Reading, r1: Reading) -> None:
        wall = r1.at - r0.at
        cores = self.probe.cores(r0, r1)
        self.say(
            "CPU, cores (2.0 = the machine): "
            + ", ".join(f"{role} {cores.get(role, 0.0):.2f}" for role in ROLE_ORDER)
        )
        self.say("RSS: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in r1.rss.items()))
        ops = (r1.redis["total_commands_processed"] - r0.redis["total_commands_processed"]) / wall
        self.say(
            f"Redis (shared with other jobs): {ops:.0f} commands/s "
            f"(instantaneous_ops_per_sec {r1.redis['instantaneous_ops_per_sec']}), "
            f"pubsub_channels {r1.redis['pubsub_channels']}, "
            f"used_memory {r1.redis['used_memory'] / 1e6:.1f} MB, "
            f"clients {r1.redis['connected_clients']}, "
            f"CPU {cores.get('redis (INFO)', 0.0):.2f} cores"
        )
        pg = {key: (r1.pg.get(key, 0) - r0.pg.get(key, 0)) / wall for key in r1.pg}
        self.say(
            "PostgreSQL (our database), per second: "
            + ", ".join(f"{key} {value:.0f}" for key, value in pg.items())
            + f"; our backends' CPU {cores.get('pg ours', 0.0):.2f} cores"
        )

    # ---- idle: C subscriptions on one replica

    async def quiet(self, server: Any, *, limit: float = 120) -> float:
        """Wait until the replica's CPU use falls under 0.15 cores (what it was asked to do
        is done: subscribe messages are answered asynchronously); seconds waited."""
        t0 = time.monotonic()
        pid = server.process.pid
        while time.monotonic() - t0 < limit:
            before = proc_cpu()[pid][2]
            await asyncio.sleep(1)
            if proc_cpu()[pid][2] - before < 0.15:
                break
        return time.monotonic() - t0

    async def idle_cpu(self, seconds: float) -> dict[str, float]:
        r0 = await self.probe.read()
        await asyncio.sleep(seconds)
        r1 = await self.probe.read()
        return self.probe.cores(r0, r1)

    async def idle(self) -> None:
        a = self.args
        count = a.idle
        if not a.quick:  # fresh replicas: nothing of the live run in their RSS
            await self.start_servers()
        clients = await self.use_clients(a.idle_procs)
        token = self.account["interviewerToken"]
        seqs = await self.last_seqs()
        a_srv, b_srv = self.servers
        await self.quiet(a_srv)
        await self.quiet(b_srv)
        base = await self.probe.read()
        cpu0 = await self.idle_cpu(a.idle_base_seconds)
        rows: list[tuple[str, int, float, float, dict[str, float] | None]] = []

        spread = self.sessions[: a.idle_sessions]

        def subs(n: int, offset: int = 0) -> list[dict[str, Any]]:
            return [
                {
                    "session": (sid := spread[(i + offset) % len(spread)]),
                    "after": seqs[sid] - 1,
                }
                for i in range(n)
            ]

        async def step(name: str, n: int, calls: list[dict[str, Any]], server: Any) -> None:
            before = rss_mb(server.process.pid)
            t0 = time.monotonic()
            replies = await all_call(clients, calls)
            failed = sum(r.get("failed", 0) + r["waiting"] for r in replies)
            await self.quiet(server)
            took = time.monotonic() - t0
            after = rss_mb(server.process.pid)
            rows.append((name, n, after - before, took, None))
            if failed:
                self.say(f"  {name}: {failed} failed or never delivered")

        targets = [{"url": a_srv.ws_url, "session": None} for _ in range(count)]
        await step(
            "A: connections (ack, no subscription)",
            count,
            [
                {"op": "connect", "targets": p, "token": token, "deflate": False, "parallel": 100}
                for p in deal(targets, len(clients))
            ],
            a_srv,
        )
        cpu1 = await self.idle_cpu(a.idle_seconds)
        await step(
            "A: + 1st subscription each",
            count,
            [{"op": "subscribe", "targets": p} for p in deal(subs(count), len(clients))],
            a_srv,
        )
        cpu2 = await self.idle_cpu(a.idle_seconds)
        rss_a = rss_mb(a_srv.process.pid)
        n_b = max(count // 5, 1)
        await step(
            f"A: + 2nd subscription on {n_b} connections",
            n_b,
            [{"op": "subscribe", "targets": p} for p in deal(subs(n_b, 1), len(clients))],
            a_srv,
        )
        targets = [{"url": b_srv.ws_url, **t} for t in subs(n_b)]
        await step(
            "B: deflate connection + 1 subscription",
            n_b,
            [
                {"op": "connect", "targets": p, "token": token, "deflate": True, "parallel": 100}
                for p in deal(targets, len(clients))
            ],
            b_srv,
        )
        load = loadavg()
        await all_call(clients, [{"op": "close"}] * len(clients))
        hubs = min(count, len(spread))
        self.say()
        self.say(
            f"Idle: {count} connections on replica A ({hubs} sessions, so {hubs} hubs), "
            f"{n_b} on B; clients in {len(clients)} processes; loadavg {load}"
        )
        header = f"{'step':<42} {'count':>6} {'RSS +MB':>8} {'KB each':>8} {'secs':>6}"
        self.say(header)
        self.say("-" * len(header))
        for name, n, delta, took, _ in rows:
            self.say(f"{name:<42} {n:>6} {delta:>8.1f} {delta * 1024 / n:>8.1f} {took:>6.1f}")
        total = rss_a - base.rss["A"]
        self.say(
            f"A with {count} idle subscriptions (1 per connection): RSS {rss_a:.0f} MB, "
            f"+{total:.0f} MB over the fresh replica = {total * 1024 / count:.1f} KB per "
            "subscription (target <= 50 KB; plain connections, see B for deflate)"
        )
        self.say(f"B (deflate + 1 subscription): {rows[3][2] * 1024 / rows[3][1]:.1f} KB each")
        for name, cores in (
            ("no connections", cpu0),
            (f"{count} connections", cpu1),
            (f"{count} subscriptions", cpu2),
        ):
            self.say(
                f"A idle CPU with {name}: {cores.get('A', 0.0):.3f} cores "
                f"(PostgreSQL ours {cores.get('pg ours', 0.0):.3f}, "
                f"Redis {cores.get('redis (INFO)', 0.0):.3f}, "
                f"clients {cores.get('clients', 0.0):.3f})"
            )


INGEST = ROOT / "bench" / "ingest.py"  # the third scale target: its own benchmark


async def run_ingest(extra: list[str]) -> int:
    """Recording ingest on PostgreSQL (bench/ingest.py, fresh databases of its own)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(INGEST), *extra, cwd=ROOT)
    return await proc.wait()


async def main(args: argparse.Namespace) -> int:
    raise_fd_limit()  # the replicas and the client processes inherit it
    bench = Bench(args)
    started = time.monotonic()
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    bench.say(
        f"bench/scale.py on {os.cpu_count()} cores, loadavg before {loadavg()}, "
        f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    try:
        print("setting up (database, two replicas, sessions)...", file=sys.stderr)
        await bench.setup()
        if args.sessions:
            await bench.live()
        if args.idle:
            await bench.idle()
    finally:
        await bench.teardown()
    bench.say(f"(total {time.monotonic() - started:.0f}s, loadavg after {loadavg()})")
    if args.ingest is not None:
        print("\nRecording ingest (bench/ingest.py):", flush=True)
        return await run_ingest(args.ingest.split())
    print("Recording ingest on PostgreSQL: --ingest, or .venv/bin/python bench/ingest.py")
    return 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (under a minute)")
    parser.add_argument("--sessions", type=int, help="live sessions (default 1000; quick 50)")
    parser.add_argument("--sandboxes", type=int, help="of which printing in a sandbox (20; 2)")
    parser.add_argument("--seconds", type=int, help="live: measured seconds (60; 8)")
    parser.add_argument("--warmup", type=int, help="live: seconds before measuring (10; 3)")
    parser.add_argument("--idle", type=int, help="idle subscriptions (10000; 500); 0: skip")
    parser.add_argument("--idle-seconds", type=int, help="idle CPU window (60; 2)")
    parser.add_argument(
        "--idle-sessions", type=int, default=100, help="sessions the idle subscriptions watch"
    )
    parser.add_argument("--watcher-procs", type=int, default=2)
    parser.add_argument("--idle-procs", type=int, default=4)
    parser.add_argument("--pool", type=int, default=32, help="addNote connections per replica")
    parser.add_argument(
        "--db-pool", type=int, help="each replica's database pool (Tortoise's maxsize; default 5)"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the replicas (what-if runs)",
    )
    parser.add_argument(
        "--ingest",
        nargs="?",
        const="--redis",
        metavar="ARGS",
        help="then run bench/ingest.py (recording ingest; default arguments: --redis)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker())
        return
    defaults = (
        {"sessions": 50, "sandboxes": 2, "seconds": 5, "warmup": 2, "idle": 500, "idle_seconds": 2}
        if args.quick
        else {"sessions": 1000, "sandboxes": 20, "seconds": 60, "warmup": 10, "idle": 10000}
        | {"idle_seconds": 60}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.idle_base_seconds = 2 if args.quick else 15
    try:
        sys.exit(asyncio.run(main(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted (everything it started was stopped and removed)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
