"""Live sessions end to end: a real graphql-transport-ws client against the real server."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Account
from tests.server import ServerProcess
from tests.support import wait_until
from tests.workspace_support import RUN, START
from tests.wsclient import SESSION_EVENTS, GraphQLWS, collect_seqs

NOTE = "mutation($s: ID!, $t: String!) { addNote(sessionId: $s, text: $t) { seq } }"


async def add_notes(
    server: ServerProcess, account: Account, count: int, *, concurrency: int = 8
) -> list[int]:
    """Append ``count`` events through the server, several requests at a time."""
    seqs: list[int] = []
    headers = {"authorization": f"Bearer {account['interviewerToken']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        queue = iter(range(count))

        async def worker() -> None:
            for i in queue:
                response = await http.post(
                    "/graphql",
                    json={"query": NOTE, "variables": {"s": account["sessionId"], "t": f"n{i}"}},
                )
                seqs.append(response.json()["data"]["addNote"]["seq"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(seqs)


async def last_seq(server: ServerProcess, account: Account) -> int:
    """The session's last stored seq, as the API reports it."""
    headers = {"authorization": f"Bearer {account['interviewerToken']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": "query($s: ID!) { session(id: $s) { lastSeq } }",
                "variables": {"s": account["sessionId"]},
            },
        )
        return int(response.json()["data"]["session"]["lastSeq"])


async def watch(server: ServerProcess, account: Account, token: str, after: int = 0) -> GraphQLWS:
    client = await GraphQLWS.connect(server.ws_url, account[token])
    await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": after})
    return client


async def test_replay_seam_under_concurrent_writes(
    live_server: ServerProcess, account: Account
) -> None:
    history = await add_notes(live_server, account, 40)  # history to replay
    writer = asyncio.create_task(add_notes(live_server, account, 200))

    async def writing() -> bool:
        return await last_seq(live_server, account) >= history[-1] + 20

    await wait_until(writing, what="the writer is under way")  # subscribe while it writes
    client = await watch(live_server, account, "interviewerToken")
    assert not writer.done(), "subscribed while the writer was still writing"
    written = await writer
    seqs = await collect_seqs(client, until_seq=written[-1])
    await client.close()
    assert seqs == list(range(1, written[-1] + 1))  # every seq once, in order, no gap


async def test_resume_after_seq_from_the_middle(
    live_server: ServerProcess, account: Account
) -> None:
    written = await add_notes(live_server, account, 30)
    middle = written[len(written) // 2]
    client = await watch(live_server, account, "interviewerToken", after=middle)
    more = await add_notes(live_server, account, 5)
    seqs = await collect_seqs(client, until_seq=more[-1])
    await client.close()
    assert seqs == list(range(middle + 1, more[-1] + 1))


async def test_slow_subscriber_does_not_delay_a_fast_one(
    live_server: ServerProcess, account: Account
) -> None:
    slow = await watch(live_server, account, "interviewerToken")
    fast = await watch(live_server, account, "atsToken")
    # The slow client reads nothing while the session produces a flood.
    written = await add_notes(live_server, account, 600, concurrency=16)
    fast_seqs = await collect_seqs(fast, until_seq=written[-1], timeout=20)
    assert fast_seqs == list(range(1, written[-1] + 1))
    # ... and once it reads, it still gets everything, once (resynced from the log).
    slow_seqs = await collect_seqs(slow, until_seq=written[-1], timeout=30)
    assert slow_seqs == list(range(1, written[-1] + 1))
    await slow.close()
    await fast.close()


async def _first_error(client: GraphQLWS) -> dict[str, object]:
    """A refused subscription: one result carrying the error and no data, then complete."""
    message = await client.next_message()
    assert message["type"] == "next", message
    assert message["payload"]["data"] is None
    assert (await client.next_message())["type"] == "complete"
    return message["payload"]["errors"][0]  # type: ignore[no-any-return]


async def test_subscribe_is_authorized_per_session(
    live_server: ServerProcess, account: Account, account_factory
) -> None:  # type: ignore[no-untyped-def]
    other = await account_factory()
    for token in (other["interviewerToken"], other["candidateToken"]):
        client = await GraphQLWS.connect(live_server.ws_url, token)
        await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": 0})
        error = await _first_error(client)
        assert error["extensions"] == {"code": "NOT_FOUND"}  # type: ignore[comparison-overlap]
        await client.close()


async def test_candidates_do_not_see_interviewer_notes(
    live_server: ServerProcess, account: Account
) -> None:
    written = await add_notes(live_server, account, 3)
    candidate = await watch(live_server, account, "candidateToken")
    staff = await watch(live_server, account, "interviewerToken")
    assert await collect_seqs(staff, until_seq=written[-1]) == list(range(1, written[-1] + 1))
    message = await candidate.next_message()
    events = message["payload"]["data"]["sessionEvents"]["events"]
    assert [e["type"] for e in events] == ["session.created"]
    await candidate.close()
    await staff.close()


TERMINAL_OUTPUT = """subscription($s: ID!, $a: Int!) { terminalOutput(sessionId: $s, afterSeq: $a) {
  lastSeq events { seq type ... on CommandOutputEvent { data } ... on CommandEvent { exitCode } }
} }"""


async def test_terminal_output_carries_only_terminal_and_command_events(
    live_server: ServerProcess, account: Account
) -> None:
    await add_notes(live_server, account, 2)
    client = await GraphQLWS.connect(live_server.ws_url, account["candidateToken"])
    await client.subscribe(TERMINAL_OUTPUT, {"s": account["sessionId"], "a": 0})
    headers = {"authorization": f"Bearer {account['candidateToken']}"}
    async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=30) as http:
        await http.post("/graphql", json={"query": START, "variables": {"s": account["sessionId"]}})
        await http.post(
            "/graphql",
            json={
                "query": RUN,
                "variables": {"s": account["sessionId"], "c": "echo one; echo two", "t": 10},
            },
        )
    events: list[dict[str, object]] = []
    async with asyncio.timeout(20):
        async for message in client.messages():
            events += message["payload"]["data"]["terminalOutput"]["events"]
            if events[-1]["type"] == "command.exited":
                break
    await client.close()
    types = {str(e["type"]) for e in events}
    assert types <= {"command.started", "command.output", "command.exited"}
    assert "".join(str(e.get("data", "")) for e in events) == "one\ntwo\n"
    assert events[-1]["exitCode"] == 0
