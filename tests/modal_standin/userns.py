"""Root-capable stand-in containers: bwrap inside a user namespace with a uid RANGE mapped.

A Modal container runs as root and can ``setuid`` to any uid, so our Modal
backend drops privileges inside it (candidate commands as 1000, the agent as
1001; ``modal_app.modal.shell``).  bwrap's own ``--unshare-user`` maps exactly
one uid, so a drop inside it would fail (or be a no-op) and prove nothing.

Here the container is started as host root through ``LAUNCHER``: it unshares
a user namespace, a forked helper (still in the host namespace, so allowed
to) writes ``0 <host_base> 65536`` into its uid_map and gid_map, and it execs
bwrap as uid 0 *of that namespace*.  bwrap then runs without
``--unshare-user`` (and without ``--cap-drop ALL``): the container's root
holds the namespace's capabilities (setuid, chown, kill, ...), as Modal's
does, while on the host it is the unprivileged uid ``host_base`` and every
inside uid N is host uid ``host_base + N``.  ``newuidmap`` (the uidmap
package) is not needed; the helper does what it would.

Everything else is the local backend's invocation unchanged (pid/ipc/uts/net
namespaces, seccomp, rlimits, read-only system view, fresh /tmp), built by
``bwrap_args``; ``root_options`` removes exactly the four single-uid options
and fails loudly if the local backend stops producing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from modal_app.local.bwrap import Invocation, Tools, bwrap_args, prlimit_args
from modal_app.local.launch import LaunchFds
from modal_app.local.presets import SANDBOX_UID
from modal_app.local.process import Spawned, _read_info, kill_tree

MAPPED = 65_536
"""Uids (and gids) 0..65535 exist inside every container."""

LAUNCHER = r"""
import ctypes, os, sys
base = int(sys.argv[1]); count = int(sys.argv[2]); argv = sys.argv[4:]
r, w = os.pipe(); r2, w2 = os.pipe()
parent = os.getpid()
if os.fork() == 0:
    os.close(w); os.close(r2)
    try:
        if os.read(r, 1) == b"u":
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{parent}/{name}", "w") as f:
                    f.write(f"0 {base} {count}\n")
            os.write(w2, b"m")
    finally:
        os._exit(0)
os.close(r); os.close(w2)
if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
    sys.exit("userns launcher: unshare(CLONE_NEWUSER) failed")
os.write(w, b"u"); os.close(w)
ok = os.read(r2, 1) == b"m"
os.wait()
if not ok:
    sys.exit("userns launcher: writing the uid/gid maps failed")
# uid 0 of the new namespace, so its capabilities survive the exec of bwrap.
os.setresgid(0, 0, 0); os.setresuid(0, 0, 0)
os.execv(argv[0], argv)
"""
"""Arguments: host base uid, count, ``--``, then the argv to exec as the namespace's root."""

_LAUNCH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_SINGLE_UID = (
    ("--unshare-user",),
    ("--uid", str(SANDBOX_UID)),
    ("--gid", str(SANDBOX_UID)),
    ("--disable-userns",),
    ("--cap-drop", "ALL"),
)


_TWO_PATH_OPS = frozenset(
    {"--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try", "--symlink", "--file"}
)
_ONE_PATH_OPS = frozenset({"--tmpfs", "--proc", "--dev", "--dir", "--mqueue"})


def root_options(options: Sequence[str]) -> list[str]:
    """The local backend's bwrap options minus its single-uid user namespace and cap drop.

    bwrap run as root creates the missing parents of its mount points (/etc,
    /home, /run) mode 0700, which the unprivileged uids inside could not
    enter; so every such parent is made 0755 first.
    """
    out = list(options)
    for group in _SINGLE_UID:
        for i in range(len(out) - len(group) + 1):
            if tuple(out[i : i + len(group)]) == group:
                del out[i : i + len(group)]
                break
        else:
            raise RuntimeError(f"bwrap options changed: {' '.join(group)!r} not found")
    targets: set[str] = set()
    for i, token in enumerate(out[:-1]):
        if token in _TWO_PATH_OPS and i + 2 < len(out):
            targets.add(out[i + 2])
        elif token in _ONE_PATH_OPS:
            targets.add(out[i + 1])
    parents: set[str] = set()
    for target in targets:
        parts = target.strip("/").split("/")[:-1]
        parents.update("/" + "/".join(parts[: n + 1]) for n in range(len(parts)))
    prologue: list[str] = []
    for parent in sorted(parents - targets, key=lambda p: p.count("/")):
        prologue += ["--perms", "0755", "--dir", parent]
    return prologue + out


async def spawn_root(
    tools: Tools,
    inv: Invocation,
    command: Sequence[str],
    *,
    host_base: int,
    stdin: int,
    stdout: int,
    stderr: int,
) -> Spawned:
    """``process.spawn`` (no cgroups) with the container's root mapped to ``host_base``."""
    fds = LaunchFds.create()
    info_r, info_w = os.pipe()
    try:
        options = root_options(bwrap_args(tools, inv, etc_fds=fds.etc)[1:])
        options += ["--seccomp", str(fds.seccomp), "--info-fd", str(info_w)]
        args_fd = fds.args_fd(options)
        argv = [
            *prlimit_args(tools, inv.limits),
            sys.executable,
            "-I",
            "-S",
            "-c",
            LAUNCHER,
            str(host_base),
            str(MAPPED),
            "--",
            tools.bwrap,
            "--args",
            str(args_fd),
            "--",
            *command,
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=_LAUNCH_ENV,
            cwd="/",
            start_new_session=True,
            pass_fds=[info_w, *fds.all()],
        )
    except BaseException:
        os.close(info_r)
        os.close(info_w)
        fds.close()
        raise
    os.close(info_w)
    fds.close()
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
