"""Greenhouse's Assessment Partner API, the partner side (developers.greenhouse.io/assessment.html).

Greenhouse calls ``list_tests``, ``send_test`` and ``test_status`` with HTTP Basic auth:
the username is an API key the customer got from us (here: one of the account's ATS
tokens) and the password is empty. The tests are the account's questions; ``send_test``
creates an interview session and answers its id as ``partner_interview_id``. When the
session completes, an empty ``PATCH`` to the ``url`` Greenhouse sent with ``send_test``
tells it to ask ``test_status`` for the result; that PATCH is written to the webhook
outbox in the transaction that completes the session, so it survives restarts.

Nothing here emails the candidate: ``send_test`` returns the invite link (``invite_url``,
beside the documented ``partner_interview_id``) and Greenhouse or the recruiter sends it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from models.greenhouse import GreenhouseInterview
from models.question import Question
from models.session import InterviewSession, SessionStatus
from models.webhook import EndpointKind, WebhookEndpoint
from resolvers import validation as check
from resolvers.auth import Principal, PrincipalKind, authenticate
from resolvers.credentials import CredentialBox
from resolvers.errors import BadUserInput, Conflict, NotFound, Unauthenticated
from resolvers.events import EventLog
from resolvers.report import ReportConfig, report_payload
from resolvers.sessions import (
    SessionSpec,
    create_session,
    get_session,
    reissue_invite,
)
from resolvers.webhooks.endpoints import checked_url

# Greenhouse refuses partner keys of 171 characters or more; ours are 48.
MAX_KEY_CHARS = 170
MAX_URL_CHARS = 2000
COMPLETE = "complete"
INCOMPLETE = "incomplete"

MetadataValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class PartnerTest:
    partner_test_id: str
    partner_test_name: str


@dataclass(frozen=True, slots=True)
class SendTest:
    """A ``send_test`` body, checked. Greenhouse's other candidate fields (resume_url,
    phone_number) are not kept: the interview needs none of them."""

    partner_test_id: uuid.UUID
    first_name: str
    last_name: str
    email: str
    greenhouse_profile_url: str
    url: str
    """Checked by ``send_test`` like a webhook endpoint's URL (``checked_url``)."""
    application_key: str


@dataclass(frozen=True, slots=True)
class SentTest:
    partner_interview_id: str
    invite_url: str | None
    """None when the session has already ended (a repeated request for a finished test)."""
    created: bool


