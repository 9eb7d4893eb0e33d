"""The escape battery: hostile commands through ``runCommand``, on the real local sandbox.

Each case checks the containment from the outside (the host's view), and the
resource cases also check that the server keeps answering other requests
while the sandbox misbehaves.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from modal_app.base import Limits
from tests.conftest import Account
from tests.support import Api, fork_counter, sandbox_uid, uid_processes, wait_until
from tests.workspace_support import RUN, TERMINATE, WRITE, run, start

ROOT = Path(__file__).resolve().parent.parent


def pgrep(pattern: str) -> list[str]:
    """Host pids whose command line matches: the host's view of the sandbox."""
    found = subprocess.run(["pgrep", "-f", pattern], check=False, capture_output=True, text=True)
    return found.stdout.split()


@pytest.fixture
async def sandbox(api: Api, account: Account) -> Account:
    await start(api, account)
    return account


def connect_probe(port: int) -> str:
    return f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'"


def on_host(command: str) -> subprocess.CompletedProcess[str]:
    """The same command, unsandboxed, as the server's own user: the positive control."""
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False
    )


async def test_no_network_but_loopback(api: Api, sandbox: Account) -> None:
    interfaces = await run(api, sandbox, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert interfaces["stdout"].split() == ["lo"]

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    own = listener.sockets[0].getsockname()[1]
    try:
        # PostgreSQL and Redis listen on the host's loopback, and so does our own listener.
        for port in (own, 5432, 6379):
            host = await asyncio.to_thread(on_host, connect_probe(port))
            assert host.returncode == 0, f"the probe must reach port {port} unsandboxed: {host}"
            probe = await run(api, sandbox, connect_probe(port))
            assert probe["exitCode"] != 0, (port, probe)
            assert "refused" in probe["stderr"].lower() or "unreachable" in probe["stderr"].lower()
    finally:
        listener.close()
        await listener.wait_closed()


async def test_host_files_are_invisible(api: Api, sandbox: Account, app: Starlette) -> None:
    sandbox_root = app.state.services.settings.sandbox_root
    for command in (
        f"ls {ROOT}",
        f"ls {sandbox_root}",
        "cat /etc/shadow",
        "ls -A /root",
        "ls /var/lib/postgresql",
    ):
        host = on_host(command)
        assert host.returncode == 0, f"readable by the server: {command}: {host.stderr}"
        result = await run(api, sandbox, command)
        assert result["exitCode"] != 0, (command, result)


async def test_sandboxed_processes_are_not_root_on_the_host(
    api: Api, sandbox: Account, app: Starlette
) -> None:
    marker = "4242.5"
    running = asyncio.create_task(
        api(
            RUN,
            {"s": sandbox["sessionId"], "c": f"sleep {marker}", "t": 30},
            token=sandbox["candidateToken"],
        )
    )
    await wait_until(lambda: bool(pgrep(f"^sleep {marker}")), what="the command started")
    pids = pgrep(f"^sleep {marker}")
    status = Path(f"/proc/{pids[0]}/status").read_text()
    real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert real_uid != 0
    assert real_uid == await sandbox_uid(
        app.state.services.settings.sandbox_root, sandbox["sessionId"]
    )
    running.cancel()
    await api(TERMINATE, {"s": sandbox["sessionId"]}, token=sandbox["candidateToken"])


async def test_environment_has_no_server_secrets(
    api: Api, sandbox: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERVIEWLM_CANARY_SECRET", "canary-8f3a")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary")
    assert os.environ["INTERVIEWLM_CANARY_SECRET"] == "canary-8f3a", "the server has it"
    result = await run(api, sandbox, "env")
    assert result["exitCode"] == 0
    assert "HOME=/home/sandbox" in result["stdout"], "env did print the environment"
    assert "canary" not in result["stdout"]
    for name in ("DATABASE_URL", "REDIS_URL", "ANTHROPIC_API_KEY", "MODAL_TOKEN_SECRET"):
        assert f"{name}=" not in result["stdout"]


async def _keeps_answering(
    api: Api, account: Account, hostile: str, timeout: int
) -> dict[str, Any]:
    """Run ``hostile`` while issuing other requests; both must complete."""
    task = asyncio.create_task(
        api(
            RUN,
            {"s": account["sessionId"], "c": hostile, "t": timeout},
            token=account["candidateToken"],
        )
    )
    answered = 0
    while not task.done():
        viewer = await api("{ viewer { kind } }", token=account["interviewerToken"])
        assert viewer.ok()["viewer"]["kind"] == "INTERVIEWER"
        answered += 1
        await asyncio.sleep(0.05)
    assert answered >= 1
    return (await task).ok()["runCommand"]  # type: ignore[no-any-return]


def limits(app: Starlette) -> Limits:
    return app.state.services.sandboxes.policy.limits  # type: ignore[no-any-return]


async def test_process_count_is_capped_at_the_limit(
    api: Api, sandbox: Account, app: Starlette
) -> None:
    """Forks until refused: a missing or broken limit lets it reach 100000 (or starve the host)."""
    cap = limits(app).max_processes
    wrote = await api(
        WRITE,
        {"s": sandbox["sessionId"], "p": "forks.py", "c": fork_counter(100000)},
        token=sandbox["candidateToken"],
    )
    wrote.ok()
    result = await _keeps_answering(api, sandbox, "python3 forks.py", 60)
    made, stopped = result["stdout"].split()
    assert stopped == "EAGAIN", result
    # The sandbox's own processes (bwrap, init, the shell, python) take a few of the slots.
    assert cap - 8 <= int(made) < cap, f"{made} forks under a limit of {cap}"


async def test_fork_bomb_is_contained(api: Api, sandbox: Account, app: Starlette) -> None:
    cap = limits(app).max_processes
    uid = await sandbox_uid(app.state.services.settings.sandbox_root, sandbox["sessionId"])
    peak = 0
    stop = threading.Event()

    def sample() -> None:  # the host's view: every process of the sandbox's uid
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(uid_processes(uid)))
            stop.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = await _keeps_answering(api, sandbox, "bomb() { bomb | bomb & }; bomb; sleep 3", 10)
    finally:
        stop.set()
        sampler.join()
    assert result["durationMs"] < 12_000
    # Sampled, the peak only bounds from below (a starved sampler sees little); it must never
    # pass the limit. test_process_count_is_capped_at_the_limit counts exactly.
    assert 0 < peak <= cap, f"peak {peak} processes under a limit of {cap}"
    await wait_until(lambda: not uid_processes(uid), 10, what="the bomb's processes are gone")
    after = await run(api, sandbox, "echo alive")
    assert after["stdout"] == "alive\n"


