"""The one place where Modal SDK exceptions become the sandbox contract's errors.

``map_modal_error`` is a pure function over the exception's class hierarchy:
the most specific class with an entry wins, so subclasses are mapped before
their bases (``ConflictError`` is an ``InvalidError`` in the SDK, but it is
a failed precondition, e.g. what a finished sandbox answers, so it must not
read as a bad spec).
``translate_errors`` applies it to a block of code; every Modal call in the
backend runs inside it.

Classes verified against the installed modal 1.6.4 (``modal/exception.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import modal.exception as mx

from modal_app.base import (
    BackendUnavailable,
    ExecTimeout,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    InvalidSpec,
    QuotaExceeded,
    SandboxError,
    SandboxFileError,
    SandboxNotFound,
    SandboxTerminated,
)

_MODAL_TO_OURS: dict[type[BaseException], type[SandboxError]] = {
    mx.NotFoundError: SandboxNotFound,
    mx.SandboxTerminatedError: SandboxTerminated,
    # A sandbox that outlived its lifetime has ended: nothing more runs in it.
    # It is not a command timeout, which is what ExecTimeout means here.
    mx.SandboxTimeoutError: SandboxTerminated,
    # FAILED_PRECONDITION: any failed precondition (a write to a closed stdin,
    # "Sandbox already finished", ...).  Not a bad spec, not necessarily an
    # ended sandbox: ``refs.on_sandbox`` polls to tell the latter.
    mx.ConflictError: SandboxError,
    mx.ExecTimeoutError: ExecTimeout,
    mx.ResourceExhaustedError: QuotaExceeded,
    mx.InvalidError: InvalidSpec,
    mx.AlreadyExistsError: InvalidSpec,
    mx.UnimplementedError: InvalidSpec,
    mx.ImageBuildError: InvalidSpec,
    mx.AuthError: BackendUnavailable,
    mx.PermissionDeniedError: BackendUnavailable,
    mx.ConnectionError: BackendUnavailable,
    mx.ServiceError: BackendUnavailable,
    mx.InternalError: BackendUnavailable,
    mx.InternalFailure: BackendUnavailable,
    mx.DataLossError: BackendUnavailable,
    mx.VersionError: BackendUnavailable,
    mx.ClientClosed: BackendUnavailable,
    mx.RemoteError: BackendUnavailable,
    mx.ExecutionError: BackendUnavailable,
    mx.TimeoutError: BackendUnavailable,
    mx.SandboxFilesystemNotFoundError: FileNotFoundInSandbox,
    mx.SandboxFilesystemFileTooLargeError: FileTooLarge,
    # Same answers as the local backend: a path of the wrong kind is an invalid path.
    mx.SandboxFilesystemIsADirectoryError: InvalidPath,
    mx.SandboxFilesystemNotADirectoryError: InvalidPath,
    mx.SandboxFilesystemPathAlreadyExistsError: InvalidPath,
    mx.SandboxFilesystemError: SandboxFileError,
    mx.Error: SandboxError,
    # Raised by the Volume API (read_file / remove_file) for a missing path.
    FileNotFoundError: FileNotFoundInSandbox,
    # The SDK's own RPC deadlines surface as the builtin TimeoutError.
    TimeoutError: BackendUnavailable,
    # A worker that is gone: the SDK's command-router client gives up with the
    # builtin ConnectionError (not modal.exception's); refs.on_sandbox polls
    # the control plane to tell an ended sandbox from an unreachable Modal.
    ConnectionError: BackendUnavailable,
}

_PREFIX: dict[type[SandboxError], str] = {
    BackendUnavailable: "Modal is unavailable",
    SandboxTerminated: "the sandbox has ended",
    QuotaExceeded: "Modal refused for lack of quota or capacity",
}


def map_modal_error(
    exc: BaseException, *, not_found: type[SandboxError] = SandboxNotFound
) -> SandboxError | None:
    """Our error for a Modal (or Modal-raised builtin) exception; None if it is not one.

    ``not_found`` is what ``NotFoundError`` means in context: a sandbox for
    sandbox calls, a file for Volume calls.
    """
    if isinstance(exc, SandboxError):
        return exc
    for cls in type(exc).__mro__:
        ours = not_found if cls is mx.NotFoundError else _MODAL_TO_OURS.get(cls)
        if ours is not None:
            detail = str(exc) or type(exc).__name__
            prefix = _PREFIX.get(ours)
            return ours(f"{prefix}: {detail}" if prefix else detail)
    return None


@contextmanager
def translate_errors(*, not_found: type[SandboxError] = SandboxNotFound) -> Iterator[None]:
    """Re-raise Modal exceptions from the block as the contract's errors (chained)."""
    try:
        yield
    except SandboxError:
        raise
    except Exception as exc:
        ours = map_modal_error(exc, not_found=not_found)
        if ours is None:
            raise
        raise ours from exc
