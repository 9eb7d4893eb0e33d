"""Live file changes benchmark: a change in a sandbox -> its ``file.written`` event.

A real app in this process (local sandboxes, SQLite by default), a session with
a running sandbox and a command inside it that writes ``w<n>.txt`` for each
number read on its stdin.  Each sample: write ``n`` to the command's stdin
(t0), then wait for the ``file.written`` of ``w<n>.txt`` on the session's bus
channel (what live subscribers get).  The latency includes the pipe and the
shell's write (well under a millisecond), the watcher's 50 ms debounce, the
read through the backend and the recording.  Samples are 200 ms apart, so the
rate cap never holds one back.

Two rounds: ``quiet``, and ``flood``: another session's sandbox rewriting 200
files in a loop meanwhile (its watcher is rate-capped; the question is whether
the measured session still gets its events on time).

``--scenarios``: the review's cases instead, each in a fresh session.
``burst``: 2,000 new files then an edit (edit_mark.txt): how long after the
loop the edit's event came and how many burst events came before it, then a
sync point's duration while the burst is still draining.  ``rm``: ``rm -rf``
of those 2,000 recorded files: ``file.deleted`` events, time until recorded,
and a sync point started right after (what ``runTests`` waits).  ``loop``: a
file rewritten in a loop and a log appended to in a loop for 10 s each:
events and stored bytes.

    .venv/bin/python bench/file_watch.py [-n 100] [--scenarios] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import machine_state, running_app, traversable_tempdir  # noqa: E402

START = "mutation($s: ID!) { startSandbox(sessionId: $s) { id } }"
WRITER = "while read n; do echo $n > w$n.txt; done"
FLOOD = "while true; do for i in $(seq 200); do echo $RANDOM > f$i.txt; done; done"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def running_sandbox(app: Any, http: Any) -> tuple[uuid.UUID, str]:
    from models.sandbox import SandboxRecord, SandboxState
    from resolvers.seed import seed_demo

    services = app.state.services
    account = await seed_demo(
        log=services.log,
        public_url=services.settings.public_url,
        max_file_bytes=services.settings.max_file_bytes,
    )
    headers = {"authorization": f"Bearer {account['candidateToken']}"}
    response = await http.post(
        "/graphql", json={"query": START, "variables": {"s": account["sessionId"]}}, headers=headers
    )
    assert not response.json().get("errors"), response.json()
    sid = uuid.UUID(account["sessionId"])
    record = await SandboxRecord.get(session_id=sid, state=SandboxState.RUNNING)
    return sid, record.backend_id or ""


async def measure(app: Any, n: int, flood: bool) -> list[float]:
    import httpx

    from resolvers.event_kinds import FileWritten
    from resolvers.events import channel_for, decode_batch

    services = app.state.services
    backend = services.sandboxes.backend
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        sid, sandbox_id = await running_sandbox(app, http)
        flooder = None
        if flood:
            _, other = await running_sandbox(app, http)
            flooder = await backend.exec(other, FLOOD)
        writer = await backend.exec(sandbox_id, WRITER)
        arrived: dict[str, float] = {}
        got = asyncio.Event()
        async with services.bus.subscribe(channel_for(sid)) as messages:

            async def follow() -> None:
                async for message in messages:
                    for record in decode_batch(message)[1]:
                        if isinstance(record.payload, FileWritten):
                            arrived.setdefault(record.payload.path, time.perf_counter())
                            got.set()

            follower = asyncio.create_task(follow())
            samples: list[float] = []
            for i in range(n + 5):  # 5 warm-up samples
                path = f"w{i}.txt"
                started = time.perf_counter()
                await writer.write_stdin(f"{i}\n".encode())
                while path not in arrived:
                    got.clear()
                    await asyncio.wait_for(got.wait(), 10)
                if i >= 5:
                    samples.append((arrived[path] - started) * 1000)
                await asyncio.sleep(0.2)
            follower.cancel()
        await writer.kill()
        if flooder is not None:
            await flooder.kill()
    return samples


class FileEvents:
    """The session's file events as subscribers get them: (arrival, type, path, size)."""

    def __init__(self, app: Any, session_id: uuid.UUID) -> None:
        self.app, self.session_id = app, session_id
        self.seen: list[tuple[float, str, str, int]] = []
        self.got = asyncio.Event()

    async def follow(self) -> None:
        from resolvers.event_kinds import FileDeleted, FileWritten
        from resolvers.events import channel_for, decode_batch

        async with self.app.state.services.bus.subscribe(channel_for(self.session_id)) as messages:
            async for message in messages:
                for record in decode_batch(message)[1]:
                    payload = record.payload
                    if isinstance(payload, FileWritten | FileDeleted):
                        size = (payload.size or 0) if isinstance(payload, FileWritten) else 0
                        kind = "written" if isinstance(payload, FileWritten) else "deleted"
                        self.seen.append((time.perf_counter(), kind, payload.path, size))
                        self.got.set()

    async def until(self, path: str) -> float:
        while not (found := [at for at, _, p, _ in self.seen if p == path]):
            self.got.clear()
            await asyncio.wait_for(self.got.wait(), 120)
        return found[0]


