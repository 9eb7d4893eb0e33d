"""Tokens and the principal they authenticate.

A token is ``<prefix>_<43 url-safe chars>`` (256 random bits). Prefixes tell
kinds apart at a glance in logs and secret scanners: ``ilmi`` interviewer,
``ilma`` ATS, ``ilmc`` candidate. Only ``sha256(token)`` is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from models.token import ApiToken, CandidateToken, TokenScope
from resolvers.errors import Conflict, Forbidden, Unauthenticated

_PREFIXES = {"interviewer": "ilmi", "ats": "ilma", "candidate": "ilmc"}
# Writing last_used_at on every request would turn reads into writes; a
# minute's resolution is what an operator auditing tokens needs.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class PrincipalKind(StrEnum):
    INTERVIEWER = "INTERVIEWER"
    ATS = "ATS"
    CANDIDATE = "CANDIDATE"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: always within exactly one account."""

    kind: PrincipalKind
    account_id: uuid.UUID
    token_id: uuid.UUID
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    """Set for candidates: the one session their token opens."""
    session_open: bool = True
    """For candidates: whether that session was still open when the token was checked.
    Once it has ended (completed, cancelled, expired) the candidate keeps read access
    until the token expires, and can change nothing (see ``require_writable``)."""
    expires_at: datetime | None = None
    """When the token stops working; WebSockets opened with it are closed then."""

    @property
    def is_staff(self) -> bool:
        """Interviewers and ATS integrations see everything in their account."""
        return self.kind is not PrincipalKind.CANDIDATE

    def require_staff(self) -> None:
        if not self.is_staff:
            raise Forbidden("candidate tokens cannot do this")

    def require_writable(self) -> None:
        """Refuse changes by the candidate of a session that has ended."""
        if not self.session_open:
            raise Conflict(
                "the interview session has ended: its candidate can still read it,"
                " but can no longer change anything"
            )

    def require_interviewer(self) -> None:
        if self.kind is not PrincipalKind.INTERVIEWER:
            raise Forbidden("only interviewer tokens can do this")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind: str) -> tuple[str, str, str]:
    """Return (token, its hash, its display prefix)."""
    token = f"{_PREFIXES[kind]}_{secrets.token_urlsafe(32)}"
    return token, hash_token(token), token[:12]


def parse_bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    return value.strip()


def _usable(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> bool:
    return revoked_at is None and (expires_at is None or expires_at > now)


async def authenticate(token: str) -> Principal:
    """Resolve a bearer token, or raise Unauthenticated (unknown, revoked, expired)."""
    digest = hash_token(token)
    now = datetime.now(UTC)
    if token.startswith(_PREFIXES["candidate"] + "_"):
        ctoken = await CandidateToken.get_or_none(token_hash=digest).select_related("session")
        if ctoken is None or not _usable(ctoken.revoked_at, ctoken.expires_at, now):
            raise Unauthenticated("invalid, revoked or expired token")
        await _touch(CandidateToken, ctoken.id, ctoken.last_used_at, now)
        session = ctoken.session
        return Principal(
            kind=PrincipalKind.CANDIDATE,
            account_id=session.account_id,
            token_id=ctoken.id,
            session_id=session.id,
            session_open=session.status.is_open
            and (session.expires_at is None or session.expires_at > now),
            expires_at=ctoken.expires_at,
        )
    api = await ApiToken.get_or_none(token_hash=digest)
    if api is None or not _usable(api.revoked_at, api.expires_at, now):
        raise Unauthenticated("invalid, revoked or expired token")
    await _touch(ApiToken, api.id, api.last_used_at, now)
    kind = PrincipalKind.ATS if api.scope is TokenScope.ATS else PrincipalKind.INTERVIEWER
    return Principal(
        kind=kind,
        account_id=api.account_id,
        token_id=api.id,
        user_id=api.user_id,
        expires_at=api.expires_at,
    )


async def _touch(
    model: type[ApiToken] | type[CandidateToken],
    token_id: uuid.UUID,
    last_used_at: datetime | None,
    now: datetime,
) -> None:
    if last_used_at is None or now - last_used_at >= _LAST_USED_RESOLUTION:
        await model.filter(id=token_id).update(last_used_at=now)
