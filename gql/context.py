"""Per-request context: the services, and the caller's principal.

Over HTTP the token comes from ``Authorization: Bearer`` and is checked before
the body is read (gql.view); a request without one is anonymous, and every
field but ``languages`` and introspection answers UNAUTHENTICATED. Over
WebSocket it comes from the ``connection_init`` payload's ``authorization``,
checked at connect and again at every subscribe (gql.ws).

``principal_of`` is what resolvers call. In a mutation it also refuses the
candidate of a session that has ended (CONFLICT): after endSession (or expiry)
the candidate keeps read-only access to their session until their token
expires, and can change nothing -- no file, command, terminal, test run, Claude
run or sandbox. For a root mutation field it then takes a token from the
caller's rate-limit bucket of that field's class (RATE_LIMITED when empty:
resolvers.ratelimit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from gql.loaders import SessionLoaders
from gql.renders import SharedRenders
from gql.settings import Settings
from resolvers.auth import Principal, authenticate, parse_bearer
from resolvers.bus import EventBus
from resolvers.claude import ClaudeAgent
from resolvers.errors import Unauthenticated
from resolvers.events import EventLog
from resolvers.file_watch import FileWatch
from resolvers.live import LiveHub
from resolvers.ratelimit import MemoryBuckets, RateLimiter
from resolvers.revocations import Revocations
from resolvers.sandboxes import Sandboxes
from resolvers.terminals import Terminals
from resolvers.testruns import TestRuns


@dataclass(slots=True)
class Services:
    """Everything the lifespan opens, shared by all requests of the process."""

    settings: Settings
    bus: EventBus
    log: EventLog
    sandboxes: Sandboxes
    live: LiveHub
    terminals: Terminals
    test_runs: TestRuns
    claude: ClaudeAgent
    revocations: Revocations
    renders: SharedRenders
    """Live batches rendered once for all their watchers (gql.renders)."""
    file_watch: FileWatch
    limits: RateLimiter = field(default_factory=lambda: RateLimiter({}, MemoryBuckets()))
    """Rate limits per token of root mutations (resolvers.ratelimit); none by default."""


@dataclass(slots=True)
class Context:
    services: Services
    request: Request | WebSocket
    response: Response | None = None
    authorization: str | None = None
    connection_params: dict[str, Any] | None = None
    _principal: Principal | None = field(default=None, repr=False)
    _loaders: SessionLoaders | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def log(self) -> EventLog:
        return self.services.log

    @property
    def claude(self) -> ClaudeAgent:
        return self.services.claude

    @property
    def test_runs(self) -> TestRuns:
        return self.services.test_runs

    @property
    def terminals(self) -> Terminals:
        return self.services.terminals

    @property
    def live(self) -> LiveHub:
        return self.services.live

    @property
    def sandboxes(self) -> Sandboxes:
        return self.services.sandboxes

    @property
    def renders(self) -> SharedRenders:
        return self.services.renders

    @property
    def loaders(self) -> SessionLoaders:
        """Batch loaders of session fields (gql.loaders), made on first use."""
        if self._loaders is None:
            self._loaders = SessionLoaders.of(self.principal)
        return self._loaders

    @property
    def authenticated(self) -> bool:
        """Whether a valid token came with the request (or the WebSocket's init), before
        anything was parsed: it picks the parse limits (gql.parsing)."""
        return self._principal is not None

    @property
    def connection_principal(self) -> Principal | None:
        return self._principal

    async def principal(self) -> Principal:
        if self._principal is None:
            token = parse_bearer(self.authorization)
            if token is None:
                raise Unauthenticated("a bearer token is required")
            self._principal = await authenticate(token)
        return self._principal

    async def authenticate_connection(self) -> Principal:
        params = self.connection_params or {}
        value = params.get("authorization") or params.get("Authorization")
        self.authorization = value if isinstance(value, str) else None
        self._principal = None
        return await self.principal()


Info = StrawberryInfo[Context, None]


async def principal_of(info: Info) -> Principal:
    principal = await info.context.principal()
    if info.operation.operation is OperationType.MUTATION:
        principal.require_writable()
        # Every root mutation calls this first, once: the one place rate limits are
        # checked, by field name (each alias of a field is a call of its own).
        if info.path.prev is None:
            await info.context.services.limits.check(principal, info.field_name)
    return principal
