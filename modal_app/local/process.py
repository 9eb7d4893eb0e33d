"""Process control of sandboxed invocations: start one, kill its namespace, reap it.

``spawn`` runs the argv ``bwrap.launch_argv`` builds as the sandbox's own
unprivileged uid (``subprocess``'s ``user=``/``group=``/``extra_groups=``, done
in C between fork and exec: no Python ``preexec_fn`` runs in a forked copy of
a threaded server), puts it into its cgroup before it runs, and learns the pid
namespace's init from bwrap's ``--info-fd``.  ``kill_tree`` kills that init
(the kernel then kills every process in the namespace, however deep or
detached); ``reap_namespace`` waits until it is gone; ``uid_pids`` finds a
sandbox's processes by their uid (no other process on the host has it) and
``kill_uid`` kills them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal_app.local.bwrap import Invocation, Tools, launch_argv
from modal_app.local.cgroup import Cgroups
from modal_app.local.launch import LaunchFds

# Only what prlimit/bwrap need to start; the sandbox's own environment is
# passed with --setenv after --clearenv (inside the --args fd, not the argv),
# and server secrets never reach bwrap.
_LAUNCH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


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
        argv, pass_fds = launch_argv(tools, inv, command, fds, info_w=info_w, gate_r=gate_r)
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


def kill_uid(uid: int, timeout_s: float = 5.0) -> None:
    """SIGKILL every process of ``uid`` until none is left (or ``timeout_s`` has passed)."""
    deadline = time.monotonic() + timeout_s
    while (pids := uid_pids(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
