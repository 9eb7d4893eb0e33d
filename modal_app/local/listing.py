"""Workspace entries, directory listings and disk usage, never following a symlink."""

from __future__ import annotations

import os
import stat

from modal_app.base import FileEntry, FileKind, SandboxFileError
from modal_app.local.walk import DIR_FLAGS, walk


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


def entry(path: str, st: os.stat_result) -> FileEntry:
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


def list_files(
    workspace: str, relative: str, *, recursive: bool, max_entries: int
) -> list[FileEntry]:
    """List a directory (sorted by path), never following symlinks below it.

    At most ``max_entries`` entries are returned: a workspace can hold millions
    of files and the listing must stay bounded.
    """
    with walk(workspace, relative, follow_last=True) as (walker, name):
        st = walker.lstat(name, relative)
        if not stat.S_ISDIR(st.st_mode):
            return [entry(relative, st)]
        top = walker.fd if name is None else os.open(name, DIR_FLAGS, dir_fd=walker.fd)
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
        out.append(entry(path, st))
        if recursive and stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(child, DIR_FLAGS, dir_fd=dir_fd)
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
