"""bench/scale.py still runs end to end: a tiny live run and a tiny idle run (about 30 s).

The numbers are not checked (the machine is shared); what is: every line reached every
watcher, nothing failed, and the idle steps measured something.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_scale_bench_quick_run() -> None:
    args = "--quick --sessions 6 --sandboxes 1 --seconds 2 --warmup 1 --idle 30 --idle-seconds 1"
    done = subprocess.run(
        [sys.executable, "bench/scale.py", *args.split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cleanup:" not in done.stderr, done.stderr[-3000:]
    assert re.search(r"^sandbox\s+\d+\s+100\.0%", out, re.M), out
    assert re.search(r"^addNote\s+\d+\s+100\.0%", out, re.M), out
    assert "0 failed, 0 never delivered" in out
    steps = re.findall(r"^(A: .+?|B: .+?)\s+(\d+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s+[\d.]+$", out, re.M)
    assert len(steps) == 4, out