async def test_memory_hog_is_killed(api: Api, sandbox: Account) -> None:
    fits = await run(api, sandbox, "python3 -c 'x = bytearray(64 * 1024 ** 2); print(len(x))'")
    assert fits["stdout"] == f"{64 * 1024**2}\n", "a modest allocation works"
    hog = "python3 -c 'x = bytearray(4 * 1024 ** 3); print(len(x))'"
    result = await _keeps_answering(api, sandbox, hog, 20)
    assert result["exitCode"] != 0
    assert "4294967296" not in result["stdout"]


async def test_disk_filler_is_stopped(api: Api, sandbox: Account, app: Starlette) -> None:
    cap = limits(app).max_file_size_mb << 20
    result = await _keeps_answering(
        api, sandbox, "dd if=/dev/zero of=fill.bin bs=1M count=4096 2>&1; stat -c %s fill.bin", 60
    )
    assert "File size limit exceeded" in result["stdout"], result  # SIGXFSZ: RLIMIT_FSIZE
    size = int(result["stdout"].split()[-1])
    assert size == cap, f"written up to the per-file limit ({cap}), no further: {size}"
    await run(api, sandbox, "rm fill.bin")


async def test_infinite_loop_times_out(api: Api, sandbox: Account) -> None:
    result = await _keeps_answering(api, sandbox, "while :; do :; done", 2)
    assert result["timedOut"] is True
    assert result["exitCode"] is None


async def test_output_flood_is_capped(api: Api, sandbox: Account) -> None:
    result = await _keeps_answering(api, sandbox, "head -c 100000000 /dev/zero | tr '\\0' y", 60)
    assert result["truncated"] is True
    assert len(result["stdout"]) < 1_100_000


async def test_nothing_survives_terminate(api: Api, sandbox: Account) -> None:
    marker = "987654"
    running = asyncio.create_task(
        api(
            RUN,
            {"s": sandbox["sessionId"], "c": f"sleep {marker} & sleep {marker}1", "t": 120},
            token=sandbox["candidateToken"],
        )
    )
    await wait_until(lambda: bool(pgrep(f"sleep {marker}")), what="the command started")
    await api(TERMINATE, {"s": sandbox["sessionId"]}, token=sandbox["candidateToken"])
    result = await asyncio.wait_for(running, 15)
    assert result.errors or result.data["runCommand"]["exitCode"] != 0
    await wait_until(
        lambda: not pgrep(f"sleep {marker}"), 5, what="sandbox processes gone after terminate"
    )


