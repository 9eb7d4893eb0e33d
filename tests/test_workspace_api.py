"""Sandbox lifecycle, files and commands through the API, on the real local backend."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

from models.file import FileBlob
from tests.conftest import Account
from tests.support import Api
from tests.workspace_support import (
    DELETE,
    FILE,
    FILES,
    RUN,
    START,
    TERMINATE,
    WRITE,
    events,
    run,
    start,
)


async def test_start_is_idempotent_and_seeds_the_workspace(api: Api, account: Account) -> None:
    first, second = await asyncio.gather(start(api, account), start(api, account, "atsToken"))
    assert first["id"] == second["id"]
    assert first["state"] == "RUNNING"
    assert (await start(api, account))["id"] == first["id"]
    session = await api(
        "query($s: ID!) { session(id: $s) { status sandbox { id } } }",
        {"s": account["sessionId"]},
        token=account["candidateToken"],
    )
    assert session.ok()["session"] == {"status": "ACTIVE", "sandbox": {"id": first["id"]}}
    files = (await api(FILES, {"s": account["sessionId"]}, token=account["candidateToken"])).ok()
    paths = {f["path"] for f in files["files"] if f["kind"] == "FILE"}
    assert {"solution.py", "README.md"} <= paths
    readme = (
        await api(
            FILE, {"s": account["sessionId"], "p": "README.md"}, token=account["candidateToken"]
        )
    ).ok()["file"]
    assert readme["content"].startswith("# Two Sum")
    assert readme["sha256"] == hashlib.sha256(readme["content"].encode()).hexdigest()
    types = [e["type"] for e in await events(api, account)]
    assert types.count("sandbox.started") == 1
    assert types.count("session.started") == 1
    assert types.count("file.written") == 2


async def test_write_read_delete_are_recorded(api: Api, account: Account) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    body = "def two_sum(nums, target):\n    return [0, 1]\n"
    written = (
        await api(WRITE, {"s": sid, "p": "/workspace/solution.py", "c": body}, token=token)
    ).ok()["writeFile"]
    assert written == {
        "path": "solution.py",
        "size": len(body),
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
    }
    read = (await api(FILE, {"s": sid, "p": "solution.py"}, token=token)).ok()["file"]
    assert (read["content"], read["encoding"], read["fromRecording"]) == (body, "UTF8", False)

    binary = bytes(range(256))
    payload = base64.b64encode(binary).decode()
    await api(WRITE, {"s": sid, "p": "data/blob.bin", "c": payload, "e": "BASE64"}, token=token)
    read = (await api(FILE, {"s": sid, "p": "data/blob.bin"}, token=token)).ok()["file"]
    assert read["encoding"] == "BASE64"
    assert base64.b64decode(read["content"]) == binary

    assert (await api(DELETE, {"s": sid, "p": "data/blob.bin"}, token=token)).ok()
    missing = await api(FILE, {"s": sid, "p": "data/blob.bin"}, token=token)
    assert missing.codes == ["NOT_FOUND"]
    log = await events(api, account)
    writes = [e["payload"] for e in log if e["type"] == "file.written"]
    assert {
        "path": "solution.py",
        "size": len(body),
        "sha256": written["sha256"],
        "source": "api",
    } in writes
    assert any(e["type"] == "file.deleted" and e["payload"]["path"] == "data/blob.bin" for e in log)


async def test_bad_paths_are_refused(api: Api, account: Account) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    for path in ("../etc/passwd", "/etc/passwd", "a/../../b", "", "x\x00y"):
        result = await api(WRITE, {"s": sid, "p": path, "c": "x"}, token=token)
        assert result.codes == ["BAD_USER_INPUT"], (path, result.body)
        assert result.errors[0]["extensions"]["field"] == "path"
    too_big = "x" * ((1 << 20) + 1)
    result = await api(WRITE, {"s": sid, "p": "big.txt", "c": too_big}, token=token)
    assert result.codes == ["BAD_USER_INPUT"]
    bad64 = await api(WRITE, {"s": sid, "p": "b.bin", "c": "@@@", "e": "BASE64"}, token=token)
    assert bad64.codes == ["BAD_USER_INPUT"]


async def test_symlinks_cannot_reach_host_files(api: Api, account: Account) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    made = await run(api, account, "ln -s /etc/passwd passwd && ln -s / root && echo ok")
    assert made["stdout"] == "ok\n"
    host_passwd = Path("/etc/passwd").read_text()
    for path in ("passwd", "root/etc/passwd"):
        result = await api(FILE, {"s": sid, "p": path}, token=token)
        assert result.codes, result.body
        assert result.codes[0] in {"BAD_USER_INPUT", "NOT_FOUND"}, result.body
        assert host_passwd not in str(result.body)
    result = await api(WRITE, {"s": sid, "p": "root/tmp/pwned", "c": "x"}, token=token)
    assert result.codes == ["BAD_USER_INPUT"]


async def test_run_command_streams_events_and_records_file_changes(
    api: Api, account: Account
) -> None:
    await start(api, account)
    result = await run(api, account, "echo hello; echo oops >&2; printf 'x=1' > made.txt; exit 3")
    assert result["exitCode"] == 3
    assert result["stdout"] == "hello\n"
    assert result["stderr"] == "oops\n"
    assert result["timedOut"] is False
    nul = await run(api, account, "printf 'a\\0b'")  # NUL cannot go into PostgreSQL text
    assert nul["stdout"] == "a\x00b"
    log = await events(api, account)
    mine = [e for e in log if (e.get("payload") or {}).get("commandId") == result["commandId"]]
    assert mine[0]["type"] == "command.started"
    assert mine[-1]["type"] == "command.exited"
    assert mine[-1]["payload"]["exitCode"] == 3
    output = "".join(e["payload"]["data"] for e in mine if e["type"] == "command.output")
    assert "hello\n" in output
    assert "oops\n" in output
    made = [
        e["payload"]
        for e in log
        if e["type"] == "file.written" and e["payload"]["path"] == "made.txt"
    ]
    assert made == [
        {
            "path": "made.txt",
            "size": 3,
            "source": "sandbox",
            "sha256": hashlib.sha256(b"x=1").hexdigest(),
        }
    ]


async def test_timeouts_and_output_cap(api: Api, account: Account) -> None:
    await start(api, account)
    slow = await run(api, account, "sleep 30", timeout=1)
    assert slow["timedOut"] is True
    assert slow["exitCode"] is None
    assert slow["durationMs"] < 10_000
    flood = await run(api, account, "head -c 5000000 /dev/zero | tr '\\0' 'y'", timeout=30)
    assert flood["truncated"] is True
    assert len(flood["stdout"]) < 1_100_000
    assert "output truncated" in flood["stdout"]
    types = [e["type"] for e in await events(api, account)]
    assert "command.truncated" in types
    bad = await api(
        RUN, {"s": account["sessionId"], "c": "true", "t": 100000}, token=account["candidateToken"]
    )
    assert bad.codes == ["BAD_USER_INPUT"]


async def test_after_terminate_files_come_from_the_recording(api: Api, account: Account) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    await run(api, account, "echo 'print(42)' > solution.py")
    terminated = (await api(TERMINATE, {"s": sid}, token=token)).ok()["terminateSandbox"]
    assert terminated["state"] == "TERMINATED"
    again = (await api(TERMINATE, {"s": sid}, token=token)).ok()["terminateSandbox"]
    assert again["id"] == terminated["id"]
    read = (await api(FILE, {"s": sid, "p": "solution.py"}, token=token)).ok()["file"]
    assert read == {
        "path": "solution.py",
        "size": 10,
        "encoding": "UTF8",
        "content": "print(42)\n",
        "fromRecording": True,
        "sha256": hashlib.sha256(b"print(42)\n").hexdigest(),
    }
    listed = (await api(FILES, {"s": sid}, token=token)).ok()["files"]
    assert "solution.py" in {f["path"] for f in listed}
    conflict = await api(RUN, {"s": sid, "c": "true", "t": 5}, token=token)
    assert conflict.codes == ["CONFLICT"]
    restarted = await start(api, account)
    assert restarted["id"] != terminated["id"]
    restored = await run(api, account, "cat solution.py")
    assert restored["stdout"] == "print(42)\n"


async def test_identical_content_is_stored_once(api: Api, account_factory) -> None:  # type: ignore[no-untyped-def]
    content = "shared content " * 50
    digest = hashlib.sha256(content.encode()).hexdigest()
    for _ in range(2):
        account = await account_factory()
        await start(api, account)
        await api(
            WRITE,
            {"s": account["sessionId"], "p": "same.txt", "c": content},
            token=account["candidateToken"],
        )
    assert await FileBlob.filter(sha256=digest).count() == 1


async def test_ended_session_cannot_start_a_sandbox(api: Api, account: Account) -> None:
    await api(
        "mutation($s: ID!) { endSession(sessionId: $s) { id } }",
        {"s": account["sessionId"]},
        token=account["atsToken"],
    )
    result = await api(START, {"s": account["sessionId"]}, token=account["candidateToken"])
    assert result.codes == ["CONFLICT"]
