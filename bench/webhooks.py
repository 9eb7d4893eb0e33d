"""Webhook delivery benchmark: 1,000 session completions to a local receiver, against a
bare httpx loop posting the same bodies.

The real app in this process (its lifespan runs the delivery worker), a receiver in its
own process on loopback (``tests/webhook_receiver.py``, answering 200), one endpoint
subscribed to ``session.completed``. 2 x n sessions are created first (not measured).

- live: n sessions completed one after another through the GraphQL app (``endSession``,
  httpx ASGI transport), each completion enqueuing its delivery in its transaction.
  Delivered events/s (n / from the first call to the last receipt), and end to end from
  the moment each ``endSession`` was called to the receipt of its event (the receiver's
  arrival time; one machine, one clock), and from the outbox row's write (inside the
  completing transaction, just before its commit) to the receipt.
- backlog: the other n completed (8 at a time) while the worker is paused, then drained:
  events/s from the resume to the last receipt (what one endpoint's ordered queue takes).
- bare httpx, in the same run: one ``httpx.AsyncClient`` posting the live bodies, signed
  the same way, one after another (as an endpoint's deliveries go); latency from the
  start of each post to its receipt.

    .venv/bin/python bench/webhooks.py [--db sqlite|postgres|both] [-n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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
from bench.playback import percentile  # noqa: E402

CONCURRENCY = 8
CREATE = """mutation($q: ID!, $e: String!) {
  createSession(input: {questionId: $q, candidateName: "B", candidateEmail: $e}) {
    session { id } } }"""
END = "mutation($s: ID!) { endSession(sessionId: $s) { id } }"
ENDPOINT = """mutation($u: String!) { createWebhookEndpoint(input: {url: $u,
  events: ["session.completed"]}) { secret endpoint { id } } }"""


class Receiver:
    """``tests/webhook_receiver.py`` in a process of its own."""

    def __init__(self) -> None:
        from tests.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.webhook_receiver", str(self.port)], cwd=ROOT
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    await http.get(f"{self.url}/_received")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    async def received(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as http:
            return list((await http.get(f"{self.url}/_received")).json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


async def wait_for(receiver: Receiver, count: int, timeout_s: float) -> list[Any]:
    """The ``session.completed`` deliveries received, once there are ``count`` distinct."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = [r for r in await receiver.received() if r["type"] == "session.completed"]
        if len(first_receipts(got)) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.2)


