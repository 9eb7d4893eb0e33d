"""Workspaces in S3 (resolvers.s3sync): starter files from a prefix, the ended session out.

moto, in server mode on loopback, stands in for S3 at the outermost boundary only: the
server's real aioboto3 client speaks the real S3 wire protocol (signed HTTP requests,
ListObjectsV2 pages, streamed GetObject bodies, multipart uploads) to it; the sandboxes
are real local bubblewrap sandboxes and the recording is the real database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from starlette.applications import Starlette

from gql.settings import Settings
from resolvers.s3export import Exports
from resolvers.s3sync import S3Config, client
from resolvers.sandboxes import Sandboxes
from tests.conftest import Account
from tests.question_support import CREATE, new_session, question_input, staff
from tests.report_support import get_page, report_url
from tests.support import Api
from tests.workspace_support import EVENTS, RUN, START, WRITE

pytestmark = pytest.mark.db

BUCKET = "interviewlm-test"
STARTERS = "starters/two-sum"
BIG = bytes(range(256)) * 2800  # 700 KiB: many chunks of 64 KiB, under MAX_FILE_BYTES
HUGE = b"z" * (3 << 19)  # 1.5 MiB: over MAX_FILE_BYTES (1 MiB), so not in the recording
END = "mutation($s: ID!) { endSession(sessionId: $s) { id status } }"
EXPORT = """query($s: ID!) { session(id: $s) { report {
  export { exported location files bytes skipped durationMs reason }
} } }"""
SYNC_EVENTS = (
    "query($s: ID!) { recording(sessionId: $s, first: 1000) { events { seq type"
    " ... on WorkspaceSyncEvent { location files bytes skipped durationMs reason } } } }"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Moto:
    """A moto S3 server on a free loopback port, stoppable mid-test (S3 down)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.running = True
        self.config = S3Config(
            bucket=BUCKET,
            prefix="interviews",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region="us-east-1",
            access_key_id="test-key",
            secret_access_key="test-secret",
            chunk_bytes=64 << 10,
            attempts=2,
            max_attempts=2,
            timeout_s=3.0,
        )

    def stop(self) -> None:
        if self.running:
            self.server.stop()
            self.running = False


@pytest.fixture
def moto() -> Iterator[Moto]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def s3(app: Starlette, moto: Moto) -> AsyncIterator[S3Config]:
    """The test app with a bucket (as S3_* would configure it), restored afterwards."""
    async with client(moto.config) as s3c:
        await s3c.create_bucket(Bucket=BUCKET)
    sandboxes: Sandboxes = app.state.services.sandboxes
    saved = sandboxes.s3, sandboxes.exports
    sandboxes.s3, sandboxes.exports = moto.config, Exports(sandboxes, moto.config)
    try:
        yield moto.config
    finally:
        if sandboxes.exports is not None:
            await sandboxes.exports.close()
        sandboxes.s3, sandboxes.exports = saved


async def put(config: S3Config, key: str, body: bytes) -> None:
    async with client(config) as s3c:
        await s3c.put_object(Bucket=BUCKET, Key=key, Body=body)