@dataclass(frozen=True, slots=True)
class TestStatus:
    __test__ = False  # not a pytest class

    partner_status: str
    partner_profile_url: str | None
    partner_score: int | None
    """0-100: the share of the final test run's cases (hidden ones too) that passed."""
    metadata: dict[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    key: str = field(repr=False)
    """The ATS token Greenhouse authenticated with: what its callback PATCH presents."""


async def authenticate_basic(authorization: str | None) -> Caller:
    """The ATS principal of ``Authorization: Basic base64(<ATS token>:)``.

    Anything else -- no header, another scheme, a password, an interviewer or candidate
    token, an unknown, revoked or expired one -- is Unauthenticated. The token is found by
    its hash (``resolvers.auth``), so no comparison leaks its characters through timing."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Unauthenticated("use HTTP Basic auth: an ATS API token as the username")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("the Basic credentials are not valid base64 of UTF-8") from None
    username, colon, password = decoded.partition(":")
    if not colon or password or not username or len(username) > MAX_KEY_CHARS:
        raise Unauthenticated("the username must be an ATS API token and the password empty")
    principal = await authenticate(username)
    if principal.kind is not PrincipalKind.ATS:
        raise Unauthenticated("only ATS API tokens can call the Greenhouse integration")
    return Caller(principal, username)


async def list_tests(principal: Principal) -> list[PartnerTest]:
    """The account's questions that take new sessions (latest revisions, not archived),
    oldest first so Greenhouse's list keeps its order as questions are added."""
    questions = await Question.filter(
        account_id=principal.account_id, is_latest=True, archived_at__isnull=True
    ).order_by("created_at", "lineage_id")
    return [PartnerTest(str(q.lineage_id), q.title) for q in questions]


def parse_send_test(body: Any) -> SendTest:
    if not isinstance(body, dict):
        raise BadUserInput("body", "must be a JSON object")
    candidate = body.get("candidate")
    if not isinstance(candidate, dict):
        raise BadUserInput("candidate", "is required and must be an object")
    profile_url = _url("candidate.greenhouse_profile_url", candidate.get("greenhouse_profile_url"))
    test_id = body.get("partner_test_id")
    return SendTest(
        partner_test_id=check.object_id("partner_test_id", _string("partner_test_id", test_id)),
        first_name=_name("candidate.first_name", candidate.get("first_name")),
        # Empty for a candidate known by one name.
        last_name=check.text(
            "candidate.last_name",
            _string("candidate.last_name", candidate.get("last_name")),
            max_length=99,
            allow_empty=True,
        ),
        email=check.email("candidate.email", _string("candidate.email", candidate.get("email"))),
        greenhouse_profile_url=profile_url,
        url=check.text("url", _string("url", body.get("url")), max_length=MAX_URL_CHARS),
        application_key=application_key(profile_url),
    )


def application_key(greenhouse_profile_url: str) -> str:
    """Greenhouse's application id from the profile URL (``?application_id=26234709``),
    or, when it carries none, a digest of the URL: the same application, the same key."""
    ids = parse_qs(urlsplit(greenhouse_profile_url).query).get("application_id", [])
    if len(ids) == 1 and ids[0].isascii() and ids[0].isdigit() and len(ids[0]) <= 30:
        return ids[0]
    return "url:" + hashlib.sha256(greenhouse_profile_url.encode()).hexdigest()


async def send_test(
    caller: Caller,
    request: SendTest,
    *,
    log: EventLog,
    public_url: str,
    token_ttl: timedelta,
    allow_private_networks: bool,
    credentials: CredentialBox,
) -> SentTest:
    """Create the session for one Greenhouse application and test, once.

    A repeat of the same application and test answers the same session (with a fresh
    invite link while it is open: a retry means the first answer may never have
    arrived). Two identical requests at once: the unique (account, application, test)
    row, written in the session's creating transaction, admits one; the other's session
    is rolled back with it and it answers the winner's.

    The callback ``url`` goes where webhooks may go (https, public addresses: the PATCH
    carries the key) and becomes an outbox endpoint of its own, which the session's
    completion queues the PATCH to."""
    principal = caller.principal
    principal.require_staff()
    callback_url = await checked_url("url", request.url, allow_private=allow_private_networks)
    existing = await _ordered(principal, request)
    if existing is not None:
        return await _again(principal, existing, public_url=public_url)
    spec = SessionSpec(
        question_id=str(request.partner_test_id),
        candidate_name=f"{request.first_name} {request.last_name}".strip(),
        candidate_email=request.email,
        external_id=_external_id(request),
    )

    async def link(session: InterviewSession, conn: BaseDBAsyncClient) -> None:
        callback = await WebhookEndpoint.create(
            account_id=principal.account_id,
            url=callback_url,
            description=f"Greenhouse application {request.application_key}"[:500],
            secret=credentials.seal(caller.key),  # sent back on the PATCH: sealed, not hashed
            kind=EndpointKind.GREENHOUSE_CALLBACK,
            using_db=conn,
        )
        await GreenhouseInterview.create(
            account_id=principal.account_id,
            session=session,
            application_key=request.application_key,
            partner_test_id=request.partner_test_id,
            callback=callback,
            greenhouse_profile_url=request.greenhouse_profile_url,
            using_db=conn,
        )

    try:
        created = await create_session(
            principal, spec, log=log, public_url=public_url, token_ttl=token_ttl, also=link
        )
    except NotFound:
        raise NotFound("test") from None
    except (Conflict, IntegrityError):
        # A twin request won (its session and row commit together, so its row is there),
        # or the question takes no new sessions (archived): then the Conflict stands.
        existing = await _ordered(principal, request)
        if existing is None:
            raise
        return await _again(principal, existing, public_url=public_url)
    return SentTest(str(created.session.id), created.invite_url, created=True)


async def interview_status(
    principal: Principal, partner_interview_id: str | None, *, report: ReportConfig
) -> TestStatus:
    """Where the interview stands, in Greenhouse's terms: ``complete`` once the candidate
    finished, with the report's link (``partner_profile_url``) and its score (0-100, from
    the final test run; null if the candidate never ran the tests). Otherwise
    ``incomplete``: before the end, and also after a cancellation or expiry, which leave
    no result (Greenhouse stops polling after its 8 weeks)."""
    if not partner_interview_id:
        raise BadUserInput("partner_interview_id", "is required")
    try:
        session = await get_session(principal, partner_interview_id)
    except (BadUserInput, NotFound):
        raise NotFound("interview") from None  # not an id of ours, or not the account's
    if not await GreenhouseInterview.exists(session_id=session.id, account_id=principal.account_id):
        raise NotFound("interview")
    metadata: dict[str, MetadataValue] = {
        "Status": session.status.value.capitalize(),
        "Language": session.language.capitalize(),
        "Started At": session.started_at.isoformat() if session.started_at else None,
        "Ended At": session.ended_at.isoformat() if session.ended_at else None,
    }
    if session.status is not SessionStatus.COMPLETED:
        return TestStatus(INCOMPLETE, None, None, metadata)
    payload = await report_payload(session, config=report)
    summary = payload["summary"]
    visible, hidden = summary["visible"], summary["hidden"]
    # Greenhouse shows metadata as it is: flat, primitive values only.
    metadata["Visible Tests Passed"] = f"{visible['passed']}/{visible['total']}"
    metadata["Hidden Tests Passed"] = f"{hidden['passed']}/{hidden['total']}"
    metadata["Duration Minutes"] = (
        None if summary["durationSeconds"] is None else round(summary["durationSeconds"] / 60)
    )
    return TestStatus(COMPLETE, payload["reportUrl"], summary["score"], metadata)


async def _ordered(principal: Principal, request: SendTest) -> GreenhouseInterview | None:
    return await GreenhouseInterview.get_or_none(
        account_id=principal.account_id,
        application_key=request.application_key,
        partner_test_id=request.partner_test_id,
    )


async def _again(principal: Principal, link: GreenhouseInterview, *, public_url: str) -> SentTest:
    session = await get_session(principal, str(link.session_id))
    if not session.status.is_open:
        return SentTest(str(session.id), None, created=False)
    invite = await reissue_invite(session, public_url=public_url)
    return SentTest(str(session.id), invite.invite_url, created=False)


def _external_id(request: SendTest) -> str | None:
    """``greenhouse:<application id>:<test id>``: findable with ``sessions(externalId:)``,
    and distinct for two tests of one application (an open session's externalId is
    unique in the account)."""
    if not request.application_key.isdigit():
        return None
    return f"greenhouse:{request.application_key}:{request.partner_test_id}"


def _string(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadUserInput(path, "is required and must be a string")
    return value


def _name(path: str, value: Any) -> str:
    # Two of them and a space fit the session's candidate name (200 characters).
    return check.text(path, _string(path, value), max_length=99)


def _url(path: str, value: Any) -> str:
    url = check.text(path, _string(path, value), max_length=MAX_URL_CHARS)
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise BadUserInput(path, "must be an absolute http(s) URL")
    return url
