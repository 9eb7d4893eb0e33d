"""The agent's only way to Anthropic: a Messages API proxy keyed by per-run tokens.

The Anthropic key never enters a sandbox (issue 9). The agent's
``ANTHROPIC_API_KEY`` is a token minted for one Claude run (``mint_token``);
only its SHA-256 is stored on the ClaudeRun, so any replica can check it. A
request is forwarded only while its run is RUNNING and before the token's
deadline, within the run's request and token budget; the real key is added
here and only here. The run ending clears the hash: the token then answers
401. Usage is read from the API's own answer (``message_start`` /
``message_delta`` in the event stream, ``usage`` in a JSON body) and added to
the run with atomic updates (replicas share the counters).

Only ``POST /v1/messages`` and ``/v1/messages/count_tokens`` are forwarded,
with an allowlist of request and response headers: the client's credentials,
cookies and forwarding headers never go upstream, upstream's organisation and
cookies never come back. The key is never logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import httpx
from tortoise.expressions import F

from models.claude import ClaudeRun, ClaudeRunStatus

logger = logging.getLogger("interviewlm.anthropic_proxy")
TOKEN_PREFIX = "ilm-run-"  # noqa: S105 - a prefix, not a secret
PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
MAX_BODY_BYTES = 32 << 20
REQUEST_HEADERS = frozenset(
    {"content-type", "accept", "anthropic-version", "anthropic-beta", "user-agent", "x-app"}
)
RESPONSE_HEADERS = frozenset(
    {"content-type", "request-id", "retry-after", "x-should-retry", "cache-control"}
)


def mint_token() -> tuple[str, str]:
    """A fresh run token and the SHA-256 hex that is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    api_key: str | None = field(repr=False)
    upstream_url: str = "https://api.anthropic.com"
    max_requests: int = 200
    max_tokens: int = 5_000_000


class ProxyDenied(Exception):
    """Answered to the agent in the API's own error shape (the CLI understands it)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def body(self) -> bytes:
        return json.dumps(
            {"type": "error", "error": {"type": self.kind, "message": self.message}}
        ).encode()


@dataclass
class Upstream:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


def credential(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class UsageMeter:
    """Reads usage out of a Messages API answer as it passes (SSE or JSON)."""

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self.input_tokens = 0
        self.output_tokens = 0
        self._pending = b""
        self._json = bytearray()

    def feed(self, chunk: bytes) -> None:
        if not self.streaming:
            if len(self._json) < MAX_BODY_BYTES:
                self._json += chunk
            return
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def finish(self) -> None:
        if self.streaming:
            if self._pending.startswith(b"data:"):
                self._event(self._pending[5:].strip())
            return
        try:
            data = json.loads(self._json)
        except ValueError:
            return
        if isinstance(data, dict):
            self._usage(data.get("usage"), start=True)

    def _event(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            self._usage(event["message"].get("usage"), start=True)
        elif event.get("type") == "message_delta":
            self._usage(event.get("usage"), start=False)

    def _usage(self, usage: object, *, start: bool) -> None:
        if not isinstance(usage, dict):
            return

        def count(name: str) -> int:
            value = usage.get(name)
            return value if isinstance(value, int) and value > 0 else 0

        # The counts in message_delta are cumulative for the message, so the
        # larger of start and delta is the message's total.
        inputs = sum(
            count(n)
            for n in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        self.input_tokens = max(self.input_tokens, inputs) if not start else inputs
        self.output_tokens = max(self.output_tokens, count("output_tokens"))


class AnthropicProxy:
    def __init__(self, config: ProxyConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(connect=10, read=600, write=60, pool=10),
            follow_redirects=False,
        )

    async def authorize(self, headers: Mapping[str, str]) -> ClaudeRun:
        """The running ClaudeRun the request's token belongs to, or ProxyDenied."""
        token = credential(headers)
        if not token or not token.startswith(TOKEN_PREFIX):
            raise ProxyDenied(401, "authentication_error", "invalid or expired run token")
        run = await ClaudeRun.get_or_none(token_hash=token_hash(token))
        now = datetime.now(UTC)
        if (
            run is None
            or run.status is not ClaudeRunStatus.RUNNING
            or run.token_expires_at is None
            or run.token_expires_at <= now
        ):
            raise ProxyDenied(401, "authentication_error", "invalid or expired run token")
        return run

    async def forward(
        self, run: ClaudeRun, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Upstream:
        if path not in PATHS:
            raise ProxyDenied(404, "not_found_error", "only the Messages API is available")
        if not self.config.api_key:
            raise ProxyDenied(503, "api_error", "the agent's API is not configured")
        if run.input_tokens + run.output_tokens >= self.config.max_tokens:
            raise ProxyDenied(403, "permission_error", "this run's token budget is used up")
        # One atomic conditional increment: the request limit holds across
        # concurrent requests and replicas.
        counted = await ClaudeRun.filter(
            id=run.id,
            status=ClaudeRunStatus.RUNNING,
            api_requests__lt=self.config.max_requests,
        ).update(api_requests=F("api_requests") + 1)
        if not counted:
            raise ProxyDenied(403, "permission_error", "this run's request budget is used up")
        out = {k: v for k, v in headers.items() if k.lower() in REQUEST_HEADERS}
        out["x-api-key"] = self.config.api_key
        # Bytes are relayed as they come and metered on the way: uncompressed.
        out["accept-encoding"] = "identity"
        url = self.config.upstream_url + path + ("?beta=true" if "beta=true" in query else "")
        request = self._client.build_request("POST", url, headers=out, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("run %s: upstream unreachable (%s)", run.id, type(exc).__name__)
            raise ProxyDenied(502, "api_error", "the upstream API could not be reached") from None
        kept = {k: v for k, v in response.headers.items() if k.lower() in RESPONSE_HEADERS}
        streaming = "text/event-stream" in response.headers.get("content-type", "")
        metered = path == "/v1/messages" and response.status_code == 200
        return Upstream(
            response.status_code, kept, self._relay(run.id, response, streaming, metered)
        )

    async def _relay(
        self, run_id: uuid.UUID, response: httpx.Response, streaming: bool, metered: bool
    ) -> AsyncIterator[bytes]:
        meter = UsageMeter(streaming)
        try:
            async for chunk in response.aiter_raw():
                if metered:
                    meter.feed(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            logger.warning("run %s: upstream stream broke (%s)", run_id, type(exc).__name__)
        finally:
            # Also when the agent hung up mid-stream (its server cancels this
            # generator): what was used is still counted.
            with anyio.CancelScope(shield=True):
                await response.aclose()
                if metered:
                    meter.finish()
                    await self._record(run_id, meter)

    async def _record(self, run_id: uuid.UUID, meter: UsageMeter) -> None:
        if meter.input_tokens or meter.output_tokens:
            await ClaudeRun.filter(id=run_id).update(
                input_tokens=F("input_tokens") + meter.input_tokens,
                output_tokens=F("output_tokens") + meter.output_tokens,
            )

    async def aclose(self) -> None:
        await self._client.aclose()
