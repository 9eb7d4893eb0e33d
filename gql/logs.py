"""Logs: readable text by default, one JSON object per line with ``LOG_FORMAT=json``.

Configured by the CLI from Settings (``configure_logging``), never at import time.
Every line carries what is known of the request it was written in -- its request id,
the caller's account, the session, the GraphQL operation -- from context variables set
by ``RequestIds`` (per HTTP request or WebSocket connection) and by ``gql.observability``
(per GraphQL operation). Tasks started inside a request inherit them (asyncio copies
the context), so a resolver's ``logger.warning`` is tied to its request without
passing anything around.

The candidate is hostile: whatever they can put in a log line (an operation name, a
variable, a path) must not forge another line or flood the log. JSON encoding escapes
newlines and quotes; each field is also capped (``_cap``). The text format escapes
control characters in what it adds and caps the message too. Tokens never reach a
line: the access lines of uvicorn lose query strings and the token path of report
links (``AccessRedaction``), and nothing here logs headers or variables.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected

REQUEST_ID: ContextVar[str | None] = ContextVar("interviewlm_request_id", default=None)
ACCOUNT_ID: ContextVar[str | None] = ContextVar("interviewlm_account_id", default=None)
SESSION_ID: ContextVar[str | None] = ContextVar("interviewlm_session_id", default=None)
OPERATION: ContextVar[str | None] = ContextVar("interviewlm_operation", default=None)

_CONTEXT = (
    ("request_id", REQUEST_ID),
    ("account_id", ACCOUNT_ID),
    ("session_id", SESSION_ID),
    ("operation", OPERATION),
)
# Fields a caller may pass with ``extra=`` (they win over the context's).
_EXTRA = ("request_id", "account_id", "session_id", "operation", "kind", "code", "duration_ms")
MESSAGE_CAP = 4000
FIELD_CAP = 200
EXCEPTION_CAP = 16_000
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "...[truncated]"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, var in _CONTEXT:
        value = var.get()
        if value is not None:
            fields[name] = value
    for name in _EXTRA:
        value = record.__dict__.get(name)
        if value is not None:
            fields[name] = value
    return {
        k: _cap(v, FIELD_CAP) if isinstance(v, str) else v
        for k, v in fields.items()
        if isinstance(v, str | int | float | bool)
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then what is known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _cap(record.getMessage(), MESSAGE_CAP),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = _cap(self.formatException(record.exc_info), EXCEPTION_CAP)
        elif record.exc_text:
            entry["exception"] = _cap(record.exc_text, EXCEPTION_CAP)
        # ensure_ascii: U+2028 and friends stay escaped too (some viewers split on them).
        return json.dumps(entry, ensure_ascii=True, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value...``; tracebacks follow on their own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        line = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", _cap(line, MESSAGE_CAP))
        extras = " ".join(
            f"{k}={_CONTROL.sub('?', str(v)).replace(' ', '_')}" for k, v in _fields(record).items()
        )
        return f"{line} {extras}" if extras else line


def _redacted(path: str) -> str:
    path = path.split("?", 1)[0]
    return "/report/[redacted]" if path.startswith("/report/") else path


class AccessRedaction(logging.Filter):
    """uvicorn's access lines: no query string (GraphQL GET carries variables; a client
    may put its token there), no report link token (``/report/<token>`` is the credential
    itself). HTTP lines come on ``uvicorn.access`` with the path third; WebSocket lines
    on ``uvicorn.error`` (``'%s - "WebSocket %s" ...'``) with the path second."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple):
            return True
        if record.name == "uvicorn.access" and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _redacted(args[2]), *args[3:])
        elif '"WebSocket %s"' in str(record.msg) and len(args) >= 2 and isinstance(args[1], str):
            record.args = (args[0], _redacted(args[1]), *args[2:])
        return True


class QuietDisconnects(logging.Filter):
    """Strawberry logs a watcher that went away mid-send as an ERROR with a traceback
    ("Exception in worker task"): any client could fill the logs by disconnecting. It is
    a client leaving, not a fault: kept at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, WebSocketDisconnected | WebSocketDisconnect):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Root handler on stderr in the chosen format; uvicorn's loggers propagate to it
    (``interviewlm serve`` passes ``log_config=None``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, kind in (
        ("uvicorn.access", AccessRedaction),
        ("uvicorn.error", AccessRedaction),
        ("strawberry.ws.task", QuietDisconnects),
    ):
        named = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in named.filters):
            named.addFilter(kind())


def request_id_of(header: str | None) -> str:
    """A caller's ``X-Request-ID`` when it is short and plain, else a fresh one."""
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: a request id for every HTTP request and WebSocket connection,
    returned in ``X-Request-ID`` and set in ``REQUEST_ID`` while it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or ()).get(b"x-request-id")
        request_id = request_id_of(raw.decode("latin-1") if raw is not None else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] in {"http.response.start", "websocket.accept"}:
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
