"""Escape battery for the local (bubblewrap) backend, observed from the host.

Each attack runs for real inside a sandbox with small limits; the assertions
look from outside (host /proc, host files, host sockets) as well as inside.
``test_all_attacks_at_once`` runs the whole battery concurrently and checks
the server's event loop and the host stay responsive meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from modal_app.base import (
    TRUNCATION_MARKER,
    BackendUnavailable,
    InvalidPath,
    InvalidSpec,
    Limits,
    NetworkPolicy,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
    run,
)
from modal_app.local.backend import LocalSandboxBackend
from modal_app.local.presets import GENERATED_ETC
from modal_app.local.process import uid_pids
from tests.sandbox.conftest import make_root
from tests.support import fork_counter, wait_until

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(os.geteuid() != 0, reason="the local backend needs root"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
DISK_QUOTA_MB = 24
MAX_INODES = 500
SMALL = Limits(
    memory_mb=64,
    max_processes=24,
    max_file_size_mb=4,
    max_open_files=64,
    cpu_seconds=2,
)


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalSandboxBackend]:
    root = make_root()
    backend = LocalSandboxBackend(
        root,
        disk_quota_mb=DISK_QUOTA_MB,
        max_inodes=MAX_INODES,
        disk_check_interval_s=0.1,
        tmp_size_mb=16,
    )
    await backend.start()
    yield backend
    await backend.aclose()
    shutil.rmtree(root.parent, ignore_errors=True)


Maker = Callable[..., Awaitable[SandboxInfo]]


@pytest.fixture
async def make(local: LocalSandboxBackend) -> AsyncIterator[Maker]:
    created: list[str] = []

    async def create(limits: Limits = SMALL, **kwargs: object) -> SandboxInfo:
        info = await local.create(SandboxSpec(limits=limits, **kwargs))  # type: ignore[arg-type]
        created.append(info.id)
        return info

    yield create
    for sandbox_id in created:
        await local.terminate(sandbox_id)
        left = uid_pids(await local.host_uid(sandbox_id))
        assert left == [], f"terminate left processes: {_describe(left)}"


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    children = [int(p) for p in fh.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def _describe(pids: list[int]) -> str:
    """What a leftover process is, for assertion messages."""
    described = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            described.append(f"{pid}: gone")
            continue
        state, ppid = fields["State"].strip(), fields["PPid"].strip()
        described.append(f"{pid} ({state}, ppid {ppid}): {cmdline[:200]}")
    return "; ".join(described)


def _status_field(pid: int, name: str) -> list[str]:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return line.split()[1:]
    raise AssertionError(f"{name} missing for {pid}")


# -- network ---------------------------------------------------------------------


async def test_only_loopback(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    result = await run(
        local, info.id, ["python3", "-c", "import socket; print(socket.if_nameindex())"]
    )
    assert result.stdout == b"[(1, 'lo')]\n", result.stderr
    dev = await run(local, info.id, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert dev.stdout == b"lo\n"


async def test_host_services_are_unreachable(local: LocalSandboxBackend, make: Maker) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        probe = (
            "import socket, sys\n"
            "for host, port in [('127.0.0.1', int(sys.argv[1])), ('127.0.0.1', 5432),\n"
            "                   ('127.0.0.1', 6379), ('1.1.1.1', 53), ('10.0.0.1', 80)]:\n"
            "    s = socket.socket(); s.settimeout(2)\n"
            "    try:\n"
            "        s.connect((host, port)); print('CONNECTED', host, port)\n"
            "    except OSError as e:\n"
            "        print('refused', host, port, type(e).__name__)\n"
        )
        # The same probe on the host reaches our listener, PostgreSQL and Redis: refusal
        # inside means isolation, not a dead port.
        host = await asyncio.create_subprocess_exec(
            "python3", "-c", probe, str(port), stdout=asyncio.subprocess.PIPE
        )
        on_host, _ = await host.communicate()
        for target in (port, 5432, 6379):
            assert f"CONNECTED 127.0.0.1 {target}\n".encode() in on_host, on_host
        info = await make()
        result = await run(local, info.id, ["python3", "-c", probe, str(port)], timeout_s=20)
        assert result.exit_code == 0, result.stderr
        assert b"CONNECTED" not in result.stdout
        assert result.stdout.count(b"refused") == 5
    finally:
        server.close()
        await server.wait_closed()


async def test_no_network_ever_only_a_socket_dir_for_one_exec(
    local: LocalSandboxBackend, make: Maker
) -> None:
    """No host allowlist is honoured (the old opt-in shared the host network);
    the agent's one way out is a socket directory bound read-only into one exec."""
    policy = NetworkPolicy(allow_hosts=("api.anthropic.com",))
    with pytest.raises(InvalidSpec):
        await local.create(SandboxSpec(network=policy))
    with pytest.raises(InvalidSpec):
        await local.create(SandboxSpec(network=NetworkPolicy(socket_dir="/tmp")))
    info = await make()
    with pytest.raises(InvalidSpec):
        await local.exec(info.id, ["true"], network=policy)
    # Where the server puts its socket directory: bwrap must reach it as the sandbox uid.
    sockets = Path(tempfile.mkdtemp(prefix="ilm-test-"))
    sockets.chmod(0o711)
    (sockets / "marker").write_text("hi")
    sockets.joinpath("marker").chmod(0o644)
    script = (
        "import socket; print(len(socket.if_nameindex()), open('/run/interviewlm/marker').read());"
        "open('/run/interviewlm/x', 'w')"
    )
    bound = await local.exec(
        info.id, ["python3", "-c", script], network=NetworkPolicy(socket_dir=str(sockets))
    )
    out = b"".join([c.data async for c in bound.output()])
    assert (await bound.wait()).exit_code == 1, "the directory is read-only"
    assert out.startswith(b"1 hi"), out
    other = await run(local, info.id, ["sh", "-c", "ls /run/interviewlm"])
    assert other.exit_code != 0, "other commands do not see it"
    shutil.rmtree(sockets)


