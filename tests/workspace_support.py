"""Shared operations for the sandbox/workspace API tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import Account
from tests.support import Api

START = "mutation($s: ID!) { startSandbox(sessionId: $s) { id state backend } }"
TERMINATE = "mutation($s: ID!) { terminateSandbox(sessionId: $s) { id state endReason } }"
RUN = """mutation($s: ID!, $c: String!, $t: Int) {
  runCommand(sessionId: $s, command: $c, timeoutSeconds: $t) {
    commandId exitCode stdout stderr timedOut durationMs truncated
  }
}"""
WRITE = """mutation($s: ID!, $p: String!, $c: String!, $e: ContentEncoding! = UTF8) {
  writeFile(sessionId: $s, path: $p, content: $c, encoding: $e) { path size sha256 }
}"""
DELETE = "mutation($s: ID!, $p: String!) { deleteFile(sessionId: $s, path: $p) { path } }"
FILE = """query($s: ID!, $p: String!) {
  file(sessionId: $s, path: $p) { path size sha256 encoding content fromRecording }
}"""
FILES = 'query($s: ID!, $p: String! = "") { files(sessionId: $s, path: $p) { path kind size } }'
EVENT_FIELDS = """
  seq type at __typename
  ... on SessionLifecycleEvent { status }
  ... on SandboxEvent { sandboxId backend reason restoredFiles }
  ... on FileEvent { path size sha256 source }
  ... on CommandEvent {
    commandId command exitCode signal timedOut durationMs truncated error
  }
  ... on CommandOutputEvent { commandId stream data }
  ... on TerminalOutputEvent { terminalId data }
  ... on TerminalEvent { terminalId input cols rows exitCode }
  ... on NoteEvent { text author }
  ... on CommandOutputTruncatedEvent { commandId limitBytes }
  ... on TerminalOutputTruncatedEvent { terminalId limitBytes }
  ... on StorageBudgetEvent { limitBytes usedBytes path }
  ... on TestRunEvent {
    runId runStatus language total passedCount failedCount durationMs compileError error files
  }
  ... on TestCaseEvent { runId index hidden passed name verdict durationMs error }
  ... on GenericSessionEvent { payload }
"""
EVENTS = (
    "query($s: ID!, $a: Int! = 0) { recording(sessionId: $s, afterSeq: $a, first: 1000) {"
    " events {" + EVENT_FIELDS + "} } }"
)
_META = {"seq", "type", "at", "__typename"}


def flatten(event: dict[str, Any]) -> dict[str, Any]:
    """An event as {seq, type, payload}, the typed fields gathered into ``payload``."""
    if event["__typename"] == "GenericSessionEvent":
        payload = event["payload"]
    else:
        payload = {k: v for k, v in event.items() if k not in _META and v is not None}
    return {"seq": event["seq"], "type": event["type"], "payload": payload}


async def start(api: Api, account: Account, token_key: str = "candidateToken") -> dict[str, Any]:
    result = await api(START, {"s": account["sessionId"]}, token=account[token_key])
    return result.ok()["startSandbox"]  # type: ignore[no-any-return]


async def run(
    api: Api, account: Account, command: str, timeout: int | None = None
) -> dict[str, Any]:
    result = await api(
        RUN,
        {"s": account["sessionId"], "c": command, "t": timeout},
        token=account["candidateToken"],
    )
    return result.ok()["runCommand"]  # type: ignore[no-any-return]


async def events(api: Api, account: Account, after: int = 0) -> list[dict[str, Any]]:
    result = await api(
        EVENTS, {"s": account["sessionId"], "a": after}, token=account["interviewerToken"]
    )
    return [flatten(e) for e in result.ok()["recording"]["events"]]
