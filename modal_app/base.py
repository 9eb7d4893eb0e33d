"""The sandbox contract every backend implements, with its typed values and errors.

A sandbox is an isolated workspace (mounted at ``/workspace``) in which
untrusted candidate code runs.  Backends: ``local`` (bubblewrap, the embedded
default and the one the tests use) and ``modal`` (production).  This package
imports nothing else of the project's.

Exception tree::

    SandboxError                  base of everything a backend raises
    ├── SandboxNotFound           no sandbox with that id on this backend
    ├── SandboxTerminated         the sandbox has ended; nothing more runs in it
    ├── ExecTimeout               a command ran past its timeout (``run`` reports
    │                             it as ``timed_out`` instead of raising)
    ├── QuotaExceeded             too many sandboxes / processes for the caller
    ├── BackendUnavailable        the runtime cannot be reached, or the isolation
    │                             it needs is missing (never run unisolated)
    ├── InvalidSpec               bad preset, image spec, limits or command
    └── SandboxFileError          base of file operation failures
        ├── InvalidPath           absolute outside /workspace, ``..``, NUL, symlink escape
        ├── FileNotFoundInSandbox no such file or directory
        └── FileTooLarge          over the configured size limit
"""

from __future__ import annotations

import builtins
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

WORKSPACE = "/workspace"


class SandboxError(Exception):
    """Base class of all sandbox errors."""


class SandboxNotFound(SandboxError):
    pass


class SandboxTerminated(SandboxError):
    pass


class ExecTimeout(SandboxError):
    pass


class QuotaExceeded(SandboxError):
    pass


class BackendUnavailable(SandboxError):
    pass


class InvalidSpec(SandboxError):
    pass


class SandboxFileError(SandboxError):
    pass


class InvalidPath(SandboxFileError):
    pass


class FileNotFoundInSandbox(SandboxFileError):
    pass


class FileTooLarge(SandboxFileError):
    pass


