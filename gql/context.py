"""Per-request context: the services, and the caller's principal, authenticated lazily.

Over HTTP the token comes from ``Authorization: Bearer``; over WebSocket from
the ``connection_init`` payload's ``authorization`` (checked once, at connect).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from gql.settings import Settings
from resolvers.auth import Principal, authenticate, parse_bearer
from resolvers.bus import EventBus
from resolvers.claude import ClaudeAgent
from resolvers.errors import Unauthenticated
from resolvers.events import EventLog
from resolvers.live import LiveHub
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


@dataclass(slots=True)
class Context:
    services: Services
    request: Request | WebSocket
    response: Response | None = None
    authorization: str | None = None
    connection_params: dict[str, Any] | None = None
    _principal: Principal | None = field(default=None, repr=False)

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
    return await info.context.principal()
