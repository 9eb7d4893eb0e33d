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
import os
import random
import secrets
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

if TYPE_CHECKING:
    from gql.context import Services

PG_ADMIN = os.environ.get("BENCH_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/postgres")
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


def traversable_tempdir() -> Path:
    """A SANDBOX_ROOT the sandbox uids can traverse (temporary dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="interviewlm-bench-sandboxes-"))
    root.chmod(0o711)
    return root


async def measure(database_url: str, n: int, seed: int) -> dict[str, object]:
    import httpx

    from gql.app import create_app
    from gql.settings import Settings
    from resolvers.database import migrate
    from resolvers.seed import seed_demo

    await migrate(database_url)
    sandbox_root = traversable_tempdir()
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "SANDBOX_ROOT": str(sandbox_root),
            "PUBLIC_URL": "http://bench",
            "LOG_LEVEL": "WARNING",
        }
    )
    app = create_app(settings)
    rng = random.Random(seed)
    try:
        async with app.router.lifespan_context(app):
            services = app.state.services
            account = await seed_demo(
                log=services.log,
                public_url=settings.public_url,
                max_file_bytes=settings.max_file_bytes,
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


async def postgres_database() -> str:
    import asyncpg

    name = f"interviewlm_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_postgres(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def run_one(db: str, n: int, seed: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="interviewlm-bench-playback-"))
    pg_name = None
    try:
        if db == "sqlite":
            url = f"sqlite://{workdir}/bench.sqlite3"
        else:
            pg_name = await postgres_database()
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
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


def machine_state() -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} cores, load average {load}"


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
