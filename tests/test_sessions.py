"""Sessions: creation by ATS, Relay pagination, filters, ending, expiry, the recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from models.session import InterviewSession
from tests.conftest import Account, random_email
from tests.server import ServerProcess
from tests.support import Api
from tests.wsclient import GraphQLWS

CREATE = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) {
    session { id status externalId language } candidateToken inviteUrl
  }
}"""
PAGE = """query($first: Int!, $after: String, $email: String, $status: SessionStatus,
           $ext: String) {
  sessions(first: $first, after: $after, candidateEmail: $email, status: $status,
           externalId: $ext) {
    totalCount edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def _create(api: Api, account: Account, **extra: str) -> dict[str, str]:
    data = {
        "questionId": account["questionId"],
        "candidateName": "Lin",
        "candidateEmail": random_email(),
        **extra,
    }
    return (await api(CREATE, {"input": data}, token=account["atsToken"])).ok()["createSession"]


async def test_ats_creates_a_session_with_a_working_candidate_token(
    api: Api, account: Account
) -> None:
    created = await _create(api, account, externalId="greenhouse-123", language="GO")
    session = created["session"]
    assert session["status"] == "SCHEDULED"
    assert session["language"] == "GO"
    assert created["inviteUrl"].endswith(created["candidateToken"])
    viewer = await api("{ viewer { session { id externalId } } }", token=created["candidateToken"])
    assert viewer.ok()["viewer"]["session"] == {"id": session["id"], "externalId": "greenhouse-123"}
    duplicate = await api(
        CREATE,
        {
            "input": {
                "questionId": account["questionId"],
                "candidateName": "Lin",
                "candidateEmail": random_email(),
                "externalId": "greenhouse-123",
            }
        },
        token=account["atsToken"],
    )
    assert duplicate.codes == ["CONFLICT"]


async def test_relay_pagination_walks_every_session_once(api: Api, account: Account) -> None:
    made = [account["sessionId"]] + [
        (await _create(api, account))["session"]["id"] for _ in range(4)
    ]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = (
            await api(PAGE, {"first": 2, "after": after}, token=account["interviewerToken"])
        ).ok()["sessions"]
        pages += 1
        assert page["totalCount"] == 5
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += [e["node"]["id"] for e in page["edges"]]
        if page["edges"]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
            assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == list(reversed(made))  # newest first, each exactly once
    last = (await api(PAGE, {"first": 2, "after": after}, token=account["interviewerToken"])).ok()[
        "sessions"
    ]
    assert len(last["edges"]) == 1
    assert last["pageInfo"]["hasNextPage"] is False
    end = (
        await api(
            PAGE,
            {"first": 2, "after": last["edges"][0]["cursor"]},
            token=account["interviewerToken"],
        )
    ).ok()["sessions"]
    assert end["edges"] == []
    assert end["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }


async def test_filters(api: Api, account: Account) -> None:
    created = await _create(api, account, externalId="lever-9")
    email = (
        await api(
            "query($id: ID!) { session(id: $id) { candidateEmail } }",
            {"id": created["session"]["id"]},
            token=account["atsToken"],
        )
    ).ok()["session"]["candidateEmail"]
    for variables in ({"email": email.upper()}, {"ext": "lever-9"}):
        page = (await api(PAGE, {"first": 10, **variables}, token=account["atsToken"])).ok()[
            "sessions"
        ]
        assert [e["node"]["id"] for e in page["edges"]] == [created["session"]["id"]]
    await api(
        "mutation($id: ID!) { endSession(sessionId: $id, cancel: true) { id } }",
        {"id": created["session"]["id"]},
        token=account["atsToken"],
    )
    cancelled = (
        await api(PAGE, {"first": 10, "status": "CANCELLED"}, token=account["atsToken"])
    ).ok()["sessions"]
    assert [e["node"]["id"] for e in cancelled["edges"]] == [created["session"]["id"]]


END = "mutation($id: ID!) { endSession(sessionId: $id) { id status endedAt } }"
RECORDING = """query($id: ID!, $after: Int!, $first: Int!) {
  recording(sessionId: $id, afterSeq: $after, first: $first) {
    lastSeq hasMore events { seq type ... on SessionLifecycleEvent { status } }
  }
}"""


async def test_filters_that_are_no_text_are_bad_input(api: Api, account: Account) -> None:
    """A NUL in a filter: BAD_USER_INPUT, not an internal error
    (PostgreSQL cannot compare them; found by the fuzzer)."""
    token = account["interviewerToken"]
    for variables in ({"email": "a\x00b@example.com"}, {"ext": "x\x00"}):
        result = await api(PAGE, {"first": 2, **variables}, token=token)
        assert result.codes == ["BAD_USER_INPUT"], result.errors


async def test_end_session_is_recorded_once(api: Api, account: Account) -> None:
    ended = (await api(END, {"id": account["sessionId"]}, token=account["candidateToken"])).ok()
    assert ended["endSession"]["status"] == "COMPLETED"
    assert ended["endSession"]["endedAt"]
    again = await api(END, {"id": account["sessionId"]}, token=account["interviewerToken"])
    assert again.codes == ["CONFLICT"]
    recording = (
        await api(
            RECORDING,
            {"id": account["sessionId"], "after": 0, "first": 10},
            token=account["interviewerToken"],
        )
    ).ok()["recording"]
    assert recording["events"] == [
        {"seq": 1, "type": "session.created", "status": "SCHEDULED"},
        {"seq": 2, "type": "session.ended", "status": "COMPLETED"},
    ]
    assert recording["lastSeq"] == 2
    assert recording["hasMore"] is False
    page = (
        await api(
            RECORDING,
            {"id": account["sessionId"], "after": 0, "first": 1},
            token=account["interviewerToken"],
        )
    ).ok()["recording"]
    assert [e["seq"] for e in page["events"]] == [1]
    assert page["hasMore"] is True


async def test_session_past_its_expiry_is_expired(api: Api, account: Account) -> None:
    await InterviewSession.filter(id=account["sessionId"]).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    session = (
        await api(
            "query($id: ID!) { session(id: $id) { status endedAt } }",
            {"id": account["sessionId"]},
            token=account["atsToken"],
        )
    ).ok()["session"]
    assert session["status"] == "EXPIRED"
    result = await api(END, {"id": account["sessionId"]}, token=account["atsToken"])
    assert result.codes == ["CONFLICT"]


CANDIDATE_CHANGES = {
    "writeFile": 'mutation($s: ID!) { writeFile(sessionId: $s, path: "a", content: "x") { path } }',
    "deleteFile": 'mutation($s: ID!) { deleteFile(sessionId: $s, path: "solution.py") { path } }',
    "runCommand": 'mutation($s: ID!) { runCommand(sessionId: $s, command: "true") { exitCode } }',
    "startSandbox": "mutation($s: ID!) { startSandbox(sessionId: $s) { id } }",
    "terminateSandbox": "mutation($s: ID!) { terminateSandbox(sessionId: $s) { id } }",
    "openTerminal": "mutation($s: ID!) { openTerminal(sessionId: $s) { id } }",
    "terminalInput": 'mutation($t: ID!) { terminalInput(terminalId: $t, data: "ls\\n") { id } }',
    "resizeTerminal": "mutation($t: ID!) { resizeTerminal(terminalId: $t, cols: 9, rows: 9) {id} }",
    "closeTerminal": "mutation($t: ID!) { closeTerminal(terminalId: $t) { id } }",
    "runTests": "mutation($s: ID!) { runTests(sessionId: $s) { id } }",
    "askClaude": 'mutation($s: ID!) { askClaude(sessionId: $s, prompt: "help") { id } }',
    "endSession": "mutation($s: ID!) { endSession(sessionId: $s) { id } }",
}
CANDIDATE_READS = """query($s: ID!) {
  viewer { kind session { id status } }
  session(id: $s) { id status }
  files(sessionId: $s) { path }
  recording(sessionId: $s) { lastSeq }
}"""


async def test_after_end_session_the_candidate_reads_but_changes_nothing(
    api: Api, account: Account
) -> None:
    """Attack: endSession left the candidate's token fully working for days. Now every
    change (files, commands, sandbox, terminals -- one opened before the end included
    --, test runs, Claude) is CONFLICT with a clear message, the sandbox is stopped
    (its final workspace recorded), and reads stay until the token expires. Real
    sandbox, real database."""
    sid, candidate = account["sessionId"], account["candidateToken"]
    started = await api(
        "mutation($s: ID!) { startSandbox(sessionId: $s) { state } }", {"s": sid}, token=candidate
    )
    assert started.ok()["startSandbox"]["state"] == "RUNNING"
    opened = await api(CANDIDATE_CHANGES["openTerminal"], {"s": sid}, token=candidate)
    terminal = opened.ok()["openTerminal"]["id"]
    await api(END, {"id": sid}, token=account["interviewerToken"])

    for name, mutation in CANDIDATE_CHANGES.items():
        variables = {"t": terminal} if "$t" in mutation else {"s": sid}
        result = await api(mutation, variables, token=candidate)
        assert result.codes == ["CONFLICT"], (name, result.body)
        assert "session has ended" in result.errors[0]["message"], name
    reads = (await api(CANDIDATE_READS, {"s": sid}, token=candidate)).ok()
    assert reads["viewer"]["session"] == {"id": sid, "status": "COMPLETED"}
    assert reads["session"]["status"] == "COMPLETED"
    assert reads["recording"]["lastSeq"] > 0
    note = await api(
        'mutation($s: ID!) { addNote(sessionId: $s, text: "wrap-up") { text } }',
        {"s": sid},
        token=account["interviewerToken"],
    )
    assert note.ok()["addNote"]["text"] == "wrap-up"
    # Nor through a process left running: the sandbox stopped with the session.
    sandbox = await api(
        "query($s: ID!) { session(id: $s) { sandbox { state endReason } } }",
        {"s": sid},
        token=account["interviewerToken"],
    )
    assert sandbox.ok()["session"]["sandbox"] == {
        "state": "TERMINATED",
        "endReason": "the session ended",
    }


async def test_a_candidate_mutation_over_websocket_is_refused_after_the_end(
    live_server: ServerProcess, account: Account
) -> None:
    """The same rule over graphql-transport-ws (a mutation is a `subscribe` message there)."""
    sid = account["sessionId"]
    client = await GraphQLWS.connect(live_server.ws_url, account["candidateToken"])
    try:
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            await http.post(
                "/graphql",
                json={"query": END, "variables": {"id": sid}},
                headers={"authorization": f"Bearer {account['interviewerToken']}"},
            )
        await client.subscribe(CANDIDATE_CHANGES["writeFile"], {"s": sid})
        message = await client.next_message()
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "CONFLICT", message
    finally:
        await client.close()
