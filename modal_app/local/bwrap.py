"""The bubblewrap command line of one sandboxed invocation, and how it is started.

Every exec and every PTY is one ``prlimit ... -- bwrap ... -- command`` started
as the sandbox's own unprivileged host uid (``subprocess``'s ``user=``/
``group=``/``extra_groups=``, done in C between fork and exec, so no Python
``preexec_fn`` runs in a forked copy of a threaded server).

Namespaces: user (the host uid appears as uid 1000, nested user namespaces are
disabled), pid, ipc, uts, cgroup, and net (always: no network).
The root is an empty read-only tmpfs with read-only system binds
(``presets.system_view``), generated ``/etc`` files, a fresh ``/proc`` and
``/dev``, size-bounded tmpfs ``/tmp`` and ``/dev/shm``, and the sandbox's
workspace and home bound read-write.  The environment is cleared and rebuilt.
A seccomp filter (``local_seccomp``) applies to the command and all it forks.
bwrap's options, environment included, are passed in file descriptors, never
in an argv (``local_launch``): argvs are visible to the host's ``ps`` and, as
pid 1's cmdline, to the candidate.
Killing: the pid namespace's init (bwrap's own pid 1, learnt from
``--info-fd`` and held as a pidfd) is what ``kill_tree`` kills; the kernel
then kills every process in the namespace, however deep or detached.
``--die-with-parent`` covers the other direction: if the outer bwrap dies, the
init gets SIGKILL too.

Limits (``prlimit`` sets soft and hard, so candidate code cannot raise them):

* ``RLIMIT_DATA`` = ``memory_mb``: since Linux 4.7 it counts every private
  writable mapping (heap and anonymous mmap) but not the ``PROT_NONE``
  address-space reservations Go and V8 make, so ``node`` and ``go run`` work
  under it while a hog fails its allocation.
* ``RLIMIT_AS`` = ``memory_mb`` + 4 GiB: a backstop for what DATA does not see
  (shared anonymous mappings); the headroom is what Node/Go reserve up front.
* ``RLIMIT_NPROC`` = ``max_processes``: counted per host uid, and every sandbox
  has its own uid, so it is a per-sandbox task limit (threads included).
* ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CPU`` (+1 s hard: SIGXCPU,
  then SIGKILL), ``RLIMIT_CORE`` = 0.

Per-sandbox totals (memory across processes, CPU share) need cgroups; see
``local_cgroup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal_app.base import SOCKET_MOUNT, BackendUnavailable, Limits
from modal_app.local.cgroup import Cgroups
from modal_app.local.launch import LaunchFds, gate_argv
from modal_app.local.presets import (
    GENERATED_ETC,
    SANDBOX_HOME,
    SANDBOX_UID,
    TOOLCHAIN_MOUNT,
    SystemView,
)

AS_HEADROOM_MB = 4096
_MB = 1024 * 1024
# Only what prlimit/bwrap need to start; the sandbox's own environment is
# passed with --setenv after --clearenv (inside the --args fd, not the argv),
# and server secrets never reach bwrap.
_LAUNCH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_SEARCH_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


@dataclass(frozen=True, slots=True)
class Tools:
    bwrap: str
    prlimit: str
    setsid: str
    bash: str

    @classmethod
    def find(cls) -> Tools:
        found: dict[str, str] = {}
        for name in ("bwrap", "prlimit", "setsid", "bash"):
            path = shutil.which(name, path=_SEARCH_PATH)
            if path is None:
                package = {"bwrap": "bubblewrap", "bash": "bash"}.get(name, "util-linux")
                raise BackendUnavailable(
                    f"local sandboxes need {name!r} (Debian package {package}); refusing to "
                    "run candidate code without isolation"
                )
            found[name] = path
        return cls(**found)


@dataclass(frozen=True, slots=True)
class Invocation:
    """Everything that shapes one bwrap run of a sandbox."""

    workspace: Path
    home: Path
    etc_dir: Path
    uid: int
    limits: Limits
    env: Mapping[str, str]
    cwd: str
    view: SystemView
    socket_dir: Path | None = None
    """Bound read-only at ``SOCKET_MOUNT`` (the agent's proxy socket; still no network)."""
    pty: bool = False
    tmp_size_mb: int = 256
    toolchain_dir: Path | None = None
    private: bool = False
    """``workspace`` is a private snapshot, bound read-only, and home is a fresh
    tmpfs: the command can write nothing that outlives it (see ``local_private``)."""


def prlimit_args(tools: Tools, limits: Limits) -> list[str]:
    data = limits.memory_mb * _MB
    return [
        tools.prlimit,
        f"--data={data}",
        f"--as={data + AS_HEADROOM_MB * _MB}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.max_file_size_mb * _MB}",
        f"--nofile={limits.max_open_files}",
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
        "--core=0",
        "--",
    ]


def bwrap_args(
    tools: Tools, inv: Invocation, *, etc_fds: Mapping[str, int] | None = None
) -> list[str]:
    """bwrap and its options; with ``etc_fds`` the /etc files are copied from them.

    Copies (``--file``) instead of bind mounts of ``etc_dir``: a bind mount's
    host path is visible in the sandbox's ``/proc/self/mountinfo``.
    """
    args = [
        tools.bwrap,
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--disable-userns",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "sandbox",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--clearenv",
        "--cap-drop",
        "ALL",
    ]
    args.append("--unshare-net")
    if not inv.pty:
        # A PTY session must keep its terminal as controlling tty; everything
        # else gets a new session so it cannot TIOCSTI into any terminal.
        args.append("--new-session")
    for key, value in inv.env.items():
        args += ["--setenv", key, value]
    for path in inv.view.ro_binds:
        args += ["--ro-bind", path, path]
    for target, link in inv.view.symlinks:
        args += ["--symlink", target, link]
    for name in GENERATED_ETC:
        if etc_fds is not None:
            # On the root tmpfs, which is remounted read-only below.
            args += ["--perms", "0644", "--file", str(etc_fds[name]), f"/etc/{name}"]
        else:
            args += ["--ro-bind", str(inv.etc_dir / name), f"/etc/{name}"]
    tmp_size = str(inv.tmp_size_mb * _MB)
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        tmp_size,
        "--tmpfs",
        "/tmp",  # noqa: S108 - the sandbox's own fresh tmpfs
        "--perms",
        "1777",
        "--size",
        tmp_size,
        "--tmpfs",
        "/dev/shm",  # noqa: S108 - the sandbox's own fresh tmpfs
    ]
    if inv.private:
        args += ["--ro-bind", str(inv.workspace), "/workspace"]
        args += ["--perms", "0700", "--size", tmp_size, "--tmpfs", SANDBOX_HOME]
    else:
        args += ["--bind", str(inv.workspace), "/workspace", "--bind", str(inv.home), SANDBOX_HOME]
    if inv.toolchain_dir is not None:
        args += ["--ro-bind", str(inv.toolchain_dir), TOOLCHAIN_MOUNT]
    if inv.socket_dir is not None:
        args += ["--ro-bind", str(inv.socket_dir), SOCKET_MOUNT]
    # The root and /dev are tmpfs without a size bound; read-only they cannot
    # be used to fill memory.
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", inv.cwd]
    return args


