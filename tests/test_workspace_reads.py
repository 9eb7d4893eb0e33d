"""What one ``file()`` request may read, through the API on the real local sandbox (issue 9 §4).

Before: each alias read up to the backend's 64 MiB limit (not MAX_FILE_BYTES),
and asking only for ``size`` read the whole file; a query of many aliases
multiplied that. Now: metadata comes from a stat, content only when asked and
only up to MAX_FILE_BYTES, and at most 16 reads per request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.applications import Starlette

from gql.workspace_ops import MAX_FILE_READS
from resolvers import workspace_sync
from tests.conftest import Account
from tests.support import Api, Result
from tests.test_terminal import INPUT, OPEN
from tests.workspace_support import RUN, WRITE, events, run, start


@pytest.fixture
def reads(app: Starlette, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None]]:
    """Every read_file the API makes of the real backend (path, max_bytes).

    The live file watcher's reads (its tasks are named ``file-watch …``) are not
    the request's: they follow a change whenever it happens, so they are left out.
    """
    backend = app.state.services.sandboxes.backend
    real: Callable[..., Awaitable[bytes]] = backend.read_file
    seen: list[tuple[str, int | None]] = []

    async def spy(sandbox_id: str, path: str, *, max_bytes: int | None = None) -> bytes:
        task = asyncio.current_task()
        if task is None or not task.get_name().startswith("file-watch"):
            seen.append((path, max_bytes))
        return await real(sandbox_id, path, max_bytes=max_bytes)

    monkeypatch.setattr(backend, "read_file", spy)
    return seen


def aliases(count: int, fields: str, path: str = "big.txt") -> str:
    body = " ".join(
        f'f{i}: file(sessionId: $s, path: "{path}") {{ {fields} }}' for i in range(count)
    )
    return f"query($s: ID!) {{ {body} }}"


async def test_size_only_never_reads_and_content_is_capped_at_max_file_bytes(
    app: Starlette, api: Api, account: Account, reads: list[tuple[str, int | None]]
) -> None:
    limit = app.state.services.settings.max_file_bytes
    await start(api, account)
    await run(api, account, f"head -c {limit * 8} /dev/urandom > big.bin")
    reads.clear()
    sid, token = account["sessionId"], account["candidateToken"]
    meta = await api(aliases(1, "path size fromRecording", "big.bin"), {"s": sid}, token=token)
    assert meta.ok()["f0"] == {"path": "big.bin", "size": limit * 8, "fromRecording": False}
    assert reads == []
    content = await api(aliases(1, "content", "big.bin"), {"s": sid}, token=token)
    assert content.codes == ["BAD_USER_INPUT"]
    assert "MAX_FILE_BYTES" in content.errors[0]["message"]
    assert reads == []  # refused from the stat, nothing read
    await run(api, account, f"head -c {limit} /dev/zero > edge.bin")
    reads.clear()  # the sync after the command read it
    edge = await api(
        aliases(1, "size sha256 content encoding", "edge.bin"), {"s": sid}, token=token
    )
    assert edge.ok()["f0"]["size"] == limit
    assert reads == [("edge.bin", limit)]  # read once for content and sha256, capped


async def test_many_aliases_are_bounded(
    api: Api, account: Account, reads: list[tuple[str, int | None]]
) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    await api(WRITE, {"s": sid, "p": "big.txt", "c": "x" * 1000}, token=token)
    reads.clear()
    many = await api(aliases(MAX_FILE_READS + 1, "content"), {"s": sid}, token=token)
    assert set(many.codes) == {"BAD_USER_INPUT"}, many.body
    assert reads == []
    # Through a fragment and inline fragments, the count is the same.
    spread = (
        "query($s: ID!) { ...F } fragment F on Query { "
        + " ".join(
            f'f{i}: file(sessionId: $s, path: "big.txt") {{ ... on File {{ sha256 }} }}'
            for i in range(MAX_FILE_READS + 1)
        )
        + " }"
    )
    assert set((await api(spread, {"s": sid}, token=token)).codes) == {"BAD_USER_INPUT"}
    assert reads == []
    allowed = await api(aliases(MAX_FILE_READS, "content"), {"s": sid}, token=token)
    assert len(allowed.ok()) == MAX_FILE_READS
    assert len(reads) == MAX_FILE_READS
    reads.clear()
    sizes = await api(aliases(25, "size"), {"s": sid}, token=token)  # stats only
    assert {v["size"] for v in sizes.ok().values()} == {1000}
    assert reads == []


async def test_base64_with_non_ascii_is_bad_user_input(api: Api, account: Account) -> None:
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]
    for content in ("aGVsbG8=é", "ü", "☃☃☃☃", "aGVs\u0000bG8="):
        result = await api(
            WRITE, {"s": sid, "p": "x.bin", "c": content, "e": "BASE64"}, token=token
        )
        assert result.codes == ["BAD_USER_INPUT"], (content, result.body)
        assert result.errors[0]["extensions"]["field"] == "content"
    good = base64.b64encode("é".encode()).decode()
    ok: Any = await api(WRITE, {"s": sid, "p": "x.bin", "c": good, "e": "BASE64"}, token=token)
    assert ok.ok()["writeFile"]["size"] == 2


async def test_sync_does_not_reread_unchanged_files_until_the_rehash_period(
    app: Starlette,
    api: Api,
    account: Account,
    reads: list[tuple[str, int | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of commands must not re-read the whole workspace each time (a read amplifier)."""
    await start(api, account)
    await run(api, account, "for i in $(seq 20); do head -c 100000 /dev/urandom > f$i.bin; done")
    reads.clear()
    await run(api, account, "echo changed > f1.bin")
    assert [path for path, _ in reads] == ["f1.bin"]  # size/mtime changed: only that one
    reads.clear()
    # A forged mtime hides a change only until the periodic re-read.
    await run(api, account, "touch -r f3.bin /tmp/t; cp f2.bin f3.bin; touch -r /tmp/t f3.bin")
    assert reads == []

    async def f3_versions() -> int:
        log = await events(api, account)
        return sum(e["type"] == "file.written" and e["payload"]["path"] == "f3.bin" for e in log)

    assert await f3_versions() == 1
    # The final capture before the sandbox ends reads everything: f3 is caught.
    sandboxes = app.state.services.sandboxes
    record = await sandboxes.live(uuid.UUID(account["sessionId"]))
    assert await sandboxes.sync_workspace(record, thorough=True) == 1
    assert await f3_versions() == 2
    # So is a forged file once its hash is older than REHASH_AFTER_S.
    await run(api, account, "touch -r f4.bin /tmp/t; cp f2.bin f4.bin; touch -r /tmp/t f4.bin")
    monkeypatch.setattr(workspace_sync, "REHASH_AFTER_S", 0.0)
    reads.clear()
    await run(api, account, "true")
    assert len(reads) >= 20
    log = await events(api, account)
    assert sum(e["type"] == "file.written" and e["payload"]["path"] == "f4.bin" for e in log) == 2


