"""Editor saves without a sandbox: ``writeFile``/``deleteFile`` while none runs.

An editor autosaves every few seconds; the idle reaper stops sandboxes after a
break. Saves made meanwhile go to the recording (``source: "editor"``) and the
next sandbox starts with them. Once the session has ended nothing changes.
All on the real local sandbox and the real reaper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette

from models.event import Event
from models.file import FileSnapshot
from models.sandbox import SandboxRecord, SandboxState
from resolvers.reaper import reap_once
from tests.conftest import Account
from tests.support import Api
from tests.test_sandbox_lifecycle import sandboxes_with
from tests.workspace_support import DELETE, FILE, FILES, WRITE, events, run, start


async def save(api: Api, account: Account, path: str, content: str) -> dict[str, object]:
    result = await api(
        WRITE,
        {"s": account["sessionId"], "p": path, "c": content},
        token=account["candidateToken"],
    )
    return result.ok()["writeFile"]  # type: ignore[no-any-return]


async def stop_idle(app: Starlette, account: Account) -> None:
    """What the idle reaper does after a coffee break."""
    await SandboxRecord.filter(session_id=account["sessionId"]).update(
        last_activity_at=datetime.now(UTC) - timedelta(hours=1)
    )
    await reap_once(sandboxes_with(app, idle_timeout_s=1800), now=datetime.now(UTC))
    record = await SandboxRecord.get(session_id=account["sessionId"])
    assert record.state is SandboxState.TERMINATED


async def test_autosave_after_the_idle_reaper_is_kept_and_restored(
    app: Starlette, api: Api, account: Account
) -> None:
    sid, token = account["sessionId"], account["candidateToken"]
    await start(api, account)
    await run(api, account, "printf 'v1\\n' > notes.txt && printf 'gone\\n' > old.txt")
    await stop_idle(app, account)

    await save(api, account, "notes.txt", "v2 typed after the break\n")
    deleted = await api(DELETE, {"s": sid, "p": "old.txt"}, token=token)
    assert deleted.ok()["deleteFile"]["path"] == "old.txt"

    read = (await api(FILE, {"s": sid, "p": "notes.txt"}, token=token)).ok()["file"]
    assert (read["content"], read["fromRecording"]) == ("v2 typed after the break\n", True)
    listed = {f["path"] for f in (await api(FILES, {"s": sid}, token=token)).ok()["files"]}
    assert "notes.txt" in listed
    assert "old.txt" not in listed
    logged = [e for e in await events(api, account) if e["type"].startswith("file.")]
    assert logged[-2]["payload"] == {
        "path": "notes.txt",
        "size": 25,
        "sha256": read["sha256"],
        "source": "editor",
    }
    assert (logged[-1]["type"], logged[-1]["payload"]) == (
        "file.deleted",
        {"path": "old.txt", "source": "editor"},
    )

    await start(api, account)
    restored = await run(api, account, "cat notes.txt; ls old.txt 2>&1 || true")
    assert restored["stdout"].startswith("v2 typed after the break\n")
    assert "No such file" in restored["stdout"]


async def test_saves_before_the_first_sandbox_win_over_starter_files(
    api: Api, account: Account
) -> None:
    sid, token = account["sessionId"], account["candidateToken"]
    saved = await save(api, account, "README.md", "my own readme\n")
    assert saved["path"] == "README.md"
    await save(api, account, "scratch/idea.txt", "first thought\n")
    assert not await SandboxRecord.exists(session_id=sid)

    await start(api, account)
    inside = await run(api, account, "cat README.md scratch/idea.txt")
    assert inside["stdout"] == "my own readme\nfirst thought\n"
    # The other starter files still arrive with the first sandbox.
    starters = [
        e
        for e in await events(api, account)
        if e["type"] == "file.written" and e["payload"]["source"] == "starter"
    ]
    assert starters
    assert "README.md" not in {e["payload"]["path"] for e in starters}
    recorded = await FileSnapshot.get(session_id=sid, path="README.md")
    read = (await api(FILE, {"s": sid, "p": "README.md"}, token=token)).ok()["file"]
    assert recorded.sha256 == read["sha256"]


async def test_a_save_racing_a_start_reaches_the_sandbox(api: Api, account: Account) -> None:
    await start(api, account)
    await run(api, account, "printf 'old\\n' > race.txt")
    for attempt in range(3):
        await api(
            "mutation($s: ID!) { terminateSandbox(sessionId: $s) { id } }",
            {"s": account["sessionId"]},
            token=account["candidateToken"],
        )
        content = f"saved while starting {attempt}\n"
        await asyncio.gather(start(api, account), save(api, account, "race.txt", content))
        inside = await run(api, account, "cat race.txt")
        assert inside["stdout"] == content


async def test_nothing_changes_once_the_session_has_ended(api: Api, account: Account) -> None:
    sid, token = account["sessionId"], account["candidateToken"]
    await save(api, account, "draft.txt", "before the end\n")
    await api(
        "mutation($s: ID!) { endSession(sessionId: $s) { id } }",
        {"s": sid},
        token=account["atsToken"],
    )
    before = len(await events(api, account))
    for result in (
        await api(WRITE, {"s": sid, "p": "draft.txt", "c": "after"}, token=token),
        await api(DELETE, {"s": sid, "p": "draft.txt"}, token=token),
    ):
        assert result.codes == ["CONFLICT"]
    assert len(await events(api, account)) == before
    read = (await api(FILE, {"s": sid, "p": "draft.txt"}, token=token)).ok()["file"]
    assert read["content"] == "before the end\n"


async def test_no_save_reaches_another_session(
    api: Api, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    mine, theirs = await account_factory(), await account_factory()
    for token in (mine["candidateToken"], mine["interviewerToken"]):
        result = await api(
            WRITE, {"s": theirs["sessionId"], "p": "x.txt", "c": "planted"}, token=token
        )
        assert result.codes == ["NOT_FOUND"]
        result = await api(DELETE, {"s": theirs["sessionId"], "p": "README.md"}, token=token)
        assert result.codes == ["NOT_FOUND"]
    assert not await FileSnapshot.exists(session_id=theirs["sessionId"])


async def test_deleting_a_file_that_was_never_saved_is_not_found(
    api: Api, account: Account
) -> None:
    result = await api(
        DELETE, {"s": account["sessionId"], "p": "nothing.txt"}, token=account["candidateToken"]
    )
    assert result.codes == ["NOT_FOUND"]


async def test_a_save_must_fit_next_to_the_recorded_files(
    app: Starlette, api: Api, account: Account
) -> None:
    """The next sandbox is built from the recording: a file under a file, or a file
    where files make a directory, would keep it from starting."""
    sid, token = account["sessionId"], account["candidateToken"]
    await save(api, account, "pkg/mod.py", "X = 1\n")
    await save(api, account, "notes.txt", "n\n")
    for path in ("notes.txt/inner.txt", "pkg", "notes.txt/a/b.txt"):
        result = await api(WRITE, {"s": sid, "p": path, "c": "x"}, token=token)
        assert result.codes == ["BAD_USER_INPUT"], (path, result.body)
    # A recording that holds such a pair anyway (written before this check) still starts:
    # the file that cannot be placed is reported, the rest restored.
    recorder = app.state.services.sandboxes.files
    await recorder.written(sid, "pkg/mod.py/evil.txt", b"legacy", source="editor")
    await start(api, account)
    inside = await run(api, account, "cat pkg/mod.py notes.txt")
    assert inside["stdout"] == "X = 1\nn\n"
    skipped = await Event.filter(session_id=sid, type="file.skipped")
    assert [e.payload["path"] for e in skipped] == ["pkg/mod.py/evil.txt"]
    assert skipped[0].payload["reason"].startswith("not restored")
