"""Benchmark of the local sandbox backend against bare bubblewrap.

Usage (as root, from the repository root)::

    .venv/bin/python bench/sandbox.py [-n 50] [--readme bench/README.md]

Measures, N iterations each, median and p95 of:

* create→ready: ``LocalSandboxBackend.create`` until it returns a RUNNING sandbox;
* a ``true`` round trip through ``exec`` (``base.run``: spawn, stdio, wait),
  with the per-sandbox cgroups on (when the host has them) and off;
* baselines spawned the same way (asyncio subprocess): a bare
  ``bwrap --ro-bind / / true``, and the exact prlimit+bwrap command line the
  backend builds for that sandbox, started directly.

With ``--readme`` the results replace the "## Sandbox (bench/sandbox.py)"
section of that file (other sections are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modal_app.base import SandboxSpec, run
from modal_app.local.backend import LocalSandboxBackend

HEADING = "## Sandbox (bench/sandbox.py)"


Step = Callable[[], Awaitable[object]]


async def interleaved(n: int, steps: list[Step], warmup: int = 3) -> list[list[float]]:
    """Time every step n times, round-robin, so load changes on the host hit
    all rows alike (the machine is shared; the ratios are what matter)."""
    for _ in range(warmup):
        for step in steps:
            await step()
    samples: list[list[float]] = [[] for _ in steps]
    for _ in range(n):
        for index, step in enumerate(steps):
            started = time.perf_counter()
            await step()
            samples[index].append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


async def spawn_and_wait(argv: list[str], **kwargs: object) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        **kwargs,  # type: ignore[arg-type]
    )
    if await proc.wait() != 0:
        raise SystemExit(f"baseline command failed: {argv}")


def bench_root() -> Path:
    """A root the sandbox uids can traverse (mkdtemp makes it 0700)."""
    base = Path(tempfile.mkdtemp(prefix="ilm-bench-"))
    base.chmod(0o711)
    return base


async def measure(n: int) -> tuple[list[tuple[str, float, float]], dict[str, str]]:
    base = bench_root()
    notes: dict[str, str] = {}
    backend = LocalSandboxBackend(base / "on")
    plain = LocalSandboxBackend(base / "off", cgroups="off")
    try:
        await backend.start()
        await plain.start()
        notes["cgroups"] = backend.cgroups.describe() if backend.cgroups else "none"
        on_sandbox = (await backend.create(SandboxSpec())).id
        off_sandbox = (await plain.create(SandboxSpec())).id

        async def create() -> None:
            await backend.create(SandboxSpec())

        async def true_round_trip(on: LocalSandboxBackend, sandbox_id: str) -> None:
            result = await run(on, sandbox_id, ["true"])
            if result.exit_code != 0:
                raise SystemExit(f"`true` failed in the sandbox: {result}")

        bwrap = shutil.which("bwrap") or "bwrap"
        bare = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
        ours = await backend_command_line(plain, off_sandbox)
        uid = await plain.host_uid(off_sandbox)
        notes["argc"] = str(len(ours))
        label = "exec `true` round trip (base.run)"
        rows: list[tuple[str, Step]] = [
            ("create→ready (LocalSandboxBackend.create)", create),
            (
                f"{label}, cgroups {'on' if backend.cgroups else 'n/a'}",
                lambda: true_round_trip(backend, on_sandbox),
            ),
            (f"{label}, cgroups off", lambda: true_round_trip(plain, off_sandbox)),
            ("baseline: bare `bwrap --ro-bind / / true` (root)", lambda: spawn_and_wait(bare)),
            (
                "baseline: our prlimit+bwrap command line, run directly",
                lambda: spawn_and_wait(ours, user=uid, group=uid, extra_groups=[], cwd="/"),
            ),
        ]
        samples = await interleaved(n, [step for _, step in rows])
        notes["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    finally:
        await backend.aclose()
        await plain.aclose()
        shutil.rmtree(base, ignore_errors=True)
    return [(name, *summary(s)) for (name, _), s in zip(rows, samples, strict=True)], notes


async def backend_command_line(backend: LocalSandboxBackend, sandbox_id: str) -> list[str]:
    """The argv the backend would spawn for ``true`` in that sandbox (cgroups off)."""
    from modal_app.local.bwrap import bwrap_args, prlimit_args

    runner = backend._started()  # the benchmark measures internals
    meta = await backend._load(sandbox_id)
    inv = await runner._invocation(meta, cwd=None, env=None, network=None, pty=False)
    return [*prlimit_args(runner.tools, inv.limits), *bwrap_args(runner.tools, inv), "--", "true"]


def render(rows: list[tuple[str, float, float]], n: int, notes: dict[str, str]) -> str:
    bare = next(median for name, median, _ in rows if name.startswith("baseline: bare"))
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"{'measurement'.ljust(width)}  {'median ms':>9}  {'p95 ms':>7}  {'x bare bwrap':>12}",
        f"{'-' * width}  {'-' * 9}  {'-' * 7}  {'-' * 12}",
    ]
    for name, median, p95 in rows:
        lines.append(f"{name.ljust(width)}  {median:9.2f}  {p95:7.2f}  {median / bare:12.2f}")
    create_median = rows[0][1]
    verdict = "meets" if create_median <= 50 else "MISSES"
    lines += [
        "",
        f"N = {n} per row, rows interleaved (after 3 warm-up rounds); load average after: "
        f"{notes['load']}.",
        f"Per-sandbox cgroups: {notes['cgroups']}; our command line has {notes['argc']} arguments.",
        f"create→ready median {create_median:.2f} ms: {verdict} the ≤ 50 ms target.",
    ]
    return "\n".join(lines)


def write_readme(path: Path, table: str) -> None:
    machine = (
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    today = datetime.date.today().isoformat()
    section = (
        f"{HEADING}\n\n"
        f"Run: `.venv/bin/python bench/sandbox.py` (as root). Measured {today} on {machine}.\n\n"
        "```\n"
        f"{table}\n"
        "```\n\n"
        "create→ready needs no bwrap call (a few mkdirs and a metadata file). An exec "
        "round trip is one bwrap invocation (user, pid, net, ipc, uts, cgroup namespaces, "
        "a read-only system view, fresh /proc, /dev and tmpfs) plus asyncio's subprocess "
        "and pipe handling; with cgroups on it also waits for bwrap's --info-fd/--block-fd "
        "handshake that puts the sandbox into its cgroup before the command runs.\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="iterations per measurement")
    parser.add_argument("--readme", type=Path, help="update this README's sandbox section")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local backend gives each sandbox its own uid")
    rows, notes = asyncio.run(measure(args.n))
    table = render(rows, args.n, notes)
    print(table)
    if args.readme:
        write_readme(args.readme, table)
        print(f"\nwrote {args.readme}")


if __name__ == "__main__":
    main()
