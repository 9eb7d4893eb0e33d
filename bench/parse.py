"""Benchmark: what an expensive GraphQL document costs the event loop (issue 9, section 4).

Usage (from the repository root)::

    .venv/bin/python bench/parse.py [-n 3]

Starts a real server (``interviewlm serve``, SQLite in a temporary directory,
one demo account) and measures ``/healthz`` latency, polled every 20 ms, while:

* nothing else runs (baseline);
* 4 anonymous 352 KB documents of repeated fields are posted at once (the
  attack: before, each held the event loop ~3.5 s; now 413 before parsing);
* one authenticated document within the token limit but expensive to validate
  (1,200 repeated ``viewer { kind }``, 4,802 tokens) is posted: refused by a
  linear check before validation;
* one authenticated document within every limit (2,440 spreads of one
  fragment, 4,899 tokens, 12 KB) is posted: parsed and validated in a worker
  thread, and answered.

For reference, the documents are parsed and validated synchronously in this
process, as the server did on its event loop before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from graphql import parse, validate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gql.schema import build_schema  # noqa: E402
from tests.server import ServerProcess, start_server  # noqa: E402

ATTACK = "{ " + "viewer { kind } " * 22_000 + "}"
HEAVY = "{ " + "viewer { kind } " * 1_200 + "}"
LARGE = "{ " + "...F " * 2_440 + "} fragment F on Query { viewer { kind } }"


def on_loop_seconds(document: str) -> float:
    schema = build_schema()._schema
    started = time.perf_counter()
    validate(schema, parse(document))
    return time.perf_counter() - started


async def poll(server: ServerProcess, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        while not stop.is_set():
            started = time.perf_counter()
            await http.get("/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    return latencies


async def during(
    server: ServerProcess, posts: list[tuple[str, str | None]]
) -> tuple[float, list[int], list[float]]:
    stop = asyncio.Event()
    poller = asyncio.create_task(poll(server, stop))
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/graphql",
                    json={"query": query},
                    headers={"authorization": f"Bearer {token}"} if token else {},
                )
                for query, token in posts
            )
        )
    duration = (time.perf_counter() - started) * 1000
    await asyncio.sleep(0.2)
    stop.set()
    return duration, [r.status_code for r in responses], await poller


def row(name: str, duration: float | None, statuses: str, latencies: list[float]) -> str:
    p95 = (
        statistics.quantiles(latencies, n=20, method="inclusive")[-1]
        if len(latencies) > 1
        else latencies[0]
    )
    took = f"{duration:9.0f}" if duration is not None else " " * 9
    return (
        f"{name:<44} {took} {statuses:<10} {statistics.median(latencies):8.1f}"
        f" {p95:8.1f} {max(latencies):8.1f}"
    )


def setup() -> tuple[dict[str, str], str, Path]:
    """A migrated SQLite database with one demo account: (server env, token, workdir)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    workdir.chmod(0o711)  # the sandbox uids traverse it
    (workdir / "sandboxes").mkdir(mode=0o711)
    env = {
        "DATABASE_URL": f"sqlite://{workdir}/db.sqlite3",
        "SANDBOX_ROOT": str(workdir / "sandboxes"),
        "LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "gql"]
    run_env = {**os.environ, **env}
    subprocess.run([*cli, "migrate"], cwd=ROOT, env=run_env, check=True, capture_output=True)
    seeded = subprocess.run(
        [*cli, "seed-demo"], cwd=ROOT, env=run_env, check=True, capture_output=True, text=True
    )
    return env, json.loads(seeded.stdout)["interviewerToken"], workdir


async def main(rounds: int, env: dict[str, str], token: str, workdir: Path) -> None:
    server = start_server(env, workdir)
    try:
        print(
            f"{'while':<44} {'req ms':>9} {'status':<10} {'hz p50':>8} {'hz p95':>8} {'hz max':>8}"
        )
        for _ in range(rounds):
            stop = asyncio.Event()
            poller = asyncio.create_task(poll(server, stop))
            await asyncio.sleep(1.0)
            stop.set()
            print(row("nothing (baseline)", None, "", await poller))
            duration, statuses, latencies = await during(server, [(ATTACK, None)] * 4)
            print(
                row(
                    "4 x 352 KB anonymous, repeated fields", duration, str(set(statuses)), latencies
                )
            )
            duration, statuses, latencies = await during(server, [(LARGE, token)])
            print(
                row("4,899-token authenticated, allowed", duration, str(set(statuses)), latencies)
            )
            duration, statuses, latencies = await during(server, [(HEAVY, token)])
            print(
                row(
                    "4,802-token authenticated, repeated fields",
                    duration,
                    str(set(statuses)),
                    latencies,
                )
            )
        print()
        print(
            f"parse+validate on the loop (before): 352 KB {on_loop_seconds(ATTACK) * 1000:.0f} ms,"
            f" 4,802 tokens repeated {on_loop_seconds(HEAVY) * 1000:.0f} ms,"
            f" 4,899 tokens allowed {on_loop_seconds(LARGE) * 1000:.0f} ms"
        )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds, *setup()))
