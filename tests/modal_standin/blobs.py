"""The stand-in's block store: Volume file contents travel over HTTP, not gRPC.

``Volume.read_file`` (V2 volumes) gets a list of URLs from ``VolumeGetFile2``,
one per 8 MiB block, and GETs them with aiohttp (a body may omit trailing
zeros).  ``batch_upload`` sends each file's block SHA-256s in
``VolumePutFiles2``; the server answers with ``missing_blocks`` (file index,
block index, PUT URL), the client PUTs those blocks and repeats the call with
each block's PUT response body, and the files are then written.
"""

from __future__ import annotations

import hashlib
import secrets

from aiohttp import web
from modal._utils.blob_utils import BLOCK_SIZE


class BlockStore:
    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        """Uploaded blocks by SHA-256 digest."""
        self._downloads: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=2 * BLOCK_SIZE)
        app.router.add_get("/get/{token}", self._get)
        app.router.add_put("/put/{digest}", self._put)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def download_urls(self, data: bytes) -> list[str]:
        """One single-use URL per ``BLOCK_SIZE`` block of ``data`` (a snapshot of the file)."""
        urls = []
        for start in range(0, len(data), BLOCK_SIZE):
            token = secrets.token_urlsafe(16)
            self._downloads[token] = data[start : start + BLOCK_SIZE]
            urls.append(f"{self.url}/get/{token}")
        return urls

    def put_url(self, digest: bytes) -> str:
        return f"{self.url}/put/{digest.hex()}"

    async def _get(self, request: web.Request) -> web.Response:
        data = self._downloads.pop(request.match_info["token"], None)
        if data is None:
            return web.Response(status=404, text="no such block")
        return web.Response(body=data)

    async def _put(self, request: web.Request) -> web.Response:
        data = await request.read()
        digest = hashlib.sha256(data).digest()
        if digest.hex() != request.match_info["digest"]:
            return web.Response(status=400, text="block digest mismatch")
        self.blocks[digest] = data
        return web.Response(body=b"stand-in:" + digest.hex().encode())
