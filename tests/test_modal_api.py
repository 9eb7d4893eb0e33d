"""The API's live path on the Modal backend (SANDBOX_BACKEND=modal), in every CI run.

Real ``interviewlm serve`` processes with the real modal SDK talk to
``tests.modal_standin``, a protocol-level stand-in for Modal's API running as
its own process (real bubblewrap containers, real PTYs). The stand-in checks
the client side only: what Modal itself does (gVisor, image builds, network
policy enforcement, Volume commit timing) needs one run against real Modal
(README, "Modal").

Test runs (private execs: the launcher drops from the container's root to
PRIVATE_UID) run in Python, JavaScript and Go with the host's toolchains, which
is what a stand-in container sees instead of the Modal image. What cannot run
here: TypeScript (no compiler on the host's system; the stand-in binds no
TOOLCHAIN_DIR, unlike the local backend's presets), and the agent run (it needs
egress from the container to PUBLIC_URL; stand-in containers have no network).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REDIS_URL, Account
from tests.server import ServerProcess, start_server
from tests.wsclient import GraphQLWS, collect_events

# Replicas are processes: on PostgreSQL + Redis, as deployed (on one SQLite file the test
# app and the servers' writers collide under load: "database is locked").
pytestmark = [pytest.mark.postgres, pytest.mark.redis]

START = "mutation($s: ID!) { startSandbox(sessionId: $s) { id state backend } }"
RUN = """mutation($s: ID!, $c: String!) {
  runCommand(sessionId: $s, command: $c, timeoutSeconds: 20) { commandId exitCode stdout stderr }
}"""
OPEN = """mutation($s: ID!) { openTerminal(sessionId: $s, cols: 100, rows: 30) { id state } }"""
INPUT = "mutation($t: ID!, $d: String!) { terminalInput(terminalId: $t, data: $d) { id } }"
TERMINATE = "mutation($s: ID!) { terminateSandbox(sessionId: $s) { state endReason } }"
END = "mutation($s: ID!) { endSession(sessionId: $s) { id status } }"
FILES = "query($s: ID!, $p: String!) { files(sessionId: $s, path: $p) { path kind size } }"
FILE = "query($s: ID!, $p: String!) { file(sessionId: $s, path: $p) { content fromRecording } }"
LIVE_EVENTS = """subscription($s: ID!, $a: Int!) {
  sessionEvents(sessionId: $s, afterSeq: $a) {
    lastSeq events { seq type ... on CommandOutputEvent { commandId data }
      ... on CommandEvent { commandId exitCode } ... on TerminalOutputEvent { terminalId data } }
  }
}"""
LINES = 200
PRINT_LINES = f"for i in $(seq 1 {LINES}); do echo line-$i; done"


@pytest.fixture(scope="module")
def standin() -> Iterator[dict[str, str]]:
    from tests.modal_standin.process import standin_process

    with standin_process() as env:
        yield env


@pytest.fixture(scope="module")
def modal_env(server_env: dict[str, str], standin: dict[str, str]) -> dict[str, str]:
    return {**server_env, **standin, "SANDBOX_BACKEND": "modal"}


@pytest.fixture(scope="module")
def server(
    modal_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One replica on the Modal backend for the single-replica tests (both passes)."""
    process = start_server(modal_env, tmp_path_factory.mktemp("modal-api"), timeout=60)
    yield process
    process.stop()


class Client:
    """GraphQL over HTTP to one server process, as one of the account's tokens."""

    def __init__(self, server: ServerProcess, account: Account) -> None:
        self.server, self.account = server, account

    async def __call__(
        self, query: str, variables: dict[str, Any], token: str = "candidateToken"
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.account[token]}"}
        async with httpx.AsyncClient(base_url=self.server.url, timeout=60) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]  # type: ignore[no-any-return]

    async def start(self) -> None:
        started = await self(START, {"s": self.account["sessionId"]})
        assert started["startSandbox"]["state"] == "RUNNING", started
        assert started["startSandbox"]["backend"] == "modal", started

    async def watch(self) -> GraphQLWS:
        client = await GraphQLWS.connect(self.server.ws_url, self.account["interviewerToken"])
        await client.subscribe(LIVE_EVENTS, {"s": self.account["sessionId"], "a": 0})
        return client


async def run_and_watch(runner: Client, watcher: Client) -> None:
    """Lines a command prints on ``runner`` arrive on ``watcher`` once each, in order."""
    await runner.start()
    client = await watcher.watch()
    try:
        ran = await runner(RUN, {"s": runner.account["sessionId"], "c": PRINT_LINES})
        command_id = ran["runCommand"]["commandId"]
        assert ran["runCommand"]["exitCode"] == 0, ran
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while not any(
                e["type"] == "command.exited" and e.get("commandId") == command_id for e in events
            ):
                events += await collect_events(client, until_seq=0)
    finally:
        await client.close()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "each event once, in order"
    output = "".join(
        e["data"] for e in events if e["type"] == "command.output" and e["commandId"] == command_id
    )
    assert output == "".join(f"line-{i}\n" for i in range(1, LINES + 1))


