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
from resolvers import file_watch
from resolvers.file_watch import WatchPolicy
from resolvers.workspace_sync import PathsSynced, sync_paths, worth_entering
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


async def test_an_edit_is_not_stuck_behind_a_burst_of_new_files(api: Api, account: Account) -> None:
    await start(api, account)
    tid = await terminal(api, account)
    await type_(
        api,
        account,
        tid,
        "mkdir gen && for i in $(seq 1 600); do echo $i > gen/g$i.txt; done;"
        " echo edited > edit_mark.txt\n",
    )
    # Oldest first at the default rate, the edit came after all 600 (12 s later).
    await wait_until(lambda: recorded(api, account, "file.written", "edit_mark.txt"), timeout=30)
    await no_sync_point_yet(api, account)
    log = await all_events(api, account)
    edit = next(e["seq"] for e in log if e["payload"].get("path") == "edit_mark.txt")
    burst_before = [
        e
        for e in log
        if e["type"] == "file.written"
        and e["payload"]["path"].startswith("gen/")
        and e["seq"] < edit
    ]
    assert len(burst_before) < 300, len(burst_before)


async def _record_tree(api: Api, account: Account) -> None:
    """300 files in gen/ (and deeper), and neighbours whose names LIKE would confuse."""
    await run(
        api,
        account,
        "mkdir -p gen/sub g_n Gen gxn && for i in $(seq 300); do echo $i > gen/g$i.txt; done"
        " && echo s > gen/sub/s.txt && echo k > gen_keep.txt && echo u > Gen/up.txt"
        " && echo a > g_n/a.txt && echo x > gxn/x.txt",
    )


def _deletions(log: list[dict[str, Any]]) -> list[str]:
    return [e["payload"]["path"] for e in log if e["type"] == "file.deleted"]


async def _live_files(app: Starlette, account: Account) -> set[str]:
    record = await SandboxRecord.get(session_id=account["sessionId"])
    return set(await app.state.services.sandboxes.files.current(record.session_id))


async def _tree_without_watcher(
    app: Starlette, api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> set[str]:
    """The tree of _record_tree recorded with no watcher: the sync point after each
    command alone records (sync_workspace). Returns the starter files."""
    monkeypatch.setattr(app.state.services.file_watch, "policy", WatchPolicy(enabled=False))
    await start(api, account)
    starter = await _live_files(app, account)
    await _record_tree(api, account)
    return starter


async def test_a_directory_removed_whole_is_one_deletion_at_a_sync_point(
    app: Starlette, api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    starter = await _tree_without_watcher(app, api, account, monkeypatch)
    assert len(await _live_files(app, account) - starter) == 305
    await run(api, account, "rm -rf gen g_n")
    assert sorted(_deletions(await all_events(api, account))) == ["g_n", "gen"]
    assert await _live_files(app, account) - starter == {"gen_keep.txt", "Gen/up.txt", "gxn/x.txt"}
    # A directory emptied but still there: its files, one by one.
    await run(api, account, "rm gxn/x.txt")
    assert sorted(_deletions(await all_events(api, account))) == ["g_n", "gen", "gxn/x.txt"]


async def test_sync_paths_records_a_directory_removed_whole_once(
    app: Starlette, api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    starter = await _tree_without_watcher(app, api, account, monkeypatch)
    sandboxes = app.state.services.sandboxes
    record = await SandboxRecord.get(session_id=account["sessionId"], state=SandboxState.RUNNING)
    process = await sandboxes.backend.exec(record.backend_id, "rm -rf gen")
    await process.wait()
    # What a watcher reports after rm -rf: some files, then the directory.
    synced = await sync_paths(sandboxes, record, ["gen/g1.txt", "gen/g2.txt"])
    assert synced.changed == 1
    assert await sync_paths(sandboxes, record, ["gen/g3.txt", "gen"]) == PathsSynced(0)
    assert _deletions(await all_events(api, account)) == ["gen"]
    kept = {"gen_keep.txt", "Gen/up.txt", "g_n/a.txt", "gxn/x.txt"}
    assert await _live_files(app, account) - starter == kept


async def test_a_directory_removed_live_is_about_one_deletion(
    app: Starlette, api: Api, account: Account
) -> None:
    await start(api, account)
    await _record_tree(api, account)
    tid = await terminal(api, account)
    await type_(api, account, tid, "rm -rf gen\n")
    await wait_until(
        lambda: _none_under_gen(app, account), timeout=30, what="gen/ to be recorded deleted"
    )
    deleted = _deletions(await all_events(api, account))
    # Before: one event per file (301), at the rate cap. The directory is one
    # event; at most one step's files may come first if rm was slow.
    assert "gen" in deleted
    assert len(deleted) <= 21, deleted


async def _none_under_gen(app: Starlette, account: Account) -> bool:
    return not any(p.startswith("gen/") for p in await _live_files(app, account))


async def test_a_file_rewritten_in_a_loop_is_recorded_a_few_times(
    app: Starlette, api: Api, account: Account
) -> None:
    await start(api, account)
    tid = await terminal(api, account)
    await type_(
        api,
        account,
        tid,
        "end=$((SECONDS+5)); while [ $SECONDS -lt $end ]; do date +%s.%N > clock.txt; done;"
        " echo over > clock_done.txt\n",
    )
    await wait_until(lambda: recorded(api, account, "file.written", "clock.txt"))
    await wait_until(lambda: recorded(api, account, "file.written", "clock_done.txt"), timeout=30)
    await no_sync_point_yet(api, account)
    writes = [
        e
        for e in await all_events(api, account)
        if e["type"] == "file.written" and e["payload"]["path"] == "clock.txt"
    ]
    # 4-5 s of a loop: looked at once at once, then 1 s and 2 s later (the
    # interval doubles while the file keeps changing), not ~20 times a second.
    assert 1 <= len(writes) <= 4, len(writes)
    # A sync point records the latest content whatever the pace.
    await run(api, account, "true")
    record = await SandboxRecord.get(session_id=account["sessionId"], state=SandboxState.RUNNING)
    content = await app.state.services.sandboxes.backend.read_file(record.backend_id, "clock.txt")
    current = await app.state.services.sandboxes.files.current(record.session_id)
    assert current["clock.txt"].sha256 == hashlib.sha256(content).hexdigest()


async def test_the_watcher_holds_the_session_lock_for_small_steps(
    api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync point (a test run) waits for at most one step of a burst, not the burst."""
    steps: list[int] = []

    async def counted(*args: Any, **kwargs: Any) -> PathsSynced:
        synced = await sync_paths(*args, **kwargs)
        steps.append(synced.changed)
        return synced

    monkeypatch.setattr(file_watch, "sync_paths", counted)
    await start(api, account)
    tid = await terminal(api, account)
    burst = "mkdir gen && for i in $(seq 300); do echo > gen/g$i.txt; done\n"
    await type_(api, account, tid, burst)
    await wait_until(lambda: sum(steps) >= 150, timeout=30, what="half the burst recorded")
    assert max(steps) <= 20, steps
