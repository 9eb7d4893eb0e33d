"""The SandboxBackend contract, run against every backend in conftest.BACKENDS.

Everything here is observable through the protocol alone, so the same
assertions hold for the local (bubblewrap) and the Modal backend.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from modal_app.base import (
    TRUNCATION_MARKER,
    ExecHandle,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    Language,
    Limits,
    OutputChunk,
    PtyHandle,
    SandboxBackend,
    SandboxInfo,
    SandboxNotFound,
    SandboxStatus,
    SandboxTerminated,
    run,
)
from tests.sandbox.conftest import SandboxMaker

pytestmark = pytest.mark.timeout(60)


async def _read_pty_until(pty: PtyHandle, needle: bytes, timeout_s: float = 10) -> bytes:
    seen = b""

    async def read() -> None:
        nonlocal seen
        async for chunk in pty.output():
            seen += chunk
            if needle in seen:
                return
        raise AssertionError(f"PTY ended before {needle!r}; got {seen!r}")

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise AssertionError(
            f"no {needle!r} on the PTY within {timeout_s}s; got {seen!r}"
        ) from None
    return seen


async def _collect(handle: ExecHandle) -> list[OutputChunk]:
    return [chunk async for chunk in handle.output()]


# -- lifecycle -------------------------------------------------------------------


async def test_create_attach_status(backend: SandboxBackend, make_sandbox: SandboxMaker) -> None:
    tag = uuid.uuid4().hex
    info = await make_sandbox(language=Language.PYTHON, tags={"test": tag, "kind": "a"})
    assert info.status is SandboxStatus.RUNNING
    assert re.fullmatch(r"[A-Za-z0-9_-]+", info.id), "ids are URL-safe"
    assert dict(info.tags) == {"test": tag, "kind": "a"}
    assert info.created_at == pytest.approx(time.time(), abs=60)
    attached = await backend.attach(info.id)
    assert attached.id == info.id
    assert dict(attached.tags) == dict(info.tags)
    assert await backend.status(info.id) is SandboxStatus.RUNNING


async def test_list_by_tags(backend: SandboxBackend, make_sandbox: SandboxMaker) -> None:
    tag = uuid.uuid4().hex
    a = await make_sandbox(tags={"test": tag, "role": "a"})
    b = await make_sandbox(tags={"test": tag, "role": "b"})
    await make_sandbox(tags={"test": uuid.uuid4().hex, "role": "a"})
    both = await backend.list({"test": tag})
    assert {i.id for i in both} == {a.id, b.id}
    only_b = await backend.list({"test": tag, "role": "b"})
    assert [i.id for i in only_b] == [b.id]
    assert await backend.list({"test": tag, "role": "c"}) == []


async def test_list_leaves_out_ended_sandboxes(
    backend: SandboxBackend, make_sandbox: SandboxMaker
) -> None:
    """One meaning on every backend: running sandboxes only (Modal cannot list ended ones)."""
    tag = uuid.uuid4().hex
    ended = await make_sandbox(tags={"test": tag})
    running = await make_sandbox(tags={"test": tag})
    await backend.terminate(ended.id)
    listed = await backend.list({"test": tag})
    assert [(i.id, i.status) for i in listed] == [(running.id, SandboxStatus.RUNNING)]


@pytest.mark.parametrize(
    "bad_id", ["sb-doesnotexist0000", "../../etc", "", "a/b", "sb-" + "x" * 200]
)
async def test_unknown_or_malformed_ids_are_not_found(backend: SandboxBackend, bad_id: str) -> None:
    with pytest.raises(SandboxNotFound):
        await backend.attach(bad_id)
    with pytest.raises(SandboxNotFound):
        await backend.exec(bad_id, ["true"])
    with pytest.raises(SandboxNotFound):
        await backend.read_file(bad_id, "x")


async def test_attach_from_a_fresh_backend_instance(
    backend: SandboxBackend,
    make_sandbox: SandboxMaker,
    fresh_backend: Callable[[], Awaitable[SandboxBackend]],
) -> None:
    tag = uuid.uuid4().hex
    info = await make_sandbox(tags={"test": tag}, env={"FROM_SPEC": "kept"})
    await backend.write_file(info.id, "notes.txt", b"before restart")
    other = await fresh_backend()
    attached = await other.attach(info.id)
    assert attached.id == info.id
    assert dict(attached.tags) == {"test": tag}
    assert attached.status is SandboxStatus.RUNNING
    assert [i.id for i in await other.list({"test": tag})] == [info.id]
    result = await run(other, info.id, "cat notes.txt; echo; echo $FROM_SPEC")
    assert result.stdout == b"before restart\nkept\n"
    await other.terminate(info.id)
    assert await backend.status(info.id) is SandboxStatus.TERMINATED


# -- exec ------------------------------------------------------------------------


async def test_exec_argv_and_shell_string(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    argv = await run(backend, sandbox.id, ["printf", "%s|", "a b", "$HOME", "*"])
    assert argv.exit_code == 0
    assert argv.stdout == b"a b|$HOME|*|", "an argv is passed verbatim, no shell"
    shell = await run(backend, sandbox.id, "echo $((6 * 7)) | tr 4 x")
    assert shell.stdout == b"x2\n"


async def test_stdout_stderr_are_separate(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    result = await run(backend, sandbox.id, "echo out; echo err >&2; echo out2")
    assert result.stdout == b"out\nout2\n"
    assert result.stderr == b"err\n"


async def test_output_arrives_in_order_while_running(
    backend: SandboxBackend, sandbox: SandboxInfo
) -> None:
    handle = await backend.exec(
        sandbox.id, "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three"
    )
    started = time.monotonic()
    arrivals: list[tuple[str, bytes, float]] = []
    async for chunk in handle.output():
        arrivals.append((chunk.stream, chunk.data, time.monotonic() - started))
    status = await handle.wait()
    assert status.exit_code == 0
    assert [(s, d) for s, d, _ in arrivals] == [
        ("stdout", b"one\n"),
        ("stderr", b"two\n"),
        ("stdout", b"three\n"),
    ]
    assert arrivals[0][2] < arrivals[2][2] - 0.4, "output is streamed, not buffered to the end"


async def test_exit_codes(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    assert (await run(backend, sandbox.id, "exit 7")).exit_code == 7
    assert (await run(backend, sandbox.id, ["false"])).exit_code == 1
    assert (await run(backend, sandbox.id, ["true"])).exit_code == 0
    missing = await run(backend, sandbox.id, "no-such-command-xyz")
    assert missing.exit_code == 127
    status_of_missing_binary = await run(backend, sandbox.id, ["/no/such/binary"])
    assert status_of_missing_binary.exit_code not in (0, None)


async def test_stdin(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    payload = b"line one\n\x00\xff binary\n" * 1000
    result = await run(backend, sandbox.id, ["cat"], stdin=payload)
    assert result.stdout == payload
    handle = await backend.exec(sandbox.id, ["wc", "-l"])
    await handle.write_stdin(b"a\nb\n")
    await handle.write_stdin(b"c\n")
    await handle.close_stdin()
    chunks = await _collect(handle)
    assert b"".join(c.data for c in chunks).strip() == b"3"
    assert (await handle.wait()).exit_code == 0


async def test_env_is_passed_and_server_env_is_not_visible(
    backend: SandboxBackend, make_sandbox: SandboxMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ILM_SERVER_SECRET", "do-not-leak")
    info = await make_sandbox(env={"FROM_SPEC": "spec", "OVERRIDDEN": "spec"})
    result = await run(
        backend, info.id, ["env"], env={"FROM_EXEC": "exec value", "OVERRIDDEN": "exec"}
    )
    env = dict(line.split("=", 1) for line in result.stdout.decode().splitlines() if "=" in line)
    assert env["FROM_SPEC"] == "spec"
    assert env["FROM_EXEC"] == "exec value"
    assert env["OVERRIDDEN"] == "exec", "per-exec env wins over the spec's"
    assert "ILM_SERVER_SECRET" not in env
    assert not {"DATABASE_URL", "REDIS_URL", "MODAL_TOKEN_SECRET", "ANTHROPIC_API_KEY"} & set(env)
    assert "do-not-leak" not in result.stdout.decode()
    assert env.get("HOME")
    assert env.get("PATH")


async def test_cwd(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    assert (await run(backend, sandbox.id, ["pwd"])).stdout == b"/workspace\n"
    await backend.mkdir(sandbox.id, "sub/dir")
    assert (await run(backend, sandbox.id, ["pwd"], cwd="sub/dir")).stdout == (
        b"/workspace/sub/dir\n"
    )
    assert (await run(backend, sandbox.id, ["pwd"], cwd="/workspace/sub")).stdout == (
        b"/workspace/sub\n"
    )


async def test_language_presets_run(backend: SandboxBackend, make_sandbox: SandboxMaker) -> None:
    py = await make_sandbox(language=Language.PYTHON)
    assert (await run(backend, py.id, ["python3", "-c", "print(6*7)"])).stdout == b"42\n"
    js = await make_sandbox(language=Language.JAVASCRIPT)
    assert (await run(backend, js.id, ["node", "-e", "console.log(6*7)"])).stdout == b"42\n"
    go = await make_sandbox(language=Language.GO)
    await backend.write_file(
        go.id, "main.go", b'package main\nimport "fmt"\nfunc main() { fmt.Println(6 * 7) }\n'
    )
    result = await run(backend, go.id, ["go", "run", "main.go"], timeout_s=60)
    assert (result.exit_code, result.stdout) == (0, b"42\n"), result.stderr


async def test_timeout_kills_the_whole_tree(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    # The background child would leave a marker after 1.5 s if it survived.
    command = "(sleep 1.5; echo alive > /workspace/survivor) & echo started; sleep 100"
    started = time.monotonic()
    result = await run(backend, sandbox.id, command, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_code is None
    assert result.stdout == b"started\n"
    assert elapsed < 5
    # Positive control: the same background child, given its time, does leave its marker.
    control = "(sleep 0.2; echo alive > /workspace/control) & wait; cat /workspace/control"
    assert (await run(backend, sandbox.id, control, timeout_s=10)).stdout == b"alive\n"
    # What must not happen can only be waited for: past the survivor's 1.5 s.
    await asyncio.sleep(1.5)
    with pytest.raises(FileNotFoundInSandbox):
        await backend.read_file(sandbox.id, "survivor")


async def test_kill(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    handle = await backend.exec(sandbox.id, "echo ready; sleep 100")
    async for chunk in handle.output():
        assert chunk.data == b"ready\n"
        break
    await handle.kill()
    status = await asyncio.wait_for(handle.wait(), 5)
    assert status.exit_code is None
    assert status.signal is not None
    assert not status.timed_out


async def test_output_cap_truncates_with_marker(
    backend: SandboxBackend, sandbox: SandboxInfo
) -> None:
    result = await run(
        backend, sandbox.id, "head -c 3000000 /dev/zero | tr '\\0' a", output_cap=1000
    )
    assert result.exit_code == 0
    assert result.truncated
    assert result.stdout == b"a" * 1000 + TRUNCATION_MARKER % 1000
    small = await run(backend, sandbox.id, "echo small", output_cap=1000)
    assert not small.truncated
    assert small.stdout == b"small\n"


# -- PTY -------------------------------------------------------------------------


async def test_pty_echo_round_trip(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    pty = await backend.open_pty(sandbox.id, command=["bash", "--norc", "-i"])
    try:
        # The quotes keep the echoed input from matching; only the output does.
        await pty.write(b"echo round-''trip-$((40 + 2))\n")
        await _read_pty_until(pty, b"round-trip-42")
        await pty.write(b"tty; exit 3\n")
        seen = await _read_pty_until(pty, b"exit")
        assert await asyncio.wait_for(pty.wait(), 10) == 3
        assert b"not a tty" not in seen
    finally:
        await pty.close()


async def test_pty_resize_is_visible(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    pty = await backend.open_pty(sandbox.id, cols=91, rows=27, command=["bash", "--norc", "-i"])
    try:
        await pty.write(b"stty size\n")
        await _read_pty_until(pty, b"27 91")
        await pty.resize(132, 43)
        await pty.write(b"stty size\n")
        await _read_pty_until(pty, b"43 132")
    finally:
        await pty.close()
    await asyncio.wait_for(pty.wait(), 5)


async def test_pty_resize_sends_sigwinch(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    # sh runs a trap between foreground commands, so within one short sleep.
    script = "trap 'echo got-winch' WINCH; echo ready; while :; do sleep 0.05; done"
    pty = await backend.open_pty(sandbox.id, command=["sh", "-c", script])
    try:
        await _read_pty_until(pty, b"ready")
        await pty.resize(100, 30)
        await _read_pty_until(pty, b"got-winch")
    finally:
        await pty.close()


async def test_pty_close_kills_the_session(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    pty = await backend.open_pty(sandbox.id, command=["sh", "-c", "echo up; exec sleep 100"])
    await _read_pty_until(pty, b"up")
    started = time.monotonic()
    await pty.close()
    await asyncio.wait_for(pty.wait(), 5)
    assert time.monotonic() - started < 5


# -- files -----------------------------------------------------------------------


async def test_write_read_round_trip_with_binary_and_nested_dirs(
    backend: SandboxBackend, sandbox: SandboxInfo
) -> None:
    blob = bytes(range(256)) * 513
    await backend.write_file(sandbox.id, "deep/er/blob.bin", blob)
    assert await backend.read_file(sandbox.id, "deep/er/blob.bin") == blob
    assert await backend.read_file(sandbox.id, "/workspace/deep/er/blob.bin") == blob
    await backend.write_file(sandbox.id, "deep/er/blob.bin", b"replaced")
    assert await backend.read_file(sandbox.id, "deep/er/blob.bin") == b"replaced"
    await backend.write_file(sandbox.id, "empty", b"")
    assert await backend.read_file(sandbox.id, "empty") == b""
    # What the server writes, the sandbox sees and may change; and the reverse.
    seen = await run(backend, sandbox.id, "cat deep/er/blob.bin && echo more >> deep/er/blob.bin")
    assert seen.stdout == b"replaced"
    assert await backend.read_file(sandbox.id, "deep/er/blob.bin") == b"replacedmore\n"
    made = await run(backend, sandbox.id, "mkdir -p x/y && printf made > x/y/z.txt")
    assert made.exit_code == 0
    assert await backend.read_file(sandbox.id, "x/y/z.txt") == b"made"


async def test_list_and_stat(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    await backend.write_file(sandbox.id, "a.txt", b"12345")
    await backend.write_file(sandbox.id, "src/b.py", b"print()")
    await backend.write_file(sandbox.id, "src/pkg/c.py", b"")
    await backend.mkdir(sandbox.id, "empty/dir")
    everything = await backend.list_files(sandbox.id)
    by_path = {e.path: e for e in everything}
    assert set(by_path) == {
        "a.txt",
        "src",
        "src/b.py",
        "src/pkg",
        "src/pkg/c.py",
        "empty",
        "empty/dir",
    }
    assert by_path["a.txt"].kind == "file"
    assert by_path["a.txt"].size == 5
    assert by_path["src/pkg"].kind == "dir"
    assert by_path["a.txt"].mtime == pytest.approx(time.time(), abs=60)
    top = await backend.list_files(sandbox.id, "", recursive=False)
    assert {e.path for e in top} == {"a.txt", "src", "empty"}
    sub = await backend.list_files(sandbox.id, "src", recursive=True)
    assert {e.path for e in sub} == {"src/b.py", "src/pkg", "src/pkg/c.py"}
    entry = await backend.stat(sandbox.id, "src/b.py")
    assert (entry.path, entry.kind, entry.size) == ("src/b.py", "file", 7)
    assert (await backend.stat(sandbox.id, "/workspace/src")).kind == "dir"
    with pytest.raises(FileNotFoundInSandbox):
        await backend.stat(sandbox.id, "nope")


async def test_delete_and_mkdir(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    await backend.write_file(sandbox.id, "tree/a/b/c.txt", b"c")
    await backend.write_file(sandbox.id, "single.txt", b"s")
    await backend.delete(sandbox.id, "single.txt")
    with pytest.raises(FileNotFoundInSandbox):
        await backend.read_file(sandbox.id, "single.txt")
    await backend.delete(sandbox.id, "tree")
    assert [e.path for e in await backend.list_files(sandbox.id)] == []
    with pytest.raises(FileNotFoundInSandbox):
        await backend.delete(sandbox.id, "tree")
    await backend.mkdir(sandbox.id, "m/n/o")
    await backend.mkdir(sandbox.id, "m/n/o")  # idempotent
    assert (await backend.stat(sandbox.id, "m/n/o")).kind == "dir"
    check = await run(backend, sandbox.id, "touch m/n/o/f && echo ok")
    assert check.stdout == b"ok\n", "directories the server makes are writable by the sandbox"


async def test_missing_files(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    with pytest.raises(FileNotFoundInSandbox):
        await backend.read_file(sandbox.id, "missing.txt")
    with pytest.raises(FileNotFoundInSandbox):
        await backend.read_file(sandbox.id, "missing/dir/file.txt")


@pytest.mark.parametrize(
    "path",
    ["../escape", "a/../../escape", "/etc/passwd", "/workspace/../etc/passwd", "a\x00b", "/"],
)
async def test_invalid_paths(backend: SandboxBackend, sandbox: SandboxInfo, path: str) -> None:
    with pytest.raises(InvalidPath):
        await backend.read_file(sandbox.id, path)
    with pytest.raises(InvalidPath):
        await backend.write_file(sandbox.id, path, b"x")
    with pytest.raises(InvalidPath):
        await backend.delete(sandbox.id, path)


async def test_root_and_empty_paths_are_not_files(
    backend: SandboxBackend, sandbox: SandboxInfo
) -> None:
    for path in ("", "/workspace", "."):
        with pytest.raises(InvalidPath):
            await backend.write_file(sandbox.id, path, b"x")
        with pytest.raises(InvalidPath):
            await backend.delete(sandbox.id, path)
        with pytest.raises(InvalidPath):
            await backend.read_file(sandbox.id, path)


async def test_symlink_escapes_are_refused(backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    planted = await run(
        backend,
        sandbox.id,
        "ln -s /etc/shadow shadow && ln -s / root && ln -s ../../../../.. up "
        "&& ln -s /etc etc && mkdir d && ln -s /etc/passwd d/pw && echo planted",
    )
    assert planted.stdout == b"planted\n", planted.stderr
    for path in ("shadow", "root/etc/passwd", "up/etc/passwd", "etc/passwd", "d/pw"):
        with pytest.raises(InvalidPath):
            await backend.read_file(sandbox.id, path)
    for path in ("root/tmp/ilm-pwned", "up/tmp/ilm-pwned", "etc/ilm-pwned", "shadow"):
        with pytest.raises(InvalidPath):
            await backend.write_file(sandbox.id, path, b"pwned")
    assert not os.path.exists("/tmp/ilm-pwned")
    assert not os.path.exists("/etc/ilm-pwned")
    with pytest.raises(InvalidPath):
        await backend.list_files(sandbox.id, "root")
    with pytest.raises(InvalidPath):
        await backend.mkdir(sandbox.id, "root/tmp/ilm-pwned-dir")
    assert not os.path.exists("/tmp/ilm-pwned-dir")
    listing = {e.path: e.kind for e in await backend.list_files(sandbox.id)}
    assert listing["shadow"] == "symlink"
    assert listing["root"] == "symlink"
    assert "root/etc" not in listing, "listings never follow symlinks"
    assert (await backend.stat(sandbox.id, "root")).kind == "symlink"
    await backend.delete(sandbox.id, "root")  # removes the link, nothing else
    assert os.path.isdir("/etc")
    assert "root" not in {e.path for e in await backend.list_files(sandbox.id)}


async def test_file_size_limit(backend: SandboxBackend, make_sandbox: SandboxMaker) -> None:
    info = await make_sandbox(limits=Limits(max_file_size_mb=1))
    await backend.write_file(info.id, "ok.bin", b"x" * (1 << 20))
    with pytest.raises(FileTooLarge):
        await backend.write_file(info.id, "big.bin", b"x" * ((1 << 20) + 1))


# -- terminate -------------------------------------------------------------------


async def test_terminate_kills_everything_and_keeps_files(
    backend: SandboxBackend, make_sandbox: SandboxMaker
) -> None:
    info = await make_sandbox()
    await backend.write_file(info.id, "kept.txt", b"for the recording")
    handle = await backend.exec(info.id, "sleep 100 & echo up; sleep 100")
    async for _ in handle.output():
        break
    pty = await backend.open_pty(info.id, command=["sh", "-c", "echo pty-up; sleep 100"])
    await _read_pty_until(pty, b"pty-up")
    started = time.monotonic()
    await backend.terminate(info.id)
    status = await asyncio.wait_for(handle.wait(), 5)
    assert status.exit_code is None
    await asyncio.wait_for(pty.wait(), 5)
    assert time.monotonic() - started < 5
    assert await backend.status(info.id) is SandboxStatus.TERMINATED
    assert (await backend.attach(info.id)).status is SandboxStatus.TERMINATED
    with pytest.raises(SandboxTerminated):
        await backend.exec(info.id, ["true"])
    with pytest.raises(SandboxTerminated):
        await backend.open_pty(info.id)
    assert await backend.read_file(info.id, "kept.txt") == b"for the recording"
    assert [e.path for e in await backend.list_files(info.id)] == ["kept.txt"]
    await backend.terminate(info.id)  # idempotent
