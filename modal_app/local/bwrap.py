"""The bubblewrap command line of one sandboxed invocation (argument building only;
``process`` starts, kills and reaps it).

Every exec and every PTY is one ``prlimit ... -- bwrap ... -- command``, started
by ``process.spawn`` as the sandbox's own unprivileged host uid.

Namespaces: user (the host uid appears as uid 1000, nested user namespaces are
disabled), pid, ipc, uts, cgroup, and net (always: no network).
The root is an empty read-only tmpfs with read-only system binds
(``presets.system_view``), generated ``/etc`` files, a fresh ``/proc`` and
``/dev``, size-bounded tmpfs ``/tmp`` and ``/dev/shm``, and the sandbox's
workspace and home bound read-write.  The environment is cleared and rebuilt.
A seccomp filter (``seccomp``) applies to the command and all it forks.
bwrap's options, environment included, are passed in file descriptors, never
in an argv (``launch``): argvs are visible to the host's ``ps`` and, as
pid 1's cmdline, to the candidate.
Killing (``process``): the pid namespace's init (bwrap's own pid 1, learnt
from ``--info-fd`` and held as a pidfd) is what ``kill_tree`` kills; the kernel
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
``cgroup``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modal_app.base import SOCKET_MOUNT, BackendUnavailable, Limits
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
    tmpfs: the command can write nothing that outlives it (see ``private``)."""


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


def launch_argv(
    tools: Tools,
    inv: Invocation,
    command: Sequence[str],
    fds: LaunchFds,
    *,
    info_w: int,
    gate_r: int,
) -> tuple[list[str], list[int]]:
    """The outer argv (no option of bwrap's in it, see ``launch``) and its fds."""
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
