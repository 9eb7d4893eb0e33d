"""Per-session caps on what the recording stores (issue 9 §4), through the API on the real sandbox.

Before: 8 MB printed in a terminal became 8 MB of events, and every changed
file up to 1 MiB was stored forever on every sync. Now output is capped per
session (one ``output.truncated`` event), file contents count against a
storage budget (one ``storage.budgetReached`` event, then ``file.skipped``
with path, size and hash), and blobs no session refers to are collected.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from tortoise import Tortoise

from models.file import FileBlob, SessionBlob, SessionStorage
from models.session import InterviewSession
from resolvers.events import EventLog
from resolvers.storage import OutputQuota, StorageLimits, collect_blobs
from tests.conftest import Account
from tests.support import Api
from tests.test_terminal import INPUT, OPEN
from tests.workspace_support import FILE, TERMINATE, WRITE, events, run, start

CAP = 64 * 1024
PRINT_8MB = "python3 -c \"import sys; sys.stdout.write('x' * 8_000_000)\""


@pytest.fixture
def limits(app: Starlette) -> Iterator[EventLog]:
    """Small caps on the app's event log for one test (restored after it)."""
    log: EventLog = app.state.services.log
    saved = log.limits
    log.limits = StorageLimits(output_cap_bytes=CAP, storage_budget_bytes=10_000)
    log.output_quota = OutputQuota(log.limits)
    yield log
    log.limits = saved
    log.output_quota = OutputQuota(saved)


def output_bytes(log: list[dict[str, Any]]) -> int:
    return sum(
        len(e["payload"]["data"].encode())
        for e in log
        if e["type"] in {"terminal.output", "command.output"}
    )


def of_type(log: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in log if e["type"] == type_]


async def test_command_output_is_capped_per_session(
    api: Api, account: Account, limits: EventLog
) -> None:
    await start(api, account)
    first = await run(api, account, PRINT_8MB)
    assert first["exitCode"] == 0
    assert first["truncated"]
    log = await events(api, account)
    assert output_bytes(log) == CAP
    (truncated,) = of_type(log, "output.truncated")
    assert truncated == {"commandId": first["commandId"], "limitBytes": CAP}
    second = await run(api, account, "echo still-runs")
    assert second["stdout"] == "still-runs\n"  # the command still answers its caller
    log = await events(api, account)
    assert output_bytes(log) == CAP
    assert len(of_type(log, "output.truncated")) == 1
    assert of_type(log, "command.exited")[-1]["commandId"] == second["commandId"]
    stored = await SessionStorage.get(session_id=account["sessionId"])
    assert (stored.output_bytes, stored.output_capped) == (CAP, True)


async def test_terminal_output_is_capped_per_session(
    api: Api, account: Account, limits: EventLog
) -> None:
    await start(api, account)
    token = account["candidateToken"]
    opened = await api(OPEN, {"s": account["sessionId"], "c": 80, "r": 24}, token=token)
    tid = opened.ok()["openTerminal"]["id"]
    await api(INPUT, {"t": tid, "d": PRINT_8MB + "\n"}, token=token)
    for _ in range(300):
        log = await events(api, account)
        if of_type(log, "output.truncated"):
            break
        await asyncio.sleep(0.1)
    assert of_type(log, "output.truncated") == [{"terminalId": tid, "limitBytes": CAP}]
    await asyncio.sleep(1)  # the rest of the 8 MB drains, unrecorded
    assert output_bytes(await events(api, account)) <= CAP
    # Typed input is under the same cap: a flood of terminalInput is not a way around it.
    (await api(INPUT, {"t": tid, "d": "echo after-the-cap\n"}, token=token)).ok()
    inputs = [p["input"] for p in of_type(await events(api, account), "terminal.input")]
    assert inputs == [PRINT_8MB + "\n"]


async def test_replicas_share_the_output_cap(account: Account, limits: EventLog) -> None:
    """Two quota objects stand for two replicas: the database row is what they share."""
    session_id = uuid.UUID(account["sessionId"])
    replicas = [
        OutputQuota(StorageLimits(output_cap_bytes=CAP, output_lease_bytes=4096)) for _ in range(2)
    ]
    grants = await asyncio.gather(*(replicas[i % 2].take(session_id, 1000) for i in range(200)))
    assert sum(g.granted for g in grants) <= CAP
    assert sum(g.granted for g in grants) >= CAP - 2 * 4096  # at most a lease per replica unused
    assert sum(g.capped_now for g in grants) == 1