async def scenarios(app: Any) -> None:
    import httpx

    from models.sandbox import SandboxRecord, SandboxState

    services = app.state.services
    backend = services.sandboxes.backend
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        sid, sandbox_id = await running_sandbox(app, http)
        record = await SandboxRecord.get(session_id=sid, state=SandboxState.RUNNING)
        log = FileEvents(app, sid)
        follower = asyncio.create_task(log.follow())
        await asyncio.sleep(0.2)

        burst = "mkdir gen && for i in $(seq 1 2000); do echo $i > gen/g$i.txt; done"
        await (await backend.exec(sandbox_id, f"{burst}; date > edit_mark.txt")).wait()
        ended = time.perf_counter()
        edit_at = await log.until("edit_mark.txt")
        before = sum(1 for at, _, p, _ in log.seen if p.startswith("gen/") and at < edit_at)
        print(f"burst  edit event {(edit_at - ended) * 1000:.0f} ms after the loop ended,")
        print(f"       after {before} of the burst's 2000 events")
        started = time.perf_counter()
        await services.sandboxes.sync_workspace(record)
        print(f"       sync point during the burst: {time.perf_counter() - started:.2f} s")

        count = len(log.seen)
        rm = await backend.exec(sandbox_id, "rm -rf gen")
        await rm.wait()
        ended = time.perf_counter()
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await services.sandboxes.sync_workspace(record)
        synced = time.perf_counter() - started
        await asyncio.sleep(0.5)  # the sync point recorded the rest: let the bus deliver it
        deleted = [(at, p) for at, kind, p, _ in log.seen[count:] if kind == "deleted"]
        deletions, gone_at = [p for _, p in deleted], max(at for at, _ in deleted)
        print(f"rm     {len(deletions)} file.deleted event(s) {deletions[:3]},")
        print(f"       recorded {(gone_at - ended) * 1000:.0f} ms after rm ended;")
        print(f"       a sync point 0.1 s after rm took {synced:.2f} s")

        for name, loop in (
            ("clock.txt", "while true; do date +%s.%N > clock.txt; done"),
            ("app.log", "while true; do echo line $RANDOM$RANDOM$RANDOM >> app.log; done"),
        ):
            count = len(log.seen)
            writer = await backend.exec(sandbox_id, loop)
            await asyncio.sleep(10)
            await writer.kill()
            events = [size for _, kind, p, size in log.seen[count:] if p == name]
            print(f"loop   {name}: {len(events)} events, {sum(events) / 1e6:.2f} MB in 10 s")
        follower.cancel()


async def main_async(n: int, database_url: str | None, review: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="interviewlm-bench-watch-"))
    sandbox_root = traversable_tempdir()
    url = database_url or f"sqlite://{workdir}/bench.sqlite3"
    try:
        async with running_app(url, sandbox_root) as app:
            print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, db {url.split(':')[0]}")
            print(f"# {machine_state()}")
            if review:
                await scenarios(app)
                return
            print(f"{'round':<8} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for label, flood in (("quiet", False), ("flood", True)):
                samples = await measure(app, n, flood)
                print(
                    f"{label:<8} {len(samples):>4} {statistics.median(samples):8.1f} "
                    f"{percentile(samples, 0.99):8.1f} {max(samples):8.1f}",
                    flush=True,
                )
            print(f"# after: {machine_state()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(sandbox_root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--scenarios", action="store_true", help="the review's cases")
    args = parser.parse_args()
    asyncio.run(main_async(args.n, args.database_url, args.scenarios))


if __name__ == "__main__":
    main()
