"""A webhook receiver on loopback: a stand-in for an ATS's endpoint (real HTTP, real
uvicorn), recording every request and answering as each test plans.

``python -m tests.webhook_receiver PORT`` serves one in its own process (bench/webhooks.py),
answering 200 to everything; ``GET /_received`` lists what arrived (id, type, arrival).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.server import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    delay_s: float = 0.0
    """Answer only after this long (longer than the sender's timeout: a timeout)."""
    location: str | None = None
    hold: asyncio.Event | None = None
    """Answer only once this is set (a request kept in flight)."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """``time.time()`` on arrival."""

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    port: int
    replies: list[Reply] = field(default_factory=list)
    """Planned answers, in order; once used up, every request gets ``Reply()``."""
    received: list[Received] = field(default_factory=list)
    answered: list[tuple[Received, int]] = field(default_factory=list)
    """Requests the receiver answered, with the status it answered."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def succeeded(self) -> list[Received]:
        return [r for r, status in self.answered if 200 <= status < 300]

    async def _handle(self, request: Request) -> Response:
        got = Received(
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            at=time.time(),
        )
        self.received.append(got)
        reply = self.replies.pop(0) if self.replies else Reply()
        if reply.hold is not None:
            await reply.hold.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        headers = {"location": reply.location} if reply.location else None
        self.answered.append((got, reply.status))
        return Response(reply.body, status_code=reply.status, headers=headers)

    async def _listing(self, request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "webhookId": r.headers.get("webhook-id"),
                    "type": r.event.get("type") if r.body else None,
                    "at": r.at,
                }
                for r in self.received
            ]
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/_received", self._listing, methods=["GET"]),
                Route("/{path:path}", self._handle, methods=["POST", "GET"]),
            ]
        )


@contextlib.asynccontextmanager
async def running_receiver(tls: tuple[Path, Path] | None = None) -> AsyncIterator[Receiver]:
    """``tls``: (certificate chain, private key) files, to serve https."""
    receiver = Receiver(port=free_port())
    server = uvicorn.Server(
        uvicorn.Config(
            receiver.app(),
            host="127.0.0.1",
            port=receiver.port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 10)


if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(Receiver(port=port).app(), host="127.0.0.1", port=port, log_level="warning")
