"""Playback: any file at any seq, snapshots, blobs only through their own session."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from tortoise import Tortoise

from models.file import FileVersion
from resolvers import playback
from tests.conftest import Account, random_email
from tests.support import Api
from tests.test_testruns import SOLUTIONS, run_tests
from tests.workspace_support import DELETE, TERMINATE, WRITE, events, start

FILE_AT = """query($s: ID!, $p: String!, $at: Int) {
  file(sessionId: $s, path: $p, atSeq: $at) { path size sha256 content fromRecording }
}"""
SNAPSHOT = """query($s: ID!, $at: Int) {
  snapshot(sessionId: $s, atSeq: $at) { path size sha256 }
}"""
BLOB = """query($s: ID!, $h: String!) {
  blob(sessionId: $s, sha256: $h) { sha256 size encoding content }
}"""
LAST_SEQ = "query($s: ID!) { recording(sessionId: $s, first: 1) { lastSeq } }"
FILES = 'query($s: ID!) { files(sessionId: $s, path: "") { path kind sha256 } }'
CREATE_SESSION = """mutation($q: ID!, $e: String!) {
  createSession(input: {questionId: $q, candidateName: "B", candidateEmail: $e}) {
    session { id } candidateToken } }"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def write(api: Api, account: Account, path: str, body: str) -> None:
    variables = {"s": account["sessionId"], "p": path, "c": body}
    (await api(WRITE, variables, token=account["candidateToken"])).ok()


async def delete(api: Api, account: Account, path: str) -> None:
    variables = {"s": account["sessionId"], "p": path}
    (await api(DELETE, variables, token=account["candidateToken"])).ok()


async def last_seq(api: Api, account: Account) -> int:
    result = await api(LAST_SEQ, {"s": account["sessionId"]}, token=account["interviewerToken"])
    return int(result.ok()["recording"]["lastSeq"])


async def file_at(api: Api, account: Account, path: str, at: int | None, token: str) -> Any:
    return await api(FILE_AT, {"s": account["sessionId"], "p": path, "at": at}, token=token)


async def snapshot(api: Api, account: Account, at: int | None) -> dict[str, str]:
    result = await api(SNAPSHOT, {"s": account["sessionId"], "at": at}, token=account["atsToken"])
    return {f["path"]: f["sha256"] for f in result.ok()["snapshot"]}


async def test_time_travel_across_writes_deletes_and_recreations(
    api: Api, account: Account
) -> None:
    await start(api, account)
    staff = account["interviewerToken"]
    seqs: dict[str, int] = {}
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("v1", lambda: write(api, account, "a.txt", "one")),
        ("v2", lambda: write(api, account, "a.txt", "two")),
        ("dir", lambda: write(api, account, "d/x.txt", "x")),
        ("dir2", lambda: write(api, account, "d/sub/y.txt", "y")),
        ("rm_a", lambda: delete(api, account, "a.txt")),
        ("rm_d", lambda: delete(api, account, "d")),
        ("v3", lambda: write(api, account, "a.txt", "three")),
        ("d_again", lambda: write(api, account, "d/x.txt", "x again")),
    ]
    seqs["start"] = await last_seq(api, account)
    for name, step in steps:
        await step()
        seqs[name] = await last_seq(api, account)

    expected_a = {
        "start": None,
        "v1": "one",
        "v2": "two",
        "dir": "two",
        "dir2": "two",
        "rm_a": None,
        "rm_d": None,
        "v3": "three",
        "d_again": "three",
    }
    expected_x = {"dir": "x", "dir2": "x", "rm_a": "x", "rm_d": None, "v3": None}
    expected_x |= {"d_again": "x again", "v1": None, "start": None}
    for name, at in seqs.items():
        for path, wanted in (("a.txt", expected_a[name]), ("d/x.txt", expected_x.get(name))):
            result = await file_at(api, account, path, at, staff)
            if wanted is None:
                assert result.codes == ["NOT_FOUND"], (name, path, result.body)
            else:
                got = result.ok()["file"]
                assert got["content"] == wanted, (name, path)
                assert got["sha256"] == sha(wanted)
                assert got["size"] == len(wanted)
                assert got["fromRecording"] is True
        y = await file_at(api, account, "d/sub/y.txt", at, staff)
        y_live = name in {"dir2", "rm_a"}
        assert (y.codes == []) is y_live, (name, y.body)

    # Before the first event nothing existed; between two writes, the earlier one.
    assert (await file_at(api, account, "a.txt", 0, staff)).codes == ["NOT_FOUND"]
    between = await file_at(api, account, "a.txt", seqs["v2"] - 1, staff)
    assert between.ok()["file"]["content"] == "one"
    # atSeq at the last event agrees with the present (read from the running sandbox).
    now = await file_at(api, account, "a.txt", None, staff)
    assert now.ok()["file"]["fromRecording"] is False
    assert now.ok()["file"]["content"] == "three"

    # Snapshots: the starter files plus what the steps left at each moment.
    starter = await snapshot(api, account, seqs["start"])
    assert starter, "the starter files are recorded at start"
    assert "a.txt" not in starter
    at_dir2 = await snapshot(api, account, seqs["dir2"])
    assert at_dir2 == starter | {
        "a.txt": sha("two"),
        "d/x.txt": sha("x"),
        "d/sub/y.txt": sha("y"),
    }
    assert await snapshot(api, account, seqs["rm_d"]) == starter
    final = starter | {"a.txt": sha("three"), "d/x.txt": sha("x again")}
    assert await snapshot(api, account, seqs["d_again"]) == final
    assert await snapshot(api, account, None) == final
    assert await snapshot(api, account, 0) == {}


