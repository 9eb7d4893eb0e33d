"""Migration 0010 on a database that already has questions, sessions and test cases:
each existing question becomes revision 1 of its own lineage, nothing is lost.

Run in a child process on a database of its own (migrating swaps Tortoise's global
connections, which the test app is using), on this pass's database kind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import conftest

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parent.parent

# argv: database url, account id, question id, session id. Prints the migrated rows.
SCRIPT = """
import asyncio, datetime, json, sys
from tortoise import Tortoise
from tortoise.migrations.api import migrate
from resolvers.database import tortoise_config

URL, ACCOUNT, QUESTION, SESSION = sys.argv[1:5]
STAMP = datetime.datetime(2026, 2, 1, 12, 30, tzinfo=datetime.UTC)

async def connect(target):
    config = tortoise_config(URL)
    await migrate(config=config, target=target)
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    return Tortoise.get_connection("default")

async def main():
    db = await connect("models.0009_file_versions")
    postgres = db.capabilities.dialect == "postgres"
    def insert(table, row):
        marks = ", ".join(f"${i}" if postgres else "?" for i in range(1, len(row) + 1))
        values = [v.isoformat() if isinstance(v, datetime.datetime) and not postgres else v
                  for v in row.values()]
        return db.execute_query(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", values)
    await insert("account", {"id": ACCOUNT, "name": "old", "created_at": STAMP})
    await insert("question", {"id": QUESTION, "account_id": ACCOUNT, "title": "Old",
                              "prompt": "p", "created_at": STAMP})
    await insert("test_case", {"question_id": QUESTION, "position": 0, "name": "c",
                               "hidden": True, "timeout_ms": 100})
    await insert("interview_session", {
        "id": SESSION, "account_id": ACCOUNT, "question_id": QUESTION, "language": "PYTHON",
        "candidate_name": "c", "candidate_email": "c@example.com", "status": "SCHEDULED",
        "created_at": STAMP, "last_seq": 0})
    await Tortoise.close_connections()
    await connect("models.0010_question_revisions")
    from models.question import Question, TestCase
    from models.session import InterviewSession
    # Only the columns 0010 has: later migrations add more (the model has them all).
    question = await Question.filter(id=QUESTION).only(
        "id", "lineage_id", "revision", "is_latest", "tags_json", "difficulty",
        "archived_at", "created_at", "revised_at").get()
    print(json.dumps({
        "lineage_id": str(question.lineage_id), "revision": question.revision,
        "is_latest": question.is_latest, "tags": question.tags,
        "difficulty": question.difficulty, "archived_at": question.archived_at,
        "created_at": question.created_at.isoformat(),
        "revised_at": question.revised_at.isoformat(),
        "cases": await TestCase.filter(question_id=QUESTION).count(),
        "session_question": str((await InterviewSession.get(id=SESSION)).question_id),
    }))
    await Tortoise.close_connections()

asyncio.run(main())
"""


@pytest.fixture
async def fresh_database_url(tmp_path: Path) -> AsyncIterator[str]:
    if conftest.test_database() == "sqlite":
        yield f"sqlite://{tmp_path / 'old.sqlite3'}"
        return
    async with conftest.postgres_database("interviewlm_migration") as url:
        yield url


def test_existing_questions_become_revision_one_of_their_own(fresh_database_url: str) -> None:
    account, question, session = (str(uuid.uuid4()) for _ in range(3))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fresh_database_url, account, question, session],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    migrated = json.loads(done.stdout.strip().splitlines()[-1])
    assert migrated == {
        "lineage_id": question,
        "revision": 1,
        "is_latest": True,
        "tags": [],
        "difficulty": None,
        "archived_at": None,
        "created_at": "2026-02-01T12:30:00+00:00",
        "revised_at": "2026-02-01T12:30:00+00:00",
        "cases": 1,
        "session_question": question,
    }
