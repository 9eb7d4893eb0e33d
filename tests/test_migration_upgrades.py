"""Every migration upgrades a database that already holds data, on this pass's database.

tests/migration_walk.py migrates an empty database one step at a time and, after each
step, writes a row into every table that exists then; at the head every row must still
be there, read back through the current models, with the model's default in every
column added after it was written. A child process on a database of its own (migrating
swaps Tortoise's global connections, which the test app is using).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import conftest

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "models" / "migrations"


@pytest.fixture
async def fresh_database_url(tmp_path: Path) -> AsyncIterator[str]:
    if conftest.test_database() == "sqlite":
        yield f"sqlite://{tmp_path / 'walk.sqlite3'}"
        return
    async with conftest.postgres_database("interviewlm_walk") as url:
        yield url


def test_every_migration_upgrades_a_database_with_rows_in_every_table(
    fresh_database_url: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.migration_walk", fresh_database_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    walked = json.loads(done.stdout.strip().splitlines()[-1])
    assert walked["problems"] == []
    on_disk = sorted(f"models.{p.stem}" for p in MIGRATIONS.glob("[0-9]*.py"))
    assert sorted(walked["applied"]) == on_disk
    # The walk reached the tables whose later migrations need rows to be tested:
    # claude_run before 0006 added its usage, interview_session's children before
    # 0008 indexed it, question before 0010 made it revisions.
    assert {"claude_run", "session_event", "question", "webhook_endpoint"} <= set(walked["tables"])
    assert {
        "claude_run.api_requests",
        "claude_run.input_tokens",
        "claude_run.output_tokens",
        "question.revision",
        "question.is_latest",
    } <= set(walked["old_rows_checked"])
