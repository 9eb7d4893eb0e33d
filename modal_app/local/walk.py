"""Resolving a workspace path to a directory fd and a final name, symlink-safely, as root."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from modal_app.base import WORKSPACE, FileNotFoundInSandbox, InvalidPath

_MAX_SYMLINK_HOPS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


def _split(relative: str) -> list[str]:
    return [p for p in relative.split("/") if p not in ("", ".")]


class Walker:
    """Resolves a workspace path to (directory fd, final name) without leaving the workspace."""

    def __init__(self, workspace: str) -> None:
        self._fds: list[int] = [os.open(workspace, DIR_FLAGS)]
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

    def lstat(self, name: str | None, shown: str) -> os.stat_result:
        """The final component (None: the directory reached), never following a symlink."""
        try:
            if name is None:
                return os.fstat(self.fd)
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileNotFoundInSandbox(f"no such file or directory: {shown!r}") from None

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
            fd = os.open(name, DIR_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            if not create:
                raise FileNotFoundInSandbox(f"no such directory: {self.relative(name)!r}") from None
            created = make_dir(self.fd, name)
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
            return os.open(name, DIR_FLAGS, dir_fd=self.fd)
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
def walk(
    workspace: str,
    relative: str,
    *,
    follow_last: bool,
    create_parents: bool = False,
    owner: Owner | None = None,
) -> Iterator[tuple[Walker, str | None]]:
    walker = Walker(workspace)
    try:
        name = walker.resolve(
            relative, follow_last=follow_last, create_parents=create_parents, owner=owner
        )
        yield walker, name
    finally:
        walker.close()


def make_dir(dir_fd: int, name: str) -> bool:
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