async def test_at_seq_out_of_range_is_bad_user_input(api: Api, account: Account) -> None:
    await start(api, account)
    await write(api, account, "a.txt", "one")
    last = await last_seq(api, account)
    for at in (-1, last + 1):
        result = await file_at(api, account, "a.txt", at, account["interviewerToken"])
        assert result.codes == ["BAD_USER_INPUT"], result.body
        shot = await api(SNAPSHOT, {"s": account["sessionId"], "at": at}, token=account["atsToken"])
        assert shot.codes == ["BAD_USER_INPUT"], shot.body


async def test_candidate_travels_in_own_session_and_reads_own_blobs(
    api: Api, account: Account
) -> None:
    await start(api, account)
    await write(api, account, "notes.md", "first draft")
    draft = await last_seq(api, account)
    await write(api, account, "notes.md", "final")
    token, sid = account["candidateToken"], account["sessionId"]
    old = await file_at(api, account, "notes.md", draft, token)
    assert old.ok()["file"]["content"] == "first draft"
    blob = (await api(BLOB, {"s": sid, "h": sha("first draft")}, token=token)).ok()["blob"]
    assert blob == {
        "sha256": sha("first draft"),
        "size": len("first draft"),
        "encoding": "UTF8",
        "content": "first draft",
    }
    # Upper-case hex names the same blob; malformed hashes are refused as input.
    upper = await api(BLOB, {"s": sid, "h": sha("final").upper()}, token=token)
    assert upper.ok()["blob"]["content"] == "final"
    assert (await api(BLOB, {"s": sid, "h": "abc"}, token=token)).codes == ["BAD_USER_INPUT"]