# -- host view and identity ------------------------------------------------------


async def test_host_files_are_invisible(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    listing = await run(local, info.id, ["ls", "-A", "/"])
    assert set(listing.stdout.split()) == {
        b"bin",
        b"dev",
        b"etc",
        b"home",
        b"lib",
        b"lib64",
        b"proc",
        b"sbin",
        b"tmp",
        b"usr",
        b"workspace",
    } | ({b"lib32"} if os.path.exists("/lib32") else set()) | (
        {b"libx32"} if os.path.exists("/libx32") else set()
    )
    for path in (
        str(REPO),
        str(local.root),
        "/root",
        "/var",
        "/run",
        "/sys",
        "/etc/shadow",
        "/mnt",
    ):
        assert os.path.exists(path), f"{path} exists on the host (else its absence proves nothing)"
        probe = await run(local, info.id, ["ls", path])
        assert probe.exit_code != 0, f"{path} is visible: {probe.stdout!r}"
    assert Path("/etc/shadow").read_bytes(), "readable on the host"
    shadow = await run(local, info.id, ["cat", "/etc/shadow"])
    assert shadow.exit_code != 0
    passwd = await run(local, info.id, ["cat", "/etc/passwd"])
    assert passwd.stdout.decode() == GENERATED_ETC["passwd"], "host accounts are not exposed"
    writes = await run(
        local, info.id, "touch /x || touch /usr/x || touch /etc/x || touch /dev/x || echo all-ro"
    )
    assert writes.stdout == b"all-ro\n"
    writable = await run(local, info.id, "touch /workspace/x /tmp/x && echo rw")
    assert writable.stdout == b"rw\n", "touch works where writing is allowed"


async def test_runs_as_unprivileged_host_uid(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    host_uid = await local.host_uid(info.id)
    assert host_uid >= 100_000
    handle = await local.exec(info.id, "id -u; sleep 30")
    async for chunk in handle.output():
        assert chunk.data == b"1000\n", "inside, the candidate is an ordinary uid 1000"
        break
    try:

        def settled() -> bool:  # `id` has finished: only the long-lived tree remains
            try:
                names = [_status_field(p, "Name")[0] for p in _descendants(handle.pid)]
            except FileNotFoundError:  # a process exited between listing and reading it
                return False
            return "id" not in names and "sleep" in names

        await wait_until(settled, what="`id` exited and `sleep` runs")
        pids = [handle.pid, *_descendants(handle.pid)]
        assert len(pids) >= 4  # outer bwrap, the namespace's init, sh, sleep
        for pid in pids:
            assert _status_field(pid, "Uid") == [str(host_uid)] * 4, f"pid {pid} is not the uid"
            assert _status_field(pid, "Gid")[:3] == [str(host_uid)] * 3
            assert _status_field(pid, "Groups") == []
            assert int(_status_field(pid, "CapEff")[0], 16) == 0
        assert _status_field(pids[-1], "NoNewPrivs") == ["1"]
    finally:
        await handle.kill()
    host = await asyncio.create_subprocess_exec("unshare", "-U", "true")
    assert await host.wait() == 0, "the same unshare works on the host"
    privileges = await run(local, info.id, "unshare -U true 2>/dev/null || echo no-nested-userns")
    assert privileges.stdout == b"no-nested-userns\n"


async def test_sandboxes_have_their_own_uids_and_private_files(
    local: LocalSandboxBackend, make: Maker
) -> None:
    a, b = await make(), await make()
    uid_a, uid_b = await local.host_uid(a.id), await local.host_uid(b.id)
    assert uid_a != uid_b
    workspace = local.root / a.id / "workspace"
    st = os.stat(workspace)
    assert (st.st_uid, st.st_mode & 0o777) == (uid_a, 0o700)
    meta = os.stat(local.root / a.id / "sandbox.json")
    assert (meta.st_uid, meta.st_mode & 0o777) == (0, 0o600)


# -- resource attacks (each also runs in the concurrent test) --------------------


async def attack_fork_bomb(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    uid = await local.host_uid(info.id)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(uid_pids(uid)))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = await run(local, info.id, "b(){ b|b& }; b; sleep 5", timeout_s=2)
    finally:
        stop.set()
        sampler.join()
    # Either the timeout ends it, or the bomb starves its own parent shell of
    # a process slot and the command fails; both within the timeout.
    assert result.timed_out or result.exit_code != 0
    # Sampled, the peak only bounds from below; it must never pass the limit.
    assert 0 < peak <= SMALL.max_processes, f"{peak} processes"
    left = uid_pids(uid)
    assert left == [], _describe(left)
    # Counted exactly: forks are refused just under the limit (bwrap, init, sh and
    # python hold a few of its slots); a missing limit lets it reach 10000.
    counted = await run(local, info.id, ["python3", "-c", fork_counter(10000)], timeout_s=30)
    made, stopped = counted.stdout.split()
    assert stopped == b"EAGAIN", counted
    assert SMALL.max_processes - 8 <= int(made) < SMALL.max_processes, counted.stdout
    after = await run(local, info.id, ["echo", "still usable"])
    assert after.stdout == b"still usable\n"


async def attack_memory_hog(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    py = await run(local, info.id, ["python3", "-c", "x = b'1' * (256 << 20); print('ate it')"])
    assert py.exit_code not in (0, None) or py.signal is not None
    assert b"ate it" not in py.stdout
    grow = "l = []\nwhile True: l.append(b'1' * (1 << 20))"
    growing = await run(local, info.id, ["python3", "-c", grow], timeout_s=20)
    assert not growing.timed_out
    assert growing.exit_code != 0
    node = await run(
        local,
        info.id,
        ["node", "-e", "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1))"],
        timeout_s=20,
    )
    assert not node.timed_out
    assert node.exit_code != 0


async def attack_disk_filler(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    started = time.monotonic()
    filler = await run(
        local,
        info.id,
        "i=0; while :; do head -c 4000000 /dev/zero > f$i; i=$((i+1)); done",
        timeout_s=30,
    )
    assert not filler.timed_out, "the quota watchdog, not the timeout, stops it"
    assert filler.signal is not None
    assert b"disk quota exceeded" in filler.stderr
    assert time.monotonic() - started < 15
    used = sum(e.size for e in await local.list_files(info.id))
    assert DISK_QUOTA_MB << 20 < used < 2048 << 20, f"{used} bytes written"
    # Over quota, nothing may grow, but cleaning up is allowed.
    grow = await run(local, info.id, "head -c 3000000 /dev/zero > more; sleep 5", timeout_s=10)
    assert grow.signal is not None
    assert not grow.timed_out
    cleanup = await run(local, info.id, "rm -f f* more && echo cleaned")
    assert cleanup.stdout == b"cleaned\n"
    big = await run(local, info.id, "head -c 10000000 /dev/zero > big; echo $?")
    assert big.stdout.strip() not in (b"", b"0"), "RLIMIT_FSIZE stops a single big file"
    assert (await local.stat(info.id, "big")).size == SMALL.max_file_size_mb << 20, "to the limit"
    tmp = await run(
        local,
        info.id,
        "for i in 1 2 3 4 5 6; do head -c 4000000 /dev/zero > /tmp/f$i || exit 9; done",
    )
    assert tmp.exit_code == 9, "/tmp is a small tmpfs"


async def attack_inode_filler(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    filler = await run(
        local,
        info.id,
        "mkdir d && cd d && i=0; while :; do : > f$i; i=$((i+1)); done",
        timeout_s=30,
    )
    assert not filler.timed_out
    assert b"disk quota exceeded" in filler.stderr


async def attack_cpu_loop(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    started = time.monotonic()
    spin = await run(local, info.id, "while :; do :; done", timeout_s=30)
    assert not spin.timed_out, "RLIMIT_CPU ends it"
    assert spin.exit_code in (128 + 24, 128 + 9) or spin.signal is not None, spin
    assert time.monotonic() - started < 15
    timed = await run(local, info.id, "sleep 100", timeout_s=0.5)
    assert timed.timed_out


async def attack_output_flood(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    started = time.monotonic()
    flood = await run(local, info.id, "head -c 100000000 /dev/zero", output_cap=1 << 20)
    elapsed = time.monotonic() - started
    assert flood.exit_code == 0
    assert flood.truncated
    assert len(flood.stdout) == (1 << 20) + len(TRUNCATION_MARKER % (1 << 20))
    assert elapsed < 20, f"flood took {elapsed:.1f}s"


ATTACKS = [
    attack_fork_bomb,
    attack_memory_hog,
    attack_disk_filler,
    attack_inode_filler,
    attack_cpu_loop,
    attack_output_flood,
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
async def test_attack(
    local: LocalSandboxBackend,
    make: Maker,
    attack: Callable[[LocalSandboxBackend, Maker], Awaitable[None]],
) -> None:
    await attack(local, make)


async def test_total_memory_is_bounded_by_the_cgroup(
    local: LocalSandboxBackend, make: Maker
) -> None:
    if local.cgroups is None:
        pytest.skip("no writable cgroup hierarchy on this host: only per-process limits apply")
    info = await make()
    # Each process stays under the per-process limit; together they exceed it.
    hold = "import time; x = b'1' * (40 << 20); time.sleep(1); print('survived')"
    alone = await run(local, info.id, ["python3", "-c", hold], timeout_s=30)
    assert alone.stdout == b"survived\n", "one alone is within every limit"
    result = await run(
        local,
        info.id,
        f'for i in 1 2 3 4; do python3 -c "{hold}" & done; wait',
        timeout_s=30,
    )
    assert result.stdout.count(b"survived") < 4


async def test_all_attacks_at_once(local: LocalSandboxBackend, make: Maker) -> None:
    lags: list[float] = []
    host_spawns: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            tick = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - tick - 0.05)
            spawn = time.monotonic()
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()
            host_spawns.append(time.monotonic() - spawn)

    watcher = asyncio.create_task(monitor())
    try:
        await asyncio.gather(*(attack(local, make) for attack in ATTACKS))
    finally:
        done.set()
        await watcher
    assert max(lags) < 1.0, f"event loop stalled {max(lags):.2f}s"
    assert max(host_spawns) < 2.0, f"host spawn took {max(host_spawns):.2f}s"


# -- lifecycle details -----------------------------------------------------------


async def test_timeout_leaves_nothing_on_the_host(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    uid = await local.host_uid(info.id)
    result = await run(
        local, info.id, "sleep 100 & setsid sleep 100 & echo started; sleep 100", timeout_s=0.5
    )
    assert result.timed_out
    assert result.stdout == b"started\n"
    left = uid_pids(uid)
    assert left == [], _describe(left)
    pgrep = await asyncio.create_subprocess_exec(
        "pgrep", "-u", str(uid), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await pgrep.communicate()
    assert (pgrep.returncode, out) == (1, b""), "pgrep finds no process of the sandbox uid"


async def test_terminate_sweeps_detached_processes(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make()
    uid = await local.host_uid(info.id)
    handle = await local.exec(
        info.id, "setsid sleep 100 & nohup sleep 100 >/dev/null 2>&1 & echo up; sleep 100"
    )
    async for _ in handle.output():
        break
    assert len(uid_pids(uid)) >= 5
    await local.terminate(info.id)
    assert uid_pids(uid) == []
    assert (await handle.wait()).exit_code is None


async def test_lifetime_timeout_ends_the_sandbox(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make(timeout_s=0.5)
    handle = await local.exec(info.id, "sleep 100")
    status = await asyncio.wait_for(handle.wait(), 10)
    assert status.exit_code is None
    assert await local.status(info.id) is SandboxStatus.TERMINATED
    with pytest.raises(SandboxTerminated):
        await local.exec(info.id, ["true"])


async def test_idle_timeout_ends_an_unused_sandbox(local: LocalSandboxBackend, make: Maker) -> None:
    info = await make(idle_timeout_s=0.3)
    busy = await run(local, info.id, "sleep 0.5; echo still-here")
    assert busy.stdout == b"still-here\n", "a running command is activity"

    async def ended() -> bool:
        return await local.status(info.id) is SandboxStatus.TERMINATED

    await wait_until(ended, 10, what="the idle timeout ended the sandbox")
    assert (await local.list_files(info.id)) == []


async def test_remove_and_purge(local: LocalSandboxBackend) -> None:
    keep = await local.create(SandboxSpec())
    gone = await local.create(SandboxSpec())
    await local.terminate(gone.id)
    assert gone.id in await local.purge(older_than_s=0)
    assert keep.id not in await local.purge(older_than_s=0), "running sandboxes are kept"
    with pytest.raises(SandboxNotFound):
        await local.attach(gone.id)
    assert not (local.root / gone.id).exists()
    await local.remove(keep.id)
    assert not (local.root / keep.id).exists()


async def test_start_refuses_an_unreachable_root() -> None:
    private = Path(make_root()).parent / "private"
    private.mkdir(mode=0o700)
    backend = LocalSandboxBackend(private / "sandboxes")
    try:
        with pytest.raises(BackendUnavailable, match="o\\+x"):
            await backend.start()
    finally:
        shutil.rmtree(private.parent, ignore_errors=True)


# -- files: what is specific to this backend -------------------------------------


async def test_symlinks_inside_the_workspace_are_followed(
    local: LocalSandboxBackend, make: Maker
) -> None:
    info = await make()
    setup = await run(
        local,
        info.id,
        "mkdir -p src && echo hi > src/real.txt && ln -s src/real.txt rel "
        "&& ln -s /workspace/src abs && ln -s . self && ln -s loop loop && echo ok",
    )
    assert setup.stdout == b"ok\n", setup.stderr
    assert await local.read_file(info.id, "rel") == b"hi\n"
    assert await local.read_file(info.id, "abs/real.txt") == b"hi\n"
    assert await local.read_file(info.id, "self/self/src/real.txt") == b"hi\n"
    with pytest.raises(InvalidPath):
        await local.read_file(info.id, "loop")
    await local.write_file(info.id, "rel", b"through the link\n")
    assert (await run(local, info.id, ["cat", "src/real.txt"])).stdout == b"through the link\n"


async def test_special_files_do_not_hang_the_server(
    local: LocalSandboxBackend, make: Maker
) -> None:
    info = await make()
    assert (await run(local, info.id, "mkfifo pipe && echo ok")).stdout == b"ok\n"
    with pytest.raises(InvalidPath):
        await asyncio.wait_for(local.read_file(info.id, "pipe"), 5)
    await local.write_file(info.id, "pipe", b"replaces the fifo")
    assert await local.read_file(info.id, "pipe") == b"replaces the fifo"


async def test_files_written_by_the_server_belong_to_the_sandbox(
    local: LocalSandboxBackend, make: Maker
) -> None:
    info = await make()
    uid = await local.host_uid(info.id)
    await local.write_file(info.id, "a/b/c.txt", b"x")
    for rel in ("a", "a/b", "a/b/c.txt"):
        assert os.stat(local.root / info.id / "workspace" / rel).st_uid == uid
    owners = await run(local, info.id, "stat -c %u a a/b a/b/c.txt")
    assert owners.stdout == b"1000\n1000\n1000\n"
