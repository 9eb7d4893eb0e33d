"""OS errors of workspace file operations, as the sandbox contract's errors.

What the OS says about one path in a candidate's workspace (ENXIO opening a
socket, ENOSPC of a full workspace, EACCES, ELOOP ...) is that sandbox's
SandboxFileError, which the API answers as that request's error.  A bare
OSError would look like the backend failing and, counted by the circuit
breaker, let one candidate take sandboxes away from every account.  Only
exhaustion of the host's own resources (EMFILE, ENFILE, ENOMEM) says the
backend is unhealthy.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from modal_app.base import (
    BackendUnavailable,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    SandboxError,
    SandboxFileError,
)

P = ParamSpec("P")
T = TypeVar("T")

_HOST_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def file_error_of(exc: OSError, relative: str) -> SandboxError:
    shown = relative or "/"
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundInSandbox(f"no such file or directory: {shown!r}")
    if exc.errno in _HOST_EXHAUSTED:
        return BackendUnavailable(f"the server is out of resources: {exc.strerror}")
    if exc.errno == errno.EFBIG:
        return FileTooLarge(f"{shown!r} is over the file size limit")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SandboxFileError("the workspace is full")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL):
        return InvalidPath(f"{shown!r}: {exc.strerror}")
    return SandboxFileError(f"{shown!r}: {exc.strerror or type(exc).__name__}")


def os_errors_as_file_errors(operation: Callable[P, T], relative: str) -> Callable[P, T]:
    """``operation`` with OSErrors turned into the sandbox's file errors (see the module doc)."""

    def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return operation(*args, **kwargs)
        except SandboxError:
            raise
        except OSError as exc:
            raise file_error_of(exc, relative) from None

    return guarded