async def test_output_read_on_one_replica_arrives_on_another(
    server: ServerProcess, modal_env: dict[str, str], account: Account, tmp_path: Path
) -> None:
    # ``server`` runs the sandbox and reads its output (the Modal stream reader);
    # ``watcher`` only relays what arrives over the bus (Redis) and the database.
    assert modal_env.get("REDIS_URL") == REDIS_URL
    watcher = start_server(modal_env, tmp_path, timeout=60)
    try:
        await run_and_watch(Client(server, account), Client(watcher, account))
    finally:
        watcher.stop()


async def test_output_arrives_live_on_one_replica(server: ServerProcess, account: Account) -> None:
    await run_and_watch(Client(server, account), Client(server, account))


async def test_a_terminal_works_through_the_api(server: ServerProcess, account: Account) -> None:
    client = Client(server, account)
    await client.start()
    watcher = await client.watch()
    try:
        opened = await client(OPEN, {"s": account["sessionId"]})
        terminal_id = opened["openTerminal"]["id"]
        assert opened["openTerminal"]["state"] == "OPEN"
        await client(INPUT, {"t": terminal_id, "d": "echo sum-$((40+2)); tty\n"})
        shown = ""
        async with asyncio.timeout(20):
            while "sum-42\r\n/dev/pts/" not in shown:
                events = await collect_events(watcher, until_seq=0)
                shown += "".join(
                    e["data"]
                    for e in events
                    if e["type"] == "terminal.output" and e.get("terminalId") == terminal_id
                )
    finally:
        await watcher.close()


async def test_terminated_sandbox_reads_back(
    server: ServerProcess, account: Account, standin: dict[str, str]
) -> None:
    """After terminate and endSession the files answer from the recording, and the
    sandbox's Volume still reads back through the Modal backend."""
    client, session = Client(server, account), account["sessionId"]
    await client.start()
    wrote = await client(RUN, {"s": session, "c": "mkdir -p d && printf kept > d/out.txt"})
    assert wrote["runCommand"]["exitCode"] == 0
    stopped = await client(TERMINATE, {"s": session})
    assert stopped["terminateSandbox"]["state"] == "TERMINATED", stopped
    ended = await client(END, {"s": session}, "interviewerToken")
    assert ended["endSession"]["status"] == "COMPLETED", ended

    listed = await client(FILES, {"s": session, "p": "d"}, "interviewerToken")
    assert listed["files"] == [{"path": "d/out.txt", "kind": "FILE", "size": 4}], listed
    read = await client(FILE, {"s": session, "p": "d/out.txt"}, "interviewerToken")
    assert read["file"] == {"content": "kept", "fromRecording": True}
    assert await read_volume(account, "d/out.txt", standin) == b"kept"


async def read_volume(account: Account, path: str, standin: dict[str, str]) -> bytes:
    """``path`` of the session's (ended) sandbox, read by a fresh Modal backend instance."""
    from modal_app.modal.backend import ModalSandboxBackend
    from models.sandbox import SandboxRecord
    from tests.sandbox.conftest import environment_set

    record = (
        await SandboxRecord.filter(session_id=account["sessionId"]).order_by("-created_at").first()
    )
    assert record is not None
    assert record.backend_id, record
    with environment_set(standin):
        backend = ModalSandboxBackend(
            token_id=standin["MODAL_TOKEN_ID"], token_secret=standin["MODAL_TOKEN_SECRET"]
        )
        await backend.start()
        try:
            return await backend.read_file(record.backend_id, path)
        finally:
            await backend.aclose()


# TYPESCRIPT cannot run here: its compiler is not on the host's system the stand-in's
# containers see (Modal's image installs it; the local backend binds TOOLCHAIN_DIR).
LANGUAGES = ["PYTHON", "JAVASCRIPT", "GO"]


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_test_run_in_each_language(
    server: ServerProcess, account: Account, language: str
) -> None:
    """A correct solution passes every case through runTests (a private exec: the
    launcher starts as the container's root and drops to PRIVATE_UID)."""
    from tests.test_testruns import RUN_TESTS, SOLUTIONS, TEST_RUN
    from tests.workspace_support import WRITE

    client, session = Client(server, account), account["sessionId"]
    await client.start()
    path, body = SOLUTIONS[language]
    await client(WRITE, {"s": session, "p": path, "c": body})
    started = await client(RUN_TESTS, {"s": session, "l": language}, "interviewerToken")
    async with asyncio.timeout(30):
        while True:
            run = await client(TEST_RUN, {"id": started["runTests"]["id"]}, "interviewerToken")
            if run["testRun"]["status"] in {"FINISHED", "ERROR"}:
                break
            await asyncio.sleep(0.1)
    run = run["testRun"]
    assert run["status"] == "FINISHED", run
    assert (run["total"], run["passed"], run["failed"]) == (5, 5, 0), str(run)[:1500]
