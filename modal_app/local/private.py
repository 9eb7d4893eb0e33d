"""Private snapshots of a workspace, for commands that must not share anything writable.

A test run sees hidden inputs; whatever its candidate code writes must die
with it.  A read-only bind of the live workspace is not enough: the kernel
lets a process open a FIFO and connect to a Unix socket on a read-only
mount, and a process in the candidate's terminal could be reading there; a
shared inode also carries ``flock`` and inotify signals.  So a private exec
gets a *copy*: regular files (fresh inodes), directories and symlinks, as
they are when it starts; sockets, FIFOs and devices are left out.  It is
bound read-only (nothing written needs cleaning or counting against the disk
quota) and removed when the command has ended.

The copy is made by the server (root) on the host, so it never follows a
symlink: every directory is opened relative to its parent's fd with
``O_NOFOLLOW``, every file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and
checked with ``fstat``, so a candidate swapping a directory for a symlink
mid-copy gets the entry skipped, never a host file copied in.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from pathlib import Path

from modal_app.base import SandboxError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20


class SnapshotTooLarge(SandboxError):
    """The workspace is over the bytes/files a private snapshot may copy."""


class _Budget:
    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.bytes = max_bytes
        self.files = max_files

    def take(self, size: int) -> None:
        self.files -= 1
        self.bytes -= size
        if self.files < 0 or self.bytes < 0:
            raise SnapshotTooLarge("the workspace is too large to test (disk quota)")


def make_snapshot(
    workspace: Path, parent: Path, *, uid: int, max_bytes: int, max_files: int
) -> Path:
    """Copy ``workspace`` into a new directory under ``parent`` (made root-only 0711)."""
    parent.mkdir(mode=0o711, exist_ok=True)
    os.chmod(parent, 0o711)  # noqa: S103 - bwrap traverses it as the sandbox uid
    dest = parent / secrets.token_hex(8)
    os.mkdir(dest, 0o700)
    try:
        src_fd = os.open(workspace, _DIR_FLAGS)
        try:
            dst_fd = os.open(dest, _DIR_FLAGS)
            try:
                _copy_dir(src_fd, dst_fd, uid, _Budget(max_bytes, max_files))
                os.fchmod(dst_fd, stat.S_IMODE(os.fstat(src_fd).st_mode) & 0o777)
                os.fchown(dst_fd, uid, uid)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
    except BaseException:
        remove_snapshot(dest)
        raise
    return dest


def remove_snapshot(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _copy_dir(src_fd: int, dst_fd: int, uid: int, budget: _Budget) -> None:
    with os.scandir(src_fd) as entries:
        names = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
    for name, st in names:
        budget.take(st.st_size if stat.S_ISREG(st.st_mode) else 0)
        if stat.S_ISDIR(st.st_mode):
            _copy_subdir(src_fd, dst_fd, name, uid, budget)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(src_fd, dst_fd, name, uid)
        elif stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(OSError):
                target = os.readlink(name, dir_fd=src_fd)
                os.symlink(target, name, dir_fd=dst_fd)
                os.chown(name, uid, uid, dir_fd=dst_fd, follow_symlinks=False)
        # Sockets, FIFOs, devices: left out on purpose (see the module doc).


def _copy_subdir(src_fd: int, dst_fd: int, name: str, uid: int, budget: _Budget) -> None:
    try:
        child_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
    except OSError:
        return  # gone, or swapped for a symlink meanwhile
    try:
        os.mkdir(name, 0o700, dir_fd=dst_fd)
        child_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
        try:
            _copy_dir(child_src, child_dst, uid, budget)
            os.fchmod(child_dst, stat.S_IMODE(os.fstat(child_src).st_mode) & 0o777)
            os.fchown(child_dst, uid, uid)
        finally:
            os.close(child_dst)
    finally:
        os.close(child_src)


def _copy_file(src_fd: int, dst_fd: int, name: str, uid: int) -> None:
    """Copy one regular file (its size was taken from the budget by ``_copy_dir``)."""
    try:
        source = os.open(name, _FILE_FLAGS, dir_fd=src_fd)
    except OSError:
        return
    try:
        st = os.fstat(source)
        if not stat.S_ISREG(st.st_mode):
            return
        mode = stat.S_IMODE(st.st_mode) & 0o777
        target = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_fd
        )
        try:
            # Copy what was measured, no more: the file may grow while we copy.
            remaining = st.st_size
            while remaining > 0:
                copied = _copy_chunk(source, target, min(remaining, _CHUNK))
                if copied == 0:
                    break
                remaining -= copied
            os.fchmod(target, mode)
            os.fchown(target, uid, uid)
        finally:
            os.close(target)
    finally:
        os.close(source)


def _copy_chunk(source: int, target: int, count: int) -> int:
    try:
        return os.copy_file_range(source, target, count)
    except OSError:  # not supported between these filesystems: plain read/write
        data = os.read(source, count)
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
        return len(data)
