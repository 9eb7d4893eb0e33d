"""Live-stream benchmark: command output from replica A to WebSocket watchers on A and B.

Two API replicas (two ``interviewlm serve`` processes) share one throwaway
PostgreSQL database and the local Redis. A command runs in the session's
bubblewrap sandbox through replica A (``runCommand``); every watcher is a
graphql-transport-ws client subscribed to ``sessionEvents``, in one of three
layouts (``LAYOUTS``): all on B, spread (alternating over A and B, as behind a
load balancer), all on A (the replica holding the sandbox).

Latency, per layout: the command prints ``L <run> <i> <time.time()>`` every 20 ms;
each watcher takes its receipt time of every line (time.time() on the same
machine) minus the time written in the line. The event's ``at`` (stamped when
its append transaction starts on A) splits each latency into "sandbox ->
event" (pipe, coalescer, group commit queue) and "event -> watcher" (commit,
publish, Redis or the local hand-over, the hub, Strawberry, WebSocket).
Low rate: the same, one line every 200 ms (nothing in flight), watchers spread.

Throughput (watchers on B): the command floods short lines as fast as it can; delivered
output events (and bytes) per second, summed over watchers, from the first
line written to the last line received by the last watcher.

Baseline, in the same run: a relay made of redis.asyncio pub/sub and
websockets alone (bench/stream_baseline.py), fed by a publisher here that
publishes the same lines at the same rate (one message per line for latency;
for the flood, the same lines cut into exactly the event sizes our server
produced in its flood), watched by the same watcher code.

Watchers run in two separate processes (``--worker``), not in this one; each
records only (receipt time, raw frame) while a run is live and parses after it.
CPU per process (replicas, PostgreSQL, Redis, relay, watchers, the rest of
the machine) is read from /proc around every run. ``--profile DIR`` probes both
replicas from inside (``install_probe``: event-loop lag, stage times, cProfile).

    .venv/bin/python bench/stream.py [--quick] [--watchers 1,100] [--profile DIR]

Cleans up what it starts: servers, relay, watcher processes, the sandbox, the
database (``interviewlm_bench_<random>``, dropped). Redis gets no keys
(pub/sub only); the bench checks that the Redis database it used is unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = "redis://127.0.0.1:6379"
WORKERS = 2
CHUNK_BYTES = 16 * 1024  # the server's coalescer flushes at 16 KiB (or 10 ms)
LINE_INTERVAL_S = 0.02  # 50 lines/s
LOW_RATE_INTERVAL_S = 0.2  # a line alone: the previous one is long delivered
LAYOUTS = ("B", "spread", "A")  # where the watchers are; the sandbox is on A

SUBSCRIPTION = """subscription($s: ID!, $a: Int!) {
  sessionEvents(sessionId: $s, afterSeq: $a) {
    lastSeq events { seq type at ... on CommandOutputEvent { data } }
  }
}"""
START = "mutation($s: ID!) { startSandbox(sessionId: $s) { id state } }"
TERMINATE = "mutation($s: ID!) { terminateSandbox(sessionId: $s) { id state } }"
RUN = """mutation($s: ID!, $c: String!, $t: Int) {
  runCommand(sessionId: $s, command: $c, timeoutSeconds: $t) { exitCode timedOut truncated }
}"""
LAST_SEQ = "query($s: ID!) { session(id: $s) { lastSeq } }"


# --------------------------------------------------------------------------- watcher process


class Watch:
    """One watcher: a WebSocket client that records frames while a run is live."""

    def __init__(self, client: Any, replica: int = 0) -> None:
        self.client = client
        self.replica = replica  # index into the URLs the watchers alternate over
        self.frames: list[tuple[float, str]] = []
        self.marker: str | None = None
        self.done = asyncio.Event()
        self.got_marker = False
        self.task = asyncio.create_task(self.pump())

    def expect(self, marker: str) -> None:
        self.frames = []
        self.marker = marker
        self.got_marker = False
        self.done = asyncio.Event()

    async def pump(self) -> None:
        connection = self.client.connection
        try:
            async for raw in connection:
                received = time.time()
                if len(raw) < 64 and '"ping"' in raw:  # keep-alive
                    await connection.send('{"type": "pong"}')
                    continue
                if self.marker is None:
                    continue
                self.frames.append((received, raw))
                # The marker may be cut over two events (output is emitted as it is
                # read; a read may end mid-write): the command's exit, which follows
                # all of its output, says when to look for it in the output as a whole.
                if self.marker in raw or (
                    '"command.exited"' in raw and self.marker in output_text(self.frames)
                ):
                    self.marker = None
                    self.got_marker = True
                    self.done.set()
        except Exception:  # closed: the run reports it as incomplete
            pass
        finally:
            self.done.set()


def output_text(frames: list[tuple[float, str]]) -> str:
    """The output events' data of these frames, joined (parsed: only at a command's end)."""
    parts = []
    for _, raw in frames:
        message = json.loads(raw)
        if message.get("type") == "next":
            events = message["payload"]["data"]["sessionEvents"]["events"]
            parts += [event.get("data") or "" for event in events]
    return "".join(parts)


def _at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def analyse(watch: Watch, run: int, *, flood: bool, split: bool) -> dict[str, Any]:
    """Parse one watcher's frames of one run (after the run: not on the clock)."""
    prefix = f"L {run} "
    latencies: list[float] = []
    to_event: list[float] = []
    to_watcher: list[float] = []
    events = lines = size = 0
    sizes: list[int] = []
    first_written: float | None = None
    last_received = 0.0
    carry = ""
    for received, raw in watch.frames:
        message = json.loads(raw)
        if message.get("type") != "next":
            continue
        for event in message["payload"]["data"]["sessionEvents"]["events"]:
            data = event.get("data")
            if not data:
                continue
            events += 1
            size += len(data)
            if flood:
                if split:
                    sizes.append(len(data))
                lines += data.count("\n")
                last_received = received
                if first_written is None and data.startswith(prefix):
                    first_written = float(data.split("\n", 1)[0].rsplit(" ", 1)[1])
                continue
            parts = (carry + data).split("\n")
            carry = parts.pop()
            at = _at(event["at"])
            for line in parts:
                if not line.startswith(prefix):
                    continue
                written = float(line.rsplit(" ", 1)[1])
                lines += 1
                last_received = received
                first_written = written if first_written is None else first_written
                latencies.append(received - written)
                to_watcher.append(received - at)
                if split:
                    to_event.append(at - written)
    return {
        "events": events,
        "lines": lines,
        "bytes": size,
        "first_written": first_written,
        "last_received": last_received,
        "latencies": [round(v, 6) for v in latencies],
        "to_event": [round(v, 6) for v in to_event],
        "to_watcher": [round(v, 6) for v in to_watcher],
        "complete": watch.got_marker,
        "sizes": sizes,
        "replica": watch.replica,
    }