async def measure(database_url: str, n: int, receiver: Receiver) -> dict[str, Any]:
    from models.webhook import WebhookDelivery
    from resolvers.seed import seed_demo
    from resolvers.webhooks.signing import signed_headers
    from resolvers.webhooks.worker import DeliveryWorker

    sandbox_root = traversable_tempdir()
    try:
        async with running_app(
            database_url, sandbox_root, WEBHOOK_ALLOW_PRIVATE_NETWORKS="true"
        ) as app:
            worker: DeliveryWorker = app.state.webhooks
            services = app.state.services
            account = await seed_demo(
                log=services.log,
                public_url=app.state.services.settings.public_url,
                max_file_bytes=app.state.services.settings.max_file_bytes,
            )
            transport = httpx.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {account['atsToken']}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers, timeout=60
            ) as api:

                async def call(query: str, variables: dict[str, Any]) -> dict[str, Any]:
                    body = (
                        await api.post("/graphql", json={"query": query, "variables": variables})
                    ).json()
                    assert not body.get("errors"), body
                    return dict(body["data"])

                created = await call(ENDPOINT, {"u": f"{receiver.url}/hook"})
                secret = created["createWebhookEndpoint"]["secret"]
                sessions = []
                for i in range(2 * n):
                    made = await call(CREATE, {"q": account["questionId"], "e": f"c{i}@bench.dev"})
                    sessions.append(made["createSession"]["session"]["id"])
                live, backlog = sessions[:n], sessions[n:]

                # Live: sessions complete one after another; each event is sent as it comes.
                called_at: dict[str, float] = {}
                end_ms: list[float] = []
                live_began = time.time()
                for sid in live:
                    called_at[sid] = time.time()
                    await call(END, {"s": sid})
                    end_ms.append((time.time() - called_at[sid]) * 1000)
                live_got = await wait_for(receiver, n, 300)

                # Backlog: completions queued while no worker runs, then drained.
                worker.paused = True
                pending = list(backlog)

                async def complete() -> None:
                    while pending:
                        await call(END, {"s": pending.pop()})

                await asyncio.gather(*(complete() for _ in range(CONCURRENCY)))
                drain_began = time.time()
                worker.paused = False
                worker.wake()
                drain_got = await wait_for(receiver, 2 * n, 300)
            rows = await WebhookDelivery.filter(event_type="session.completed").order_by("id")
            body_of = {row.webhook_id: row.body for row in rows}
            written_at = {row.webhook_id: row.created_at.timestamp() for row in rows}
    finally:
        shutil.rmtree(sandbox_root, ignore_errors=True)

    receipt = first_receipts(drain_got)
    session_of = {wid: json.loads(body)["data"]["sessionId"] for wid, body in body_of.items()}
    live_ids = [wid for wid, sid in session_of.items() if sid in called_at]
    e2e = [(receipt[wid] - called_at[session_of[wid]]) * 1000 for wid in live_ids]
    from_commit = [(receipt[wid] - written_at[wid]) * 1000 for wid in live_ids]
    backlog_ids = [wid for wid in session_of if wid not in set(live_ids)]

    # The baseline: the live bodies, signed the same way, posted one after another.
    posted_at: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        base_began = time.time()
        for wid in live_ids:
            data = body_of[wid].encode()
            bare_id = f"bare_{wid}"
            posted_at[bare_id] = time.time()
            await http.post(
                f"{receiver.url}/bare",
                content=data,
                headers=signed_headers(secret, bare_id, int(time.time()), data),
            )
        base_s = time.time() - base_began
    bare = [r for r in await receiver.received() if r["webhookId"].startswith("bare_")]
    return {
        "n": n,
        "delivered": len(receipt),
        "duplicates": len(drain_got) - len(receipt),
        "end_ms": end_ms,
        "live_s": max(receipt[w] for w in live_ids) - live_began,
        "e2e": e2e,
        "from_commit": from_commit,
        "drain_s": max(receipt[w] for w in backlog_ids) - drain_began,
        "base_s": base_s,
        "base_e2e": [(r["at"] - posted_at[r["webhookId"]]) * 1000 for r in bare],
        "live_got": len(live_got),
    }


def first_receipts(got: list[dict[str, Any]]) -> dict[str, float]:
    receipt: dict[str, float] = {}
    for r in got:
        receipt.setdefault(r["webhookId"], r["at"])
    return receipt


async def run_one(db: str, n: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="interviewlm-bench-webhooks-"))
    pg_name = None
    receiver = Receiver()
    try:
        await receiver.ready()
        if db == "sqlite":
            url = f"sqlite://{workdir}/bench.sqlite3"
        else:
            pg_name = await postgres_database()
            url = postgres_url(pg_name)
        result = await measure(url, n, receiver)
    finally:
        receiver.stop()
        if pg_name:
            await drop_postgres(pg_name)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"# {db}: {result['delivered']}/{2 * result['n']} delivered, {result['duplicates']} "
        f"duplicates; endSession p50 {statistics.median(result['end_ms']):.1f} ms"
    )
    n = result["n"]
    for label, rate, samples in (
        ("outbox live", n / result["live_s"], result["e2e"]),
        ("  from outbox", n / result["live_s"], result["from_commit"]),
        ("outbox backlog", n / result["drain_s"], None),
        ("bare httpx", n / result["base_s"], result["base_e2e"]),
    ):
        stats = (
            f"{statistics.median(samples):9.2f} {percentile(samples, 0.99):9.2f} "
            f"{max(samples):9.2f}"
            if samples
            else f"{'-':>9} {'-':>9} {'-':>9}"
        )
        print(f"{db:<9} {label:<15} {n:>5} {rate:9.1f} {stats}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    if args.db != "both":
        asyncio.run(run_one(args.db, args.n))
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; before: {machine_state()}")
    print(
        f"{'db':<9} {'path':<15} {'n':>5} {'events/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    )
    for db in ("sqlite", "postgres"):
        subprocess.run(
            [sys.executable, __file__, "--db", db, "-n", str(args.n)], check=True, cwd=ROOT
        )
    print(f"# after: {machine_state()}")


if __name__ == "__main__":
    main()
