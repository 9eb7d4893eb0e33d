"""A bounded schemathesis pass over the whole GraphQL schema: no INTERNAL, no 5xx.

schemathesis generates operations (every query and mutation, arguments of every
kind, valid and odd) from the live schema and sends them to a real server
process with an interviewer token, then with the candidate's token (the
adversary), on the real database, with a real sandbox
started for the session (so workspace operations reach the sandbox). Its own
server-error check flags every GraphQL error, so answers are judged here: a
status of 500 or more, or any error with ``extensions.code`` INTERNAL, fails.
Deterministic (derandomized) and bounded: ``EXAMPLES`` cases per operation per
token (about a minute on 2 cores).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from tests.conftest import Account
from tests.server import ServerProcess

# The candidate first: the session and its sandbox are still open for it.
EXAMPLES = {"candidateToken": 10, "interviewerToken": 25}
# Last, so that the operations before them find an open session and a sandbox.
LAST = ("Mutation.terminateSandbox", "Mutation.endSession", "Mutation.revokeApiToken")


def _codes(body: Any) -> list[str | None]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return [(e.get("extensions") or {}).get("code") for e in errors or [] if isinstance(e, dict)]


def _fuzz(server: ServerProcess, account: Account, token: str) -> list[tuple[str, int, str, str]]:
    ids = [account["sessionId"], account["questionId"]]
    # Real ids often, so that operations get past "not found" into their logic.
    schemathesis.graphql.scalar(
        "ID",
        st.one_of(st.sampled_from(ids), st.uuids().map(str), st.text(max_size=40)).map(
            nodes.String
        ),
    )
    headers = {"Authorization": f"Bearer {account[token]}"}
    schema = schemathesis.graphql.from_url(f"{server.url}/graphql", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: LAST.index(op.label) + 1 if op.label in LAST else 0)
    failures: list[tuple[str, int, str, str]] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES[token],
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(headers=headers, timeout=60)
            try:
                body = json.loads(response.content)
            except ValueError:
                body = None
            if response.status_code >= 500 or "INTERNAL" in _codes(body):
                failures.append(
                    (case.operation.label, response.status_code, str(case.body), response.text)
                )

        check()
    return failures


async def test_schemathesis_finds_no_internal_errors(
    live_server: ServerProcess, account: Account
) -> None:
    headers = {"authorization": f"Bearer {account['candidateToken']}"}
    async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=60) as http:
        # On SQLite this server and the test's own app are two processes on one file: a
        # write of the app's (a file watcher of an earlier test's sandbox) can make the
        # server's start fail with "database is locked" (production SQLite is one process).
        for _attempt in range(3):
            started = (
                await http.post(
                    "/graphql",
                    json={
                        "query": "mutation($s: ID!) { startSandbox(sessionId: $s) { state } }",
                        "variables": {"s": account["sessionId"]},
                    },
                )
            ).json()
            if (started.get("data") or {}).get("startSandbox"):
                break
        assert started["data"]["startSandbox"]["state"] == "RUNNING", started
    failures = []
    for token in EXAMPLES:
        failures += await asyncio.to_thread(_fuzz, live_server, account, token)
    assert not failures, "\n\n".join(
        f"{label}: HTTP {status}\n{query}\n-> {body[:500]}"
        for label, status, query, body in failures
    )
