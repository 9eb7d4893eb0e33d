"""Workspace file operations done by the server (root) on the host, symlink-safely.

The workspace is writable by candidate code, which can plant symlinks
(``ln -s /etc/shadow x``, ``ln -s / root``), swap directories for symlinks
while we look, or create FIFOs.  The server runs as root, so a naive
``open(workspace / path)`` would read or write any host file.

Approach: paths are first checked lexically (``modal_app.paths``), then
resolved *by us*, one component at a time, with ``openat``-style calls
relative to a directory fd and ``O_NOFOLLOW`` on every open.  When a component
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
with their kind.  Writes go to a temporary file that is renamed into place, so
a write never goes *through* an existing link or FIFO.  Files and directories
the server creates are chowned to the sandbox uid.

Errors: whatever the OS says about one workspace path (ENXIO of a socket,
ENOSPC of a full workspace, EACCES, ...) is that sandbox's SandboxFileError,
never a bare OSError: callers must not mistake a candidate's file for the
backend failing (``oserrors``).  Only host resource
exhaustion (EMFILE, ENFILE, ENOMEM) is BackendUnavailable.

All functions here block; the backend calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from modal_app.base import (
    WORKSPACE,
    FileEntry,
    FileKind,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    SandboxFileError,
)

_MAX_SYMLINK_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


def _split(relative: str) -> list[str]:
    return [p for p in relative.split("/") if p not in ("", ".")]


class _Walker:
    """Resolves a workspace path to (directory fd, final name) without leaving the workspace."""

    def __init__(self, workspace: str) -> None:
        self._fds: list[int] = [os.open(workspace, _DIR_FLAGS)]
        self._names: list[str] = []
        self._hops = 0

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    @property
    def fd(self) -> int:
        return self._fds[-1]

    def relative(self, name: str | None = None) -> str:
        parts = [*self._names, name] if name else self._names
        return "/".join(parts)

    def _reset_to_root(self) -> None:
        while len(self._fds) > 1:
            os.close(self._fds.pop())
        self._names.clear()

    def _expand_link(self, name: str, rest: list[str]) -> list[str]:
        self._hops += 1
        if self._hops > _MAX_SYMLINK_HOPS:
            raise InvalidPath("too many levels of symbolic links")
        target = os.readlink(name, dir_fd=self.fd)
        if target.startswith("/"):
            if target != WORKSPACE and not target.startswith(WORKSPACE + "/"):
                raise InvalidPath(f"{self.relative(name)!r} is a symlink out of the workspace")
            self._reset_to_root()
            target = target[len(WORKSPACE) :]
        return _split(target) + rest

    def _enter(self, name: str, *, create: bool, owner: Owner | None) -> None:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            if not create:
                raise FileNotFoundInSandbox(f"no such directory: {self.relative(name)!r}") from None
            created = _make_dir(self.fd, name)
            fd = self._open_dir_or_fail(name)
            if created and owner is not None:
                os.fchown(fd, owner.uid, owner.gid)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidPath(f"{self.relative(name)!r} is not a directory") from None
            raise
        self._fds.append(fd)
        self._names.append(name)

    def _open_dir_or_fail(self, name: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            raise InvalidPath(f"{self.relative(name)!r} is not a directory") from exc

    def resolve(
        self,
        relative: str,
        *,
        follow_last: bool,
        create_parents: bool = False,
        owner: Owner | None = None,
    ) -> str | None:
        """Walk to the parent of the final component; return its name (None: the root)."""
        todo = _split(relative)
        while todo:
            name = todo.pop(0)
            if name == "..":
                if not self._names:
                    raise InvalidPath("path climbs out of the workspace")
                os.close(self._fds.pop())
                self._names.pop()
                continue
            try:
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                if not todo:
                    return name
                if not create_parents:
                    raise FileNotFoundInSandbox(
                        f"no such directory: {self.relative(name)!r}"
                    ) from None
                self._enter(name, create=True, owner=owner)
                continue
            if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                todo = self._expand_link(name, todo)
                if not todo:
                    return None  # the link pointed at the workspace root itself
                continue
            if not todo:
                return name
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidPath(f"{self.relative(name)!r} is not a directory")
            self._enter(name, create=False, owner=owner)
        return None


@contextlib.contextmanager
def _walk(
    workspace: str,
    relative: str,
    *,
    follow_last: bool,
    create_parents: bool = False,
    owner: Owner | None = None,
) -> Iterator[tuple[_Walker, str | None]]:
    walker = _Walker(workspace)
    try:
        name = walker.resolve(
            relative, follow_last=follow_last, create_parents=create_parents, owner=owner
        )
        yield walker, name
    finally:
        walker.close()


def kind_of(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "other"


def _entry(path: str, st: os.stat_result) -> FileEntry:
    kind = kind_of(st.st_mode)
    # Only regular files and symlinks have a meaningful size; a device's st_size is not its content.
    size = st.st_size if kind in ("file", "symlink") else 0
    return FileEntry(path=path, kind=kind, size=size, mtime=st.st_mtime)


def printable_name(name: str) -> str:
    """A directory entry's name as valid UTF-8 text (U+FFFD for bytes that are not).

    os.listdir returns undecodable bytes as lone surrogates, which no JSON,
    GraphQL or PostgreSQL text can hold; such a path cannot be addressed
    through the API, so it is shown (and then not found) rather than crash a listing.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "replace")
    return name