async def worker() -> None:
    """Serve the harness: JSON commands on stdin, JSON replies on stdout."""
    from tests.wsclient import GraphQLWS

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    watches: list[Watch] = []

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async def connect(urls: list[str], j: int, token: str, session: str, after: int) -> Watch:
        client = await GraphQLWS.connect(urls[j % len(urls)], token)
        await client.subscribe(SUBSCRIPTION, {"s": session, "a": after})
        return Watch(client, j % len(urls))

    while line := await stdin.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "connect":
            gate = asyncio.Semaphore(20)

            async def one(
                j: int, gate: asyncio.Semaphore = gate, cmd: dict[str, Any] = cmd
            ) -> Watch:
                async with gate:
                    return await connect(cmd["urls"], j, cmd["token"], cmd["session"], cmd["after"])

            # Watcher j (numbered over all worker processes) goes to urls[j % len(urls)].
            first = cmd["first"]
            watches = list(await asyncio.gather(*(one(first + k) for k in range(cmd["n"]))))
            reply({"ok": True})
        elif op == "expect":
            for watch in watches:
                watch.expect(cmd["marker"])
            reply({"ok": True})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cmd["timeout"]):
                    await asyncio.gather(*(w.done.wait() for w in watches))
            results = [
                analyse(w, cmd["run"], flood=cmd["flood"], split=i == 0)
                for i, w in enumerate(watches)
            ]
            reply({"results": results})
        elif op == "close":
            for watch in watches:
                try:
                    await watch.client.close()
                except Exception as exc:  # its results are in; the others still close
                    print(f"worker: closing a watcher failed: {exc!r}", file=sys.stderr)
                watch.task.cancel()
            watches = []
            reply({"ok": True})


# --------------------------------------------------------------------------- probe (--profile)

PROBE_ENV = "INTERVIEWLM_BENCH_PROBE"


