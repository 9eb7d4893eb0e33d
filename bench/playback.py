"""Playback benchmark: ``file(atSeq)`` in a recorded session, against reading the current file.

A session of 5,000 events, 200 of them file versions (20 paths, 10 versions
each, spread through terminal output), recorded through the real ``EventLog``
and ``FileRecorder``. Then, through the real GraphQL app (httpx's ASGI
transport, in this process), 100 ``file(sessionId, path, atSeq)`` queries at
random seqs, interleaved with 100 ``file(sessionId, path)`` queries (the
current file, from the recording: no sandbox runs) as the baseline; both ask
for content and sha256. p50/p99 per kind, per database.

    .venv/bin/python bench/playback.py [--db sqlite|postgres|both] [-n 100] [--seed 1]

Each database runs in its own process (Tortoise caches SQL per dialect). The
PostgreSQL database (``interviewlm_bench_<random>``) is created and dropped;
the SQLite file lives in a temporary directory that is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402 -- after the path set-up
    drop_postgres,
    machine_state,
    postgres_database,
    postgres_url,
    running_app,
    traversable_tempdir,
)

if TYPE_CHECKING:
    from gql.context import Services

EVENTS = 5_000
PATHS = 20
VERSIONS = 200
FILE_AT = """query($s: ID!, $p: String!, $at: Int) {
  file(sessionId: $s, path: $p, atSeq: $at) { size sha256 content }
}"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def record_session(services: Services, sid: uuid.UUID, rng: random.Random) -> int:
    """5,000 events: 200 file versions through FileRecorder, the rest terminal output.

    Returns the seq from which every path exists (the first 20 versions come first)."""
    from resolvers.event_kinds import TerminalOutput

    log, files = services.log, services.sandboxes.files
    base = await log.last_seq(sid)
    # Where the versions go: the first of each path early, the rest anywhere.
    slots = sorted(rng.sample(range(PATHS + 1, EVENTS - base), VERSIONS - PATHS))
    version_at = set(range(1, PATHS + 1)) | set(slots)
    written = 0
    pending: list[TerminalOutput] = []
    for position in range(1, EVENTS - base + 1):
        if position not in version_at:
            pending.append(TerminalOutput("t1", f"line {position}\r\n"))
            continue
        if pending:
            await log.append_many(sid, pending)
            pending = []
        path = f"src/module_{written % PATHS:02d}.py"
        body = f"# version {written // PATHS} of {path}\n" + "x = 1\n" * rng.randint(20, 400)
        await files.written(sid, path, body.encode(), source="bench")
        written += 1
    if pending:
        await log.append_many(sid, pending)
    return base + PATHS


async def measure(database_url: str, n: int, seed: int) -> dict[str, object]:
    import httpx

    from resolvers.seed import seed_demo

    sandbox_root = traversable_tempdir()
    rng = random.Random(seed)
    try:
        async with running_app(database_url, sandbox_root) as app:
            services = app.state.services
            account = await seed_demo(
                log=services.log,
                public_url=services.settings.public_url,
                max_file_bytes=services.settings.max_file_bytes,
            )
            sid, token = account["sessionId"], account["interviewerToken"]
            started = time.perf_counter()
            first_live = await record_session(services, uuid.UUID(sid), rng)
            record_s = time.perf_counter() - started
            last = await services.log.last_seq(uuid.UUID(sid))
            transport = httpx.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

                async def ask(path: str, at: int | None) -> float:
                    body = {"query": FILE_AT, "variables": {"s": sid, "p": path, "at": at}}
                    begin = time.perf_counter()
                    response = await http.post("/graphql", json=body, headers=headers)
                    elapsed = (time.perf_counter() - begin) * 1000
                    data = response.json()
                    # Every path exists from first_live on: a miss is a bug.
                    assert not data.get("errors"), data
                    return elapsed

                plan = [
                    (f"src/module_{rng.randrange(PATHS):02d}.py", rng.randint(first_live, last))
                    for _ in range(n)
                ]
                for path, at in plan[:10]:  # warm-up: connections, caches, JIT-free paths
                    await ask(path, at)
                    await ask(path, None)
                at_seq: list[float] = []
                current: list[float] = []
                for path, at in plan:
                    at_seq.append(await ask(path, at))
                    current.append(await ask(path, None))
    finally:
        shutil.rmtree(sandbox_root, ignore_errors=True)
    return {
        "events": last,
        "record_s": record_s,
        "at_seq": at_seq,
        "current": current,
    }


async def run_one(db: str, n: int, seed: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="interviewlm-bench-playback-"))
    pg_name = None
    try:
        if db == "sqlite":
            url = f"sqlite://{workdir}/bench.sqlite3"
        else:
            pg_name = await postgres_database()
            url = postgres_url(pg_name)
        result = await measure(url, n, seed)
    finally:
        if pg_name:
            await drop_postgres(pg_name)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for label, key in (("file(atSeq)", "at_seq"), ("file() current", "current")):
        samples: list[float] = result[key]  # type: ignore[assignment]
        rows.append(
            f"{db:<9} {label:<15} {len(samples):>4} {statistics.median(samples):8.2f} "
            f"{percentile(samples, 0.99):8.2f} {max(samples):8.2f}"
        )
    print(
        f"# {db}: {result['events']} events recorded in {result['record_s']:.1f} s "
        f"({VERSIONS} file versions over {PATHS} paths)"
    )
    print("\n".join(rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.db != "both":
        asyncio.run(run_one(args.db, args.n, args.seed))
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; before: {machine_state()}")
    print(f"{'db':<9} {'query':<15} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for db in ("sqlite", "postgres"):
        argv = [sys.executable, __file__, "--db", db, "-n", str(args.n), "--seed", str(args.seed)]
        subprocess.run(argv, check=True, cwd=ROOT)
    print(f"# after: {machine_state()}")


if __name__ == "__main__":
    main()