async def test_lone_surrogates_in_path_or_content_are_bad_user_input(
    api: Api, account: Account
) -> None:
    """JSON lets a client send "\\udcff"; it must not reach the disk or the database."""
    await start(api, account)
    sid, token = account["sessionId"], account["candidateToken"]

    async def post(query: str, variables: dict[str, Any]) -> Result:
        body = json.dumps({"query": query, "variables": variables})  # ASCII: \\udcff escapes
        response = await api.client.post(
            "/graphql",
            content=body.encode(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        return Result(response.status_code, response.json())

    for variables, field in (
        ({"s": sid, "p": "bad\udcff.txt", "c": "x"}, "path"),
        ({"s": sid, "p": "ok.txt", "c": "x\ud800y"}, "content"),
    ):
        result = await post(WRITE, variables)
        assert result.codes == ["BAD_USER_INPUT"], result.body
        assert result.errors[0]["extensions"]["field"] == field
    read = await post(
        "query($s: ID!, $p: String!) { file(sessionId: $s, path: $p) { size } }",
        {"s": sid, "p": "bad\udcff.txt"},
    )
    assert read.codes == ["BAD_USER_INPUT"]
    command = await post(RUN, {"s": sid, "c": "echo \ud800", "t": 5})
    assert command.codes == ["BAD_USER_INPUT"], command.body
    assert command.errors[0]["extensions"]["field"] == "command"
    opened = await post(OPEN, {"s": sid, "c": 80, "r": 24})
    typed = await post(INPUT, {"t": opened.ok()["openTerminal"]["id"], "d": "\udcff"})
    assert typed.codes == ["BAD_USER_INPUT"], typed.body
    assert typed.errors[0]["extensions"]["field"] == "data"
