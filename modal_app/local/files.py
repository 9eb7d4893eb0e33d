"""Workspace file operations done by the server (root) on the host, symlink-safely.

The workspace is writable by candidate code, which can plant symlinks
(``ln -s /etc/shadow x``, ``ln -s / root``), swap directories for symlinks
while we look, or create FIFOs.  The server runs as root, so a naive
``open(workspace / path)`` would read or write any host file.

Approach: paths are first checked lexically (``modal_app.paths``), then
resolved *by us* (``walk``), one component at a time, with ``openat``-style
calls relative to a directory fd and ``O_NOFOLLOW`` on every open.  When a component
is a symlink we read its target and continue resolving it inside the workspace
the way the kernel would inside the sandbox (``/workspace/...`` absolute
targets and relative targets are followed, ``..`` never climbs above the
workspace root, 40 hops at most); any other absolute target is an escape and
raises InvalidPath.  Because every step opens with ``O_NOFOLLOW`` against an fd
we already hold, a concurrent swap makes the open fail (ELOOP/ENOTDIR) instead
of redirecting it, so the check is race-free rather than "race-safe enough".
Only regular files are read: the final component is lstat'ed and a socket,
FIFO or device is refused (InvalidPath) before any open; the open itself is
``O_NONBLOCK|O_NOFOLLOW|O_NOCTTY`` and fstat'ed again, so a swap in between
can neither hang the server nor reach a device.  Listings show such entries
with their kind (``listing``).  Writes go to a temporary file that is renamed
into place, so a write never goes *through* an existing link or FIFO.  Files
and directories the server creates are chowned to the sandbox uid.

Errors: whatever the OS says about one workspace path (ENXIO of a socket,
ENOSPC of a full workspace, EACCES, ...) is that sandbox's SandboxFileError,
never a bare OSError: callers must not mistake a candidate's file for the
backend failing (``oserrors``).  Only host resource
exhaustion (EMFILE, ENFILE, ENOMEM) is BackendUnavailable.

All functions here (and in ``walk`` and ``listing``) block; the backend calls
them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat

from modal_app.base import FileEntry, FileNotFoundInSandbox, FileTooLarge, InvalidPath
from modal_app.local.listing import entry, kind_of
from modal_app.local.walk import DIR_FLAGS, Owner, make_dir, walk


def stat_path(workspace: str, relative: str) -> FileEntry:
    with walk(workspace, relative, follow_last=False) as (walker, name):
        return entry(relative, walker.lstat(name, relative))


def read_file(workspace: str, relative: str, *, max_bytes: int) -> bytes:
    if not relative:
        raise InvalidPath("the workspace root is a directory")
    with walk(workspace, relative, follow_last=True) as (walker, name):
        if name is None:
            raise InvalidPath(f"{relative!r} is a directory")
        # lstat first: a socket, FIFO or device is refused without ever being
        # opened (opening a FIFO or a device can block or have side effects).
        _require_regular(walker.lstat(name, relative), relative)
        try:
            fd = os.open(
                name,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                dir_fd=walker.fd,
            )
        except FileNotFoundError:
            raise FileNotFoundInSandbox(f"no such file: {relative!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidPath(f"{relative!r} changed into a symlink") from None
            # ENXIO and friends: it was swapped for a special file after the lstat.
            raise InvalidPath(f"{relative!r} cannot be read: {exc.strerror}") from None
        try:
            st = os.fstat(fd)  # what we opened, whatever the name points at now
            _require_regular(st, relative)
            if st.st_size > max_bytes:
                raise FileTooLarge(f"{relative!r} is {st.st_size} bytes (limit {max_bytes})")
            chunks: list[bytes] = []
            total = 0
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
                if total > max_bytes:  # grew while we read it
                    raise FileTooLarge(f"{relative!r} is over {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


def _require_regular(st: os.stat_result, relative: str) -> None:
    kind = kind_of(st.st_mode)
    if kind == "dir":
        raise InvalidPath(f"{relative!r} is a directory")
    if kind != "file":
        raise InvalidPath(f"{relative!r} is a {kind}, not a regular file; it cannot be read")


def write_file(workspace: str, relative: str, data: bytes, *, owner: Owner, max_bytes: int) -> None:
    if not relative:
        raise InvalidPath("cannot write the workspace root")
    if len(data) > max_bytes:
        raise FileTooLarge(f"{len(data)} bytes is over the file size limit of {max_bytes}")
    with walk(workspace, relative, follow_last=True, create_parents=True, owner=owner) as (
        walker,
        name,
    ):
        if name is None:
            raise InvalidPath(f"{relative!r} is a directory")
        mode = 0o644
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=walker.fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise InvalidPath(f"{relative!r} is a directory")
            if stat.S_ISREG(st.st_mode):
                mode = stat.S_IMODE(st.st_mode) & 0o777  # keep e.g. an executable bit
        tmp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=walker.fd,
        )
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, owner.uid, owner.gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=walker.fd, dst_dir_fd=walker.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=walker.fd)
            raise


def mkdir(workspace: str, relative: str, *, owner: Owner) -> None:
    if not relative:
        return  # the workspace root always exists
    with walk(workspace, relative, follow_last=True, create_parents=True, owner=owner) as (
        walker,
        name,
    ):
        if name is None:
            return
        created = make_dir(walker.fd, name)
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=walker.fd)
        except OSError:
            raise InvalidPath(f"{relative!r} exists and is not a directory") from None
        try:
            if created:
                os.fchown(fd, owner.uid, owner.gid)
        finally:
            os.close(fd)


def delete(workspace: str, relative: str) -> None:
    if not relative:
        raise InvalidPath("cannot delete the workspace root")
    with walk(workspace, relative, follow_last=False) as (walker, name):
        if name is None:
            raise InvalidPath("cannot delete the workspace root")
        st = walker.lstat(name, relative)
        if stat.S_ISDIR(st.st_mode):
            # The fd-based rmtree never follows symlinks, even ones swapped in mid-way.
            shutil.rmtree(name, dir_fd=walker.fd)
        else:
            os.unlink(name, dir_fd=walker.fd)
