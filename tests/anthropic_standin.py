"""A stand-in for Anthropic's Messages API on loopback (Anthropic cannot be reached from tests).

It speaks the real wire protocol the Claude Code CLI uses: ``POST /v1/messages``
(``?beta=true``) answered with the documented server-sent events
(``message_start`` with usage, ``content_block_start/delta/stop`` for text and
``tool_use`` blocks, ``message_delta`` with the output usage, ``message_stop``),
or a JSON message when the request does not ask to stream.  What the "model"
says is scripted by the test: ``script(request_body) -> list[block]``.  Every
request's headers and body are kept so tests can check what reached upstream.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]
Script = Callable[[dict[str, Any]], list[Block]]
INPUT_TOKENS, OUTPUT_TOKENS = 120, 30


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the newest user message (tool results excluded)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        # The CLI puts its own context first, in <system-reminder> blocks.
        texts = [
            b.get("text", "")
            for b in content or []
            if b.get("type") == "text" and not b.get("text", "").startswith("<system-reminder>")
        ]
        if any(b.get("type") == "tool_result" for b in content or []):
            return ""
        return "\n".join(texts)
    return ""


def has_tool_result(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return False
    content = messages[-1].get("content")
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


def tool_results(body: dict[str, Any]) -> list[str]:
    found = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            for b in content:
                if b.get("type") == "tool_result":
                    inner = b.get("content")
                    found.append(inner if isinstance(inner, str) else json.dumps(inner))
    return found


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StandIn:
    script: Script
    seen: list[Seen] = field(default_factory=list)
    pause_s: float = 0.0
    """Between events: a slow stream, for clients that hang up mid-answer."""
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                standin.seen.append(
                    Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if self.path.split("?")[0] == "/v1/messages/count_tokens":
                    self._json({"input_tokens": INPUT_TOKENS})
                    return
                if self.path.split("?")[0] != "/v1/messages":
                    self._json({"type": "error", "error": {"type": "not_found_error"}}, 404)
                    return
                blocks = standin.script(body)
                if body.get("stream"):
                    self._stream(body, blocks)
                else:
                    self._json(_message(body, blocks))

            def _json(self, obj: object, status: int = 200) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], blocks: list[Block]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for event in sse_events(body, blocks):
                    name = event["type"]
                    frame = f"event: {name}\ndata: {json.dumps(event)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                    self.wfile.flush()
                    time.sleep(standin.pause_s)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-stream is part of the tests


def _message(body: dict[str, Any], blocks: list[Block]) -> dict[str, Any]:
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    return {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-standin"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    }


def sse_events(body: dict[str, Any], blocks: list[Block]) -> list[dict[str, Any]]:
    message = _message(body, [])
    message["usage"] = {"input_tokens": INPUT_TOKENS, "output_tokens": 1}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        else:
            start = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": OUTPUT_TOKENS},
        }
    )
    events.append({"type": "message_stop"})
    return events
