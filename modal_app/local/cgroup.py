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
* cgroup v2 (unified ``/sys/fs/cgroup``), detected automatically: sandbox
  groups live in ``<server's group>/interviewlm-sandboxes/<sandbox>`` with
  ``memory.max``, ``memory.swap.max``, ``pids.max`` and ``cpu.max``.  A v2
  group cannot both hold processes and hand controllers to children (the
  no-internal-process rule), so when the server's group holds processes they
  are first moved into a leaf ``<server's group>/interviewlm-server`` (what
  container inits do; logged).  Or the operator passes ``cgroup_parent``: an
  explicitly delegated directory (e.g. a systemd ``Delegate=yes`` slice with
  ``memory`` and ``pids`` in ``cgroup.subtree_control``).

Processes join before they run candidate code: the outer process waits at a
gate until the server has written its pid into the group, and only then
starts bwrap; everything the sandbox forks inherits the group, and its cgroup
namespace is rooted there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from modal_app.base import Limits

_log = logging.getLogger(__name__)

GROUP_PARENT_NAME = "interviewlm-sandboxes"
SERVER_LEAF_NAME = "interviewlm-server"
V2_MOUNT = Path("/sys/fs/cgroup")
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
                found.update(int(p) for p in _read(group / "cgroup.procs").split())
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


def _read(path: Path) -> str:
    return path.read_text()


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
        enabled = _read(parent / "cgroup.subtree_control").split()
    except OSError:
        return None
    if "memory" not in enabled or "pids" not in enabled or not _usable(parent):
        return None
    return Cgroups(version=2, parents={"unified": parent})


def _own_v2_path(proc_cgroup: Path) -> str | None:
    with contextlib.suppress(OSError), open(proc_cgroup, encoding="utf-8") as fh:
        for line in fh:
            hierarchy, _, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0":
                return path
    return None


def _enable(group: Path, controllers: list[str]) -> None:
    """Hand ``controllers`` to ``group``'s children (raises OSError, e.g. EBUSY)."""
    enabled = set(_read(group / "cgroup.subtree_control").split())
    missing = [c for c in controllers if c not in enabled]
    if missing:
        _write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _evacuate(group: Path) -> None:
    """Move every process of ``group`` into its leaf child (no-internal-process rule)."""
    leaf = group / SERVER_LEAF_NAME
    leaf.mkdir(exist_ok=True)
    pids = _read(group / "cgroup.procs").split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            _write(leaf / "cgroup.procs", pid)
    _log.warning(
        "cgroup v2: moved %d process(es) of %s into %s so that sandbox groups can have "
        "memory/pids/cpu controllers",
        len(pids),
        group,
        leaf,
    )


def detect_v2(
    mount: Path = V2_MOUNT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> Cgroups | None:
    """Per-sandbox groups below the server's own v2 group, if the host lets us."""
    if not (mount / "cgroup.controllers").is_file():
        return None  # not a unified hierarchy (v1 or hybrid)
    own = _own_v2_path(proc_cgroup)
    if own is None:
        return None
    group = mount / own.strip("/")
    try:
        available = _read(group / "cgroup.controllers").split()
        if "memory" not in available or "pids" not in available:
            _log.warning("cgroup v2: %s lacks the memory or pids controller", group)
            return None
        required = ["memory", "pids"]
        try:
            _enable(group, required)
        except OSError as exc:
            if exc.errno != errno.EBUSY or group == mount:
                raise
            _evacuate(group)
            _enable(group, required)
        parent = group / GROUP_PARENT_NAME
        parent.mkdir(exist_ok=True)
        _enable(parent, required)
        if "cpu" in available:
            # Optional: without it cpu.max is skipped (RLIMIT_CPU still applies).
            with contextlib.suppress(OSError):
                _enable(group, ["cpu"])
                _enable(parent, ["cpu"])
    except OSError as exc:
        _log.warning("cgroup v2: cannot set up sandbox groups below %s: %s", group, exc)
        return None
    return from_v2_parent(parent)