@dataclass(frozen=True, slots=True)
class Spawned:
    """A started invocation: the outer bwrap process and its namespace's init."""

    proc: asyncio.subprocess.Process
    init_pidfd: int | None
    """pidfd of the pid namespace's init (None if bwrap failed before creating it).

    Killing the init kills the whole namespace; and the outer bwrap exits as
    soon as the command's status is known, while the init may still be
    tearing the namespace down, so a handle waits on this fd too.
    """


async def spawn(
    tools: Tools,
    inv: Invocation,
    command: Sequence[str],
    *,
    cgroups: Cgroups | None,
    cgroup_name: str,
    stdin: int,
    stdout: int,
    stderr: int,
) -> Spawned:
    """Start ``command`` in the sandbox; with cgroups it is in its group before it runs."""
    # cgroupfs operations are in-memory kernel calls: done inline, no thread hop.
    procs_files = cgroups.prepare(cgroup_name, inv.limits) if cgroups else []
    # With cgroups the outer process waits at a gate until we have moved it
    # into the group, so bwrap creates the sandbox's namespaces (cgroup
    # namespace included) from inside it; bwrap reports its namespace init's
    # pid on --info-fd.
    fds = LaunchFds.create()
    info_r, info_w = os.pipe()
    gate_r, gate_w = os.pipe() if cgroups else (-1, -1)
    try:
        argv, pass_fds = _launch_argv(tools, inv, command, fds, info_w=info_w, gate_r=gate_r)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=_LAUNCH_ENV,
            cwd="/",
            user=inv.uid,
            group=inv.uid,
            extra_groups=[],
            start_new_session=not inv.pty,
            pass_fds=pass_fds,
        )
    except BaseException:
        for fd in (info_r, info_w, gate_r, gate_w):
            if fd >= 0:
                os.close(fd)
        fds.close()
        raise
    for fd in (info_w, gate_r):
        if fd >= 0:
            os.close(fd)
    fds.close()
    if cgroups:
        try:
            _join(procs_files, [proc.pid])
        except BaseException:
            # Closed without the line: the gate exits, nothing runs ungrouped.
            os.close(gate_w)
            os.close(info_r)
            kill_tree(proc.pid, None)
            raise
        with contextlib.suppress(OSError):
            os.write(gate_w, b"go\n")
        os.close(gate_w)
    init_pidfd: int | None = None
    try:
        info = await _read_info(info_r)
        child = info.get("child-pid")
        if isinstance(child, int):
            with contextlib.suppress(ProcessLookupError):
                init_pidfd = os.pidfd_open(child)
    except BaseException:
        kill_tree(proc.pid if proc.returncode is None else None, init_pidfd)
        if init_pidfd is not None:
            os.close(init_pidfd)
        raise
    finally:
        os.close(info_r)
    return Spawned(proc, init_pidfd)


