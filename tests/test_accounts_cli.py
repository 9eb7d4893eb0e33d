"""``interviewlm account create`` and ``interviewlm token create``, run as an operator runs
them (the real CLI in a child process, on this run's database), and the tokens they print
used against the API."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from models.token import ApiToken
from resolvers.auth import hash_token
from tests.conftest import Account
from tests.support import Api
from tests.test_cli import INTERVIEWLM, ROOT

VIEWER = "{ viewer { kind account { id name } user { email name role } } }"
SESSION = "query($id: ID!) { session(id: $id) { id } }"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(*args: str, database_url: str) -> Ran:
    """The CLI in a child process, awaited: this run's app keeps serving meanwhile (a
    blocking wait would freeze its tasks, some holding the SQLite file's lock)."""
    process = await asyncio.create_subprocess_exec(
        *INTERVIEWLM,
        *args,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


async def cli(database_url: str, *args: str) -> dict[str, Any]:
    result = await run_cli(*args, "--json", database_url=database_url)
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


async def refused(database_url: str, *args: str, code: int = 1) -> str:
    """The CLI's message for a refused command: a non-zero exit, a line, no traceback."""
    result = await run_cli(*args, database_url=database_url)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr


async def viewer(api: Api, token: str) -> dict[str, Any]:
    data: dict[str, Any] = (await api(VIEWER, token=token)).ok()["viewer"]
    return data


async def test_account_create_prints_an_account_whose_tokens_work(
    api: Api, database_url: str
) -> None:
    created = await cli(
        database_url, "account", "create", "--name", "Acme Hiring", "--admin-email", "Ann@Acme.test"
    )
    assert set(created) == {"accountId", "interviewerToken", "atsToken"}

    interviewer = await viewer(api, created["interviewerToken"])
    assert interviewer["kind"] == "INTERVIEWER"
    assert interviewer["account"] == {"id": created["accountId"], "name": "Acme Hiring"}
    assert interviewer["user"] == {"email": "ann@acme.test", "name": "Admin", "role": "admin"}
    ats = await viewer(api, created["atsToken"])
    assert ats["kind"] == "ATS"
    assert ats["account"]["id"] == created["accountId"]
    assert ats["user"] is None

    # Only hashes are stored.
    stored = await ApiToken.filter(account_id=uuid.UUID(created["accountId"]))
    assert {t.token_hash for t in stored} == {
        hash_token(created["interviewerToken"]),
        hash_token(created["atsToken"]),
    }


async def test_token_create_issues_working_tokens_of_either_kind(
    api: Api, database_url: str, account: Account
) -> None:
    account_id = (await cli(database_url, "account", "create", "--name", "Globex"))["accountId"]

    ats = await cli(database_url, "token", "create", "--account", account_id, "--kind", "ats")
    assert ats["token"].startswith("ilma_")
    assert (await viewer(api, ats["token"]))["kind"] == "ATS"

    bob = await cli(
        database_url,
        *("token", "create", "--account", account_id, "--kind", "interviewer"),
        *("--user", "bob@globex.test", "--user-name", "Bob"),
    )
    assert set(bob) == {"tokenId", "accountId", "kind", "token"}
    assert (bob["accountId"], bob["kind"]) == (account_id, "interviewer")
    seen = await viewer(api, bob["token"])
    assert seen["kind"] == "INTERVIEWER"
    assert seen["account"]["id"] == account_id
    assert seen["user"] == {"email": "bob@globex.test", "name": "Bob", "role": "interviewer"}

    admin = await cli(
        database_url, "token", "create", "--account", account_id, "--kind", "interviewer"
    )
    assert (await viewer(api, admin["token"]))["user"]["role"] == "admin"

    # A token of this account opens nothing of another.
    other = await api(SESSION, {"id": account["sessionId"]}, token=bob["token"])
    assert other.codes == ["NOT_FOUND"]


async def test_refusals_are_one_clear_line(database_url: str) -> None:
    unknown = str(uuid.uuid4())
    message = await refused(database_url, "token", "create", "--account", unknown, "--kind", "ats")
    assert "account not found" in message
    message = await refused(database_url, "token", "create", "--account", "nope", "--kind", "ats")
    assert "account: is not a valid ID" in message
    message = await refused(
        database_url, "token", "create", "--account", unknown, "--kind", "admin", code=2
    )
    assert "invalid choice: 'admin'" in message
    message = await refused(database_url, "account", "create", "--name", "  ")
    assert "name: must not be empty" in message
    message = await refused(
        database_url, "account", "create", "--name", "X", "--admin-email", "nope"
    )
    assert "adminEmail: must be an email address" in message


async def test_an_ats_token_acts_for_no_user(database_url: str) -> None:
    account_id = (await cli(database_url, "account", "create", "--name", "Initech"))["accountId"]
    message = await refused(
        database_url,
        *("token", "create", "--account", account_id, "--kind", "ats", "--user", "a@b.test"),
    )
    assert "ATS tokens act for the account" in message
