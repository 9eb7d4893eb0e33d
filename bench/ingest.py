"""Recording ingest on PostgreSQL (issue 13): sustained events/s with many sessions
appending at once, nothing lost, against bare asyncpg in the same run.

Every row is measured on a fresh database on the local server (127.0.0.1:5432), with
``--sessions`` sessions, each with ``--producers`` producers that append one
``command.output`` event (a ~60-byte line) at a time and await it, as a command's output
coalescer does, for ``--seconds``:

- log: ``EventLog.append`` (resolvers.events: per-session group commit, one statement per
  group, resolvers.event_store), Tortoise's pool of ``--pool`` connections, in-memory bus
  (``--redis``: the local Redis, every group published);
- log, tuned GC: the same with the collector's generation-0 threshold raised from 700 to
  ``--gc-gen0`` (``gc.set_threshold``): thousands of tasks and futures alive, the default
  collects often and each collection walks them all (a third of the log's CPU);
- log before issue 13: resolvers/events.py as of 2ede78e, loaded from git (a writer per
  session, each group a transaction: SELECT ... FOR UPDATE, UPDATE, multi-row INSERT);
- bare asyncpg, per event: the same producers, each append the same one-statement SQL
  for its one row on an asyncpg pool of the same size (no group commit, no ORM, no bus);
- bare asyncpg COPY: as many rows as the log stored, copied in 500-row chunks over the
  same number of connections (what the table takes at best; no per-session ordering).

After each row: every session's events are counted and their seqs checked against
``last_seq`` and the appends acknowledged (nothing lost, no gap, no duplicate).

    .venv/bin/python bench/ingest.py [--sessions 1000] [--producers 2] [--seconds 8]
        [--pool 5] [--flushes 4] [--gc-gen0 10000] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import drop_postgres, machine_state, postgres_database, postgres_url  # noqa: E402

LINE = "Traceback (most recent call last): line {n} of a test run's output\n"


async def make_sessions(url: str, count: int) -> list[uuid.UUID]:
    """``count`` sessions (copies of a seeded demo session), on a migrated database."""
    from resolvers.bus import EventBus
    from resolvers.events import EventLog
    from resolvers.seed import seed_demo

    bus = EventBus("memory://")
    await bus.connect()
    demo = await seed_demo(log=EventLog(bus), public_url="http://bench", max_file_bytes=1 << 20)
    await bus.disconnect()
    conn = await asyncpg.connect(url)
    try:
        row = dict(
            await conn.fetchrow(
                "SELECT * FROM interview_session WHERE id = $1", uuid.UUID(demo["sessionId"])
            )
        )
        ids = [uuid.uuid4() for _ in range(count)]
        columns = list(row)
        await conn.executemany(
            f"INSERT INTO interview_session ({', '.join(columns)}) VALUES "
            f"({', '.join(f'${i + 1}' for i in range(len(columns)))})",
            [[{"id": sid, "last_seq": 0}.get(c, row[c]) for c in columns] for sid in ids],
        )
    finally:
        await conn.close()
    return ids


Append = Callable[[uuid.UUID, str], Awaitable[object]]


async def drive(
    sessions: list[uuid.UUID], producers: int, seconds: float, append: Append
) -> dict[uuid.UUID, int]:
    """Producers appending back to back until ``seconds`` pass: acknowledged appends."""
    acked = dict.fromkeys(sessions, 0)
    stop = time.monotonic() + seconds

    async def producer(sid: uuid.UUID) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            await append(sid, LINE.format(n=n))
            acked[sid] += 1

    await asyncio.gather(*(producer(sid) for sid in sessions for _ in range(producers)))
    return acked


async def check(url: str, acked: dict[uuid.UUID, int]) -> str:
    """Every acknowledged append stored once, seqs 1..last_seq without a gap."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT s.id, s.last_seq, count(e.id) AS n, count(DISTINCT e.seq) AS d,"
            " coalesce(min(e.seq), 1) AS lo, coalesce(max(e.seq), 0) AS hi"
            " FROM interview_session s LEFT JOIN session_event e ON e.session_id = s.id"
            " WHERE s.id = ANY($1) GROUP BY s.id",
            list(acked),
        )
    finally:
        await conn.close()
    bad = [
        r["id"]
        for r in rows
        if not (r["n"] == r["d"] == r["last_seq"] == r["hi"] == acked[r["id"]] and r["lo"] == 1)
    ]
    return "ok" if not bad and len(rows) == len(acked) else f"MISMATCH in {len(bad)} sessions"


OLD_COMMIT = "2ede78e"
"""The last commit before issue 13's changes to resolvers/events.py."""


def old_event_log() -> Any:
    """resolvers/events.py as of OLD_COMMIT, imported as a module of its own."""
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:resolvers/events.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="interviewlm-bench-")) / "old_events.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_events", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_events"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.EventLog


