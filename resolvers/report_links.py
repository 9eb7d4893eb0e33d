"""Report links: the URL an ATS stores to open a session's report without an API token.

A link is a row (``models.report.ReportLink``) with an expiry; its token is
``ilmr_`` + base64url(HMAC-SHA256(secret, link id)), and only the token's SHA-256
is stored. Opening a link looks the hash up: a token is good exactly while its row
is unexpired and unrevoked, whatever secret minted it (a rotated secret or a
replica with another one changes nothing for links already handed out).

Why an HMAC rather than a random token: ``reportUrl`` is asked for again and again
(every report query, every ``session.completed`` webhook, Greenhouse polling
``test_status``), and should answer the same URL rather than pile up links. With a
random token that needs the plaintext stored; derived from the id, the server
recomputes it while the database holds only hashes. A link is handed out again
while it has at least half its lifetime left (so a URL given out is good for at
least half of ``REPORT_LINK_TTL_SECONDS``); after that, or after a revocation, the
next ``reportUrl`` mints a new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from models.report import ReportLink
from resolvers.auth import Principal, hash_token
from resolvers.sessions import as_of, get_session

TOKEN_PREFIX = "ilmr_"  # noqa: S105 - a prefix, not a secret
_TOKEN_CHARS = 43  # 32 bytes of HMAC in unpadded base64url
REPORT_PATH = "/reports/"


@dataclass(frozen=True, slots=True)
class ReportLinks:
    public_url: str
    secret: str = field(repr=False)
    ttl: timedelta

    def url(self, token: str) -> str:
        return f"{self.public_url}{REPORT_PATH}{token}"

    def token_of(self, link_id: uuid.UUID) -> str:
        digest = hmac.new(self.secret.encode(), b"report-link:" + link_id.bytes, hashlib.sha256)
        return TOKEN_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")

    async def url_for(
        self,
        session_id: uuid.UUID,
        *,
        now: datetime | None = None,
        db: BaseDBAsyncClient | None = None,
    ) -> str:
        """The report's URL: a live link of the session handed out again, or a new one.

        The caller has reached the session (staff, its account) already."""
        now = now or datetime.now(UTC)
        candidates = (
            await ReportLink.filter(
                session_id=session_id, revoked_at__isnull=True, expires_at__gt=now + self.ttl / 2
            )
            .using_db(db)
            .order_by("-expires_at")
        )
        for link in candidates:
            token = self.token_of(link.id)
            # Minted under another secret (another replica, a rotation): not ours to repeat.
            if hmac.compare_digest(hash_token(token), link.token_hash):
                return self.url(token)
        link_id = uuid.uuid4()
        token = self.token_of(link_id)
        await ReportLink.create(
            id=link_id,
            session_id=session_id,
            token_hash=hash_token(token),
            expires_at=now + self.ttl,
            using_db=db,
        )
        return self.url(token)


async def open_link(token: str, *, now: datetime | None = None) -> ReportLink | None:
    """The link a report token opens, its ``session`` loaded; None if unknown, malformed,
    expired or revoked."""
    if not token.startswith(TOKEN_PREFIX) or len(token) != len(TOKEN_PREFIX) + _TOKEN_CHARS:
        return None
    now = now or datetime.now(UTC)
    link = await ReportLink.get_or_none(
        token_hash=hash_token(token), revoked_at__isnull=True, expires_at__gt=now
    ).select_related("session")
    if link is not None:
        as_of(link.session, now)
    return link


async def revoke_links(principal: Principal, session_id: str) -> int:
    """Revoke every live report link of the session (staff): their URLs answer 404 from
    now on, and the next ``reportUrl`` mints a new link. Returns how many were live."""
    principal.require_staff()
    session = await get_session(principal, session_id)
    now = datetime.now(UTC)
    return await ReportLink.filter(
        session_id=session.id, revoked_at__isnull=True, expires_at__gt=now
    ).update(revoked_at=now)
