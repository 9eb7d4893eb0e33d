"""Accounts, users and their API tokens; the viewer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.transactions import in_transaction

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


@dataclass(frozen=True, slots=True)
class ProvisionedAccount:
    """What ``interviewlm account create`` makes: the account, its first user (an admin)
    and two tokens, each shown once."""

    account: Account
    admin: User
    interviewer: CreatedToken
    """Acts as ``admin``."""
    ats: CreatedToken


DEFAULT_ADMIN_EMAIL = "admin@interviewlm.invalid"
"""The first user's address when none is given: a reserved domain, never delivered to."""


async def provision_account(
    name: str, *, admin_email: str = DEFAULT_ADMIN_EMAIL, admin_name: str = "Admin"
) -> ProvisionedAccount:
    """A new account with its admin, an interviewer token acting as that admin and an
    ATS token; all or nothing."""
    async with in_transaction():
        account, admin = await create_account(name, admin_email=admin_email, admin_name=admin_name)
        interviewer = await issue_token(
            account.id,
            name="interviewer (account create)",
            scope=TokenScope.INTERVIEWER,
            user_id=admin.id,
        )
        ats = await issue_token(account.id, name="ATS (account create)", scope=TokenScope.ATS)
    return ProvisionedAccount(account=account, admin=admin, interviewer=interviewer, ats=ats)


async def issue_account_token(
    account_id: str,
    *,
    kind: str,
    name: str | None = None,
    user_email: str | None = None,
    user_name: str | None = None,
) -> CreatedToken:
    """A token for an account, as an operator issues it (``interviewlm token create``).

    An interviewer token acts as a user of the account (scorecards, notes are theirs):
    the one with ``user_email``, created as an interviewer if the account has none by
    that address, or else the account's first admin. ATS tokens have no user.
    """
    try:
        scope = TokenScope(kind.lower())
    except ValueError:
        raise BadUserInput("kind", "must be interviewer or ats") from None
    account = await Account.get_or_none(id=check.object_id("account", account_id))
    if account is None:
        raise NotFound("account")
    token_name = check.text("name", name or f"{scope.value} (token create)", max_length=200)
    if scope is TokenScope.ATS:
        if user_email is not None:
            raise BadUserInput("user", "ATS tokens act for the account, not for a user")
        return await issue_token(account.id, name=token_name, scope=scope)
    async with in_transaction():
        user = await _token_user(account, user_email, user_name)
        return await issue_token(account.id, name=token_name, scope=scope, user_id=user.id)


async def _token_user(account: Account, email: str | None, name: str | None) -> User:
    if email is None:
        admin = (
            await User.filter(account_id=account.id, role=UserRole.ADMIN)
            .order_by("created_at")
            .first()
        )
        if admin is None:
            raise NotFound("admin user of the account (name one with --user)")
        return admin
    address = check.email("user", email)
    user = await User.get_or_none(account_id=account.id, email=address)
    if user is not None:
        return user
    return await User.create(
        account=account,
        email=address,
        name=check.text("userName", name or address, max_length=200),
        role=UserRole.INTERVIEWER,
    )


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
