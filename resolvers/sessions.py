"""Interview sessions: create (with the candidate's token), list, read, end, expire."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.question import QuestionLanguage
from models.session import InterviewSession, SessionStatus
from models.token import CandidateToken
from resolvers import validation as check
from resolvers.auth import Principal, new_token
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.event_kinds import SessionCreated, SessionEnded, SessionExpired
from resolvers.events import EventLog
from resolvers.languages import language_info
from resolvers.pagination import Page, paginate
from resolvers.questions import question_for_new_session
from resolvers.webhooks.events import ENDED, enqueue_session_event

OPEN = [SessionStatus.SCHEDULED, SessionStatus.ACTIVE]


@dataclass(frozen=True, slots=True)
class SessionSpec:
    question_id: str
    candidate_name: str
    candidate_email: str
    language: str | None = None
    external_id: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionFilter:
    status: SessionStatus | None = None
    candidate_email: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class CreatedSession:
    session: InterviewSession
    candidate_token: str
    """Shown once; only its hash is stored."""
    invite_url: str


async def create_session(
    principal: Principal,
    spec: SessionSpec,
    *,
    log: EventLog,
    public_url: str,
    token_ttl: timedelta,
    also: Callable[[InterviewSession, BaseDBAsyncClient], Awaitable[None]] | None = None,
) -> CreatedSession:
    """``also``: more to write in the creating transaction (an integration's own row,
    whose unique constraint may then refuse the session as a whole)."""
    principal.require_staff()
    qid = check.object_id("input.questionId", spec.question_id)
    name = check.text("input.candidateName", spec.candidate_name, max_length=200)
    email = check.email("input.candidateEmail", spec.candidate_email)
    external_id = check.optional_text("input.externalId", spec.external_id, max_length=200)
    # The session pins the question's latest revision: later edits leave it as it is.
    question = await question_for_new_session(principal, spec.question_id)
    offered: list[str] = [
        lang.language
        for lang in await QuestionLanguage.filter(question_id=question.id).order_by("id")
    ]
    language = offered[0]
    if spec.language is not None:
        language = language_info("input.language", spec.language).language.value
        if language not in offered:
            raise BadUserInput("input.language", "the question has no starter for this language")
    now = datetime.now(UTC)
    expires_at = spec.expires_at or now + token_ttl
    if expires_at.tzinfo is None:
        raise BadUserInput("input.expiresAt", "must include a time zone")
    if expires_at <= now:
        raise BadUserInput("input.expiresAt", "must be in the future")
    if external_id and await InterviewSession.exists(
        _unexpired(now),
        account_id=principal.account_id,
        external_id=external_id,
        status__in=OPEN,
    ):
        raise Conflict(f"an open session with externalId {external_id!r} already exists")
    token, digest, prefix = new_token("candidate")
    async with in_transaction() as conn:
        session = await InterviewSession.create(
            account_id=principal.account_id,
            question=question,
            language=language,
            candidate_name=name,
            candidate_email=email,
            external_id=external_id,
            expires_at=expires_at,
            using_db=conn,
        )
        await CandidateToken.create(
            session=session, token_hash=digest, prefix=prefix, expires_at=expires_at, using_db=conn
        )
        if also is not None:
            await also(session, conn)
        await enqueue_session_event(session, "session.created", using_db=conn)
    await log.append(
        session.id, SessionCreated(session.status, language=language, question_id=str(qid))
    )
    return CreatedSession(
        session=session, candidate_token=token, invite_url=invite_url(public_url, session.id, token)
    )


def invite_url(public_url: str, session_id: uuid.UUID, token: str) -> str:
    """The link a candidate opens; the token rides in the fragment, which no server logs."""
    return f"{public_url}/interview/{session_id}#token={token}"


async def reissue_invite(session: InterviewSession, *, public_url: str) -> CreatedSession:
    """One more candidate token for an open session (earlier ones keep working), for an
    integration that asked again because it never got the first invite's answer."""
    if not session.status.is_open:
        raise Conflict(f"session is already {session.status.value}")
    token, digest, prefix = new_token("candidate")
    await CandidateToken.create(
        session=session, token_hash=digest, prefix=prefix, expires_at=session.expires_at
    )
    return CreatedSession(
        session=session, candidate_token=token, invite_url=invite_url(public_url, session.id, token)
    )


async def get_session(principal: Principal, session_id: str) -> InterviewSession:
    """Load a session through the caller's account; candidates reach only their own.

    Reading never writes: a session past its expiry reads as EXPIRED (``as_of``) and the
    reaper records it (``expire_due``)."""
    sid = check.object_id("sessionId", session_id)
    if not principal.is_staff and sid != principal.session_id:
        raise NotFound("session")
    session = await InterviewSession.get_or_none(id=sid, account_id=principal.account_id)
    if session is None:
        raise NotFound("session")
    return as_of(session)


