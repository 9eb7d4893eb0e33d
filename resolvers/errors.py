"""Errors the operations raise; the GraphQL layer turns each into ``extensions.code``.

Exception tree::

    ApiError                    code       meaning
    ├── Unauthenticated         UNAUTHENTICATED  no, unknown, revoked or expired token
    ├── Forbidden               FORBIDDEN        token kind may not do this
    ├── NotFound                NOT_FOUND        absent, or not in the caller's account
    ├── BadUserInput            BAD_USER_INPUT   invalid argument; ``field`` names it
    ├── Conflict                CONFLICT         state forbids it (ended session, run in progress)
    ├── RateLimited             RATE_LIMITED     a quota is exhausted
    └── SandboxUnavailable      SANDBOX_UNAVAILABLE  the sandbox runtime failed or is tripped

Anything else escaping a resolver is a bug: logged with an id and answered
``INTERNAL`` without details.
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFound(ApiError):
    code = "NOT_FOUND"

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} not found")


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.field = field


class Conflict(ApiError):
    code = "CONFLICT"


class RateLimited(ApiError):
    code = "RATE_LIMITED"


class SandboxUnavailable(ApiError):
    code = "SANDBOX_UNAVAILABLE"
