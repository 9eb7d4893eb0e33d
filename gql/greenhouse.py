"""Greenhouse's Assessment Partner API over HTTP: ``/integrations/greenhouse/...``.

Plain JSON routes beside ``/graphql`` (Greenhouse speaks its own REST shapes, see
``resolvers.greenhouse``). Every failure is a JSON body ``{"message", "errors": [{"field",
"message"}]}`` with a 4xx status -- 401 (with ``WWW-Authenticate``) for credentials,
404 for what is not the account's -- never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gql.context import Services
from gql.types.report import report_config
from resolvers import greenhouse
from resolvers.credentials import CredentialBox
from resolvers.errors import ApiError, BadUserInput, Unauthenticated

logger = logging.getLogger("interviewlm.greenhouse")
PREFIX = "/integrations/greenhouse"
MAX_BODY_BYTES = 64 << 10
_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "BAD_USER_INPUT": 400,
    "CONFLICT": 409,
    "RATE_LIMITED": 429,
}
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="InterviewLM Greenhouse", charset="UTF-8"'}

Handler = Callable[[Request, greenhouse.Caller], Awaitable[Any]]


class _PayloadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def greenhouse_routes(services: Services) -> list[Route]:
    settings = services.settings
    token_ttl = timedelta(seconds=settings.candidate_token_ttl_s)
    report = report_config(settings)
    credentials = CredentialBox.from_secret(settings.credential_key)

    async def list_tests(request: Request, caller: greenhouse.Caller) -> Any:
        return [asdict(test) for test in await greenhouse.list_tests(caller.principal)]

    async def send_test(request: Request, caller: greenhouse.Caller) -> Any:
        # It creates a session as createSession does: the same bucket (resolvers.ratelimit).
        await services.limits.check(caller.principal, "createSession")
        sent = await greenhouse.send_test(
            caller,
            greenhouse.parse_send_test(await _json_body(request)),
            log=services.log,
            public_url=settings.public_url,
            token_ttl=token_ttl,
            allow_private_networks=settings.webhook_allow_private_networks,
            credentials=credentials,
        )
        return {"partner_interview_id": sent.partner_interview_id, "invite_url": sent.invite_url}

    async def test_status(request: Request, caller: greenhouse.Caller) -> Any:
        status = await greenhouse.interview_status(
            caller.principal, request.query_params.get("partner_interview_id"), report=report
        )
        return asdict(status)

    async def response_error(request: Request, caller: greenhouse.Caller) -> Any:
        # Greenhouse reports here what it could not accept from us: worth an operator's look.
        complaint = await _json_body(request)
        logger.warning("Greenhouse reports a malformed response: %.2000s", json.dumps(complaint))
        return {"status": 200}

    return [
        _route("list_tests", "GET", list_tests),
        _route("send_test", "POST", send_test),
        _route("test_status", "GET", test_status),
        _route("response_error", "POST", response_error),
    ]


def _route(name: str, method: str, handler: Handler) -> Route:
    async def endpoint(request: Request) -> Response:
        if request.method != method:
            return _error(405, f"use {method}", headers={"Allow": method})
        try:
            caller = await greenhouse.authenticate_basic(request.headers.get("authorization"))
            return JSONResponse(await handler(request, caller))
        except Unauthenticated as exc:
            return _error(401, exc.message, headers=_CHALLENGE)
        except BadUserInput as exc:
            return _error(400, exc.message, field=exc.field)
        except ApiError as exc:
            retry = exc.extensions.get("retryAfterSeconds")
            headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
            return _error(_STATUS.get(exc.code, 400), exc.message, headers=headers)
        except _PayloadError as exc:
            return _error(exc.status, exc.message)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except Exception:  # a bug: logged with its trace here, never shown to the caller
            logger.exception("Greenhouse %s failed", name)
            return _error(500, "internal error")

    # Every method reaches the endpoint, so a wrong one gets the JSON 405 too.
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Route(f"{PREFIX}/{name}", endpoint, methods=methods, name=f"greenhouse_{name}")


async def _json_body(request: Request) -> Any:
    """The body as JSON whatever its declared type (Greenhouse's is JSON), size-capped."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _PayloadError(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _PayloadError(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadUserInput("body", "is not valid JSON") from None


def _error(
    status: int, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    detail: dict[str, str] = {"message": message}
    if field is not None:
        detail = {"field": field, **detail}
    return JSONResponse({"message": message, "errors": [detail]}, status, headers=headers)