async def run_log(
    args: argparse.Namespace, *, old_commit: bool, gc_gen0: int = 0
) -> tuple[int, float, str]:
    from tortoise import Tortoise

    from resolvers.bus import EventBus
    from resolvers.database import close_database, migrate, open_database
    from resolvers.event_kinds import CommandOutput
    from resolvers.events import EventLog

    name = await postgres_database()
    url = postgres_url(name)
    try:
        await migrate(url)
        await open_database(f"{url}?maxsize={args.pool}&minsize={args.pool}")
        sessions = await make_sessions(url, args.sessions)
        bus = EventBus("redis://127.0.0.1:6379/0" if args.redis else "memory://")
        await bus.connect()
        log = old_event_log()(bus) if old_commit else EventLog(bus, max_flushes=args.flushes)
        command = str(uuid.uuid4())

        async def append(sid: uuid.UUID, text: str) -> object:
            return await log.append(sid, CommandOutput(command, "stdout", text))

        thresholds = gc.get_threshold()
        if gc_gen0:
            gc.set_threshold(gc_gen0, 10, 10)
        try:
            started = time.monotonic()
            acked = await drive(sessions, args.producers, args.seconds, append)
            took = time.monotonic() - started
        finally:
            gc.set_threshold(*thresholds)
        await bus.disconnect()
        await close_database()
        return sum(acked.values()), took, await check(url, acked)
    finally:
        await Tortoise.close_connections()
        await drop_postgres(name)


async def run_bare(args: argparse.Namespace, *, copy_rows: int) -> tuple[int, float, str]:
    from resolvers.database import migrate
    from resolvers.event_store import _INSERT_GROUP

    name = await postgres_database()
    url = postgres_url(name)
    try:
        await migrate(url)
        from resolvers.database import open_database

        await open_database(url)
        sessions = await make_sessions(url, args.sessions)
        from tortoise import Tortoise

        await Tortoise.close_connections()
        pool = await asyncpg.create_pool(url, min_size=args.pool, max_size=args.pool)
        now = datetime.now(UTC)
        try:
            if not copy_rows:

                async def append(sid: uuid.UUID, text: str) -> object:
                    data = json.dumps({"commandId": "c", "stream": "stdout", "data": text})
                    async with pool.acquire() as conn:
                        return await conn.fetchval(
                            _INSERT_GROUP, sid, ["command.output"], datetime.now(UTC), [data]
                        )

                started = time.monotonic()
                acked = await drive(sessions, args.producers, args.seconds, append)
                took = time.monotonic() - started
                return sum(acked.values()), took, await check(url, acked)
            per = copy_rows // len(sessions) + 1
            chunks: asyncio.Queue[list[tuple[Any, ...]]] = asyncio.Queue()
            for sid in sessions:
                rows = [
                    (
                        sid,
                        seq,
                        "command.output",
                        now,
                        json.dumps({"commandId": "c", "stream": "stdout", "data": LINE}),
                    )
                    for seq in range(1, per + 1)
                ]
                for i in range(0, len(rows), 500):
                    chunks.put_nowait(rows[i : i + 500])

            async def copier() -> None:
                async with pool.acquire() as conn:
                    while not chunks.empty():
                        await conn.copy_records_to_table(
                            "session_event",
                            records=chunks.get_nowait(),
                            columns=["session_id", "seq", "type", "at", "payload"],
                        )

            started = time.monotonic()
            await asyncio.gather(*(copier() for _ in range(args.pool)))
            took = time.monotonic() - started
            return per * len(sessions), took, "ok (no seqs handed out)"
        finally:
            await pool.close()
    finally:
        await drop_postgres(name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--producers", type=int, default=2, help="per session")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pool", type=int, default=5, help="database connections")
    parser.add_argument("--flushes", type=int, default=4, help="EventLog(max_flushes=)")
    parser.add_argument("--redis", action="store_true", help="publish on the local Redis")
    parser.add_argument(
        "--gc-gen0", type=int, default=10_000, help="the tuned-GC row's generation-0 threshold"
    )
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(
        f"{args.sessions} sessions x {args.producers} producers, {args.seconds:g} s per row,"
        f" {args.pool} connections, bus {'redis' if args.redis else 'in memory'};"
        f" {machine_state()}"
    )
    print(f"{'row':<36} {'events':>9} {'events/s':>10}  check")
    log = await run_log(args, old_commit=False)
    tuned = await run_log(args, old_commit=False, gc_gen0=args.gc_gen0)
    rows = [
        ("log (one statement per group)", log),
        (f"log, gc.set_threshold({args.gc_gen0})", tuned),
        ("log before issue 13 (2ede78e)", await run_log(args, old_commit=True)),
        ("bare asyncpg, per event", await run_bare(args, copy_rows=0)),
        ("bare asyncpg COPY, 500-row chunks", await run_bare(args, copy_rows=log[0])),
    ]
    for label, (events, took, verdict) in rows:
        print(f"{label:<36} {events:>9} {events / took:>10,.0f}  {verdict}")
    print(f"after: {machine_state()}")


if __name__ == "__main__":
    asyncio.run(main())