async def test_storage_budget_records_hashes_once_reached(
    api: Api, account: Account, limits: EventLog
) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    for name, fill in (("a.txt", "a"), ("b.txt", "b")):
        (await api(WRITE, {"s": sid, "p": name, "c": fill * 4000}, token=token)).ok()
    over = await api(WRITE, {"s": sid, "p": "c.txt", "c": "c" * 4000}, token=token)
    assert over.ok()["writeFile"]["sha256"] == hashlib.sha256(b"c" * 4000).hexdigest()
    assert (await api(FILE, {"s": sid, "p": "c.txt"}, token=token)).ok()["file"]["size"] == 4000
    await run(api, account, "printf '%05000d' 7 > d.txt")
    await run(api, account, "true")  # a second sync does not repeat the skip
    (await api(WRITE, {"s": sid, "p": "a.txt", "c": "b" * 4000}, token=token)).ok()  # stored
    log = await events(api, account)
    (reached,) = of_type(log, "storage.budgetReached")
    assert reached["limitBytes"] == 10_000
    assert reached["path"] == "c.txt"
    skipped = {p["path"]: p for p in of_type(log, "file.skipped")}
    assert sorted(skipped) == ["c.txt", "d.txt"]
    assert skipped["c.txt"]["sha256"] == hashlib.sha256(b"c" * 4000).hexdigest()
    assert skipped["d.txt"]["size"] == 5000
    assert len(of_type(log, "file.skipped")) == 2
    written = [p["path"] for p in of_type(log, "file.written")]
    assert written.count("a.txt") == 2
    assert "c.txt" not in written
    stored = await SessionStorage.get(session_id=sid)
    assert stored.budget_reached
    assert stored.blob_bytes <= 10_000
    (await api(TERMINATE, {"s": sid}, token=account["interviewerToken"])).ok()
    gone = await api(FILE, {"s": sid, "p": "c.txt"}, token=token)
    assert gone.codes == ["NOT_FOUND"]  # never stored: the recording has only its hash
    kept = (await api(FILE, {"s": sid, "p": "a.txt"}, token=token)).ok()["file"]
    assert kept["content"] == "b" * 4000


async def test_blobs_no_session_refers_to_are_collected(
    api: Api, account: Account, account_factory: Any
) -> None:
    await start(api, account)
    doomed = await account_factory()
    await start(api, doomed)
    unique = f"only in the doomed session {uuid.uuid4()}\n"
    sid, token = doomed["sessionId"], doomed["candidateToken"]
    written = (await api(WRITE, {"s": sid, "p": "mine.txt", "c": unique}, token=token)).ok()
    (await api(TERMINATE, {"s": sid}, token=doomed["interviewerToken"])).ok()
    orphan = hashlib.sha256(b"stored, never referred to").hexdigest()
    await FileBlob.create(sha256=orphan, size=25, content=b"stored, never referred to")
    readme = (
        await api(
            FILE, {"s": account["sessionId"], "p": "README.md"}, token=account["candidateToken"]
        )
    ).ok()
    old = datetime.now(UTC) - timedelta(days=1)
    await FileBlob.filter(sha256__in=[orphan, written["writeFile"]["sha256"]]).update(
        created_at=old
    )
    await FileBlob.filter(sha256=readme["file"]["sha256"]).update(created_at=old)
    assert await collect_blobs() >= 1  # the orphan (older than the grace period)
    assert not await FileBlob.exists(sha256=orphan)
    assert await FileBlob.exists(sha256=written["writeFile"]["sha256"])  # its session lives
    await InterviewSession.filter(id=sid).delete()
    assert await collect_blobs() >= 1
    assert not await FileBlob.exists(sha256=written["writeFile"]["sha256"])
    assert await FileBlob.exists(sha256=readme["file"]["sha256"])  # still referred to
    fresh = hashlib.sha256(b"just stored").hexdigest()
    await FileBlob.create(sha256=fresh, size=11, content=b"just stored")
    await collect_blobs()
    assert await FileBlob.exists(sha256=fresh)  # inside the grace period


async def test_migration_refers_existing_recordings_to_their_blobs(
    api: Api, account: Account
) -> None:
    """0008 backfills SessionBlob from the recordings, so collection keeps their blobs."""
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    (await api(WRITE, {"s": sid, "p": "v.txt", "c": "one"}, token=token)).ok()
    (await api(WRITE, {"s": sid, "p": "v.txt", "c": "two"}, token=token)).ok()
    expected = set(await SessionBlob.filter(session_id=sid).values_list("sha256", flat=True))
    await SessionBlob.filter(session_id=sid).delete()  # as before the migration
    migration = importlib.import_module("models.migrations.0007_storage_budget")
    editor = SimpleNamespace(collect_sql=False, client=Tortoise.get_connection("default"))
    await migration.backfill_session_blobs(None, editor)
    refs = set(await SessionBlob.filter(session_id=sid).values_list("sha256", flat=True))
    assert refs == expected
    assert hashlib.sha256(b"one").hexdigest() in refs  # an older version, from the events