def _lstat(walker: _Walker, name: str | None, shown: str) -> os.stat_result:
    try:
        if name is None:
            return os.fstat(walker.fd)
        return os.stat(name, dir_fd=walker.fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFoundInSandbox(f"no such file or directory: {shown!r}") from None


def stat_path(workspace: str, relative: str) -> FileEntry:
    with _walk(workspace, relative, follow_last=False) as (walker, name):
        return _entry(relative, _lstat(walker, name, relative))


def read_file(workspace: str, relative: str, *, max_bytes: int) -> bytes:
    if not relative:
        raise InvalidPath("the workspace root is a directory")
    with _walk(workspace, relative, follow_last=True) as (walker, name):
        if name is None:
            raise InvalidPath(f"{relative!r} is a directory")
        # lstat first: a socket, FIFO or device is refused without ever being
        # opened (opening a FIFO or a device can block or have side effects).
        _require_regular(_lstat(walker, name, relative), relative)
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
    with _walk(workspace, relative, follow_last=True, create_parents=True, owner=owner) as (
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
    with _walk(workspace, relative, follow_last=True, create_parents=True, owner=owner) as (
        walker,
        name,
    ):
        if name is None:
            return
        created = _make_dir(walker.fd, name)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=walker.fd)
        except OSError:
            raise InvalidPath(f"{relative!r} exists and is not a directory") from None
        try:
            if created:
                os.fchown(fd, owner.uid, owner.gid)
        finally:
            os.close(fd)


def _make_dir(dir_fd: int, name: str) -> bool:
    """mkdir; False if something already has that name.

    Ownership is then set through an fd opened O_NOFOLLOW|O_DIRECTORY, never
    by name: the sandbox could swap the new name for something else between
    the two calls, and a chown by name would follow the swap.
    """
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        return False
    return True


def delete(workspace: str, relative: str) -> None:
    if not relative:
        raise InvalidPath("cannot delete the workspace root")
    with _walk(workspace, relative, follow_last=False) as (walker, name):
        if name is None:
            raise InvalidPath("cannot delete the workspace root")
        st = _lstat(walker, name, relative)
        if stat.S_ISDIR(st.st_mode):
            # The fd-based rmtree never follows symlinks, even ones swapped in mid-way.
            shutil.rmtree(name, dir_fd=walker.fd)
        else:
            os.unlink(name, dir_fd=walker.fd)


def list_files(
    workspace: str, relative: str, *, recursive: bool, max_entries: int
) -> list[FileEntry]:
    """List a directory (sorted by path), never following symlinks below it.

    At most ``max_entries`` entries are returned: a workspace can hold millions
    of files and the listing must stay bounded.
    """
    with _walk(workspace, relative, follow_last=True) as (walker, name):
        st = _lstat(walker, name, relative)
        if not stat.S_ISDIR(st.st_mode):
            return [_entry(relative, st)]
        top = walker.fd if name is None else os.open(name, _DIR_FLAGS, dir_fd=walker.fd)
        entries: list[FileEntry] = []
        try:
            _list_dir(top, relative, recursive, entries, max_entries)
        finally:
            if top != walker.fd:
                os.close(top)
    entries.sort(key=lambda e: e.path)
    return entries


def _list_dir(
    dir_fd: int, prefix: str, recursive: bool, out: list[FileEntry], max_entries: int
) -> None:
    try:
        names = sorted(os.listdir(dir_fd))
    except OSError as exc:
        raise SandboxFileError(f"cannot list {prefix or '/'}: {exc.strerror}") from None
    for child in names:
        if len(out) >= max_entries:
            return
        try:
            st = os.stat(child, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we listed
        shown = printable_name(child)
        path = f"{prefix}/{shown}" if prefix else shown
        out.append(_entry(path, st))
        if recursive and stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(child, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # swapped for a symlink or removed: not ours to follow
            try:
                _list_dir(sub, path, recursive, out, max_entries)
            finally:
                os.close(sub)


def disk_usage(paths: list[str], *, max_inodes: int | None = None) -> tuple[int, int]:
    """(bytes allocated, inodes) under ``paths``, without following symlinks.

    Counting stops after ``max_inodes`` entries: past that the caller acts
    anyway, and the walk's cost must stay bounded.
    """
    total = 0
    inodes = 0
    for path in paths:
        try:
            for _root, dirs, files, root_fd in os.fwalk(path, follow_symlinks=False):
                for name in dirs + files:
                    try:
                        st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    inodes += 1
                if max_inodes is not None and inodes > max_inodes:
                    return total, inodes
        except OSError:
            continue
    return total, inodes
