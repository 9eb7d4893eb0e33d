"""Special files a candidate plants in the workspace, through the API on the real local sandbox.

Issue 9 §3: a Unix socket read a few times through ``file`` opened the
process-wide circuit breaker (every account then got SANDBOX_UNAVAILABLE),
and a FIFO made every workspace sync fail (runCommand answered INTERNAL and
later changes were never recorded). Siblings: symlinks to special files and
to /dev/zero, filenames that are not UTF-8 or hold a newline, and a directory
so large that the listing is cut short before the candidate's code.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette

from modal_app.base import BackendUnavailable
from resolvers.breaker import CircuitBreaker
from resolvers.errors import SandboxUnavailable
from tests.conftest import Account
from tests.support import Api
from tests.workspace_support import FILE, FILES, TERMINATE, events, run, start

BIND = "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(\"zz.sock\")'"


async def read(api: Api, account: Account, path: str) -> Any:
    return await api(FILE, {"s": account["sessionId"], "p": path}, token=account["candidateToken"])


async def listing(api: Api, account: Account) -> dict[str, str]:
    result = await api(FILES, {"s": account["sessionId"]}, token=account["candidateToken"])
    return {f["path"]: f["kind"] for f in result.ok()["files"]}


def written(log: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [e for e in log if e["type"] == "file.written" and e["payload"]["path"] == path]


async def test_a_socket_read_repeatedly_does_not_take_sandboxes_from_other_accounts(
    app: Starlette, api: Api, account: Account, account_factory: Any
) -> None:
    await start(api, account)
    assert (await run(api, account, BIND))["exitCode"] == 0
    assert (await listing(api, account))["zz.sock"] == "SOCKET"
    for _ in range(12):  # the breaker's threshold was 5
        result = await read(api, account, "zz.sock")
        assert result.codes == ["BAD_USER_INPUT"], result.body
        assert result.errors[0]["extensions"]["field"] == "path"
        assert "socket" in result.errors[0]["message"]
    # Through a symlink inside the workspace: the same answer, the socket is never opened.
    await run(api, account, "ln -s zz.sock via-link")
    assert (await read(api, account, "via-link")).codes == ["BAD_USER_INPUT"]
    assert app.state.services.sandboxes.breaker.state == "closed"
    other = await account_factory()
    assert (await start(api, other))["state"] == "RUNNING"


async def test_a_fifo_neither_breaks_commands_nor_stops_the_recording(
    api: Api, account: Account
) -> None:
    await start(api, account)
    made = await run(api, account, "mkfifo pipe && echo 'x = 1' > solution.py")
    assert made["exitCode"] == 0  # was INTERNAL: the sync tried to read the FIFO
    assert (await listing(api, account))["pipe"] == "FIFO"
    assert (await read(api, account, "pipe")).codes == ["BAD_USER_INPUT"]
    await run(api, account, "ln -s /workspace/pipe pipe-link; echo 'x = 2' > later.py")
    assert (await read(api, account, "pipe-link")).codes == ["BAD_USER_INPUT"]  # did not hang
    await run(api, account, "echo 'x = 3' > solution.py")
    log = await events(api, account)
    assert not [e for e in log if e["payload"].get("path") in {"pipe", "pipe-link"}]
    assert written(log, "later.py")
    assert written(log, "solution.py")[-1]["payload"]["source"] == "sandbox"
    # The final capture at terminate records the last code; playback reads it.
    await run(api, account, "echo 'x = 4' > solution.py")
    token = account["interviewerToken"]
    (await api(TERMINATE, {"s": account["sessionId"]}, token=token)).ok()
    final = (await read(api, account, "solution.py")).ok()["file"]
    assert final == {**final, "content": "x = 4\n", "fromRecording": True}


async def test_links_to_devices_odd_names_and_sparse_files(api: Api, account: Account) -> None:
    await start(api, account)
    made = await run(
        api,
        account,
        "ln -s /dev/zero zero && ln -s /dev/null null && truncate -s 50M sparse.bin && "
        "python3 -c \"open(b'bad\\xff.txt', 'wb').write(b'x'); "
        "open('new\\nline.txt', 'w').write('y')\"",
    )
    assert made["exitCode"] == 0, made
    kinds = await listing(api, account)
    assert kinds["zero"] == kinds["null"] == "SYMLINK"
    assert kinds["sparse.bin"] == "FILE"
    assert "new\nline.txt" in kinds
    assert any(path.startswith("bad") and kind == "FILE" for path, kind in kinds.items())
    for path in ("zero", "null"):
        assert (await read(api, account, path)).codes == ["BAD_USER_INPUT"]
    size_only = await api(
        'query($s: ID!) { file(sessionId: $s, path: "sparse.bin") { size } }',
        {"s": account["sessionId"]},
        token=account["candidateToken"],
    )
    assert size_only.ok()["file"]["size"] == 50 << 20
    assert (await read(api, account, "sparse.bin")).codes == ["BAD_USER_INPUT"]
    log = await events(api, account)
    skipped = [e["payload"] for e in log if e["type"] == "file.skipped"]
    assert [s["path"] for s in skipped] == ["sparse.bin"]
    assert skipped[0]["size"] == 50 << 20
    assert written(log, "new\nline.txt")


async def test_a_huge_directory_does_not_make_the_code_look_deleted(
    api: Api, account: Account
) -> None:
    """20,000 FIFOs sort before solution.py: the listing (10,000 entries) ends before it."""
    await start(api, account)
    made = await run(
        api,
        account,
        "python3 -c \"import os; [os.mkfifo('a%05d' % i) for i in range(20000)]\"; "
        "echo 'def two_sum(n, t): return [0, 1]' > solution.py",
        timeout=120,
    )
    assert made["exitCode"] == 0, made
    log = await events(api, account)
    assert not [e for e in log if e["type"] == "file.deleted"]
    assert "return [0, 1]" in (await read(api, account, "solution.py")).ok()["file"]["content"]
    assert written(log, "solution.py")[-1]["payload"]["source"] == "sandbox"


async def test_breaker_opens_only_when_failures_span_sandboxes() -> None:
    breaker = CircuitBreaker(threshold=3, min_scopes=2)

    async def down() -> None:
        raise BackendUnavailable("cannot start a process")

    for _ in range(10):  # one sandbox failing, however often
        with pytest.raises(SandboxUnavailable):
            await breaker.call(down, scope="sandbox-a")
    assert breaker.state == "closed"
    with pytest.raises(SandboxUnavailable):
        await breaker.call(down, scope="sandbox-b")
    assert breaker.state == "open"

    unscoped = CircuitBreaker(threshold=2)
    for _ in range(2):  # a backend-wide call (create) failing is the backend
        with pytest.raises(SandboxUnavailable):
            await unscoped.call(down)
    assert unscoped.state == "open"


async def test_os_errors_never_count_as_the_backend_failing() -> None:
    breaker = CircuitBreaker(threshold=1)

    async def enxio() -> None:
        raise OSError(6, "No such device or address")

    for _ in range(3):
        with pytest.raises(OSError, match="No such device"):
            await breaker.call(enxio)
    assert breaker.state == "closed"
