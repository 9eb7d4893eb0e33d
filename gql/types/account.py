from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from models.account import Account as AccountModel
from models.account import User as UserModel
from models.token import ApiToken as ApiTokenModel
from resolvers.accounts import CreatedToken
from resolvers.auth import PrincipalKind


@strawberry.enum
class ViewerKind(Enum):
    INTERVIEWER = PrincipalKind.INTERVIEWER.value
    ATS = PrincipalKind.ATS.value
    CANDIDATE = PrincipalKind.CANDIDATE.value


@strawberry.enum
class TokenScope(Enum):
    INTERVIEWER = "INTERVIEWER"
    ATS = "ATS"


@strawberry.type
class Account:
    id: strawberry.ID
    name: str
    created_at: datetime

    @classmethod
    def of(cls, model: AccountModel) -> Account:
        return cls(id=strawberry.ID(str(model.id)), name=model.name, created_at=model.created_at)


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    name: str
    role: str

    @classmethod
    def of(cls, model: UserModel) -> User:
        return cls(
            id=strawberry.ID(str(model.id)),
            email=model.email,
            name=model.name,
            role=model.role.value,
        )


@strawberry.type
class ApiToken:
    id: strawberry.ID
    name: str
    scope: TokenScope
    prefix: str = strawberry.field(description="First characters of the token, for recognising it.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, model: ApiTokenModel) -> ApiToken:
        return cls(
            id=strawberry.ID(str(model.id)),
            name=model.name,
            scope=TokenScope(model.scope.value.upper()),
            prefix=model.prefix,
            created_at=model.created_at,
            expires_at=model.expires_at,
            last_used_at=model.last_used_at,
            revoked_at=model.revoked_at,
        )


@strawberry.type
class CreateApiTokenPayload:
    api_token: ApiToken
    token: str = strawberry.field(description="The secret token. Shown only once.")

    @classmethod
    def of(cls, created: CreatedToken) -> CreateApiTokenPayload:
        return cls(api_token=ApiToken.of(created.api_token), token=created.token)


@strawberry.input
class CreateApiTokenInput:
    name: str
    scope: TokenScope
    expires_at: datetime | None = None
