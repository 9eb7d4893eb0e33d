"""Host-side leaks of the local backend, observed from the host while a sandbox runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modal_app.base import Limits, SandboxSpec, run
from modal_app.local.backend import LocalSandboxBackend
from modal_app.local.launch import gate_argv
from tests.sandbox.conftest import make_root

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("bwrap") is None,
        reason="the local backend needs root and bubblewrap",
    ),
]


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalSandboxBackend]:
    root = make_root()
    backend = LocalSandboxBackend(root, tmp_size_mb=8)
    await backend.start()
    yield backend
    await backend.aclose()
    shutil.rmtree(root.parent, ignore_errors=True)


def _host_files(pattern: str) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for path in Path("/proc").glob(pattern):
        try:
            found[int(path.parent.name)] = path.read_bytes()
        except (OSError, ValueError):
            continue
    return found


async def test_exec_environment_is_in_no_host_argv(local: LocalSandboxBackend) -> None:
    """Attack: ``ps`` on the host (or any uid reading /proc/*/cmdline) saw every
    ``--setenv NAME VALUE`` — the agent's key and per-run token among them."""
    canary = "sk-canary-" + os.urandom(6).hex()
    info = await local.create(SandboxSpec(env={"SPEC_CANARY": canary + "-spec"}))
    handle = await local.exec(
        info.id,
        ["sh", "-c", "printenv RUN_CANARY SPEC_CANARY; exec sleep 30"],
        env={"RUN_CANARY": canary},
    )
    seen = b""
    async for chunk in handle.output():
        seen += chunk.data
        if b"-spec" in seen:
            break
    assert seen.split() == [canary.encode(), (canary + "-spec").encode()]
    leaks = {pid: argv for pid, argv in _host_files("[0-9]*/cmdline").items() if b"canary" in argv}
    assert leaks == {}
    # Nor in the outer bwrap's own environment (it starts with a fixed minimal one).
    assert b"canary" not in Path(f"/proc/{handle.pid}/environ").read_bytes()
    await local.terminate(info.id)


async def test_tmp_full_is_enospc_and_the_sandbox_lives_on(local: LocalSandboxBackend) -> None:
    info = await local.create(SandboxSpec())
    fill = (
        "python3 -c \"import errno\ntry:\n  f = open('/tmp/x', 'wb')\n"
        "  for _ in range(64): f.write(bytes(1 << 20)); f.flush()\n"
        'except OSError as e: print(errno.errorcode[e.errno])"'
    )
    result = await run(local, info.id, fill, timeout_s=30)
    assert result.stdout == b"ENOSPC\n", result.stderr
    again = await run(local, info.id, "rm /tmp/x; echo ok > /tmp/y && cat /tmp/y", timeout_s=30)
    assert again.stdout == b"ok\n"
    await local.terminate(info.id)


async def test_tmpfs_pages_count_against_the_sandbox_memory() -> None:
    """Attack: park data in /tmp (RAM) beyond the sandbox's memory limit.

    /tmp here is larger (256 MB) than the sandbox's memory (64 MB): the pages
    are charged to the sandbox's memory cgroup, so the writer dies instead.
    """
    root = make_root()
    backend = LocalSandboxBackend(root, tmp_size_mb=256)
    await backend.start()
    try:
        if backend.cgroups is None:
            pytest.skip("no writable cgroup hierarchy here: /tmp is bounded by its size only")
        info = await backend.create(SandboxSpec(limits=Limits(memory_mb=64, max_processes=32)))
        within = "head -c 30000000 /dev/zero > /tmp/f0 && rm /tmp/f0 && echo stored"
        small = await run(backend, info.id, within, timeout_s=30)
        assert small.stdout == b"stored\n", "positive control: one file within the limit fits"
        fill = "for i in 1 2 3 4 5; do head -c 30000000 /dev/zero > /tmp/f$i; done; echo stored"
        result = await run(backend, info.id, fill, timeout_s=30)
        assert b"stored" not in result.stdout
        assert (await run(backend, info.id, "echo alive", timeout_s=30)).stdout == b"alive\n"
        await backend.terminate(info.id)
    finally:
        await backend.aclose()
        shutil.rmtree(root.parent, ignore_errors=True)


@pytest.mark.parametrize(("line", "ran"), [(b"go\n", True), (b"", False)])
def test_the_cgroup_gate_runs_nothing_unless_released(
    tmp_path: Path, line: bytes, ran: bool
) -> None:
    """If the server cannot put the process into its group, it must not run at all."""
    gate_r, gate_w = os.pipe()
    marker = tmp_path / "ran"
    argv = gate_argv(shutil.which("bash") or "/bin/bash", gate_r)
    proc = subprocess.Popen([*argv, "touch", str(marker)], pass_fds=[gate_r])
    os.close(gate_r)
    os.write(gate_w, line)
    os.close(gate_w)
    assert (proc.wait(10) == 0) is ran
    assert marker.exists() is ran
