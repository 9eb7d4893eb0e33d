"""The public CLI, run as users run it: schema export (and drift), migrate, seed-demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gql.cli import _export_schema

ROOT = Path(__file__).resolve().parent.parent
INTERVIEWLM = [sys.executable, "-m", "gql"]


def test_committed_schema_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == _export_schema(), (
        "schema.graphql drifted: run `.venv/bin/interviewlm export-schema > schema.graphql`"
    )


def test_export_schema_command_prints_the_schema() -> None:
    out = subprocess.run(
        [*INTERVIEWLM, "export-schema"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout == (ROOT / "schema.graphql").read_text()
    assert "type Query" in out.stdout


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INTERVIEWLM, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_seed_demo_prints_a_fresh_account_each_time(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite://{tmp_path / 'seed.sqlite3'}"}
    assert run_cli("migrate", env=env).returncode == 0
    first = run_cli("seed-demo", "--json", env=env)
    second = run_cli("seed-demo", "--json", env=env)
    assert first.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    keys = {
        "accountId",
        "interviewerToken",
        "atsToken",
        "questionId",
        "sessionId",
        "candidateToken",
    }
    assert set(a) == keys
    assert set(b) == keys
    assert all(a[k] != b[k] for k in keys)


def test_bad_settings_fail_with_a_message(tmp_path: Path) -> None:
    result = run_cli("migrate", env={"SANDBOX_BACKEND": "docker"})
    assert result.returncode == 2
    assert "SANDBOX_BACKEND" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_caps_websocket_messages_at_the_body_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn buffers WebSocket messages up to 16 MiB unless told: ``serve`` passes
    MAX_BODY_BYTES, so no message past the API's own limit is ever held."""
    import uvicorn

    from gql.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{tmp_path / 'serve.sqlite3'}")
    monkeypatch.setenv("SANDBOX_ROOT", str(tmp_path / "sandboxes"))
    monkeypatch.setenv("MAX_BODY_BYTES", "300000")
    main(["serve", "--port", "0"])
    assert seen["ws_max_size"] == 300_000
    assert seen["ws"] == "websockets-sansio"