async def test_blob_belongs_to_its_session_only(
    api: Api, account: Account, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    """Another session's hash, in the same account or another, is NOT_FOUND, exactly
    like a hash stored nowhere: blob() is no oracle for other sessions' content."""
    other = await account_factory()
    made = await api(
        CREATE_SESSION,
        {"q": account["questionId"], "e": random_email()},
        token=account["interviewerToken"],
    )
    created = made.ok()["createSession"]
    sibling = {
        **account,
        "sessionId": created["session"]["id"],
        "candidateToken": created["candidateToken"],
    }
    for owner, body in ((sibling, "sibling secret"), (other, "other account secret")):
        await start(api, owner)
        await write(api, owner, "secret.txt", body)
    await start(api, account)
    await write(api, account, "mine.txt", "mine")
    sid = account["sessionId"]
    never = sha("stored nowhere")
    tries = [
        (sid, sha("sibling secret"), account["interviewerToken"]),
        (sid, sha("other account secret"), account["interviewerToken"]),
        (sid, sha("sibling secret"), account["candidateToken"]),  # own session, foreign hash
        (sibling["sessionId"], sha("sibling secret"), account["candidateToken"]),
        (other["sessionId"], sha("other account secret"), account["interviewerToken"]),
        (other["sessionId"], sha("other account secret"), account["atsToken"]),
        (sid, never, account["interviewerToken"]),
    ]
    answers = []
    for session_id, digest, token in tries:
        result = await api(BLOB, {"s": session_id, "h": digest}, token=token)
        assert result.codes == ["NOT_FOUND"], (session_id, result.body)
        assert result.data is None
        answers.append(result.errors[0]["message"])
    # Own session, foreign hash, answers exactly as a hash stored nowhere.
    assert answers[0] == answers[1] == answers[2] == answers[-1]
    # The owners read them.
    mine = await api(BLOB, {"s": sid, "h": sha("mine")}, token=account["candidateToken"])
    assert mine.ok()["blob"]["content"] == "mine"
    theirs = await api(
        BLOB, {"s": other["sessionId"], "h": sha("other account secret")}, token=other["atsToken"]
    )
    assert theirs.ok()["blob"]["content"] == "other account secret"
    # file(atSeq) and snapshot of another account's session: NOT_FOUND too.
    at = await last_seq(api, other)
    stolen = await api(
        FILE_AT,
        {"s": other["sessionId"], "p": "secret.txt", "at": at},
        token=account["interviewerToken"],
    )
    assert stolen.codes == ["NOT_FOUND"]
    shot = await api(
        SNAPSHOT, {"s": sibling["sessionId"], "at": 1}, token=account["candidateToken"]
    )
    assert shot.codes == ["NOT_FOUND"]


async def test_file_entries_carry_recorded_hashes(
    api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start(api, account)
    await write(api, account, "pkg/a.py", "A = 1\n")
    token, sid = account["candidateToken"], account["sessionId"]
    loads: list[str] = []
    real = playback.recorded_hashes

    async def counted(principal: Any, session_id: str) -> dict[str, str]:
        loads.append(session_id)
        return await real(principal, session_id)

    monkeypatch.setattr(playback, "recorded_hashes", counted)
    listed = (await api(FILES, {"s": sid}, token=token)).ok()["files"]
    assert len(listed) > 2
    assert loads == [sid]  # one load for the whole listing, not one per entry
    await api("query($s: ID!) { files(sessionId: $s) { path } }", {"s": sid}, token=token)
    assert loads == [sid]  # and none when no entry asks for sha256
    for phase in ("running", "stopped"):
        entries = {e["path"]: e for e in (await api(FILES, {"s": sid}, token=token)).ok()["files"]}
        assert entries["pkg/a.py"]["sha256"] == sha("A = 1\n"), phase
        if phase == "running":
            assert entries["pkg"]["kind"] == "DIRECTORY"
            assert entries["pkg"]["sha256"] is None
        await api(TERMINATE, {"s": sid}, token=token)
    # Every hash listed resolves through blob.
    entries = (await api(FILES, {"s": sid}, token=token)).ok()["files"]
    for entry in entries:
        blob = await api(BLOB, {"s": sid, "h": entry["sha256"]}, token=token)
        assert blob.ok()["blob"]["size"] >= 0


async def test_backfill_rebuilds_versions_from_the_events(api: Api, account: Account) -> None:
    """0009 indexes recordings made before it from their file events."""
    await start(api, account)
    await write(api, account, "a.txt", "one")
    await write(api, account, "d/x.txt", "x")
    await delete(api, account, "d")
    await write(api, account, "a.txt", "two")
    sid = account["sessionId"]
    recorded = await events(api, account)
    assert any(e["type"] == "file.deleted" for e in recorded)
    fields = ("path", "seq", "sha256", "size")
    before = set(await FileVersion.filter(session_id=sid).values_list(*fields))
    assert ("d/x.txt", max(e["seq"] for e in recorded if e["type"] == "file.deleted"), None, 0) in (
        before
    )
    await FileVersion.filter(session_id=sid).delete()  # as before the migration
    migration = importlib.import_module("models.migrations.0009_file_versions")
    editor = SimpleNamespace(collect_sql=False, client=Tortoise.get_connection("default"))
    await migration.backfill_file_versions(None, editor)
    assert set(await FileVersion.filter(session_id=sid).values_list(*fields)) == before


CODE_SNAPSHOT = """query($id: ID!) {
  testRun(id: $id) { status sessionId codeSnapshot { path size sha256 } }
}"""


async def test_test_run_code_snapshot_resolves_through_blob(api: Api, account: Account) -> None:
    """A real run on the local sandbox: the code it tested, file by file, through blob."""
    await start(api, account)
    path, solution = SOLUTIONS["PYTHON"]
    await write(api, account, path, solution)
    run = await run_tests(api, account, "PYTHON")
    assert run["status"] == "FINISHED", run
    await write(api, account, path, "# rewritten after the run\n")  # the snapshot keeps the run's
    token, sid = account["candidateToken"], account["sessionId"]
    tested = (await api(CODE_SNAPSHOT, {"id": run["id"]}, token=token)).ok()["testRun"]
    files = {f["path"]: f for f in tested["codeSnapshot"]}
    assert files[path] == {"path": path, "size": len(solution), "sha256": sha(solution)}
    assert [f["path"] for f in tested["codeSnapshot"]] == sorted(files)
    for entry in tested["codeSnapshot"]:
        blob = (await api(BLOB, {"s": sid, "h": entry["sha256"]}, token=token)).ok()["blob"]
        assert blob["size"] == entry["size"]
    content = await api(BLOB, {"s": sid, "h": files[path]["sha256"]}, token=token)
    assert content.ok()["blob"]["content"] == solution
