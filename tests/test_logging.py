"""Logs: JSON lines with the request's id, account, session and operation; nothing a
candidate sends can forge a line; no token reaches a log, in process or in a real server."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from strawberry.http.exceptions import WebSocketDisconnected
from websockets.typing import Subprotocol

from gql.logs import JsonFormatter, QuietDisconnects, TextFormatter
from gql.settings import Settings, SettingsError
from tests.conftest import Account
from tests.server import start_server

SESSION = "query($sessionId: ID!) { session(id: $sessionId) { id } }"
RECORDING = "query($s: ID!) { recording(sessionId: SESSION) { lastSeq } }"
FORGED = '"}\n{"time":"x","level":"CRITICAL","logger":"interviewlm","message":"forged"}\n'


Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """What the test app logs while the test runs, each line parsed as one JSON object."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root, access = logging.getLogger(), logging.getLogger("interviewlm.access")
    level = access.level
    access.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        access.setLevel(level)


def access_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["logger"] == "interviewlm.access"]


async def test_an_access_line_per_operation_with_request_account_and_session(
    client: httpx.AsyncClient, account: Account, lines: Lines
) -> None:
    headers = {"authorization": f"Bearer {account['interviewerToken']}", "x-request-id": "req-42"}
    response = await client.post(
        "/graphql",
        json={"query": SESSION, "variables": {"sessionId": account["sessionId"]}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-42"
    (entry,) = [e for e in access_lines(lines()) if e.get("request_id") == "req-42"]
    assert entry["level"] == "INFO"
    assert {k: entry[k] for k in ("operation", "kind", "code", "account_id", "session_id")} == {
        "operation": "session",
        "kind": "query",
        "code": "OK",
        "account_id": account["accountId"],
        "session_id": account["sessionId"],
    }
    assert isinstance(entry["duration_ms"], float)
    assert entry["time"].endswith("+00:00")


async def test_the_session_comes_from_a_root_field_argument(
    client: httpx.AsyncClient, account: Account, lines: Lines
) -> None:
    """``recording(sessionId: $s)``: the argument, through its variable or as a literal."""
    headers = {"authorization": f"Bearer {account['interviewerToken']}"}
    session = account["sessionId"]
    for body in (
        {"query": RECORDING.replace("SESSION", "$s"), "variables": {"s": session}},
        {"query": RECORDING.replace("SESSION", json.dumps(session)).replace("($s: ID!)", "")},
        {"query": RECORDING.replace("SESSION", json.dumps(FORGED)).replace("($s: ID!)", "")},
    ):
        response = await client.post("/graphql", json=body, headers=headers)
        (entry,) = [
            e for e in access_lines(lines()) if e["request_id"] == response.headers["x-request-id"]
        ]
        assert entry["operation"] == "recording"
        if "forged" in body["query"]:
            assert "session_id" not in entry
            assert entry["code"] == "BAD_USER_INPUT"
        else:
            assert (entry["session_id"], entry["code"]) == (session, "OK"), entry


async def test_an_error_is_logged_with_its_code_and_a_fresh_request_id(
    client: httpx.AsyncClient, account: Account, lines: Lines
) -> None:
    # Not a sane id (too long): the server makes its own.
    response = await client.post(
        "/graphql",
        json={"query": SESSION, "variables": {"sessionId": "not-a-uuid"}},
        headers={"authorization": f"Bearer {account['candidateToken']}", "x-request-id": "x" * 65},
    )
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert int(request_id, 16) >= 0
    (entry,) = [e for e in access_lines(lines()) if e.get("request_id") == request_id]
    assert (entry["operation"], entry["code"]) == ("session", "BAD_USER_INPUT")
    # A candidate's session is known from the token even when the variable is not an id.
    assert entry["session_id"] == account["sessionId"]
    assert "not-a-uuid" not in json.dumps(lines())


async def test_a_hostile_operation_name_cannot_forge_a_line(
    client: httpx.AsyncClient, account: Account, lines: Lines
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { viewer { kind } }", "operationName": FORGED},
        headers={
            "authorization": f"Bearer {account['candidateToken']}",
            "accept": "application/graphql-response+json",
        },
    )
    assert response.status_code == 400
    entries = lines()  # each line parsed as one JSON object
    assert not [e for e in entries if e["message"] == "forged"]
    (entry,) = [
        e for e in access_lines(entries) if e["request_id"] == response.headers["x-request-id"]
    ]
    assert (entry["operation"], entry["code"]) == ("anonymous", "BAD_USER_INPUT")
    assert "forged" not in json.dumps(entries)


def test_formatters_keep_one_record_on_one_line() -> None:
    logger = logging.getLogger("interviewlm.test_logging")
    record = logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, "got %s", (FORGED + "\u2028x" * 3000,), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "\u2028" not in line
    entry = json.loads(line)
    assert entry["message"].startswith("got " + FORGED)
    assert entry["message"].endswith("...[truncated]")
    assert len(entry["message"]) < 4100
    text = TextFormatter().format(record)
    assert "\n" not in text
    assert "\\x0a" in text


def test_log_format_setting() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


def test_a_real_server_logs_json_lines_without_tokens(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, account: Account
) -> None:
    report_token = secrets.token_urlsafe(24)
    secret_value = secrets.token_hex(12)
    env = {**server_env, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    server = start_server(env, tmp_path_factory.mktemp("json-logs"))
    try:
        with httpx.Client(base_url=server.url) as http:
            bearer = {"authorization": f"Bearer {account['interviewerToken']}"}
            ok = http.post("/graphql", json={"query": "{ viewer { kind } }"}, headers=bearer)
            assert ok.status_code == 200
            bad = {"authorization": f"Bearer {account['candidateToken']}x"}
            refused = http.post("/graphql", json={"query": "{ viewer { kind } }"}, headers=bad)
            assert refused.status_code == 401
            http.get(f"/report/{report_token}")
            params = {
                "query": "query($x: String) { languages { language } }",
                "variables": json.dumps({"x": secret_value}),
            }
            assert http.get("/graphql", params=params, headers=bearer).status_code == 200
        # A client that puts its token in the WebSocket URL: uvicorn logs the path of
        # WebSocket handshakes on uvicorn.error, not uvicorn.access.
        from websockets.sync.client import connect

        url = f"{server.ws_url}?token={account['candidateToken']}"
        with connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
            assert ws.subprotocol == "graphql-transport-ws"
    finally:
        server.stop()
    text = server.log()
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    for secret in (
        account["interviewerToken"],
        account["candidateToken"],
        report_token,
        secret_value,
    ):
        assert secret not in text
    request_id = ok.headers["x-request-id"]
    mine = [e for e in entries if e.get("request_id") == request_id]
    assert {e["logger"] for e in mine} >= {"interviewlm.access", "uvicorn.access"}
    (entry,) = [e for e in mine if e["logger"] == "interviewlm.access"]
    assert (entry["operation"], entry["code"], entry["account_id"]) == (
        "viewer",
        "OK",
        account["accountId"],
    )
    assert any("/report/[redacted]" in e["message"] for e in entries)
    assert any('"WebSocket /graphql"' in e["message"] for e in entries)


def test_a_client_leaving_mid_send_is_no_error() -> None:
    """Strawberry logs a watcher that disconnected mid-send with a traceback at ERROR:
    kept at DEBUG (any client could flood the log by leaving); other errors stay."""
    quiet = QuietDisconnects()

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "strawberry.ws.task",
            logging.ERROR,
            __file__,
            1,
            "Exception in worker task",
            None,
            (type(error), error, None),
        )

    assert not quiet.filter(record(WebSocketDisconnected()))
    kept = record(RuntimeError("a real fault"))
    assert quiet.filter(kept)
    assert kept.levelno == logging.ERROR
    assert kept.exc_info is not None
