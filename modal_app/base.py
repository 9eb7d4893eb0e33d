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
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
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
    """The languages of the product, and the presets every backend provides.

    A domain type: the rest of the app imports it from ``models.language``.
    It is defined here because the runtime needs it and imports nothing of
    the project's (see ``models.language``).
    """

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


AgentProxyRoute = Literal["socket", "egress"]
"""``socket``: the sandbox has no network; the proxy's Unix socket directory is
bound in for one command (``NetworkPolicy.socket_dir``, seen at SOCKET_MOUNT).
``egress``: the command's egress is widened to the server's public host
(``NetworkPolicy.allow_hosts``); sockets cannot be bound in."""

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


@dataclass(frozen=True, slots=True)
class WorkspaceChanges:
    """Paths that changed in a sandbox's workspace since the previous batch (a hint).

    Nothing here is read from the workspace: a consumer looks at each path
    through the backend's file operations, which are symlink-safe.
    """

    paths: frozenset[str]
    """Relative to /workspace: files or directories created, written, removed or
    renamed (a directory stands for everything under it)."""
    complete: bool = True
    """False: changes may have been missed (a watch budget or kernel queue ran
    out); the next full sync of the workspace finds them."""


WatchFilter = Callable[[str], bool]
"""Whether a directory (relative path) is worth watching: the caller's ignore rules."""


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
    """The contract.  Backends call the ``check_*`` functions and ``command_argv``
    below before anything else, so the same bad input is the same InvalidSpec on
    every backend; what is left to a backend is what only it cannot honour."""

    name: str
    shares_sandboxes_across_replicas: bool
    """True: a sandbox outlives the server process that created it and any
    replica can attach to it by id (Modal).  False: it belongs to the process
    that created it, and is lost when that process is gone (local)."""
    agent_proxy_route: AgentProxyRoute
    """How a command reaches the server's API proxy (the Claude agent): see
    ``AgentProxyRoute``."""
    serves_images: bool
    """True: ``SandboxSpec.image`` (a registry image plus Dockerfile lines) is honoured
    (Modal).  False: language presets only; an image is InvalidSpec (local)."""

    async def start(self) -> None:
        """Check the runtime (raise BackendUnavailable if isolation is missing)."""

    async def aclose(self) -> None:
        """Stop every process this backend owns in this process."""

    async def create(self, spec: SandboxSpec) -> SandboxInfo: ...

    async def attach(self, sandbox_id: str) -> SandboxInfo: ...

    async def status(self, sandbox_id: str) -> SandboxStatus: ...

    async def list(self, tags: Mapping[str, str]) -> list[SandboxInfo]:
        """The sandboxes carrying all of ``tags`` that have not ended (status RUNNING).

        Ended sandboxes are never listed (Modal's SDK cannot list finished
        ones); ask ``status``/``attach`` about a known id instead.
        """

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

    def watch_workspace(
        self, sandbox_id: str, *, enter: WatchFilter
    ) -> AsyncGenerator[WorkspaceChanges, None]:
        """Changed paths of a running sandbox's workspace, as they happen, until it ends.

        Directories ``enter`` refuses are not watched.  Local: inotify, within
        milliseconds; Modal: the SDK's watch, or a listing every few seconds
        where it is unavailable.  Close the iterator to stop watching.  One
        watch per sandbox: a new one ends the previous one.
        """

    async def terminate(self, sandbox_id: str) -> None:
        """Kill every process of the sandbox; idempotent."""

    async def remove(self, sandbox_id: str) -> None:
        """Delete a terminated sandbox's workspace (or volume) for good; idempotent.

        Raises SandboxError if the sandbox still runs: terminate it first.
        """


# -- validation, done once here for every backend -------------------------------

MAX_TERMINAL_DIMENSION = 10_000
"""Columns and rows are 1..this (the kernel's winsize fields are 16 bits)."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ARGV_ERROR = "command must be a non-empty sequence of strings, the first naming a program"


def command_argv(command: Sequence[str] | str, *, sh_path: str = "/bin/sh") -> builtins.list[str]:
    """The argv of a command: a sequence is one, a string runs under ``sh_path -c``."""
    if isinstance(command, str):
        argv = [sh_path, "-c", command]
    elif isinstance(command, list | tuple) and all(isinstance(a, str) for a in command):
        argv = list(command)
    else:
        raise InvalidSpec(_ARGV_ERROR)
    if not argv or not argv[0]:
        raise InvalidSpec(_ARGV_ERROR)
    if any("\x00" in arg for arg in argv):
        raise InvalidSpec("command contains a NUL byte")
    return argv


def check_timeout(value: float | None, what: str = "timeout_s") -> None:
    """None (no limit) or a positive, finite number of seconds."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InvalidSpec(f"{what} must be a positive, finite number of seconds, got {value!r}")


def check_terminal_size(cols: int, rows: int) -> None:
    for value in (cols, rows):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSpec(f"terminal size {cols!r}x{rows!r} is not two integers")
        if not 0 < value <= MAX_TERMINAL_DIMENSION:
            raise InvalidSpec(
                f"terminal size {cols}x{rows} is out of range (1..{MAX_TERMINAL_DIMENSION})"
            )


def check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidSpec(f"environment variable name {key!r} is not valid")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidSpec(f"environment variable {key!r} must be a string without NUL bytes")


def check_limits(limits: Limits) -> None:
    """Refuse limits no kernel can express (or that would make no sandbox at all)."""
    if isinstance(limits.cpu, bool) or not isinstance(limits.cpu, int | float):
        raise InvalidSpec("limits.cpu must be positive")
    if not 0 < limits.cpu < math.inf:
        raise InvalidSpec("limits.cpu must be positive")
    for name in ("memory_mb", "max_processes", "max_file_size_mb", "max_open_files", "cpu_seconds"):
        value = getattr(limits, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidSpec(f"limits.{name} must be a positive integer, got {value!r}")
    if limits.memory_mb < 16:
        raise InvalidSpec("limits.memory_mb must be at least 16")
    if limits.max_open_files < 16:
        raise InvalidSpec("limits.max_open_files must be at least 16")


def check_spec(spec: SandboxSpec) -> None:
    """What every backend refuses in a spec (the workdir is checked with ``paths``)."""
    check_limits(spec.limits)
    check_env(spec.env)
    check_timeout(spec.timeout_s)
    check_timeout(spec.idle_timeout_s, "idle_timeout_s")
    for key, value in spec.tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSpec("tags must map strings to strings")


def check_exec(
    command: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None,
    timeout_s: float | None,
    sh_path: str = "/bin/sh",
) -> builtins.list[str]:
    """``exec``'s arguments, checked; the argv to run."""
    argv = command_argv(command, sh_path=sh_path)
    check_env(env or {})
    check_timeout(timeout_s)
    return argv


def check_pty(
    command: Sequence[str], *, cols: int, rows: int, env: Mapping[str, str] | None
) -> builtins.list[str]:
    """``open_pty``'s arguments, checked; the argv to run."""
    check_terminal_size(cols, rows)
    argv = command_argv(command)
    check_env(env or {})
    return argv


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
