"""Per-sandbox cgroups, when the host lets us create them.

Rlimits are per process (memory) or per uid (processes); a cgroup bounds the
*whole sandbox*: total memory of every process in it (including its tmpfs
pages), total tasks, and CPU bandwidth (``Limits.cpu``).  They are a second
layer on top of the rlimits, which stay in force everywhere.

Supported:

* cgroup v1 with writable ``memory`` and ``pids`` hierarchies (``cpu`` used
  when writable): detected automatically; sandbox groups are created below the
  server's own group in each hierarchy, so they stay inside whatever limits
  the server itself runs under.
* cgroup v2: only through an explicitly delegated parent directory (the
  operator passes ``cgroup_parent``, e.g. a systemd ``Delegate=yes`` slice with
  ``memory`` and ``pids`` in ``cgroup.subtree_control``).  The server's own v2
  group cannot host children that have controllers (the no-internal-process
  rule), so there is no safe automatic choice.

Processes join before they run candidate code: bwrap reports its sandbox
child's pid on ``--info-fd`` and waits on ``--block-fd`` while we write both
bwrap pids into the group; everything the sandbox forks later inherits it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from modal_app.base import Limits

GROUP_PARENT_NAME = "interviewlm-sandboxes"
_CFS_PERIOD_US = 100_000


@dataclass(slots=True)
class Cgroups:
    """Where to create per-sandbox groups: one directory per hierarchy."""

    version: int
    parents: dict[str, Path]
    """controller name -> parent directory (v2: a single entry, key 'unified')."""
    _prepared: dict[str, list[Path]] = field(default_factory=dict)
    """Groups already set up by this process (a sandbox's limits never change)."""

    def describe(self) -> str:
        names = ", ".join(sorted(self.parents))
        return f"cgroup v{self.version} ({names})"

    def _dirs(self, sandbox_id: str) -> list[Path]:
        return [parent / sandbox_id for parent in self.parents.values()]

    def prepare(self, sandbox_id: str, limits: Limits) -> list[Path]:
        """Create (or reuse) the sandbox's groups with its limits; return their procs files."""
        known = self._prepared.get(sandbox_id)
        if known is not None and all(p.parent.is_dir() for p in known):
            return known
        self._prepared[sandbox_id] = procs = self._create(sandbox_id, limits)
        return procs

    def _create(self, sandbox_id: str, limits: Limits) -> list[Path]:
        memory = limits.memory_mb * 1024 * 1024
        if self.version == 2:
            group = self.parents["unified"] / sandbox_id
            group.mkdir(exist_ok=True)
            _write(group / "memory.max", str(memory))
            _write(group / "memory.swap.max", "0", optional=True)
            _write(group / "pids.max", str(limits.max_processes))
            quota = max(1000, int(limits.cpu * _CFS_PERIOD_US))
            _write(group / "cpu.max", f"{quota} {_CFS_PERIOD_US}", optional=True)
            return [group / "cgroup.procs"]
        procs: list[Path] = []
        for controller, parent in self.parents.items():
            group = parent / sandbox_id
            group.mkdir(exist_ok=True)
            if controller == "memory":
                _write(group / "memory.limit_in_bytes", str(memory))
                # memsw must not be below the plain limit; set after it.
                _write(group / "memory.memsw.limit_in_bytes", str(memory), optional=True)
            elif controller == "pids":
                _write(group / "pids.max", str(limits.max_processes))
            elif controller == "cpu":
                _write(group / "cpu.cfs_period_us", str(_CFS_PERIOD_US), optional=True)
                quota = max(1000, int(limits.cpu * _CFS_PERIOD_US))
                _write(group / "cpu.cfs_quota_us", str(quota), optional=True)
            procs.append(group / "cgroup.procs")
        return procs

    def pids(self, sandbox_id: str) -> set[int]:
        found: set[int] = set()
        for group in self._dirs(sandbox_id):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (group / "cgroup.procs").read_text().split())
        return found

    def kill(self, sandbox_id: str, *, deadline_s: float = 2.0) -> None:
        """SIGKILL everything in the sandbox's groups (looping: a fork bomb races us)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.parents["unified"] / sandbox_id / "cgroup.kill", "1")
        end = time.monotonic() + deadline_s
        while (pids := self.pids(sandbox_id)) and time.monotonic() < end:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self, sandbox_id: str) -> None:
        """Remove the sandbox's (empty) groups; busy or missing groups are left alone."""
        self._prepared.pop(sandbox_id, None)
        for group in self._dirs(sandbox_id):
            with contextlib.suppress(OSError):
                group.rmdir()


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError:
        if not optional:
            raise


def _v1_mounts() -> dict[str, tuple[Path, str]]:
    """controller -> (mount point, root of the hierarchy that is mounted there)."""
    mounts: dict[str, tuple[Path, str]] = {}
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rest = right.split()
            if len(fields) < 5 or len(rest) < 3 or rest[0] != "cgroup":
                continue
            for option in rest[2].split(","):
                mounts.setdefault(option, (Path(fields[4]), fields[3]))
    return mounts


def _own_v1_paths() -> dict[str, str]:
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                if controller:
                    paths[controller] = path
    return paths


def _usable(parent: Path) -> bool:
    """Can we create (and remove) a child group below ``parent``?"""
    probe = parent / f"probe-{secrets.token_hex(4)}"
    try:
        parent.mkdir(exist_ok=True)
        probe.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.rmdir()
    return True


def detect_v1() -> Cgroups | None:
    mounts = _v1_mounts()
    own = _own_v1_paths()
    parents: dict[str, Path] = {}
    for controller in ("memory", "pids", "cpu"):
        if controller not in mounts or controller not in own:
            continue
        mount_point, mount_root = mounts[controller]
        path = own[controller]
        if not (path == mount_root or path.startswith(mount_root.rstrip("/") + "/")):
            continue  # our group is not visible through this mount
        relative = path[len(mount_root) :].strip("/")
        parent = mount_point / relative / GROUP_PARENT_NAME
        if _usable(parent):
            parents[controller] = parent
    if "memory" not in parents or "pids" not in parents:
        return None
    return Cgroups(version=1, parents=parents)


def from_v2_parent(parent: Path) -> Cgroups | None:
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if "memory" not in enabled or "pids" not in enabled or not _usable(parent):
        return None
    return Cgroups(version=2, parents={"unified": parent})
