"""The CI guard in tests/conftest.py: in CI a skip fails the run, except Modal's credential gate.

Runs pytest in a subprocess on a throwaway test file, with the suite's conftest loaded as a
plugin, once as CI and once as a developer would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import pytest

def test_runs():
    pass

def test_tool_missing():
    pytest.skip("bubblewrap is not installed")

@pytest.mark.skipif(True, reason="the local backend needs root")
def test_marked_skip():
    pass

def test_modal_without_credentials():
    pytest.skip("Modal credentials not set (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)")

@pytest.mark.xfail(strict=True, reason="a documented residual")
def test_known_residual():
    assert False
"""


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            str(tmp_path / "test_probe.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_in_ci_a_skip_fails_the_run_unless_modal_credentials_gate_it(tmp_path: Path) -> None:
    result = run_probe(tmp_path, "true")
    out = result.stdout
    assert result.returncode == 1, out
    # A skip in a test body fails it; a skip mark (decided at set-up) is an error.
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in out, out
    refused = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert len(refused) == 2, refused
    assert any("test_probe.py::test_tool_missing" in line for line in refused)
    assert any("test_probe.py::test_marked_skip" in line for line in refused)
    assert "skipped in CI: bubblewrap is not installed" in out
    assert "skipped in CI: the local backend needs root" in out
    assert "Only Modal's credential-gated tests may skip in CI" in out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, skipped
    assert "Modal credentials not set" in skipped[0]


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    for ci in (None, "false", "0"):
        result = run_probe(tmp_path, ci)
        assert result.returncode == 0, result.stdout
        assert "1 passed, 3 skipped, 1 xfailed" in result.stdout, result.stdout