async def require_session_access(principal: Principal, session_id: uuid.UUID, *, kind: str) -> None:
    """For objects reached by their own id (runs, terminals): through their session,
    hence through the caller's account; answered as NOT_FOUND of that ``kind``."""
    try:
        await get_session(principal, str(session_id))
    except NotFound:
        raise NotFound(kind) from None


def as_of(session: InterviewSession, now: datetime | None = None) -> InterviewSession:
    """The session as it stands at ``now``: past its expiry it is EXPIRED (ended when it
    expired) even before the reaper has recorded that. Changes this object only."""
    now = now or datetime.now(UTC)
    if session.status.is_open and session.expires_at is not None and session.expires_at <= now:
        session.status = SessionStatus.EXPIRED
        session.ended_at = session.expires_at
    return session


def _unexpired(now: datetime) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


async def expire_due(log: EventLog, *, now: datetime, limit: int = 500) -> int:
    """Record open sessions past their expiry as EXPIRED, each with a ``session.expired``
    event; returns how many. Run by every replica's reaper: the conditional update lets
    exactly one of them record each session."""
    due = await InterviewSession.filter(status__in=OPEN, expires_at__lte=now).limit(limit)
    expired = 0
    for session in due:
        async with in_transaction() as conn:
            changed = await (
                InterviewSession.filter(id=session.id, status__in=OPEN)
                .using_db(conn)
                .update(status=SessionStatus.EXPIRED, ended_at=session.expires_at)
            )
            if changed:
                await enqueue_session_event(
                    session, "session.expired", using_db=conn, status=SessionStatus.EXPIRED
                )
        if changed:
            await log.append(session.id, SessionExpired())
            expired += 1
    return expired


async def _finish(
    session: InterviewSession, status: SessionStatus, *, log: EventLog
) -> InterviewSession:
    now = datetime.now(UTC)
    # Conditional update: of two concurrent enders exactly one wins, and a session that
    # expired meanwhile stays expired (the reaper records it).
    async with in_transaction() as conn:
        changed = await (
            InterviewSession.filter(_unexpired(now), id=session.id, status__in=OPEN)
            .using_db(conn)
            .update(status=status, ended_at=now)
        )
        if changed:
            await enqueue_session_event(session, ENDED[status], using_db=conn, status=status)
    if changed:
        await log.append(session.id, SessionEnded(status))
    return as_of(await InterviewSession.get(id=session.id), now)


async def end_session(
    principal: Principal, session_id: str, *, cancel: bool, log: EventLog
) -> InterviewSession:
    """End the session: COMPLETED (by its candidate or staff) or CANCELLED (staff only).

    Afterwards its candidate keeps read-only access -- the session, its question, its
    files and recording, live events -- until their token expires (the session's
    ``expiresAt``), so they can still look at what they handed in; every change
    (files, commands, terminals, test runs, Claude, sandbox) is CONFLICT, enforced for
    all mutations in ``Principal.require_writable``. The token is not revoked: reading
    one's own finished interview leaks nothing, and an ATS may link to it. The GraphQL
    layer also stops the session's sandbox, so nothing keeps running for it.
    """
    session = await get_session(principal, session_id)
    if cancel:
        principal.require_staff()
    if not session.status.is_open:
        raise Conflict(f"session is already {session.status.value}")
    status = SessionStatus.CANCELLED if cancel else SessionStatus.COMPLETED
    session = await _finish(session, status, log=log)
    if session.status is not status:
        raise Conflict(f"session is already {session.status.value}")
    return session


async def list_sessions(
    principal: Principal, *, first: int, after: str | None, where: SessionFilter
) -> Page[InterviewSession]:
    principal.require_staff()
    now = datetime.now(UTC)
    query = InterviewSession.filter(account_id=principal.account_id)
    if where.status is SessionStatus.EXPIRED:
        # Expired ones the reaper has not recorded yet included.
        query = query.filter(
            Q(status=SessionStatus.EXPIRED) | Q(status__in=OPEN, expires_at__lte=now)
        )
    elif where.status is not None:
        query = query.filter(status=where.status)
        if where.status.is_open:
            query = query.filter(_unexpired(now))
    # Filters are checked like inputs: a NUL or a lone surrogate is no text PostgreSQL
    # can compare (it answered the fuzzer's with an internal error).
    if where.candidate_email is not None:
        email = check.text(
            "candidateEmail", where.candidate_email, max_length=320, allow_empty=True
        )
        query = query.filter(candidate_email=email.lower())
    if where.external_id is not None:
        external = check.text("externalId", where.external_id, max_length=255, allow_empty=True)
        query = query.filter(external_id=external)
    page = await paginate(query, first=first, after=after)
    for _, session in page.items:
        as_of(session, now)
    return page
