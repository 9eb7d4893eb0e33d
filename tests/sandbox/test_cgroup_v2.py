"""cgroup v2 set-up, against a temporary tree laid out like ``/sys/fs/cgroup``.

This host runs cgroup v1 (tests/sandbox/test_local_isolation.py exercises that
for real); v2's file writes are checked here.  Directories are real; reads and
writes of the control files go through a small emulation of the kernel's rules
that matter here: a group's interface files exist only for controllers its
parent enabled, ``cgroup.subtree_control`` only enables what the group has,
and a non-root group cannot both hold processes and enable controllers for
children (the no-internal-process rule, EBUSY).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from modal_app.base import Limits
from modal_app.local import cgroup as local_cgroup
from modal_app.local.cgroup import GROUP_PARENT_NAME, SERVER_LEAF_NAME, detect_v2


class FakeCgroupFs:
    def __init__(self, mount: Path, controllers: list[str], own: str, pids: list[int]) -> None:
        self.mount = mount
        self.root_controllers = controllers
        self.enabled: dict[Path, set[str]] = {}
        self.procs: dict[Path, list[int]] = {}
        self.values: dict[Path, str] = {}
        mount.mkdir(parents=True, exist_ok=True)
        (mount / "cgroup.controllers").write_text(" ".join(controllers))
        group = mount / own.strip("/")
        group.mkdir(parents=True, exist_ok=True)
        for level in [group, *group.parents]:
            if level == mount or mount in level.parents:
                self.enabled.setdefault(level, set())
        for level in group.parents:
            if level == mount or mount in level.parents:
                self.enabled[level] = set(controllers)
        self.procs[group] = list(pids)

    def controllers(self, group: Path) -> set[str]:
        if group == self.mount:
            return set(self.root_controllers)
        return self.enabled.get(group.parent, set())

    def read(self, path: Path) -> str:
        group, name = path.parent, path.name
        if not group.is_dir():
            raise FileNotFoundError(path)
        if name == "cgroup.controllers":
            return " ".join(sorted(self.controllers(group)))
        if name == "cgroup.subtree_control":
            return " ".join(sorted(self.enabled.get(group, set())))
        if name == "cgroup.procs":
            return "".join(f"{pid}\n" for pid in self.procs.get(group, []))
        return self.values[path]

    def write(self, path: Path, value: str, *, optional: bool = False) -> None:
        try:
            self._write(path, value)
        except OSError:
            if not optional:
                raise

    def _write(self, path: Path, value: str) -> None:
        group, name = path.parent, path.name
        if not group.is_dir():
            raise FileNotFoundError(path)
        if name == "cgroup.subtree_control":
            wanted = {word.lstrip("+") for word in value.split()}
            if not wanted <= self.controllers(group):
                raise OSError(errno.ENOENT, "controller not available", str(path))
            if group != self.mount and self.procs.get(group):
                raise OSError(errno.EBUSY, "group has processes", str(path))
            self.enabled.setdefault(group, set()).update(wanted)
        elif name == "cgroup.procs":
            if group != self.mount and self.enabled.get(group):
                raise OSError(errno.EBUSY, "group hands out controllers", str(path))
            pid = int(value)
            for members in self.procs.values():
                if pid in members:
                    members.remove(pid)
            self.procs.setdefault(group, []).append(pid)
        elif name == "cgroup.kill":
            self.procs[group] = []
        else:
            if name.split(".")[0] not in self.controllers(group):
                raise FileNotFoundError(path)  # interface file of a disabled controller
            self.values[path] = value


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    fs = FakeCgroupFs(
        tmp_path / "sys/fs/cgroup",
        ["cpuset", "cpu", "io", "memory", "pids"],
        "/system.slice/interviewlm.service",
        [101, 102],
    )
    monkeypatch.setattr(local_cgroup, "_read", fs.read)
    monkeypatch.setattr(local_cgroup, "_write", fs.write)
    (tmp_path / "cgroup").write_text("0::/system.slice/interviewlm.service\n")
    return fs


def test_v2_sandbox_groups_get_memory_pids_and_cpu_limits(
    fake: FakeCgroupFs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        cgroups = detect_v2(fake.mount, tmp_path / "cgroup")
    assert cgroups is not None
    assert cgroups.describe() == "cgroup v2 (unified)"
    service = fake.mount / "system.slice/interviewlm.service"
    # The server's own processes were moved to a leaf, and that was logged.
    assert fake.procs[service] == []
    assert fake.procs[service / SERVER_LEAF_NAME] == [101, 102]
    assert SERVER_LEAF_NAME in caplog.text
    parent = service / GROUP_PARENT_NAME
    assert cgroups.parents == {"unified": parent}
    assert fake.enabled[parent] == {"memory", "pids", "cpu"}

    limits = Limits(memory_mb=256, max_processes=64, cpu=0.5)
    procs = cgroups.prepare("sb-one", limits)
    group = parent / "sb-one"
    assert procs == [group / "cgroup.procs"]
    assert fake.values[group / "memory.max"] == str(256 * 1024 * 1024)
    assert fake.values[group / "memory.swap.max"] == "0"
    assert fake.values[group / "pids.max"] == "64"
    assert fake.values[group / "cpu.max"] == "50000 100000"

    # A sandbox process joins, is counted, and is killed through cgroup.kill.
    local_cgroup._write(procs[0], "4242")
    assert cgroups.pids("sb-one") == {4242}
    cgroups.kill("sb-one", deadline_s=0.1)
    assert cgroups.pids("sb-one") == set()
    cgroups.remove("sb-one")
    assert not group.exists()


def test_v2_root_group_needs_no_evacuation(fake: FakeCgroupFs, tmp_path: Path) -> None:
    (tmp_path / "cgroup").write_text("0::/\n")
    fake.procs[fake.mount] = [1]
    cgroups = detect_v2(fake.mount, tmp_path / "cgroup")
    assert cgroups is not None
    assert fake.procs[fake.mount] == [1]
    assert cgroups.parents["unified"] == fake.mount / GROUP_PARENT_NAME


def test_v2_without_memory_controller_degrades_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fs = FakeCgroupFs(tmp_path / "cg", ["cpu", "pids"], "/app", [7])
    monkeypatch.setattr(local_cgroup, "_read", fs.read)
    monkeypatch.setattr(local_cgroup, "_write", fs.write)
    (tmp_path / "cgroup").write_text("0::/app\n")
    with caplog.at_level(logging.WARNING):
        assert detect_v2(fs.mount, tmp_path / "cgroup") is None
    assert "memory or pids" in caplog.text


def test_v1_or_hybrid_hosts_are_not_mistaken_for_v2(tmp_path: Path) -> None:
    # Like this host: /sys/fs/cgroup is a tmpfs of v1 hierarchies, no cgroup.controllers.
    (tmp_path / "memory").mkdir()
    (tmp_path / "unified").mkdir()
    assert detect_v2(tmp_path, tmp_path / "missing") is None
