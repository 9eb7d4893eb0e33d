"""The Modal backend's private-exec launcher (``modal_app.modal.private``), run on this host.

Modal's API cannot be reached from the tests, so the launcher that Modal runs
inside its container runs here instead, as root (like the container's
root), against a temporary directory standing in for ``/workspace``.  Its
mount namespace is its own, so nothing it mounts is seen outside.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_app.modal.private import LAUNCHER, PRIVATE_UID, private_argv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the launcher runs as root")


@pytest.fixture
def workspace() -> Iterator[Path]:
    # Not under /tmp: the launcher covers /tmp with a fresh tmpfs.
    path = Path(tempfile.mkdtemp(prefix="ilm-launcher-", dir="/var/lib"))
    os.chmod(path, 0o755)
    (path / "sub").mkdir()
    (path / "sub" / "a.txt").write_text("visible content\n")
    os.mkfifo(path / "pipe")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_private_command_writes_nothing_that_outlives_it(workspace: Path) -> None:
    mark = secrets.token_hex(6)
    script = (
        "id -u; cat sub/a.txt; test -p pipe && echo FIFO-VISIBLE;"
        f" echo x > {workspace}/new-{mark} 2>/dev/null && echo WORKSPACE-WRITABLE;"
        f' echo y > "$HOME/h-{mark}" && echo HOME-OK;'
        f" echo z > /tmp/leak-{mark} && echo TMP-OK;"
        f" echo w > /dev/shm/leak-{mark} 2>/dev/null; sleep 30 & echo started"
    )
    argv = private_argv(["/bin/sh", "-c", script], workspace=str(workspace))
    argv[0] = sys.executable
    done = subprocess.run(
        argv, cwd=workspace, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == str(PRIVATE_UID)
    assert "visible" in lines
    assert "FIFO-VISIBLE" not in lines
    assert "WORKSPACE-WRITABLE" not in lines
    assert {"HOME-OK", "TMP-OK", "started"} <= set(lines)
    assert not (workspace / f"new-{mark}").exists()
    assert not Path(f"/tmp/leak-{mark}").exists()
    assert not Path(f"/dev/shm/leak-{mark}").exists()
    assert not [p for p in Path("/tmp").glob("ilm-private-*") if p.stat().st_uid == 0]
    # SIGKILLed already; a killed process may still be a zombie for a moment.
    deadline = time.monotonic() + 5
    while live_processes(PRIVATE_UID) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not live_processes(PRIVATE_UID), "the background sleep must have been killed"


def live_processes(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields["Uid"].split()[0] == str(uid) and fields["State"].split()[0] != "Z":
                found.append(int(entry))
    return found


def test_the_launcher_wraps_the_command_unchanged() -> None:
    argv = private_argv(["python3", "-I", "-c", "x"])
    assert argv[:5] == ["python3", "-I", "-S", "-c", LAUNCHER]
    assert argv[5:] == [str(PRIVATE_UID), "/workspace", "python3", "-I", "-c", "x"]
    compile(LAUNCHER, "launcher", "exec")
