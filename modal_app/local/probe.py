"""The start-up check of the local backend: isolation works here, or we refuse to run.

One real invocation, exactly as a sandbox would run it, must show its own
user, pid and network namespaces (compared with the server's), the mapped
sandbox uid, the seccomp filter in force (``Seccomp: 2``), and nothing but
loopback.  Anything else raises
BackendUnavailable with bwrap's own message: candidate code never runs
unisolated as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from pathlib import Path

from modal_app.base import BackendUnavailable, Limits
from modal_app.local.bwrap import Invocation, Tools
from modal_app.local.cgroup import Cgroups
from modal_app.local.presets import GENERATED_ETC, SANDBOX_UID, SystemView
from modal_app.local.process import reap_namespace, spawn

_SCRIPT = (
    "readlink /proc/self/ns/user /proc/self/ns/pid /proc/self/ns/net; id -u; echo $$; "
    "sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status; "
    "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '"
)


async def probe_isolation(
    *,
    tools: Tools,
    view: SystemView,
    root: Path,
    cgroups: Cgroups | None,
    uid: int,
    tmp_size_mb: int,
) -> None:
    probe_dir = root / f".probe-{secrets.token_hex(6)}"
    await asyncio.to_thread(_make_dirs, probe_dir, uid)
    try:
        await _run_probe(
            tools=tools,
            view=view,
            root=root,
            probe_dir=probe_dir,
            cgroups=cgroups,
            uid=uid,
            tmp_size_mb=tmp_size_mb,
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, probe_dir, True)
        if cgroups is not None:
            await asyncio.to_thread(cgroups.remove, probe_dir.name)


def _make_dirs(probe_dir: Path, uid: int) -> None:
    os.mkdir(probe_dir, 0o711)
    for name in ("workspace", "home"):
        os.mkdir(probe_dir / name, 0o700)
        os.chown(probe_dir / name, uid, uid)


async def _run_probe(
    *,
    tools: Tools,
    view: SystemView,
    root: Path,
    probe_dir: Path,
    cgroups: Cgroups | None,
    uid: int,
    tmp_size_mb: int,
) -> None:
    limits = Limits(memory_mb=256, max_processes=32, cpu_seconds=10)
    inv = Invocation(
        workspace=probe_dir / "workspace",
        home=probe_dir / "home",
        etc_dir=root / ".etc",
        uid=uid,
        limits=limits,
        env={"PATH": "/usr/bin:/bin"},
        cwd="/workspace",
        view=view,
        tmp_size_mb=tmp_size_mb,
    )
    missing = [name for name in GENERATED_ETC if not (root / ".etc" / name).exists()]
    if missing:
        raise BackendUnavailable(f"generated /etc files missing: {missing}")
    try:
        spawned = await spawn(
            tools,
            inv,
            ["/bin/sh", "-c", _SCRIPT],
            cgroups=cgroups,
            cgroup_name=probe_dir.name,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        proc = spawned.proc
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        await reap_namespace(spawned.init_pidfd)
    except (TimeoutError, OSError) as exc:
        raise BackendUnavailable(f"could not start the isolation probe: {exc!r}") from exc
    if proc.returncode != 0:
        hint = _traversal_hint(root)
        raise BackendUnavailable(
            "bubblewrap cannot create an isolated sandbox here (unprivileged user, pid and "
            f"net namespaces are required): {err.decode(errors='replace').strip()}{hint}"
        )
    lines = out.decode().split()
    host = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("user", "pid", "net")]
    problems = []
    if len(lines) < 6:
        problems.append(f"unexpected probe output {out!r}")
    else:
        for ns, inside, outside in zip(("user", "pid", "net"), lines[:3], host, strict=True):
            if inside == outside:
                problems.append(f"no separate {ns} namespace")
        if lines[3] != str(SANDBOX_UID):
            problems.append(f"runs as uid {lines[3]} instead of {SANDBOX_UID}")
        if not lines[4].isdigit() or int(lines[4]) > 10:
            problems.append("not in its own pid namespace")
        if lines[5] != "2":
            problems.append(f"no seccomp filter in force (Seccomp: {lines[5]})")
        if lines[6:] != ["lo"]:
            problems.append(f"network interfaces visible: {lines[6:]}")
    if problems:
        raise BackendUnavailable("sandbox isolation check failed: " + "; ".join(problems))


def _traversal_hint(root: Path) -> str:
    """bwrap resolves bind sources as the sandbox uid: every ancestor needs o+x."""
    for parent in [root, *root.parents]:
        with contextlib.suppress(OSError):
            if not os.stat(parent).st_mode & 0o001:
                return (
                    f" (hint: {parent} is not searchable by other users; the sandbox root and "
                    "all its ancestors need o+x)"
                )
    return ""
