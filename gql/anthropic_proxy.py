"""The Messages API proxy as HTTP: a Starlette route and, for local sandboxes, a Unix socket.

``PROXY_PREFIX`` is where the agent's ``ANTHROPIC_BASE_URL`` points: on the
app itself (reachable at ``PUBLIC_URL``, the Modal sandbox's only egress while
an agent runs), and on a Unix socket that serves nothing but this route
(``ProxySocket``). The socket's directory is bound into a local sandbox for the
agent's command only; a forwarder inside the sandbox pipes its loopback to it,
so the sandbox keeps no network of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from modal_app.base import SOCKET_MOUNT, NetworkPolicy
from resolvers.agent_launch import AgentLink
from resolvers.anthropic_proxy import MAX_BODY_BYTES, AnthropicProxy, ProxyDenied

logger = logging.getLogger("interviewlm.anthropic_proxy")
PROXY_PREFIX = "/agent/anthropic"
SOCKET_NAME = "proxy.sock"


def _denied(exc: ProxyDenied) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type="application/json")


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ProxyDenied(413, "request_too_large", "the request body is too large")
    return bytes(body)


def proxy_routes(proxy: AnthropicProxy) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        try:
            # Who is asking, before reading a byte of the body.
            run = await proxy.authorize(request.headers)
            upstream = await proxy.forward(
                run,
                "/" + request.path_params["path"],
                request.url.query,
                request.headers,
                await _body(request),
            )
        except ProxyDenied as exc:
            return _denied(exc)
        return StreamingResponse(
            upstream.body, status_code=upstream.status, headers=upstream.headers
        )

    return [Route(PROXY_PREFIX + "/{path:path}", endpoint, methods=["POST"])]


class _Server(uvicorn.Server):
    # The app's own server owns the process's signals; this one must not
    # replace its SIGINT/SIGTERM handlers.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class ProxySocket:
    """The proxy on a Unix socket in a fresh root-owned directory (mode 0711).

    The directory's name is random and not listable, the socket is 0666 so a
    sandbox's own uid can connect once it is bound in; the run token is still
    what authorizes a request.
    """

    def __init__(self, proxy: AnthropicProxy) -> None:
        self.app = Starlette(routes=proxy_routes(proxy))
        self.directory: Path | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> Path:
        """Started by the first agent run (concurrent first runs share one server)."""
        async with self._lock:
            return self.directory or await self._start()

    async def _start(self) -> Path:
        # In /tmp, not TMPDIR: bwrap reaches it as the sandbox's uid, so every
        # ancestor must be searchable; and short: a socket path has <= 107 bytes.
        directory = Path(tempfile.mkdtemp(prefix="ilm-agent-", dir="/tmp"))
        os.chmod(directory, 0o711)  # noqa: S103 - traversable, not listable
        config = uvicorn.Config(
            self.app,
            uds=str(directory / SOCKET_NAME),
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        self._server, self._task = server, asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the agent proxy socket did not start")
            await asyncio.sleep(0.01)
        self.directory = directory
        return directory

    async def aclose(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await self._task
            except Exception:
                # Safe to go on: the server is stopping for good and its socket's
                # directory is removed next; the log says what it ended with.
                logger.warning("the agent proxy socket server failed on close", exc_info=True)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._server = self._task = None
        self.directory = None


def agent_link(public_url: str, socket: ProxySocket | None) -> Callable[[], Awaitable[AgentLink]]:
    """How this server's agents reach the proxy: its Unix socket (local) or PUBLIC_URL."""
    if socket is not None:
        local = socket

        async def through_socket() -> AgentLink:
            directory = await local.start()
            return AgentLink(
                network=NetworkPolicy(socket_dir=str(directory)),
                socket=f"{SOCKET_MOUNT}/{SOCKET_NAME}",
                path=PROXY_PREFIX,
            )

        return through_socket
    host = urlsplit(public_url).hostname or ""
    if host in {"", "localhost"} or host.startswith("127.") or host == "::1":
        logger.warning(
            "PUBLIC_URL (%s) is not reachable from a remote sandbox: the agent cannot reach "
            "its API proxy; set PUBLIC_URL to this server's public address",
            public_url,
        )

    async def through_public_url() -> AgentLink:
        # The sandbox may reach this one host, for the agent's command only.
        return AgentLink(
            network=NetworkPolicy(allow_hosts=(host,)), base_url=public_url + PROXY_PREFIX
        )

    return through_public_url
