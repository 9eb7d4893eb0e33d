"""Interactive terminals: a real PTY in the sandbox, recorded and shared, across replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, Account
from tests.server import start_server
from tests.support import Api
from tests.workspace_support import START, events, start

OPEN = """mutation($s: ID!, $c: Int!, $r: Int!) {
  openTerminal(sessionId: $s, cols: $c, rows: $r) { id state cols rows }
}"""
INPUT = "mutation($t: ID!, $d: String!) { terminalInput(terminalId: $t, data: $d) { id } }"
RESIZE = """mutation($t: ID!, $c: Int!, $r: Int!) {
  resizeTerminal(terminalId: $t, cols: $c, rows: $r) { cols rows }
}"""
CLOSE = "mutation($t: ID!) { closeTerminal(terminalId: $t) { state exitCode } }"


async def screen(api: Api, account: Account, terminal_id: str) -> str:
    log = await events(api, account)
    return "".join(
        e["payload"]["data"]
        for e in log
        if e["type"] == "terminal.output" and e["payload"].get("terminalId") == terminal_id
    )


async def wait_for_output(api: Api, account: Account, terminal_id: str, needle: str) -> str:
    for _ in range(100):
        shown = await screen(api, account, terminal_id)
        if needle in shown:
            return shown
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"{needle!r} never appeared in:\n{await screen(api, account, terminal_id)}"
    )


async def test_terminal_round_trip_is_recorded(api: Api, account: Account) -> None:
    await start(api, account)
    token = account["candidateToken"]
    terminal = (await api(OPEN, {"s": account["sessionId"], "c": 80, "r": 24}, token=token)).ok()
    tid = terminal["openTerminal"]["id"]
    assert terminal["openTerminal"]["state"] == "OPEN"
    await api(INPUT, {"t": tid, "d": "echo sum-$((40+2))\n"}, token=token)
    await wait_for_output(api, account, tid, "sum-42")
    # An interviewer types into the same terminal; everyone sees it.
    await api(
        INPUT,
        {"t": tid, "d": "echo from-interviewer > note.txt; cat note.txt\n"},
        token=account["interviewerToken"],
    )
    await wait_for_output(api, account, tid, "from-interviewer\r\n")
    resized = (await api(RESIZE, {"t": tid, "c": 100, "r": 30}, token=token)).ok()
    assert resized["resizeTerminal"] == {"cols": 100, "rows": 30}
    await api(INPUT, {"t": tid, "d": "stty size\n"}, token=token)
    await wait_for_output(api, account, tid, "30 100")
    closed = (await api(CLOSE, {"t": tid}, token=token)).ok()["closeTerminal"]
    assert closed["state"] == "CLOSED"
    late = await api(INPUT, {"t": tid, "d": "echo late\n"}, token=token)
    assert late.codes == ["CONFLICT"]
    log = await events(api, account)
    types = [e["type"] for e in log if (e["payload"] or {}).get("terminalId") == tid]
    assert types[0] == "terminal.opened"
    assert types[-1] == "terminal.closed"
    inputs = [e["payload"]["input"] for e in log if e["type"] == "terminal.input"]
    assert inputs[0] == "echo sum-$((40+2))\n"
    assert {"terminal.resized", "terminal.output"} <= set(types)
    # What the terminal did to the workspace is in the recording.
    assert any(e["type"] == "file.written" and e["payload"]["path"] == "note.txt" for e in log)


async def test_bad_terminal_sizes_and_unknown_ids(api: Api, account: Account) -> None:
    await start(api, account)
    token = account["candidateToken"]
    bad = await api(OPEN, {"s": account["sessionId"], "c": 0, "r": 24}, token=token)
    assert bad.codes == ["BAD_USER_INPUT"]
    missing = await api(INPUT, {"t": "00000000-0000-0000-0000-000000000000", "d": "x"}, token=token)
    assert missing.codes == ["NOT_FOUND"]


@pytest.mark.redis
# Two replicas are the PostgreSQL + Redis layout: on one SQLite file, three processes'
# writers collide ("database is locked" under load), which no deployment runs.
@pytest.mark.postgres
@pytest.mark.redis
async def test_input_typed_on_another_replica_reaches_the_terminal(
    server_env: dict[str, str], account: Account, tmp_path: Path, api: Api
) -> None:
    env = {**server_env, "REDIS_URL": server_env.get("REDIS_URL", REDIS_URL)}  # shared bus
    owner, other = start_server(env, tmp_path), start_server(env, tmp_path)
    headers = {"authorization": f"Bearer {account['candidateToken']}"}
    try:
        async with (
            httpx.AsyncClient(base_url=owner.url, headers=headers, timeout=30) as a,
            httpx.AsyncClient(base_url=other.url, headers=headers, timeout=30) as b,
        ):
            await a.post(
                "/graphql", json={"query": START, "variables": {"s": account["sessionId"]}}
            )
            opened = await a.post(
                "/graphql",
                json={"query": OPEN, "variables": {"s": account["sessionId"], "c": 80, "r": 24}},
            )
            tid = opened.json()["data"]["openTerminal"]["id"]
            typed = await b.post(
                "/graphql",
                json={"query": INPUT, "variables": {"t": tid, "d": "echo via-$((6*7))\n"}},
            )
            assert typed.json()["data"]["terminalInput"]["id"] == tid
            await wait_for_output(api, account, tid, "via-42")
    finally:
        owner.stop()
        other.stop()


async def test_open_terminals_per_session_are_capped(api: Api, account: Account) -> None:
    """Attack: a candidate opens shells in a loop (each one a process tree on the host).

    Six concurrent opens against the default cap of four: exactly four open,
    the others answer RATE_LIMITED saying why; a closed (or exited) terminal
    frees its slot.
    """
    await start(api, account)
    token = account["candidateToken"]
    variables = {"s": account["sessionId"], "c": 80, "r": 24}
    answers = await asyncio.gather(*(api(OPEN, variables, token=token) for _ in range(6)))
    opened = [a.data["openTerminal"]["id"] for a in answers if not a.codes]
    refused = [a for a in answers if a.codes]
    assert len(opened) == 4
    assert [a.codes for a in refused] == [["RATE_LIMITED"], ["RATE_LIMITED"]]
    assert "at most 4" in refused[0].errors[0]["message"]
    assert (await api(OPEN, variables, token=token)).codes == ["RATE_LIMITED"]
    # Closing one, or exiting its shell, makes room again.
    (await api(CLOSE, {"t": opened[0]}, token=token)).ok()
    again = (await api(OPEN, variables, token=token)).ok()["openTerminal"]["id"]
    await api(INPUT, {"t": opened[1], "d": "exit\n"}, token=token)
    for _ in range(100):
        answer = await api(OPEN, variables, token=token)
        if not answer.codes:
            break
        await asyncio.sleep(0.05)
    assert answer.codes == []
    for tid in [again, *opened[2:], answer.data["openTerminal"]["id"]]:
        (await api(CLOSE, {"t": tid}, token=token)).ok()
