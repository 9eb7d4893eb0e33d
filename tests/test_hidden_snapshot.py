"""The private snapshot a test run sees (``modal_app.local.private``), and the sandbox's view of it.

A read-only bind of the live workspace would not do: a FIFO or a Unix socket
there can still be opened for writing, and a process in the candidate's
terminal could be at the other end.  These tests build snapshots of a
workspace holding such files (and symlinks out of it) on this host, then check
inside a real sandbox that a private exec can reach nothing of the live
workspace.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from modal_app.base import Language, SandboxSpec, run
from modal_app.local.backend import LocalSandboxBackend
from modal_app.local.private import SnapshotTooLarge, make_snapshot

UID = 1_999_999_999


@pytest.fixture
def workspace() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ilm-snapshot-"))
    ws = root / "workspace"
    ws.mkdir()
    (ws / "solution.py").write_text("def solve(): return 1\n")
    os.chmod(ws / "solution.py", 0o640)
    (ws / "pkg").mkdir()
    (ws / "pkg" / "helper.py").write_text("X = 2\n")
    (ws / "to-etc").symlink_to("/etc")
    (ws / "to-passwd").symlink_to("/etc/passwd")
    os.mkfifo(ws / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(ws / "sock"))
    yield ws
    listener.close()
    shutil.rmtree(root, ignore_errors=True)


def test_snapshot_copies_files_and_leaves_special_files_out(workspace: Path) -> None:
    snap = make_snapshot(
        workspace, workspace.parent / "private", uid=UID, max_bytes=1 << 20, max_files=100
    )
    assert sorted(p.name for p in snap.iterdir()) == [
        "pkg",
        "solution.py",
        "to-etc",
        "to-passwd",
    ]
    assert (snap / "solution.py").read_text() == "def solve(): return 1\n"
    copied = os.stat(snap / "solution.py")
    assert copied.st_ino != os.stat(workspace / "solution.py").st_ino  # not a shared inode
    assert (copied.st_uid, stat.S_IMODE(copied.st_mode)) == (UID, 0o640)
    assert (snap / "pkg" / "helper.py").read_text() == "X = 2\n"
    # Symlinks stay symlinks: resolved in the sandbox's view, never copied through.
    assert os.readlink(snap / "to-etc") == "/etc"
    assert os.lstat(snap / "to-passwd").st_uid == UID
    assert stat.S_IMODE(os.stat(workspace.parent / "private").st_mode) == 0o711


def test_snapshot_over_the_quota_is_refused_and_removed(workspace: Path) -> None:
    parent = workspace.parent / "private"
    with pytest.raises(SnapshotTooLarge):
        make_snapshot(workspace, parent, uid=UID, max_bytes=1 << 20, max_files=2)
    assert list(parent.iterdir()) == []


@pytest.fixture
async def backend() -> AsyncIterator[LocalSandboxBackend]:
    root = Path(tempfile.mkdtemp(prefix="ilm-snapshot-root-"))
    os.chmod(root, 0o711)
    backend = LocalSandboxBackend(root, cgroups="off")
    await backend.start()
    yield backend
    await backend.aclose()
    shutil.rmtree(root, ignore_errors=True)


async def test_private_exec_cannot_reach_the_live_workspace(backend: LocalSandboxBackend) -> None:
    """A listener on a FIFO in the live workspace (a candidate's terminal) hears nothing."""
    info = await backend.create(SandboxSpec(language=Language.PYTHON))
    sid = info.id
    await backend.write_file(sid, "keep.txt", b"kept\n")
    setup = await run(backend, sid, "mkfifo /workspace/pipe && mkdir -p /workspace/d")
    assert setup.exit_code == 0, setup.stderr
    probe = (
        "cat /workspace/keep.txt; test -e /workspace/pipe && echo PIPE-PRESENT;"
        " echo x > /workspace/new 2>/dev/null && echo WORKSPACE-WRITABLE;"
        " echo y > ~/home-file && echo HOME-OK; echo z > /tmp/t && echo TMP-OK;"
        " echo w > /dev/shm/s && echo SHM-OK; id -u"
    )
    private = await backend.exec(sid, ["sh", "-c", probe], timeout_s=30, private=True)
    await private.close_stdin()
    out = b""
    async for chunk in private.output():
        out += chunk.data
    status = await private.wait()
    assert status.exit_code == 0, out
    lines = out.decode().split()
    assert "kept" in lines
    assert "PIPE-PRESENT" not in lines
    assert "WORKSPACE-WRITABLE" not in lines
    assert {"HOME-OK", "TMP-OK", "SHM-OK"} <= set(lines)
    # Nothing the private command wrote is visible to the next command.
    after = await run(backend, sid, "ls -A /workspace ~ /tmp /dev/shm")
    names = after.stdout.decode().split()
    assert "new" not in names
    assert "home-file" not in names
    # The same probe as an ordinary command: it does reach all of it.
    ordinary = (await run(backend, sid, probe, timeout_s=30)).stdout.decode().split()
    assert {"PIPE-PRESENT", "WORKSPACE-WRITABLE"} <= set(ordinary)
    await backend.terminate(sid)
    await backend.remove(sid)
