"""Accounts, users and their API tokens; the viewer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from models.account import Account, User, UserRole
from models.session import InterviewSession
from models.token import ApiToken, TokenScope
from resolvers import validation as check
from resolvers.auth import Principal, new_token
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.revocations import Revocations
from resolvers.sessions import as_of


@dataclass(frozen=True, slots=True)
class Viewer:
    principal: Principal
    account: Account
    user: User | None
    session: InterviewSession | None


@dataclass(frozen=True, slots=True)
class CreatedToken:
    api_token: ApiToken
    token: str
    """Shown once; only its hash is stored."""


async def viewer(principal: Principal) -> Viewer:
    account = await Account.get(id=principal.account_id)
    user = await User.get_or_none(id=principal.user_id) if principal.user_id else None
    session = (
        await InterviewSession.get_or_none(id=principal.session_id, account_id=account.id)
        if principal.session_id
        else None
    )
    return Viewer(
        principal=principal, account=account, user=user, session=as_of(session) if session else None
    )


async def create_account(name: str, *, admin_email: str, admin_name: str) -> tuple[Account, User]:
    account = await Account.create(name=check.text("name", name, max_length=200))
    user = await User.create(
        account=account,
        email=check.email("adminEmail", admin_email),
        name=check.text("adminName", admin_name, max_length=200),
        role=UserRole.ADMIN,
    )
    return account, user


async def issue_token(
    account_id: object,
    *,
    name: str,
    scope: TokenScope,
    user_id: object | None = None,
    expires_at: datetime | None = None,
) -> CreatedToken:
    token, digest, prefix = new_token(scope.value)
    api_token = await ApiToken.create(
        account_id=account_id,
        user_id=user_id,
        name=name,
        scope=scope,
        token_hash=digest,
        prefix=prefix,
        expires_at=expires_at,
    )
    return CreatedToken(api_token=api_token, token=token)


async def create_api_token(
    principal: Principal, *, name: str, scope: str, expires_at: datetime | None
) -> CreatedToken:
    principal.require_interviewer()
    name = check.text("input.name", name, max_length=200)
    try:
        token_scope = TokenScope(scope.lower())
    except ValueError:
        raise BadUserInput("input.scope", "must be INTERVIEWER or ATS") from None
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise BadUserInput("input.expiresAt", "must be in the future")
    return await issue_token(
        principal.account_id,
        name=name,
        scope=token_scope,
        user_id=principal.user_id,
        expires_at=expires_at,
    )


async def revoke_api_token(
    principal: Principal, token_id: str, *, revocations: Revocations
) -> ApiToken:
    """Revoke at once: HTTP requests are refused from now on, and the token's open
    WebSockets are closed on every replica."""
    principal.require_interviewer()
    tid = check.object_id("id", token_id)
    api_token = await ApiToken.get_or_none(id=tid, account_id=principal.account_id)
    if api_token is None:
        raise NotFound("API token")
    if api_token.revoked_at is not None:
        raise Conflict("token is already revoked")
    api_token.revoked_at = datetime.now(UTC)
    await api_token.save(update_fields=["revoked_at"])
    await revocations.revoke(api_token.id)
    return api_token


async def list_api_tokens(principal: Principal) -> list[ApiToken]:
    principal.require_interviewer()
    return await ApiToken.filter(account_id=principal.account_id).order_by("-created_at")