async def objects(config: S3Config, prefix: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    async with client(config) as s3c:
        pages = s3c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        async for page in pages:
            for obj in page.get("Contents", []):
                body = await s3c.get_object(Bucket=BUCKET, Key=obj["Key"])
                found[obj["Key"][len(prefix) :]] = await body["Body"].read()
    return found


async def seed_starters(config: S3Config, account: Account) -> str:
    area = f"{config.prefix}/{account['accountId']}/{STARTERS}/"
    await put(config, area + "src/util.py", b"def helper():\n    return 42\n")
    await put(config, area + "data/nested/deep/input.txt", b"1 2 3\n")
    await put(config, area + "big.bin", BIG)
    await put(config, area + "huge/huge.bin", HUGE)
    await put(config, area + "empty/", b"")  # a "directory" marker
    # Hostile keys: each would land outside the workspace if joined naively.
    await put(config, area + "../../etc/passwd", b"root::0:0::/:/bin/sh\n")
    await put(config, area + "/etc/shadow", b"x")
    await put(config, area + "a/./b", b"x")
    return area


async def question_with_prefix(api: Api, account: Account, prefix: str) -> str:
    made = await api(
        CREATE, {"in": question_input("S3 starters") | {"starterS3Prefix": prefix}},
        token=staff(account),
    )  # fmt: skip
    return str(made.ok()["createQuestion"]["id"])


async def sync_events(api: Api, account: Account, session_id: str) -> list[dict[str, Any]]:
    got = await api(SYNC_EVENTS, {"s": session_id}, token=staff(account))
    events = got.ok()["recording"]["events"]
    return [e for e in events if e["type"].startswith("workspace.")]


async def sh(api: Api, session: dict[str, Any], command: str) -> str:
    ran = await api(RUN, {"s": session["sessionId"], "c": command, "t": 30},
                    token=session["candidateToken"])  # fmt: skip
    result = ran.ok()["runCommand"]
    assert result["exitCode"] == 0, result
    return str(result["stdout"])


async def test_a_new_sandbox_gets_the_questions_s3_files(
    api: Api, account: Account, s3: S3Config
) -> None:
    await seed_starters(s3, account)
    session = await new_session(api, account, await question_with_prefix(api, account, STARTERS))
    started = await api(START, {"s": session["sessionId"]}, token=session["candidateToken"])
    assert started.ok()["startSandbox"]["state"] == "RUNNING"

    assert await sh(api, session, "cat src/util.py") == "def helper():\n    return 42\n"
    assert await sh(api, session, "cat data/nested/deep/input.txt") == "1 2 3\n"
    digest = (await sh(api, session, "sha256sum big.bin")).split()[0]
    assert digest == hashlib.sha256(BIG).hexdigest()
    # Streamed into the sandbox whole, whatever the recording's per-file limit.
    digest = (await sh(api, session, "sha256sum huge/huge.bin")).split()[0]
    assert digest == hashlib.sha256(HUGE).hexdigest()
    # Nothing of the hostile keys anywhere: not outside, not repaired into the workspace.
    listing = await sh(api, session, "find . -path ./.interviewlm -prune -o -type f -print")
    assert "passwd" not in listing
    assert "shadow" not in listing
    assert "./a/b" not in listing
    assert "root::0:0" not in await sh(api, session, "cat /etc/passwd")

    prefix_query = "query($s: ID!) { session(id: $s) { question { starterS3Prefix } } }"
    for token, seen in ((staff(account), STARTERS + "/"), (session["candidateToken"], None)):
        asked = await api(prefix_query, {"s": session["sessionId"]}, token=token)
        assert asked.ok()["session"]["question"]["starterS3Prefix"] == seen

    (imported,) = await sync_events(api, account, session["sessionId"])
    assert imported["type"] == "workspace.imported"
    assert (imported["files"], imported["skipped"]) == (4, 3)
    assert imported["bytes"] == len(BIG) + len(HUGE) + 28 + 6
    assert imported["location"] == f"s3://{BUCKET}/interviews/{account['accountId']}/{STARTERS}/"
    # Staff-only: the candidate's recording has no S3 events.
    theirs = await api(SYNC_EVENTS, {"s": session["sessionId"]}, token=session["candidateToken"])
    assert not [e for e in theirs.ok()["recording"]["events"] if "workspace." in e["type"]]
    # In the recording like any change in the sandbox (so a restarted sandbox has them).
    recorded = await api(EVENTS, {"s": session["sessionId"]}, token=staff(account))
    paths = {
        e["path"]
        for e in recorded.ok()["recording"]["events"]
        if e["type"] == "file.written" and e.get("source") == "s3"
    }
    assert paths == {"src/util.py", "data/nested/deep/input.txt", "big.bin"}
    skipped = [e for e in recorded.ok()["recording"]["events"] if e["type"] == "file.skipped"]
    assert [(e["path"], e["size"]) for e in skipped] == [("huge/huge.bin", len(HUGE))]


async def test_questions_name_prefixes_only_inside_their_accounts_area(
    api: Api, account: Account, account_factory: Any, s3: S3Config
) -> None:
    """A prefix is relative to <S3_PREFIX>/<account>/: no '..', no absolute keys, and the
    same words in another account's question reach that account's objects, not ours."""
    for bad in ("../other", "/interviews", "a/../../b", "a//b", "x y"):
        refused = await api(
            CREATE, {"in": question_input("Bad") | {"starterS3Prefix": bad}},
            token=staff(account),
        )  # fmt: skip
        assert refused.codes == ["BAD_USER_INPUT"], bad
    # Candidates cannot write questions at all (so cannot choose a prefix).
    candidate = await api(
        CREATE, {"in": question_input("Mine") | {"starterS3Prefix": STARTERS}},
        token=account["candidateToken"],
    )  # fmt: skip
    assert candidate.codes == ["FORBIDDEN"]

    await seed_starters(s3, account)
    other = await account_factory()
    session = await new_session(api, other, await question_with_prefix(api, other, STARTERS))
    await api(START, {"s": session["sessionId"]}, token=session["candidateToken"])
    assert "util.py" not in await sh(api, session, "ls -R")
    (imported,) = await sync_events(api, other, session["sessionId"])
    assert imported["files"] == 0
    assert str(other["accountId"]) in imported["location"]


async def test_session_end_exports_workspace_and_recording(
    app: Starlette, api: Api, client: httpx.AsyncClient, account: Account, s3: S3Config
) -> None:
    await seed_starters(s3, account)
    session = await new_session(api, account, await question_with_prefix(api, account, STARTERS))
    sid = session["sessionId"]
    await api(START, {"s": sid}, token=session["candidateToken"])
    (await api(WRITE, {"s": sid, "p": "solution.py", "c": "def add(a, b):\n    return a + b\n"},
               token=session["candidateToken"])).ok()  # fmt: skip
    await sh(api, session, "mkdir -p out && echo made > out/by-shell.txt && rm src/util.py")

    ended = await api(END, {"s": sid}, token=session["candidateToken"])
    assert ended.ok()["endSession"]["status"] == "COMPLETED"
    sandboxes: Sandboxes = app.state.services.sandboxes
    assert sandboxes.exports is not None
    await sandboxes.exports.wait()

    base = f"interviews/{account['accountId']}/{sid}/"
    stored = await objects(s3, base)
    workspace = {
        k.removeprefix("workspace/"): v for k, v in stored.items() if k != "recording.jsonl"
    }
    recorded = {
        path: await sandboxes.files.content(f.sha256)
        for path, f in (await sandboxes.files.current(uuid.UUID(sid))).items()
    }
    assert workspace == recorded
    assert workspace["out/by-shell.txt"] == b"made\n"
    assert workspace["big.bin"] == BIG
    assert "src/util.py" not in workspace
    assert "huge/huge.bin" not in workspace  # over MAX_FILE_BYTES: counted as skipped
    assert workspace["solution.py"] == b"def add(a, b):\n    return a + b\n"

    lines = [json.loads(line) for line in stored["recording.jsonl"].splitlines()]
    everything = await api(EVENTS, {"s": sid}, token=staff(account))
    events = everything.ok()["recording"]["events"]
    # Every event up to the export itself (which is appended after the upload).
    assert [(e["seq"], e["type"]) for e in lines] == [
        (e["seq"], e["type"]) for e in events if e["type"] != "workspace.exported"
    ]

    exported = [e for e in await sync_events(api, account, sid) if "export" in e["type"]]
    assert [e["type"] for e in exported] == ["workspace.exported"]
    stats = exported[0]
    assert stats["files"] == len(workspace)
    assert stats["skipped"] == 1
    assert stats["bytes"] == sum(map(len, workspace.values())) + len(stored["recording.jsonl"])
    assert stats["location"] == f"s3://{BUCKET}/{base}"
    report = (await api(EXPORT, {"s": sid}, token=staff(account))).ok()["session"]["report"]
    assert report["export"] == {
        "exported": True,
        "location": stats["location"],
        "files": stats["files"],
        "bytes": stats["bytes"],
        "skipped": stats["skipped"],
        "durationMs": stats["durationMs"],
        "reason": None,
    }
    # And on the server-rendered report page.
    page = await get_page(client, await report_url(api, account | {"sessionId": sid}))
    assert page.status_code == 200
    assert f"{stats['files']} files" in page.text
    assert stats["location"] in page.text


async def test_s3_down_is_an_event_and_the_recording_is_whole(
    app: Starlette,
    api: Api,
    client: httpx.AsyncClient,
    account: Account,
    s3: S3Config,
    moto: Moto,
) -> None:
    session = await new_session(api, account, account["questionId"])
    sid = session["sessionId"]
    await api(START, {"s": sid}, token=session["candidateToken"])
    (await api(WRITE, {"s": sid, "p": "kept.txt", "c": "still here\n"},
               token=session["candidateToken"])).ok()  # fmt: skip
    moto.stop()

    ended = await api(END, {"s": sid}, token=staff(account))
    assert ended.ok()["endSession"]["status"] == "COMPLETED"  # nothing raised into the API
    sandboxes: Sandboxes = app.state.services.sandboxes
    assert sandboxes.exports is not None
    await sandboxes.exports.wait()

    (failed,) = [e for e in await sync_events(api, account, sid) if "export" in e["type"]]
    assert failed["type"] == "workspace.exportFailed"
    assert failed["reason"]
    files = await sandboxes.files.current(uuid.UUID(sid))
    assert await sandboxes.files.content(files["kept.txt"].sha256) == b"still here\n"
    report = (await api(EXPORT, {"s": sid}, token=staff(account))).ok()["session"]["report"]
    assert report["export"]["exported"] is False
    assert report["export"]["reason"] == failed["reason"]
    page = await get_page(client, await report_url(api, account | {"sessionId": sid}))
    assert "Export to S3" in page.text
    assert "failed" in page.text


async def test_an_import_with_s3_down_still_starts_the_sandbox(
    api: Api, account: Account, s3: S3Config, moto: Moto
) -> None:
    session = await new_session(api, account, await question_with_prefix(api, account, STARTERS))
    moto.stop()
    started = await api(START, {"s": session["sessionId"]}, token=session["candidateToken"])
    assert started.ok()["startSandbox"]["state"] == "RUNNING"
    (failed,) = await sync_events(api, account, session["sessionId"])
    assert failed["type"] == "workspace.importFailed"
    assert failed["reason"]


def test_settings_read_the_bucket_from_the_environment() -> None:
    env = {
        "S3_BUCKET": "b1",
        "S3_PREFIX": "/interviews/",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
    }
    config = Settings.from_env(env).s3
    assert config is not None
    assert (config.bucket, config.prefix, config.endpoint_url, config.region) == (
        "b1",
        "interviews",
        "http://127.0.0.1:9000",
        "eu-west-1",
    )
    assert "secret" not in repr(config)
    assert Settings.from_env({}).s3 is None
    account = uuid.uuid4()
    assert config.base(account) == f"interviews/{account}/"
    assert replace(config, prefix="").base(account) == f"{account}/"