class SandboxStatus(enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"


class Language(enum.Enum):
    """Language presets every backend provides."""

    PYTHON = "PYTHON"
    JAVASCRIPT = "JAVASCRIPT"
    TYPESCRIPT = "TYPESCRIPT"
    GO = "GO"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """A base registry image plus Dockerfile-style commands (``RUN ...``)."""

    base: str
    commands: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    cpu: float = 1.0
    memory_mb: int = 512
    max_processes: int = 128
    max_file_size_mb: int = 64
    max_open_files: int = 256
    cpu_seconds: int = 600


SOCKET_MOUNT = "/run/interviewlm"
"""Where ``NetworkPolicy.socket_dir`` appears inside a local sandbox."""


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Sandboxes have no network unless hosts are explicitly allowed.

    ``socket_dir`` (local backend, one exec only): a host directory of Unix
    sockets bound read-only at ``SOCKET_MOUNT``, how the agent reaches the
    server's API proxy from a sandbox that has no network at all.
    """

    allow_hosts: tuple[str, ...] = ()
    socket_dir: str | None = None

    @property
    def blocked(self) -> bool:
        return not self.allow_hosts


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    language: Language | None = None
    image: ImageSpec | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = WORKSPACE
    volume: str | None = None
    limits: Limits = field(default_factory=Limits)
    timeout_s: float = 3600.0
    idle_timeout_s: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    id: str
    status: SandboxStatus
    tags: Mapping[str, str]
    created_at: float


@dataclass(frozen=True, slots=True)
class OutputChunk:
    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True, slots=True)
class ExitStatus:
    exit_code: int | None
    """None when the process was killed by a signal (see ``signal``) or timed out."""
    signal: int | None = None
    timed_out: bool = False
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration_ms: int
    truncated: bool = False
    signal: int | None = None


FileKind = Literal["file", "dir", "symlink", "socket", "fifo", "device", "other"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    """Relative to /workspace, '/'-separated, no leading slash."""
    kind: FileKind
    """``file`` is a regular file; sockets, FIFOs and devices are listed, never read."""
    size: int
    mtime: float


@runtime_checkable
class ExecHandle(Protocol):
    """A running command. ``output()`` yields stdout and stderr chunks in arrival order."""

    def output(self) -> AsyncIterator[OutputChunk]: ...

    async def wait(self) -> ExitStatus: ...

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def kill(self) -> None: ...


@runtime_checkable
class PtyHandle(Protocol):
    """An interactive terminal; output is the raw byte stream of the PTY."""

    def output(self) -> AsyncIterator[bytes]: ...

    async def write(self, data: bytes) -> None: ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def close(self) -> None: ...

    async def wait(self) -> int | None: ...


@runtime_checkable
class SandboxBackend(Protocol):
    name: str

    async def start(self) -> None:
        """Check the runtime (raise BackendUnavailable if isolation is missing)."""

    async def aclose(self) -> None:
        """Stop every process this backend owns in this process."""

    async def create(self, spec: SandboxSpec) -> SandboxInfo: ...

    async def attach(self, sandbox_id: str) -> SandboxInfo: ...

    async def status(self, sandbox_id: str) -> SandboxStatus: ...

    async def list(self, tags: Mapping[str, str]) -> list[SandboxInfo]: ...

    async def exec(
        self,
        sandbox_id: str,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        network: NetworkPolicy | None = None,
        private: bool = False,
    ) -> ExecHandle:
        """Start a command: a sequence is an argv, a string runs under ``sh -c``.

        ``network`` widens the sandbox's network for this command only (the
        Claude agent's API host); candidate commands never pass it.

        ``private`` (test runs, which see hidden inputs): the command sees the
        workspace as a read-only snapshot taken when it starts (no sockets,
        FIFOs or devices), a fresh empty home and fresh /tmp and /dev/shm,
        and shares nothing writable with the sandbox's other commands;
        everything it writes is discarded with it.  It never has network.
        """

    async def open_pty(
        self,
        sandbox_id: str,
        *,
        cols: int = 80,
        rows: int = 24,
        command: Sequence[str] = ("bash", "-l"),
        env: Mapping[str, str] | None = None,
    ) -> PtyHandle: ...

    async def list_files(
        self, sandbox_id: str, path: str = "", *, recursive: bool = True
    ) -> builtins.list[FileEntry]: ...

    async def stat(self, sandbox_id: str, path: str) -> FileEntry: ...

    async def read_file(self, sandbox_id: str, path: str, *, max_bytes: int | None = None) -> bytes:
        """A regular file's bytes (FileTooLarge past ``max_bytes`` or the sandbox's limit).

        Anything else (directory, socket, FIFO, device) is InvalidPath and is never opened
        in a way that could block or have side effects.
        """

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        """Write a file, creating parent directories."""

    async def delete(self, sandbox_id: str, path: str) -> None:
        """Delete a file or a directory tree."""

    async def mkdir(self, sandbox_id: str, path: str) -> None: ...

    async def terminate(self, sandbox_id: str) -> None:
        """Kill every process of the sandbox; idempotent."""

    async def remove(self, sandbox_id: str) -> None:
        """Delete a terminated sandbox's workspace (or volume) for good; idempotent.

        Raises SandboxError if the sandbox still runs: terminate it first.
        """


TRUNCATION_MARKER = b"\n[output truncated: limit of %d bytes reached]\n"


async def run(
    backend: SandboxBackend,
    sandbox_id: str,
    command: Sequence[str] | str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout_s: float | None = None,
    output_cap: int = 1 << 20,
    on_output: Callable[[OutputChunk], Awaitable[None]] | None = None,
) -> ExecResult:
    """Run a command to completion, capturing at most ``output_cap`` bytes of output.

    Output past the cap is drained and dropped (so the command is not blocked
    on a full pipe) and the captured stream ends with ``TRUNCATION_MARKER``.
    ``on_output`` sees each captured piece as it arrives (for live streaming).
    """
    started = time.monotonic()
    handle = await backend.exec(sandbox_id, command, cwd=cwd, env=env, timeout_s=timeout_s)
    if stdin is not None:
        await handle.write_stdin(stdin)
    await handle.close_stdin()
    buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    captured = 0
    truncated = False
    async for chunk in handle.output():
        room = output_cap - captured
        if room <= 0:
            truncated = True
            continue
        piece = chunk.data[:room]
        truncated = truncated or len(piece) < len(chunk.data)
        buffers[chunk.stream] += piece
        captured += len(piece)
        if on_output is not None and piece:
            await on_output(OutputChunk(chunk.stream, piece))
    status = await handle.wait()
    if truncated:
        buffers["stdout"] += TRUNCATION_MARKER % output_cap
    return ExecResult(
        exit_code=status.exit_code,
        stdout=bytes(buffers["stdout"]),
        stderr=bytes(buffers["stderr"]),
        timed_out=status.timed_out,
        duration_ms=status.duration_ms or int((time.monotonic() - started) * 1000),
        truncated=truncated,
        signal=status.signal,
    )