def _launch_argv(
    tools: Tools,
    inv: Invocation,
    command: Sequence[str],
    fds: LaunchFds,
    *,
    info_w: int,
    gate_r: int,
) -> tuple[list[str], list[int]]:
    """The outer argv (no option of bwrap's in it, see ``local_launch``) and its fds."""
    options = bwrap_args(tools, inv, etc_fds=fds.etc)[1:]
    options += ["--seccomp", str(fds.seccomp), "--info-fd", str(info_w)]
    args_fd = fds.args_fd(options)
    argv: list[str] = []
    pass_fds = [info_w, *fds.all()]
    if gate_r >= 0:
        argv += gate_argv(tools.bash, gate_r)
        pass_fds.append(gate_r)
    if inv.pty:
        # Makes the PTY our controlling terminal (the child is not a group
        # leader, so setsid does not fork and the pid stays the one we track).
        argv += [tools.setsid, "--ctty"]
    argv += prlimit_args(tools, inv.limits)
    argv += [tools.bwrap, "--args", str(args_fd), "--", *command]
    return argv, pass_fds


async def _read_info(fd: int) -> dict[str, Any]:
    """bwrap's --info-fd JSON, read on the event loop (it arrives in pieces)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    done: asyncio.Future[dict[str, Any]] = loop.create_future()
    data = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            # bwrap failed before creating the sandbox; it says why on stderr.
            done.set_result({})
            return
        data.extend(chunk)
        with contextlib.suppress(ValueError):
            parsed = json.loads(data)
            if isinstance(parsed, dict):
                done.set_result(parsed)

    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)


def _join(procs_files: list[Path], pids: list[int]) -> None:
    for procs in procs_files:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                procs.write_text(str(pid))


def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                found.extend(int(p) for p in fh.read().split())
    return found


def kill_tree(pid: int | None, init_pidfd: int | None) -> None:
    """SIGKILL one invocation by killing its pid namespace's init.

    The kernel then kills everything in the namespace, and the outer bwrap
    (our child, ``pid``; None once reaped) notices and exits.  The init is
    addressed by pidfd, so a recycled pid can never be hit.  Without an init
    (bwrap failed before creating it) the outer process group is killed.
    """
    if init_pidfd is not None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(init_pidfd, signal.SIGKILL)
            return
    if pid is None:
        return
    for child in child_pids(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


async def reap_namespace(init_pidfd: int | None, timeout_s: float = 5.0) -> None:
    """After the outer bwrap exited: make sure the namespace is gone, then close the fd.

    Nothing legitimate outlives the outer bwrap (--die-with-parent already
    sent the init SIGKILL); we send it again and wait until the init has
    exited, which the kernel only allows once every process in it is gone.
    """
    if init_pidfd is None:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    try:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(init_pidfd, signal.SIGKILL)
        loop.add_reader(init_pidfd, readable)
        try:
            await asyncio.wait_for(gone, timeout_s)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(init_pidfd)
    finally:
        os.close(init_pidfd)


def uid_pids(uid: int) -> list[int]:
    """Live host pids whose real uid is ``uid`` (every process of one sandbox).

    Read from ``status`` rather than the owner of ``/proc/<pid>``: a process
    can make itself non-dumpable, which makes its /proc directory root-owned.
    Zombies are skipped: they are dead already and cannot be killed again.
    """
    found: list[int] = []
    wanted = str(uid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/status") as fh:
            state = ""
            for line in fh:
                if line.startswith("State:"):
                    state = line.split()[1]
                elif line.startswith("Uid:"):
                    if line.split()[1] == wanted and state not in ("Z", "X"):
                        found.append(int(entry))
                    break
    return found
