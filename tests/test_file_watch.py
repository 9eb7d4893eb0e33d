"""Live file changes: edits made in the sandbox are recorded as they happen (resolvers.file_watch).

Every test changes files through a terminal that stays open, so no sync point
(a command's end, a test run, closing the terminal) happens before the
assertions: only the watcher can have recorded what they see.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Any

import pytest
from starlette.applications import Starlette

from modal_app.polling import poll_workspace
from models.sandbox import SandboxRecord, SandboxState
from resolvers.file_watch import WatchPolicy
from resolvers.workspace_sync import sync_paths, worth_entering
from tests.conftest import Account
from tests.support import Api, wait_until
from tests.workspace_support import EVENTS, events, run, start

OPEN = """mutation($s: ID!) { openTerminal(sessionId: $s, cols: 200, rows: 24) { id } }"""
INPUT = "mutation($t: ID!, $d: String!) { terminalInput(terminalId: $t, data: $d) { id } }"


async def terminal(api: Api, account: Account) -> str:
    opened = await api(OPEN, {"s": account["sessionId"]}, token=account["candidateToken"])
    return str(opened.ok()["openTerminal"]["id"])


async def type_(api: Api, account: Account, terminal_id: str, text: str) -> None:
    await api(INPUT, {"t": terminal_id, "d": text}, token=account["candidateToken"])


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def file_events(api: Api, account: Account) -> list[dict[str, Any]]:
    log = await events(api, account)
    return [e for e in log if e["type"] in ("file.written", "file.deleted", "file.skipped")]


async def recorded(
    api: Api, account: Account, kind: str, path: str, digest: str | None = None
) -> bool:
    return any(
        e["type"] == kind
        and e["payload"]["path"] == path
        and (digest is None or e["payload"].get("sha256") == digest)
        for e in await file_events(api, account)
    )


async def no_sync_point_yet(api: Api, account: Account) -> None:
    types = {e["type"] for e in await events(api, account)}
    assert not types & {"command.started", "command.finished", "terminal.closed"}, types


async def test_terminal_edits_and_deletes_are_recorded_while_it_stays_open(
    app: Starlette, api: Api, account: Account
) -> None:
    await start(api, account)
    tid = await terminal(api, account)
    await type_(api, account, tid, "printf 'v1\\n' > live.txt\n")
    await wait_until(lambda: recorded(api, account, "file.written", "live.txt", sha("v1\n")))
    await type_(api, account, tid, "sed -i 's/v1/v2/' live.txt\n")
    await wait_until(lambda: recorded(api, account, "file.written", "live.txt", sha("v2\n")))
    await type_(api, account, tid, "rm live.txt\n")
    await wait_until(lambda: recorded(api, account, "file.deleted", "live.txt"))
    await no_sync_point_yet(api, account)
    live = [e for e in await file_events(api, account) if e["payload"]["path"] == "live.txt"]
    assert [e["payload"]["source"] for e in live] == ["sandbox"] * 3

    # Terminated: the watcher stops.
    watch = app.state.services.file_watch
    record = await SandboxRecord.get(session_id=account["sessionId"], state=SandboxState.RUNNING)
    assert record.id in watch._tasks
    await api(
        "mutation($s: ID!) { terminateSandbox(sessionId: $s) { state } }",
        {"s": account["sessionId"]},
        token=account["candidateToken"],
    )
    await wait_until(lambda: record.id not in watch._tasks, what="the watcher to stop")


async def test_a_background_process_change_is_recorded_later(api: Api, account: Account) -> None:
    await start(api, account)
    tid = await terminal(api, account)
    await type_(api, account, tid, "(sleep 1; echo x > bg.txt) &\n")
    await wait_until(lambda: recorded(api, account, "file.written", "bg.txt", sha("x\n")))
    await no_sync_point_yet(api, account)


async def test_ignored_directories_and_symlinks_are_not_recorded(
    api: Api, account: Account
) -> None:
    await start(api, account)
    tid = await terminal(api, account)
    await type_(
        api,
        account,
        tid,
        "mkdir -p node_modules/pkg .git sub && echo a > node_modules/pkg/i.js"
        " && echo b > .git/HEAD && ln -s /etc/passwd pw && ln -s / hostroot"
        " && ln -s /etc sub/etc && echo done > marker.txt\n",
    )
    await wait_until(lambda: recorded(api, account, "file.written", "marker.txt"))
    await no_sync_point_yet(api, account)
    paths = {e["payload"]["path"] for e in await file_events(api, account)}
    assert not {p for p in paths if p.startswith(("node_modules", ".git", "hostroot", "sub/"))}
    assert "pw" not in paths
    # A sync point agrees: links are never read, so no host file enters the recording.
    await run(api, account, "true")
    log = await file_events(api, account)
    assert not {e["payload"]["path"] for e in log} & {"pw", "hostroot", "sub/etc"}
    assert not any(e["payload"].get("sha256") == _passwd_sha() for e in log)


def _passwd_sha() -> str:
    with open("/etc/passwd", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


async def test_a_burst_is_rate_capped_then_completed_by_the_next_sync_point(
    app: Starlette, api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate, burst = 5, 10
    watch = app.state.services.file_watch
    monkeypatch.setattr(watch, "policy", WatchPolicy(events_per_s=rate, burst=burst))
    await start(api, account)
    tid = await terminal(api, account)
    await type_(
        api,
        account,
        tid,
        "mkdir b && for i in $(seq 1000); do echo $i > b/f$i.txt; done; touch burst-done\n",
    )

    async def live_burst() -> list[dict[str, Any]]:
        result = await api(EVENTS, {"s": account["sessionId"]}, token=account["interviewerToken"])
        log = result.ok()["recording"]["events"]
        return [e for e in log if (e.get("path") or "").startswith("b/")]

    await wait_until(lambda: _at_least(live_burst, 3 * burst), timeout=30)
    await no_sync_point_yet(api, account)
    early = await live_burst()
    # The cap, whatever the machine's speed: within any span of the log, at most
    # the burst plus what the rate refills (a slow machine records fewer).
    times = [datetime.fromisoformat(e["at"]).timestamp() for e in early]
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 2, (i, j)
    assert len(early) < 1000

    # A sync point (once the loop is over) records the rest at once.
    await run(api, account, "while [ ! -e burst-done ]; do sleep 0.1; done", timeout=60)
    written = [
        e["payload"]["path"]
        for e in await all_events(api, account)
        if e["type"] == "file.written" and e["payload"]["path"].startswith("b/")
    ]
    assert sorted(written) == sorted(f"b/f{i}.txt" for i in range(1, 1001))  # each once


async def all_events(api: Api, account: Account) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while page := await events(api, account, after=found[-1]["seq"] if found else 0):
        found += page
    return found


async def _at_least(fetch: Any, count: int) -> bool:
    return len(await fetch()) >= count


async def test_the_polling_watcher_reports_changes(
    app: Starlette, api: Api, account: Account
) -> None:
    """The fallback of backends without change events (Modal where its watch fails)."""
    await start(api, account)
    record = await SandboxRecord.get(session_id=account["sessionId"], state=SandboxState.RUNNING)
    backend, sandbox_id = app.state.services.sandboxes.backend, record.backend_id

    async def list_dir(directory: str) -> Any:
        return await backend.list_files(sandbox_id, directory, recursive=False)

    stream = poll_workspace(list_dir, worth_entering, interval_s=0.05, max_entries=1000)
    # Warm up: write until a batch comes, so the baseline listing is behind us.
    batch = asyncio.ensure_future(anext(stream))
    for n in range(100):
        await backend.write_file(sandbox_id, f"warm/{n}.txt", b"w")
        await asyncio.wait([batch], timeout=0.2)
        if batch.done():
            break
    await backend.write_file(sandbox_id, "polled/p.txt", b"p")
    await backend.write_file(sandbox_id, "node_modules/n.js", b"n")
    seen: set[str] = set()
    while not any(p.startswith("polled") for p in seen):
        seen |= (await asyncio.wait_for(anext(stream), 10)).paths
    await stream.aclose()
    assert not any(p.startswith("node_modules/") for p in seen)


async def test_a_sync_point_and_the_watcher_at_once_record_a_change_once(
    app: Starlette, api: Api, account: Account
) -> None:
    await start(api, account)
    sandboxes = app.state.services.sandboxes
    record = await SandboxRecord.get(session_id=account["sessionId"], state=SandboxState.RUNNING)
    for round_ in range(3):
        content = f"race {round_}\n"
        await sandboxes.backend.write_file(record.backend_id, "race.txt", content.encode())
        # The watcher is racing these too.
        await asyncio.gather(
            sandboxes.sync_workspace(record),
            sync_paths(sandboxes, record, ["race.txt"]),
            sync_paths(sandboxes, record, ["race.txt"]),
        )
        written = [
            e
            for e in await file_events(api, account)
            if e["payload"]["path"] == "race.txt" and e["payload"].get("sha256") == sha(content)
        ]
        assert len(written) == 1, written


async def test_watches_are_bounded_and_the_rest_waits_for_a_sync_point(
    app: Starlette, api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = app.state.services.sandboxes.backend._watcher
    monkeypatch.setattr(watcher, "max_dirs", 2)
    await start(api, account)
    record = await SandboxRecord.get(session_id=account["sessionId"], state=SandboxState.RUNNING)
    tid = await terminal(api, account)
    await type_(
        api,
        account,
        tid,
        "mkdir -p a/b/c/d && echo deep > a/b/c/d/deep.txt && sleep 0.5 && echo top > top.txt\n",
    )
    await wait_until(lambda: recorded(api, account, "file.written", "top.txt"))
    assert len(watcher._watches[record.backend_id].dirs) <= 2
    await run(api, account, "true")
    assert await recorded(api, account, "file.written", "a/b/c/d/deep.txt", sha("deep\n"))


async def test_odd_names_and_special_files_do_not_stop_live_recording(
    api: Api, account: Account
) -> None:
    await start(api, account)
    tid = await terminal(api, account)
    await type_(
        api, account, tid, "touch $'\\xff\\xfe.txt' && mkfifo pipe && echo ok > after-odd.txt\n"
    )
    await wait_until(lambda: recorded(api, account, "file.written", "after-odd.txt"))
    await type_(api, account, tid, "echo later > later.txt\n")
    await wait_until(lambda: recorded(api, account, "file.written", "later.txt"))
    await no_sync_point_yet(api, account)
    assert "pipe" not in {e["payload"]["path"] for e in await file_events(api, account)}
