"""Host set-up of the local backend: root check, sandbox root and /etc, cgroups, probe, uids."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modal_app.base import BackendUnavailable, SandboxError
from modal_app.local.bwrap import Tools
from modal_app.local.cgroup import Cgroups, detect_v1, detect_v2, from_v2_parent
from modal_app.local.presets import GENERATED_ETC, SystemView, system_view
from modal_app.local.probe import probe_isolation

CgroupMode = Literal["auto", "off", "required"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Host:
    """What ``prepare_host`` found: the tools, the system view, the cgroup layer (or None)."""

    tools: Tools
    view: SystemView
    cgroups: Cgroups | None


async def prepare_host(
    root: Path,
    *,
    cgroup_mode: CgroupMode,
    cgroup_parent: Path | None,
    probe_uid: int,
    tmp_size_mb: int,
) -> Host:
    """Prepare this host for sandboxes; BackendUnavailable unless it isolates them."""
    if os.geteuid() != 0:
        raise BackendUnavailable(
            "the local sandbox backend must run as root: it gives every sandbox its own "
            "unprivileged uid (process limits are per uid and not enforced for root)"
        )
    tools = Tools.find()
    await asyncio.to_thread(prepare_root, root)
    view = await asyncio.to_thread(system_view)
    cgroups = await asyncio.to_thread(detect_cgroups, cgroup_mode, cgroup_parent)
    await probe_isolation(
        tools=tools,
        view=view,
        root=root,
        cgroups=cgroups,
        uid=probe_uid,
        tmp_size_mb=tmp_size_mb,
    )
    return Host(tools, view, cgroups)


def prepare_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    # bwrap resolves bind sources as the sandbox uid, so it must traverse
    # the root (not list it) and read the generated /etc files.
    os.chmod(root, 0o711)  # noqa: S103
    etc = root / ".etc"
    etc.mkdir(exist_ok=True)
    os.chmod(etc, 0o755)  # noqa: S103
    for name, content in GENERATED_ETC.items():
        path = etc / name
        if not path.exists() or path.read_text() != content:
            tmp = etc / f".{name}.{secrets.token_hex(4)}.tmp"
            tmp.write_text(content)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)


def detect_cgroups(mode: CgroupMode, parent: Path | None) -> Cgroups | None:
    if mode == "off":
        return None
    found = from_v2_parent(parent) if parent else (detect_v2() or detect_v1())
    if found is None and mode == "required":
        raise BackendUnavailable("cgroups were required but no writable hierarchy was found")
    if found is None:
        _log.warning(
            "no writable cgroup hierarchy (v2 or v1): sandboxes are bounded by per-process "
            "rlimits only, with no per-sandbox total for memory, tasks or CPU"
        )
    else:
        _log.info("per-sandbox limits use %s", found.describe())
    return found


class UidPool:
    """Sandbox uids: random in ``[base, base + count)``, none given to two sandboxes."""

    def __init__(self, base: int, count: int) -> None:
        self.base = base
        self.count = count
        self._taken: set[int] = set()

    @property
    def outside(self) -> int:
        """Just past the sandbox range: no sandbox can own this uid (the start-up probe's)."""
        return self.base + self.count

    def reset(self, taken: set[int]) -> None:
        self._taken = taken

    def allocate(self) -> int:
        for _ in range(100):
            uid = self.base + secrets.randbelow(self.count)
            if uid not in self._taken:
                self._taken.add(uid)
                return uid
        raise SandboxError("no free sandbox uid")  # pragma: no cover - 16M uids

    def release(self, uid: int) -> None:
        self._taken.discard(uid)