async def test_tmp_and_shm_are_bounded(api: Api, sandbox: Account) -> None:
    """Filling the tmpfs /tmp or /dev/shm (RAM, not the watched workspace) stops at its size."""
    # Many files, each under RLIMIT_FSIZE, so only the tmpfs size can stop it.
    fill = (
        "python3 -c \"\nimport os, errno\nfor d in ('/tmp', '/dev/shm'):\n"
        "    i = 0\n    try:\n        while True:\n"
        "            with open(f'{d}/f{i}', 'wb') as f:\n"
        "                for _ in range(32): f.write(bytes(1 << 20))\n"
        "            i += 1\n"
        "    except OSError as e: print(d, errno.errorcode[e.errno], i * 32 < 1024)\n"
        '    for n in os.listdir(d): os.remove(os.path.join(d, n))\n"'
    )
    result = await _keeps_answering(api, sandbox, fill, 60)
    assert result["stdout"].split("\n")[:2] == ["/tmp ENOSPC True", "/dev/shm ENOSPC True"]
    after = await run(api, sandbox, "echo alive")
    assert after["stdout"] == "alive\n"


def _host_paths(app: Starlette) -> list[str]:
    """What the candidate must not learn: host directories and sandbox ids."""
    root = Path(app.state.services.settings.sandbox_root).resolve()
    ids = [entry.name for entry in root.iterdir() if entry.name.startswith("sb-")]
    return [str(root), str(ROOT), "/root", *ids]


# Bind mounts of host directories that are not at the same path on the host: the
# kernel shows their root relative to the filesystem they come from.
DATA_MOUNTS = ("/workspace", "/home/sandbox", "/opt/interviewlm/toolchain", "/run/interviewlm")
SHOW = (
    "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/self/cgroup /proc/1/cgroup; "
    "tr '\\0' '\\n' < /proc/1/environ; tr '\\0' '\\n' < /proc/self/environ; "
    "cat /proc/self/mountinfo"
)


async def test_the_sandbox_shows_no_host_paths(api: Api, sandbox: Account, app: Starlette) -> None:
    """pid 1 is bwrap's init: its cmdline used to be bwrap's argv with every host path;
    the generated /etc files were bind mounts of files under SANDBOX_ROOT; the
    cgroup namespace was rooted above the sandbox's group, whose name is its id.

    The data mounts are left out here (see the strict xfail below).
    """
    shown = await run(api, sandbox, SHOW)
    assert shown["exitCode"] == 0, shown["stderr"]
    assert "bwrap --args" in shown["stdout"]
    lines = [
        line
        for line in shown["stdout"].splitlines()
        if not (len(line.split()) > 4 and line.split()[4] in DATA_MOUNTS)
    ]
    for secret in _host_paths(app):
        assert not [line for line in lines if secret in line], secret
    assert " /etc/passwd " not in shown["stdout"]  # copied into the sandbox, not bound


@pytest.mark.xfail(
    strict=True,
    reason="residual: a bind mount's root in mountinfo is its path on its filesystem; hidden "
    "only when SANDBOX_ROOT (and TOOLCHAIN_DIR) are on their own filesystems",
)
async def test_mountinfo_of_data_mounts_shows_no_host_paths(
    api: Api, sandbox: Account, app: Starlette
) -> None:
    shown = await run(api, sandbox, "cat /proc/self/mountinfo")
    for secret in _host_paths(app):
        assert secret not in shown["stdout"], secret


async def test_environment_is_in_no_argv_on_the_host(api: Api, sandbox: Account) -> None:
    """The sandbox environment used to travel as ``bwrap --setenv NAME VALUE`` (public in ps)."""
    marker = "4343.25"
    running = asyncio.create_task(
        api(
            RUN,
            {"s": sandbox["sessionId"], "c": f"echo $HOME; sleep {marker}", "t": 30},
            token=sandbox["candidateToken"],
        )
    )
    await wait_until(lambda: bool(pgrep(f"^sleep {marker}")), what="the command started")
    argvs = [_read(path) for path in Path("/proc").glob("[0-9]*/cmdline")]
    argvs = [argv for argv in argvs if marker.encode() in argv or b"--setenv" in argv]
    assert argvs
    assert all(b"--setenv" not in argv for argv in argvs)
    assert all(b"/home/sandbox" not in argv for argv in argvs)
    await api(TERMINATE, {"s": sandbox["sessionId"]}, token=sandbox["candidateToken"])
    result = await asyncio.wait_for(running, 15)
    assert result.errors or result.data["runCommand"]["stdout"].startswith("/home/sandbox\n")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