def install_probe(out_dir: str) -> None:
    """Measure a replica from inside (``--profile``; loaded by a sitecustomize the bench writes).

    - event-loop lag: a thread schedules a callback every 5 ms with
      ``call_soon_threadsafe`` and records how late the loop runs it;
    - stages of the live path, each as (now - the newest event's ``at``): commit done
      (EventLog._commit), hub received (SessionHub.deliver), sent to a watcher (the
      WebSocket text frame sent for a ``next`` message); and the Redis publish call's
      own duration;
    - cProfile of the event-loop thread.

    SIGUSR1 starts a measurement, SIGUSR2 writes it (``<label>.json`` and ``.prof``, the
    label read from ``<out_dir>/label-<pid>``) and stops it.
    """
    import cProfile
    import signal as signals
    import threading

    state: dict[str, Any] = {"loop": None, "profile": None, "on": False}
    lags: list[float] = []
    stages: dict[str, list[float]] = {"commit": [], "publish_call": [], "hub": [], "sent": []}
    # id(result data) -> (the data, its newest event's at): held, so the id is not reused
    sent_at: dict[int, tuple[object, float]] = {}

    import asyncio.events as events

    original_set = events._set_running_loop

    def set_running_loop(loop: Any) -> None:
        original_set(loop)
        if (
            loop is not None
            and state["loop"] is None
            and threading.current_thread() is (threading.main_thread())
        ):
            state["loop"] = loop
            threading.Thread(target=sample, daemon=True).start()

    events._set_running_loop = set_running_loop
    asyncio.events._set_running_loop = set_running_loop

    def sample() -> None:
        loop = state["loop"]

        def late(scheduled: float) -> None:
            if state["on"]:
                lags.append(time.perf_counter() - scheduled)

        while not loop.is_closed():
            time.sleep(0.005)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(late, time.perf_counter())

    def start(*_: Any) -> None:
        lags.clear()
        for values in stages.values():
            values.clear()
        state["profile"] = cProfile.Profile()
        state["profile"].enable()
        state["on"] = True

    def stop(*_: Any) -> None:
        state["on"] = False
        profile = state["profile"]
        if profile is None:
            return
        profile.disable()
        label = Path(out_dir, f"label-{os.getpid()}").read_text().strip()
        profile.dump_stats(str(Path(out_dir, f"{label}.prof")))
        Path(out_dir, f"{label}.json").write_text(json.dumps({"lag": lags, **stages}))
        state["profile"] = None

    signals.signal(signals.SIGUSR1, start)
    signals.signal(signals.SIGUSR2, stop)

    from gql import view
    from resolvers import bus, live
    from resolvers import events as log_events

    commit = log_events.EventLog._commit

    async def timed_commit(self: Any, session_id: Any, items: Any) -> Any:
        records = await commit(self, session_id, items)
        if state["on"] and records:
            stages["commit"].append(time.time() - records[-1].at.timestamp())
        return records

    publish = bus.EventBus.publish

    async def timed_publish(self: Any, channel: str, message: str, **local: Any) -> bool:
        t0 = time.perf_counter()
        ok = await publish(self, channel, message, **local)
        if state["on"]:
            stages["publish_call"].append(time.perf_counter() - t0)
        return ok

    deliver = live.SessionHub.deliver

    async def timed_deliver(self: Any, records: Any) -> None:
        if state["on"] and records:
            stages["hub"].append(time.time() - records[-1].at.timestamp())
        await deliver(self, records)

    encode = view.GraphQLView.encode_json

    def timed_encode(self: Any, data: object) -> str | bytes:
        text = encode(self, data)
        if state["on"] and isinstance(data, dict) and data.get("type") == "next":
            with contextlib.suppress(Exception):
                value = data["payload"]["data"]
                hit = sent_at.get(id(value))
                if hit is not None and hit[0] is value:
                    at = hit[1]
                else:
                    batch = next(iter(value.values()))
                    at = datetime.fromisoformat(batch["events"][-1]["at"]).timestamp()
                    if len(sent_at) > 64:
                        sent_at.clear()
                    sent_at[id(value)] = (value, at)
                stages["sent"].append(time.time() - at)
        return text

    for owner, name, wrapper in (
        (log_events.EventLog, "_commit", timed_commit),
        (bus.EventBus, "publish", timed_publish),
        (live.SessionHub, "deliver", timed_deliver),
        (view.GraphQLView, "encode_json", timed_encode),
    ):
        setattr(owner, name, wrapper)


SITECUSTOMIZE = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
if os.environ.get({PROBE_ENV!r}):
    try:  # (a sandboxed command may inherit the variables without seeing the tree)
        from bench.stream import install_probe
    except ImportError:
        pass
    else:
        install_probe(os.environ[{PROBE_ENV!r}])
