"""Accounts are walls: every query and mutation, tried with another account's tokens.

The battery covers every root field: a test below fails when the schema gains
a Query or Mutation field that has no case here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from models.claude import ClaudeRun, ClaudeRunStatus
from models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from tests.conftest import Account, random_email
from tests.support import Api

# field -> (operation, variables from the victim account, "object" | "list")
BATTERY: dict[str, tuple[str, Callable[[Account], dict[str, Any]], str]] = {
    "viewer": ("{ viewer { account { id } session { id } } }", lambda a: {}, "list"),
    "session": (
        "query($id: ID!) { session(id: $id) { id candidateEmail } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "sessions": ("{ sessions(first: 100) { edges { node { id } } } }", lambda a: {}, "list"),
    "question": (
        "query($id: ID!) { question(id: $id) { id prompt } }",
        lambda a: {"id": a["questionId"]},
        "object",
    ),
    "questions": (
        "{ questions(first: 100, includeArchived: true) { edges { node { id } } } }",
        lambda a: {},
        "list",
    ),
    "updateQuestion": (
        """mutation($id: ID!) { updateQuestion(id: $id, input: {title: "t", prompt: "p",
            languages: [{language: PYTHON, entrypoint: "f", solutionPath: "s.py"}],
            testCases: [{name: "c", input: [], expected: 1}]}) { id } }""",
        lambda a: {"id": a["questionId"]},
        "object",
    ),
    "archiveQuestion": (
        "mutation($id: ID!) { archiveQuestion(id: $id) { id } }",
        lambda a: {"id": a["questionId"]},
        "object",
    ),
    "unarchiveQuestion": (
        "mutation($id: ID!) { unarchiveQuestion(id: $id) { id } }",
        lambda a: {"id": a["questionId"]},
        "object",
    ),
    "recording": (
        "query($id: ID!) { recording(sessionId: $id) { events { seq } } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "scorecards": (
        "query($id: ID!) { scorecards(sessionId: $id) { id } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "submitScorecard": (
        """mutation($id: ID!) { submitScorecard(sessionId: $id,
            input: {recommendation: YES, ratings: [{criterion: "c", score: 2}]}) { id } }""",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "languages": ("{ languages { id } }", lambda a: {}, "list"),
    "revokeReportLinks": (
        "mutation($id: ID!) { revokeReportLinks(sessionId: $id) }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "webhookEndpoints": ("{ webhookEndpoints { id url } }", lambda a: {}, "list"),
    # The caller's own account's numbers only (tests/test_usage.py checks them).
    "usage": (
        """query($f: DateTime!, $t: DateTime!) { usage(from: $f, to: $t) {
            sessionsCreated sandboxes { seconds } agentRuns { runs } } }""",
        lambda a: {"f": "2000-01-01T00:00:00Z", "t": "2000-12-31T00:00:00Z"},
        "list",
    ),
    "webhookDeliveries": (
        "query($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id } } } }",
        lambda a: {"id": a["endpointId"]},
        "object",
    ),
    "createWebhookEndpoint": (
        """mutation { createWebhookEndpoint(input: {url: "https://hooks.example.com/x",
            events: ["session.created"]}) { endpoint { id } } }""",
        lambda a: {},
        "list",
    ),
    "updateWebhookEndpoint": (
        """mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {description: "x"}) {
            id } }""",
        lambda a: {"id": a["endpointId"]},
        "object",
    ),
    "deleteWebhookEndpoint": (
        "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }",
        lambda a: {"id": a["endpointId"]},
        "object",
    ),
    "sendTestWebhook": (
        "mutation($id: ID!) { sendTestWebhook(endpointId: $id) { id } }",
        lambda a: {"id": a["endpointId"]},
        "object",
    ),
    "redeliverWebhook": (
        "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }",
        lambda a: {"id": a["deliveryId"]},
        "object",
    ),
    "apiTokens": ("{ apiTokens { id } }", lambda a: {}, "list"),
    "createQuestion": (
        """mutation($q: ID!) { createQuestion(input: {title: "t", prompt: "p",
            languages: [{language: PYTHON, entrypoint: "f", solutionPath: "s.py"}],
            testCases: [{name: "c", input: [$q], expected: 1}]}) { id } }""",
        lambda a: {"q": a["questionId"]},
        "create",
    ),
    "createSession": (
        """mutation($q: ID!) { createSession(input: {questionId: $q, candidateName: "x",
            candidateEmail: "x@example.com"}) { session { id } candidateToken } }""",
        lambda a: {"q": a["questionId"]},
        "object",
    ),
    "endSession": (
        "mutation($id: ID!) { endSession(sessionId: $id) { id status } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "createApiToken": (
        'mutation { createApiToken(input: {name: "n", scope: ATS}) { apiToken { id } } }',
        lambda a: {},
        "create",
    ),
    "files": (
        "query($id: ID!) { files(sessionId: $id) { path } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "file": (
        'query($id: ID!) { file(sessionId: $id, path: "README.md") { content } }',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "snapshot": (
        "query($id: ID!) { snapshot(sessionId: $id, atSeq: 1) { path sha256 } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "blob": (
        f'query($id: ID!) {{ blob(sessionId: $id, sha256: "{"0" * 64}") {{ content }} }}',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "startSandbox": (
        "mutation($id: ID!) { startSandbox(sessionId: $id) { id } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "terminateSandbox": (
        "mutation($id: ID!) { terminateSandbox(sessionId: $id) { id } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "writeFile": (
        'mutation($id: ID!) { writeFile(sessionId: $id, path: "x.py", content: "1") { path } }',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "deleteFile": (
        'mutation($id: ID!) { deleteFile(sessionId: $id, path: "README.md") { path } }',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "runCommand": (
        'mutation($id: ID!) { runCommand(sessionId: $id, command: "id") { stdout } }',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "addNote": (
        'mutation($id: ID!) { addNote(sessionId: $id, text: "hi") { seq text } }',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "openTerminal": (
        "mutation($id: ID!) { openTerminal(sessionId: $id) { id } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "terminalInput": (
        'mutation($id: ID!) { terminalInput(terminalId: $id, data: "id\\n") { id } }',
        lambda a: {"id": a["terminalId"]},
        "object",
    ),
    "resizeTerminal": (
        "mutation($id: ID!) { resizeTerminal(terminalId: $id, cols: 10, rows: 10) { id } }",
        lambda a: {"id": a["terminalId"]},
        "object",
    ),
    "closeTerminal": (
        "mutation($id: ID!) { closeTerminal(terminalId: $id) { id } }",
        lambda a: {"id": a["terminalId"]},
        "object",
    ),
    "runTests": (
        "mutation($id: ID!) { runTests(sessionId: $id) { id } }",
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "testRun": (
        "query($id: ID!) { testRun(id: $id) { id results { name } } }",
        lambda a: {"id": a["runId"]},
        "object",
    ),
    "askClaude": (
        'mutation($id: ID!) { askClaude(sessionId: $id, prompt: "hi") { id } }',
        lambda a: {"id": a["sessionId"]},
        "object",
    ),
    "claudeRun": (
        "query($id: ID!) { claudeRun(id: $id) { id prompt } }",
        lambda a: {"id": a["claudeRunId"]},
        "object",
    ),
    "cancelClaude": (
        "mutation($id: ID!) { cancelClaude(runId: $id) { id } }",
        lambda a: {"id": a["claudeRunId"]},
        "object",
    ),
    "revokeApiToken": (
        "mutation($id: ID!) { revokeApiToken(id: $id) { id } }",
        lambda a: {"id": a["tokenId"]},
        "object",
    ),
}


START_SANDBOX = "mutation($id: ID!) { startSandbox(sessionId: $id) { id } }"
CLAUDE_FIELDS = {"claudeRun", "cancelClaude"}
TERMINAL_FIELDS = {"terminalInput", "resizeTerminal", "closeTerminal", "testRun"}
WEBHOOK_FIELDS = {
    "webhookEndpoints",
    "webhookDeliveries",
    "updateWebhookEndpoint",
    "deleteWebhookEndpoint",
    "sendTestWebhook",
    "redeliverWebhook",
}


async def _victim(
    api: Api,
    make_account: Callable[[], Awaitable[Account]],
    *,
    with_terminal: bool = False,
    with_claude_run: bool = False,
    with_webhook: bool = False,
) -> Account:
    victim = await make_account()
    tokens = (await api("{ apiTokens { id scope } }", token=victim["interviewerToken"])).ok()
    victim["tokenId"] = next(t["id"] for t in tokens["apiTokens"] if t["scope"] == "ATS")
    if with_terminal:
        staff = victim["interviewerToken"]
        await api(START_SANDBOX, {"id": victim["sessionId"]}, token=staff)
        opened = await api(BATTERY["openTerminal"][0], {"id": victim["sessionId"]}, token=staff)
        victim["terminalId"] = opened.ok()["openTerminal"]["id"]
        ran = await api(BATTERY["runTests"][0], {"id": victim["sessionId"]}, token=staff)
        victim["runId"] = ran.ok()["runTests"]["id"]
    if with_claude_run:
        # This app has no Anthropic key, so the victim's run is made directly.
        run = await ClaudeRun.create(
            session_id=victim["sessionId"],
            prompt="secret plan",
            owner="test",
            status=ClaudeRunStatus.RUNNING,
        )
        victim["claudeRunId"] = str(run.id)
    if with_webhook:
        # Made directly: the victim's endpoint need not be reachable, only owned.
        endpoint = await WebhookEndpoint.create(
            account_id=victim["accountId"],
            url="https://hooks.example.com/victim",
            events=["session.created"],
            secret="whsec_dmljdGltIHNpZ25pbmcgc2VjcmV0IQ==",
        )
        delivery = await WebhookDelivery.create(
            account_id=victim["accountId"],
            endpoint=endpoint,
            webhook_id="msg_victim",
            event_type="session.created",
            body="{}",
            status=DeliveryStatus.SUCCEEDED,
            next_attempt_at=datetime.now(UTC),
        )
        victim["endpointId"], victim["deliveryId"] = str(endpoint.id), str(delivery.public_id)
    return victim


def _victim_ids(victim: Account) -> list[str]:
    keys = (
        "accountId",
        "sessionId",
        "questionId",
        "tokenId",
        "terminalId",
        "runId",
        "claudeRunId",
        "endpointId",
        "deliveryId",
    )
    return [victim[k] for k in keys if k in victim]


async def test_battery_covers_every_root_field(api: Api, account: Account) -> None:
    query = "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }"
    schema = (await api(query, token=account["interviewerToken"])).ok()["__schema"]
    fields = {f["name"] for t in ("queryType", "mutationType") for f in schema[t]["fields"]}
    assert fields == set(BATTERY)


@pytest.mark.parametrize("field", sorted(BATTERY))
@pytest.mark.parametrize("intruder", ["interviewerToken", "atsToken", "candidateToken"])
async def test_other_account_gets_nothing(
    api: Api, account_factory: Callable[[], Awaitable[Account]], field: str, intruder: str
) -> None:
    victim = await _victim(
        api,
        account_factory,
        with_terminal=field in TERMINAL_FIELDS,
        with_claude_run=field in CLAUDE_FIELDS,
        with_webhook=field in WEBHOOK_FIELDS,
    )
    attacker = await account_factory()
    operation, variables, kind = BATTERY[field]
    result = await api(operation, variables(victim), token=attacker[intruder])
    for victim_id in _victim_ids(victim):
        assert victim_id not in str(result.body)
    if kind == "object":
        assert result.codes, result.body
        assert set(result.codes) <= {"NOT_FOUND", "FORBIDDEN"}, result.body
        assert result.data is None or all(v is None for v in result.data.values())
    # The victim's state is untouched whatever the intruder tried.
    check = await api(
        "query($id: ID!) { session(id: $id) { status } }",
        {"id": victim["sessionId"]},
        token=victim["interviewerToken"],
    )
    expected = "ACTIVE" if "terminalId" in victim else "SCHEDULED"
    assert check.ok()["session"]["status"] == expected


async def test_candidate_token_opens_only_its_session(api: Api, account: Account) -> None:
    staff = account["interviewerToken"]
    other = (
        await api(
            BATTERY["createSession"][0].replace('"x@example.com"', f'"{random_email()}"'),
            {"q": account["questionId"]},
            token=staff,
        )
    ).ok()["createSession"]
    candidate = account["candidateToken"]
    mine = await api(
        "query($id: ID!) { session(id: $id) { id } }", {"id": account["sessionId"]}, token=candidate
    )
    assert mine.ok()["session"]["id"] == account["sessionId"]
    for field in (
        "session",
        "recording",
        "endSession",
        "files",
        "file",
        "snapshot",
        "blob",
        "startSandbox",
        "terminateSandbox",
        "writeFile",
        "deleteFile",
        "runCommand",
        "runTests",
        "openTerminal",
    ):
        operation = BATTERY[field][0]
        result = await api(operation, {"id": other["session"]["id"]}, token=candidate)
        assert result.codes == ["NOT_FOUND"], (field, result.body)
    for field in ("sessions", "questions", "apiTokens", "createApiToken"):
        result = await api(BATTERY[field][0], token=candidate)
        assert result.codes == ["FORBIDDEN"], (field, result.body)
    for field in ("createQuestion", "createSession"):
        result = await api(BATTERY[field][0], {"q": account["questionId"]}, token=candidate)
        assert result.codes == ["FORBIDDEN"], (field, result.body)
    note = await api(BATTERY["addNote"][0], {"id": account["sessionId"]}, token=candidate)
    assert note.codes == ["FORBIDDEN"]
    cancel = await api(
        "mutation($id: ID!) { endSession(sessionId: $id, cancel: true) { id } }",
        {"id": account["sessionId"]},
        token=candidate,
    )
    assert cancel.codes == ["FORBIDDEN"]


QUESTION_CASES = "{ id hiddenTestCount totalTestCount testCases { name hidden input expected } }"


async def test_hidden_tests_are_invisible_to_candidates(api: Api, account: Account) -> None:
    candidate = account["candidateToken"]
    via_session = (
        await api(
            "query($id: ID!) { session(id: $id) { question " + QUESTION_CASES + " } }",
            {"id": account["sessionId"]},
            token=candidate,
        )
    ).ok()["session"]["question"]
    via_question = (
        await api(
            "query($id: ID!) { question(id: $id) " + QUESTION_CASES + " }",
            {"id": account["questionId"]},
            token=candidate,
        )
    ).ok()["question"]
    staff_view = (
        await api(
            "query($id: ID!) { question(id: $id) " + QUESTION_CASES + " }",
            {"id": account["questionId"]},
            token=account["atsToken"],
        )
    ).ok()["question"]
    hidden = [c for c in staff_view["testCases"] if c["hidden"]]
    assert len(hidden) == 2
    for seen in (via_session, via_question):
        assert seen["hiddenTestCount"] == 2
        assert all(not c["hidden"] for c in seen["testCases"])
        assert len(seen["testCases"]) == staff_view["totalTestCount"] - 2
        for case in hidden:
            assert case["name"] not in str(seen)
            assert str(case["input"]) not in str(seen)
