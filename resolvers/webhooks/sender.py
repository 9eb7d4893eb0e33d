"""One delivery attempt: resolve and check the target, POST the signed body, read a capped
excerpt of the answer. Never raises for the receiver's or the network's faults."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from dataclasses import dataclass, field

import certifi
import httpx

from models.webhook import EndpointKind
from resolvers.credentials import CredentialBox, CredentialError
from resolvers.webhooks.config import EXCERPT_BYTES
from resolvers.webhooks.signing import signed_headers
from resolvers.webhooks.ssrf import TargetRefused, parse_target, resolve


@dataclass(frozen=True, slots=True)
class Attempt:
    url: str
    secret: str = field(repr=False)
    webhook_id: str
    body: str
    kind: EndpointKind = EndpointKind.STANDARD_WEBHOOKS


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    duration_ms: int
    http_status: int | None = None
    excerpt: str | None = None
    error: str | None = None
    """Why it failed short of an answer (refused, timed out, connection error), or for a
    non-2xx answer what that means (a redirect not followed)."""


def tls_context() -> ssl.SSLContext:
    """Certificate checks as httpx makes them by default (certifi's CAs). Made once per
    worker: building one costs tens of milliseconds, which each client would pay."""
    return ssl.create_default_context(cafile=certifi.where())


def new_client(timeout_s: float, tls: ssl.SSLContext) -> httpx.AsyncClient:
    """For the attempts to one endpoint in a row (its connection is reused). No proxies
    from the environment: a proxy would connect to the name, not to the checked address."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout_s, verify=tls)


async def send(
    client: httpx.AsyncClient,
    attempt: Attempt,
    *,
    timeout_s: float,
    allow_private: bool,
    credentials: CredentialBox,
) -> AttemptResult:
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        async with asyncio.timeout(timeout_s):
            target = await resolve(
                parse_target(attempt.url, allow_private=allow_private),
                allow_private=allow_private,
            )
            method, body, headers = _request(attempt, credentials)
            headers |= {
                "host": target.host_header,
                "user-agent": "InterviewLM-Webhooks/1",
                "accept-encoding": "identity",
            }
            extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
            for index, url in enumerate(target.urls):
                request = client.build_request(
                    method, url, content=body, headers=headers, extensions=extensions
                )
                try:
                    response = await client.send(request, stream=True)
                    break
                except httpx.ConnectError:  # nothing was sent: the next address may answer
                    if index + 1 == len(target.urls):
                        raise
            try:
                excerpt = await _excerpt(response)
            finally:
                await response.aclose()
    except TargetRefused as exc:
        return AttemptResult(ok=False, duration_ms=elapsed_ms(), error=f"refused: {exc}")
    except CredentialError as exc:  # sealed under another CREDENTIAL_KEY: retried later
        return AttemptResult(ok=False, duration_ms=elapsed_ms(), error=f"credential: {exc}")
    except TimeoutError:
        return AttemptResult(
            ok=False, duration_ms=elapsed_ms(), error=f"timed out after {timeout_s:g} s"
        )
    except httpx.HTTPError as exc:
        return AttemptResult(
            ok=False, duration_ms=elapsed_ms(), error=f"{type(exc).__name__}: {exc}"[:500]
        )
    status = response.status_code
    error = None
    if response.is_redirect:
        error = f"redirect to {response.headers.get('location', '?')[:300]} not followed"
    return AttemptResult(
        ok=200 <= status < 300,
        duration_ms=elapsed_ms(),
        http_status=status,
        excerpt=excerpt,
        error=error,
    )


def _request(attempt: Attempt, credentials: CredentialBox) -> tuple[str, bytes, dict[str, str]]:
    """Method, body and headers: the signed POST of the event, or, for a Greenhouse
    callback, Greenhouse's "Mark Test as Completed": an empty PATCH with HTTP Basic auth
    (the partner key, empty password), as developers.greenhouse.io/assessment.html shows.
    The key is stored sealed (``resolvers.credentials``) and opened only here."""
    if attempt.kind is EndpointKind.GREENHOUSE_CALLBACK:
        key = credentials.open(attempt.secret)
        basic = base64.b64encode(f"{key}:".encode()).decode()
        return "PATCH", b"", {"authorization": f"Basic {basic}"}
    body = attempt.body.encode()
    return "POST", body, signed_headers(attempt.secret, attempt.webhook_id, int(time.time()), body)


async def _excerpt(response: httpx.Response) -> str:
    """The first ``EXCERPT_BYTES`` of the raw body; the rest is not read."""
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