"""


# --------------------------------------------------------------------------- harness


@dataclass
class Workers:
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self, count: int) -> None:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                limit=1 << 26,
                cwd=ROOT,
            )
            self.procs.append(proc)

    @staticmethod
    async def send(proc: asyncio.subprocess.Process, obj: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(obj) + "\n").encode())
        await proc.stdin.drain()

    @staticmethod
    async def recv(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError("a watcher process died")
        return json.loads(line)  # type: ignore[no-any-return]

    def share(self, n: int) -> list[tuple[asyncio.subprocess.Process, int]]:
        used = self.procs[: min(n, len(self.procs))]
        return [(p, n // len(used) + (i < n % len(used))) for i, p in enumerate(used)]

    async def connect(self, n: int, **target: Any) -> list[asyncio.subprocess.Process]:
        shares = self.share(n)
        first = 0
        for proc, k in shares:
            await self.send(proc, {"op": "connect", "n": k, "first": first, **target})
            first += k
        for proc, _ in shares:
            await self.recv(proc)
        return [p for p, _ in shares]

    async def close(self, procs: list[asyncio.subprocess.Process]) -> None:
        for proc in procs:
            await self.send(proc, {"op": "close"})
        for proc in procs:
            await self.recv(proc)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                if proc.stdin is not None:
                    proc.stdin.close()  # EOF: the worker exits (killed below if not)
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


CLK_TCK = os.sysconf("SC_CLK_TCK")
ROLES = ("A", "B", "postgres", "redis", "relay", "watchers", "harness", "other")


@dataclass
class ProcStat:
    comm: str
    ppid: int
    cpu: float  # user + system seconds


def snapshot() -> dict[int, ProcStat]:
    procs: dict[int, ProcStat] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw.rsplit(")", 1)[1].split()
        procs[int(entry.name)] = ProcStat(comm, int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK)
    return procs


def breakdown(
    before: dict[int, ProcStat], after: dict[int, ProcStat], roles: dict[int, str]
) -> dict[str, float]:
    """CPU seconds used per role between two snapshots (a process counts for its ancestor's
    role: the command running in A's sandbox for A, as long as it is alive at the end)."""
    used = dict.fromkeys(ROLES, 0.0)

    def role(pid: int) -> str:
        seen = pid
        while seen > 1 and seen in after:
            if seen in roles:
                return roles[seen]
            seen = after[seen].ppid
        comm = after[pid].comm
        if comm == "postgres":
            return "postgres"
        return "redis" if comm.startswith("redis") else "other"

    for pid, now in after.items():
        then = before.get(pid)
        used[role(pid)] += now.cpu - (then.cpu if then else 0.0)
    return used


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    to_event: list[float] = field(default_factory=list)
    to_watcher: list[float] = field(default_factory=list)
    events: int = 0
    lines: int = 0
    bytes: int = 0
    seconds: float = 0.0
    complete: bool = True
    expected_lines: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per role
    wall: float = 0.0  # seconds the CPU was counted over
    sizes: list[int] = field(default_factory=list)  # flood: characters per event (watcher 0)
    by_replica: dict[int, list[float]] = field(default_factory=dict)  # latencies per URL index
    probe: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # --profile

    def cores(self, role: str) -> float:
        return self.cpu.get(role, 0.0) / self.wall if self.wall else float("nan")

    def us_per_delivery(self, role: str) -> float:
        """CPU of the fan-out process per output event delivered to one watcher."""
        return self.cpu.get(role, 0.0) * 1e6 / self.events if self.events else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick: bool = args.quick
        self.counts: list[int] = args.watchers
        self.latency_lines = 100 if self.quick else 300
        self.low_rate_lines = 15 if self.quick else 40
        self.profile_dir: Path | None = args.profile
        self.background = 0.0
        self.run_id = 100  # three digits: every run's lines have the same length
        self.tmp = Path(tempfile.mkdtemp(prefix="interviewlm-bench-stream-"))
        self.tmp.chmod(0o711)  # sandbox uids must traverse it to their roots
        self.db_name = f"interviewlm_bench_{secrets.token_hex(6)}"
        self.db_created = False
        self.redis_db = 0
        self.redis_keys_before = 0
        self.servers: list[Any] = []
        self.relay: asyncio.subprocess.Process | None = None
        self.relay_port = 0
        self.channel = f"interviewlm_bench:{secrets.token_hex(6)}"
        self.workers = Workers()
        self.account: dict[str, str] = {}
        self.redis: Any = None
        self.http: Any = None
        self.results: dict[tuple[str, int], dict[str, Outcome]] = {}

    # ---------------------------------------------------------------- set-up / tear-down

    async def setup(self) -> None:
        import asyncpg
        import httpx
        from redis import asyncio as aioredis

        from tests.server import free_port, start_server

        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            await admin.close()
        self.db_created = True
        self.redis_db = 1 + secrets.randbelow(15)
        redis_url = f"{REDIS_HOST}/{self.redis_db}"
        self.redis = aioredis.Redis.from_url(redis_url)
        self.redis_keys_before = await self.redis.dbsize()
        env = {
            "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{self.db_name}",
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            "OUTPUT_CAP_BYTES": str(16 << 20),
            # One bench session prints far more than an interview (the floods run
            # to tens of MB): the per-session recording cap would cut it short and
            # the bench would wait for lines that are never sent.
            "SESSION_OUTPUT_CAP_BYTES": "0",
        }
        server_env = dict(env)
        if self.profile_dir is not None:
            self.profile_dir = self.profile_dir.resolve()
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            probe_dir = self.tmp / "probe"
            probe_dir.mkdir()
            (probe_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
            server_env[PROBE_ENV] = str(self.profile_dir)
            server_env["PYTHONPATH"] = str(probe_dir)
        seeded = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gql", "seed-demo", "--json"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            check=True,
        )
        self.account = json.loads(seeded.stdout.decode().strip().splitlines()[-1])
        for name in ("a", "b"):
            root = self.tmp / f"sandboxes-{name}"
            root.mkdir()
            root.chmod(0o711)
            server = await asyncio.to_thread(
                start_server, {**server_env, "SANDBOX_ROOT": str(root)}, self.tmp
            )
            self.servers.append(server)
        self.http = httpx.AsyncClient(
            base_url=self.servers[0].url,
            headers={"authorization": f"Bearer {self.account['interviewerToken']}"},
            timeout=120,
        )
        await self.gql(START, s=self.account["sessionId"])
        self.relay_port = free_port()
        self.relay = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "stream_baseline.py"),
            "--port",
            str(self.relay_port),
            "--redis",
            redis_url,
            "--channel",
            self.channel,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert self.relay.stdout is not None
        ready = await asyncio.wait_for(self.relay.stdout.readline(), 20)
        if ready.strip() != b"ready":
            raise RuntimeError("the baseline relay did not start")
        await self.workers.start(WORKERS)

    async def teardown(self) -> None:
        """Stop and remove everything set-up started; each step runs even if one fails."""
        import asyncpg

        async def step(what: str, action: Any) -> None:
            try:
                await action()
            except Exception as exc:
                print(f"cleanup: {what} failed: {exc!r}", file=sys.stderr)

        async def stop_relay() -> None:
            assert self.relay is not None
            with contextlib.suppress(ProcessLookupError):
                self.relay.terminate()
            try:
                await asyncio.wait_for(self.relay.wait(), 10)
            except TimeoutError:
                self.relay.kill()
                await self.relay.wait()

        async def terminate_sandbox() -> None:
            try:
                await self.gql(TERMINATE, s=self.account["sessionId"])
            finally:
                await self.http.aclose()

        async def check_redis() -> None:
            try:
                leftover = [k async for k in self.redis.scan_iter(match="interviewlm_bench*")]
                if leftover:
                    await self.redis.delete(*leftover)
                after = await self.redis.dbsize()
                if after != self.redis_keys_before:  # someone else's keys: only reported
                    print(f"note: redis db {self.redis_db}: {self.redis_keys_before} -> {after}")
            finally:
                await self.redis.aclose()

        async def drop_database() -> None:
            admin = await asyncpg.connect(PG_ADMIN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            finally:
                await admin.close()

        await step("watcher processes", self.workers.stop)
        if self.relay is not None:
            await step("baseline relay", stop_relay)
        if self.http is not None:
            await step("terminateSandbox", terminate_sandbox)
        for server in self.servers:
            await step(f"server {server.port}", lambda s=server: asyncio.to_thread(s.stop))
        if self.redis is not None:
            await step("redis", check_redis)
        if self.db_created:
            await step(f"dropping {self.db_name}", drop_database)
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL error: {body['errors']}")
        return body["data"]  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- producers

    def flood_lines(self, watchers: int) -> int:
        """Per watcher count: long enough to time, bounded in total bytes delivered."""
        cap, total = (60_000, 2_000_000) if self.quick else (400_000, 6_000_000)
        return min(cap, total // watchers)

    def next_run(self) -> int:
        self.run_id += 1
        return self.run_id

    @staticmethod
    def latency_command(run: int, lines: int, interval: float) -> str:
        # One write per line (print() with several arguments writes each piece on its
        # own in the sandbox, where PYTHONUNBUFFERED=1: a line would reach the server in
        # pieces, and the first piece of a line, emitted alone, is no line yet).
        return (
            "python3 -c 'import sys, time\n"
            "w = sys.stdout.write\n"
            f"for i in range({lines}):\n"
            f'    w("L {run} %d %.6f\\n" % (i, time.time()))\n'
            "    sys.stdout.flush()\n"
            f"    time.sleep({interval})\n"
            f'w("Z {run} DONE\\n")\n'
            "sys.stdout.flush()'"
        )

    @staticmethod
    def flood_command(run: int, lines: int) -> str:
        return (
            "python3 -c 'import sys, time\n"
            "w = sys.stdout.write\n"
            f"for i in range({lines}):\n"
            f'    w("L {run} %d %.6f\\n" % (i, time.time()))\n'
            # The marker in a write of its own (one write, not print()'s pieces).
            "sys.stdout.flush()\n"
            f'w("Z {run} DONE\\n")\n'
            "sys.stdout.flush()'"
        )

    async def run_command(self, command: str) -> None:
        result = await self.gql(RUN, s=self.account["sessionId"], c=command, t=120)
        outcome = result["runCommand"]
        if outcome["exitCode"] != 0 or outcome["timedOut"] or outcome["truncated"]:
            raise RuntimeError(f"the benchmark command failed: {outcome}")

    def frame(self, seq: int, data: str) -> str:
        event = {"seq": seq, "type": "command.output", "at": datetime.now(UTC).isoformat()}
        event["data"] = data
        batch = {"lastSeq": seq, "events": [event]}
        return json.dumps(
            {"id": "1", "type": "next", "payload": {"data": {"sessionEvents": batch}}},
            separators=(",", ":"),
        )

    async def publish_lines(self, run: int, lines: int, interval: float) -> None:
        for i in range(lines):
            line = f"L {run} {i} {time.time():.6f}\n"
            await self.redis.publish(self.channel, self.frame(i + 1, line))
            await asyncio.sleep(interval)
        await self.redis.publish(self.channel, self.frame(lines + 1, f"Z {run} DONE\n"))

    async def publish_flood(self, run: int, lines: int, sizes: list[int]) -> None:
        """The flood's lines, cut into events the way the server cut ours (``sizes``)."""
        sizes = sizes or [CHUNK_BYTES] * (lines * 32 // CHUNK_BYTES)
        pending = ""
        i = 0
        for seq, size in enumerate(sizes[:-1], 1):
            while len(pending) < size and i < lines:
                stop = min(i + 64, lines)
                pending += "".join(f"L {run} {j} {time.time():.6f}\n" for j in range(i, stop))
                i = stop
            data, pending = pending[:size], pending[size:]
            await self.redis.publish(self.channel, self.frame(seq, data))
        pending += "".join(f"L {run} {j} {time.time():.6f}\n" for j in range(i, lines))
        await self.redis.publish(self.channel, self.frame(len(sizes), pending + f"Z {run} DONE\n"))

    async def publish_until_cancelled(self, run: int) -> None:
        while True:  # a relay client may register after a publish: repeat the warm-up
            await self.redis.publish(self.channel, self.frame(0, f"Z {run} DONE\n"))
            await asyncio.sleep(0.05)

    # ---------------------------------------------------------------- one run

    def roles(self) -> dict[int, str]:
        roles = {os.getpid(): "harness"}
        if self.servers:
            roles[self.servers[0].process.pid] = "A"
        if len(self.servers) > 1:
            roles[self.servers[1].process.pid] = "B"
        if self.relay is not None:
            roles[self.relay.pid] = "relay"
        roles.update({p.pid: "watchers" for p in self.workers.procs})
        return roles

    def probe_targets(self, system: str) -> dict[str, int]:
        if not self.profile_dir or system != "ours":
            return {}
        return {"A": self.servers[0].process.pid, "B": self.servers[1].process.pid}

    async def measure(
        self,
        procs: list[asyncio.subprocess.Process],
        produce: Any,
        run: int,
        *,
        flood: bool,
        expected_lines: int,
        probe: str = "",
    ) -> Outcome:
        expect = {"op": "expect", "marker": f"Z {run} DONE", "run": run, "flood": flood}
        for proc in procs:
            await Workers.send(proc, {**expect, "timeout": 60})
        for proc in procs:
            await Workers.recv(proc)
        probed = self.probe_targets("ours") if probe else {}
        for pid in probed.values():
            os.kill(pid, signal.SIGUSR1)
        before, wall0 = snapshot(), time.time()
        producer = asyncio.ensure_future(produce)
        replying = asyncio.ensure_future(asyncio.gather(*(Workers.recv(p) for p in procs)))
        try:
            await asyncio.wait({producer, replying}, return_when=asyncio.FIRST_COMPLETED)
            if producer.done() and producer.exception() is not None:
                raise RuntimeError("the producer failed") from producer.exception()
            replies = await replying
            after, wall1 = snapshot(), time.time()
        finally:
            for task in (producer, replying):
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # already reported above, or the run failed anyway
                    print(f"bench: a run task ended with {exc!r}", file=sys.stderr)
            assert self.profile_dir is not None or not probed
            for role, pid in probed.items():
                assert self.profile_dir is not None
                (self.profile_dir / f"label-{pid}").write_text(f"{probe}-{role}")
                os.kill(pid, signal.SIGUSR2)
        outcome = Outcome(expected_lines=expected_lines)
        outcome.sizes = replies[0]["results"][0]["sizes"]
        first: float | None = None
        last = 0.0
        for reply in replies:
            for r in reply["results"]:
                outcome.latencies += r["latencies"]
                outcome.by_replica.setdefault(r["replica"], []).extend(r["latencies"])
                outcome.to_event += r["to_event"]
                outcome.to_watcher += r["to_watcher"]
                outcome.events += r["events"]
                outcome.lines += r["lines"]
                outcome.bytes += r["bytes"]
                outcome.complete &= r["complete"] and r["lines"] >= expected_lines
                if r["first_written"] is not None:
                    first = min(first or r["first_written"], r["first_written"])
                last = max(last, r["last_received"])
        outcome.seconds = last - first if first is not None else float("nan")
        outcome.cpu = breakdown(before, after, self.roles())
        outcome.wall = wall1 - wall0
        if probed:
            await asyncio.sleep(0.5)  # the replicas write their probe files
            assert self.profile_dir is not None
            for role in probed:
                path = self.profile_dir / f"{probe}-{role}.json"
                with contextlib.suppress(OSError, ValueError):
                    outcome.probe[role] = json.loads(path.read_text())
        return outcome

    async def connect(
        self, system: str, layout: str, n: int
    ) -> tuple[list[asyncio.subprocess.Process], int]:
        session = self.account["sessionId"]
        if system == "ours":
            after = (await self.gql(LAST_SEQ, s=session))["session"]["lastSeq"]
            a, b = self.servers[0].ws_url, self.servers[1].ws_url
            urls = {"B": [b], "spread": [a, b], "A": [a]}[layout]
            token = self.account["interviewerToken"]
        else:
            after, urls, token = 0, [f"ws://127.0.0.1:{self.relay_port}/"], "unused"
        procs = await self.workers.connect(n, session=session, after=after, urls=urls, token=token)
        run = self.next_run()  # warm-up: every watcher is live before anything is timed
        warm = (
            self.run_command(self.latency_command(run, 3, LINE_INTERVAL_S))
            if system == "ours"
            else self.publish_until_cancelled(run)
        )
        await self.measure(procs, warm, run, flood=False, expected_lines=0)
        return procs, run

    async def latency(
        self,
        procs: list[asyncio.subprocess.Process],
        system: str,
        lines: int,
        interval: float,
        probe: str = "",
    ) -> Outcome:
        run = self.next_run()
        produce = (
            self.run_command(self.latency_command(run, lines, interval))
            if system == "ours"
            else self.publish_lines(run, lines, interval)
        )
        return await self.measure(
            procs, produce, run, flood=False, expected_lines=lines, probe=probe
        )

    async def system_runs(self, system: str, n: int) -> dict[str, Outcome]:
        """Ours: every layout's latency, the low rate (spread), the flood (all on B).
        The baseline: one relay, so one layout; the flood cut like ours."""
        out: dict[str, Outcome] = {}
        profiling = bool(self.profile_dir) and n == max(self.counts)
        for layout in LAYOUTS if system == "ours" else ("relay",):
            procs, _ = await self.connect(system, layout, n)
            probe = f"n{n}-{layout}" if profiling else ""
            out[f"latency {layout}"] = await self.latency(
                procs, system, self.latency_lines, LINE_INTERVAL_S, probe
            )
            if layout in ("spread", "relay"):
                out["low rate"] = await self.latency(
                    procs, system, self.low_rate_lines, LOW_RATE_INTERVAL_S
                )
            if layout in ("B", "relay"):
                run = self.next_run()
                lines = self.flood_lines(n)
                produce = (
                    self.run_command(self.flood_command(run, lines))
                    if system == "ours"
                    else self.publish_flood(run, lines, self.results[("ours", n)]["flood"].sizes)
                )
                out["flood"] = await self.measure(
                    procs, produce, run, flood=True, expected_lines=lines
                )
            # (after a failure the workers are killed by teardown, not closed here)
            await self.workers.close(procs)
        return out

    async def run(self) -> None:
        for n in self.counts:
            for system in ("ours", "baseline"):
                started = time.monotonic()
                self.results[(system, n)] = await self.system_runs(system, n)
                print(
                    f"  {n:>3} watchers, {system:<8} done in {time.monotonic() - started:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )

    # ---------------------------------------------------------------- report

    def report(self) -> bool:
        ms = 1000.0

        def lat(values: list[float]) -> str:
            return f"{pct(values, 50) * ms:>6.1f} {pct(values, 99) * ms:>6.1f}"

        print()
        print(
            f"Live streams: runCommand on replica A (it holds the sandbox), sessionEvents "
            f"watchers on B, on A, or alternating over both ({os.cpu_count()} cores; "
            f"background load before the run: {self.background:.2f} cores)"
        )
        print()
        print(
            f"Latency: {self.latency_lines} lines, one every {LINE_INTERVAL_S * 1000:.0f} ms; "
            "line written -> received by a watcher, ms, over all lines x all watchers; "
            "x = ours / relay"
        )
        header = (
            f"{'watchers':>8} {'layout':<6} | {'p50':>6} {'p99':>6} {'max':>6} | "
            f"{'x p50':>5} {'x p99':>5} | {'sbx->event':>10} {'p99':>5} | "
            f"{'event->w':>8} {'p99':>5} | {'on A p99':>8} {'on B p99':>8} | "
            f"{'us/dlv A':>8} {'B':>5}"
        )
        print(header)
        print("-" * len(header))
        for n in self.counts:
            b = self.results[("baseline", n)]["latency relay"]
            for layout in (*LAYOUTS, "relay"):
                system = "baseline" if layout == "relay" else "ours"
                o = self.results[(system, n)][f"latency {layout}"]
                flag = "" if o.complete else "  (incomplete!)"
                by = {i: o.by_replica.get(i, []) for i in (0, 1)}
                if layout == "spread":
                    on_a, on_b = by[0], by[1]
                else:
                    on_a, on_b = (by[0], []) if layout == "A" else ([], by[0])
                rows = (
                    f"{n:>8} {layout:<6} | {lat(o.latencies)} {max(o.latencies) * ms:>6.1f} | "
                    f"{pct(o.latencies, 50) / pct(b.latencies, 50):>5.1f} "
                    f"{pct(o.latencies, 99) / pct(b.latencies, 99):>5.1f} | "
                )
                if system == "ours":
                    rows += (
                        f"{'':>4}{lat(o.to_event)[:6]} {lat(o.to_event)[7:]:>5} | "
                        f"{'':>2}{lat(o.to_watcher)[:6]} {lat(o.to_watcher)[7:]:>5} | "
                        f"{pct(on_a, 99) * ms:>8.1f} {pct(on_b, 99) * ms:>8.1f} | "
                        f"{o.us_per_delivery('A'):>8.0f} {o.us_per_delivery('B'):>5.0f}"
                    )
                else:
                    rows += f"{'':>59}relay {o.us_per_delivery('relay'):>5.0f}"
                print(rows + flag)
        print(
            "  sbx->event = pipe, coalescer, commit queue on A (up to the event's `at`); "
            "event->w = commit, Redis,\n  the hub, Strawberry, WebSocket, watcher. "
            "us/dlv = CPU of a replica per output event delivered to one watcher (all watchers)."
        )
        print()
        print(
            f"Low rate: {self.low_rate_lines} lines, one every "
            f"{LOW_RATE_INTERVAL_S * 1000:.0f} ms (nothing in flight), watchers spread; ms"
        )
        header = f"{'watchers':>8} | {'ours p50':>8} {'p99':>6} | {'base p50':>8} {'p99':>6} | " + (
            f"{'x p50':>5} | {'sbx->event':>10} {'p99':>6}"
        )
        print(header)
        print("-" * len(header))
        for n in self.counts:
            o = self.results[("ours", n)]["low rate"]
            b = self.results[("baseline", n)]["low rate"]
            flag = "" if o.complete and b.complete else "  (incomplete!)"
            print(
                f"{n:>8} | {'':>2}{lat(o.latencies)} | {'':>2}{lat(b.latencies)} | "
                f"{pct(o.latencies, 50) / pct(b.latencies, 50):>5.1f} | "
                f"{'':>4}{lat(o.to_event)}{flag}"
            )
        print()
        print(
            "Flood: short lines (~29 bytes) as fast as the sandbox prints them, watchers on B; "
            "delivered output events per second, total over watchers"
        )
        header = (
            f"{'watchers':>8} {'lines':>7} | {'ours ev/s':>9} {'MB/s':>6} {'secs':>5} | "
            f"{'base ev/s':>9} {'MB/s':>6} {'secs':>5} | {'ratio':>5} | {'ev/watcher':>10} "
            f"{'KiB/ev':>6} | {'us/delivery B':>13} {'relay':>6}"
        )
        print(header)
        print("-" * len(header))
        ratios: dict[int, float] = {}
        for n in self.counts:
            o = self.results[("ours", n)]["flood"]
            b = self.results[("baseline", n)]["flood"]
            ratios[n] = (o.bytes / o.seconds) / (b.bytes / b.seconds)
            flag = "" if o.complete and b.complete else "  (incomplete!)"
            print(
                f"{n:>8} {o.expected_lines:>7} | {o.events / o.seconds:>9.0f} "
                f"{o.bytes / o.seconds / 1e6:>6.1f} {o.seconds:>5.2f} | "
                f"{b.events / b.seconds:>9.0f} {b.bytes / b.seconds / 1e6:>6.1f} "
                f"{b.seconds:>5.2f} | {ratios[n]:>5.2f} | {o.events // n:>10} "
                f"{o.bytes / max(o.events, 1) / 1024:>6.1f} | "
                f"{o.us_per_delivery('B'):>13.0f} {b.us_per_delivery('relay'):>6.0f}{flag}"
            )
        print(
            "  The baseline publishes the same lines cut into the same events as ours: "
            "ratio = ours / baseline (events/s = bytes/s)."
        )
        print()
        print("CPU during each run, in cores (2.0 = the whole machine)")
        header = f"{'watchers':>8} {'run':<23} | " + " ".join(f"{r:>8}" for r in ROLES)
        print(header)
        print("-" * len(header))
        for n in self.counts:
            for system in ("ours", "baseline"):
                for kind, outcome in self.results[(system, n)].items():
                    print(
                        f"{n:>8} {system[:4] + ' ' + kind:<23} | "
                        + " ".join(f"{outcome.cores(r):>8.2f}" for r in ROLES)
                    )
        print(
            "  watchers = both watcher processes; harness = this process (the baseline's "
            "publisher); other = the rest of the machine (other jobs; also sandbox commands "
            "that exited before the end of the run, whose CPU /proc no longer shows)"
        )
        top = max(self.counts)
        self.report_probe(top)
        print()
        spread = self.results[("ours", top)]["latency spread"].latencies
        p50, p99 = pct(spread, 50) * ms, pct(spread, 99) * ms
        low = pct(self.results[("ours", top)]["low rate"].latencies, 50) * ms
        checks = [
            (f"spread, {top} watchers: p99 <= 25 ms", p99 <= 25.0, f"{p99:.1f} ms"),
            (f"spread, {top} watchers: p50 <= 8 ms", p50 <= 8.0, f"{p50:.1f} ms"),
            (f"a line alone, {top} watchers: p50 <= 5 ms", low <= 5.0, f"{low:.1f} ms"),
        ]
        for n, floor in ((100, 0.8), (1, 0.5)):
            if n in ratios:
                checks.append(
                    (
                        f"flood, {n} watchers: >= {floor:.0%} of the relay",
                        ratios[n] >= floor,
                        f"{ratios[n]:.0%}",
                    )
                )
        for what, met, value in checks:
            print(f"Target {what}: {'MET' if met else 'MISSED'} ({value})")
        complete = all(o.complete for r in self.results.values() for o in r.values())
        if not complete:
            print("WARNING: some runs did not deliver every line to every watcher in time")
        return complete

    def report_probe(self, n: int) -> None:
        """--profile: event-loop lag and the stages of the live path, per replica, in ms."""
        rows = [
            (layout, role, data)
            for layout in LAYOUTS
            for role, data in self.results[("ours", n)][f"latency {layout}"].probe.items()
        ]
        if not rows:
            return
        print()
        print(
            f"Inside the replicas ({n} watchers, latency runs; --profile): ms, p50/p99 "
            "(n = samples); stages measured from the newest event's `at`"
        )
        stages = ("lag", "commit", "publish_call", "hub", "sent")
        header = f"{'layout':<6} {'replica':<7} | " + " | ".join(f"{s:>19}" for s in stages)
        print(header)
        print("-" * len(header))
        for layout, role, data in rows:
            cells = []
            for stage in stages:
                values = data.get(stage, [])
                cells.append(
                    f"{pct(values, 50) * 1000:>5.1f} {pct(values, 99) * 1000:>5.1f} "
                    f"n={len(values):<5}"
                    if values
                    else f"{'-':>19}"
                )
            print(f"{layout:<6} {role:<7} | " + " | ".join(cells))
        print(
            "  lag = how late the loop ran a callback scheduled every 5 ms; commit = append "
            "committed (A); publish_call = the Redis publish's own duration;\n  hub = a batch "
            "reached the session hub; sent = serialized for one watcher's WebSocket. cProfile "
            f"stats: {self.profile_dir}/n<N>-<layout>-<replica>.prof"
        )


async def background_load(seconds: float = 1.0) -> float:
    """Cores busy on this machine before we start anything (other jobs skew the numbers)."""

    def busy() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values[:8]) - values[3] - values[4], sum(values[:8])

    busy0, total0 = busy()
    await asyncio.sleep(seconds)
    busy1, total1 = busy()
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


async def main(args: argparse.Namespace) -> int:
    bench = Bench(args)
    started = time.monotonic()
    # SIGTERM cancels the run like Ctrl-C does, so the clean-up below still runs.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        print("setting up (database, two replicas, sandbox, baseline relay)...", file=sys.stderr)
        bench.background = await background_load()
        await bench.setup()
        await bench.run()
    finally:
        await bench.teardown()
    ok = bench.report()
    print(f"\n(total {time.monotonic() - started:.0f}s)")
    return 0 if ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer lines (under a minute)")
    parser.add_argument(
        "--watchers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 100],
        help="comma-separated watcher counts (default 1,100)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="probe both replicas at the largest watcher count (event-loop lag, stage "
        "timestamps, cProfile; see install_probe); .prof and .json files in DIR (kept)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker())
        return
    try:
        sys.exit(asyncio.run(main(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted (everything it started was stopped and removed)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
