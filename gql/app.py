"""The Starlette app factory: settings from the environment, one lifespan for all resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from tortoise.backends.base.client import BaseDBAsyncClient

from gql.anthropic_proxy import ProxySocket, agent_link, proxy_routes
from gql.backends import build_backend
from gql.context import Services
from gql.greenhouse import greenhouse_routes
from gql.logs import RequestIds
from gql.metrics_endpoint import loop_lag_sampled, metrics_routes
from gql.parsing import DocumentLimits
from gql.renders import SharedRenders
from gql.report_page import report_routes
from gql.schema import build_schema
from gql.settings import Settings
from gql.types.report import report_config
from gql.view import GraphQLView
from models.session import InterviewSession
from resolvers.anthropic_proxy import AnthropicProxy, ProxyConfig
from resolvers.bus import EventBus
from resolvers.claude import ClaudeAgent, ClaudeConfig
from resolvers.credentials import CredentialBox
from resolvers.database import close_database, open_database, ping_database
from resolvers.event_payload import JsonDict
from resolvers.events import EventLog
from resolvers.file_watch import FileWatch, WatchPolicy
from resolvers.leases import LeasePolicy, Leases, leases_running
from resolvers.live import LiveHub
from resolvers.orphans import step_down, take_over
from resolvers.ratelimit import PROCESS, WEBHOOK, WRITE, RateLimiter
from resolvers.reaper import reaper_running, reconcile
from resolvers.report import report_payload
from resolvers.revocations import Revocations
from resolvers.sandboxes import Sandboxes, SandboxPolicy
from resolvers.storage import StorageLimits
from resolvers.terminals import Terminals
from resolvers.testruns import TestRuns
from resolvers.webhooks.config import WebhookConfig
from resolvers.webhooks.events import use_completion_report
from resolvers.webhooks.worker import DeliveryWorker

logger = logging.getLogger("interviewlm")


def _report_on_completion(settings: Settings) -> None:
    """``session.completed`` webhooks carry the report's summary and link (made in the
    completing transaction); resolvers cannot build the report's config from settings."""
    config = report_config(settings)

    async def completion_report(session: InterviewSession, db: BaseDBAsyncClient) -> JsonDict:
        return await report_payload(session, config=config, db=db)

    use_completion_report(completion_report)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    bus = EventBus(settings.event_bus_url)
    log = EventLog(
        bus,
        limits=StorageLimits(
            output_cap_bytes=settings.session_output_cap_bytes,
            storage_budget_bytes=settings.session_storage_budget_bytes,
        ),
        retry_s=settings.event_append_retry_s,
    )
    backend = build_backend(settings)
    sandboxes = Sandboxes(
        backend,
        log,
        policy=SandboxPolicy(
            quota=settings.account_sandbox_quota,
            idle_timeout_s=settings.sandbox_idle_timeout_s,
            max_lifetime_s=settings.sandbox_max_lifetime_s,
            retention_s=settings.workspace_retention_s,
            max_file_bytes=settings.max_file_bytes,
            max_cpu=settings.sandbox_max_cpu,
            max_memory_mb=settings.sandbox_max_memory_mb,
        ),
        secrets=tuple(s for s in (settings.anthropic_api_key, settings.modal_token_secret) if s),
        s3=settings.s3,
    )
    live = LiveHub(bus, log)
    # The agent's only way to Anthropic (issue 9): the key stays here.
    proxy = AnthropicProxy(
        ProxyConfig(
            api_key=settings.anthropic_api_key,
            upstream_url=settings.anthropic_upstream_url,
            max_requests=settings.claude_max_requests_per_run,
            max_tokens=settings.claude_max_tokens_per_run,
        )
    )
    proxy_socket = ProxySocket(proxy) if backend.agent_proxy_route == "socket" else None

    async def close_proxy() -> None:
        if proxy_socket is not None:
            await proxy_socket.aclose()
        await proxy.aclose()

    terminals = Terminals(sandboxes, bus, max_per_session=settings.max_terminals_per_session)
    file_watch = FileWatch(
        sandboxes,
        WatchPolicy(
            enabled=settings.file_watch,
            events_per_s=settings.file_watch_events_per_s,
            burst=max(1, settings.file_watch_burst),
            path_interval_s=settings.file_watch_path_interval_ms / 1000,
        ),
    )
    sandboxes.listeners.append(file_watch)
    test_runs = TestRuns(sandboxes, run_timeout_s=settings.test_run_timeout_s)
    # Every replica delivers webhooks from the shared outbox (resolvers.webhooks).
    webhooks = DeliveryWorker(
        WebhookConfig(
            allow_private_networks=settings.webhook_allow_private_networks,
            retry_schedule_s=settings.webhook_retry_schedule_s,
            timeout_s=settings.webhook_timeout_s,
            poll_interval_s=settings.webhook_poll_interval_ms / 1000,
            concurrency=settings.webhook_concurrency,
            credentials=CredentialBox.from_secret(settings.credential_key),
        )
    )
    _report_on_completion(settings)
    services = Services(
        settings=settings,
        bus=bus,
        log=log,
        sandboxes=sandboxes,
        live=live,
        terminals=terminals,
        test_runs=test_runs,
        claude=ClaudeAgent(
            sandboxes,
            bus,
            ClaudeConfig(
                api_key=settings.anthropic_api_key,
                command=settings.claude_command,
                time_limit_s=settings.claude_time_limit_s,
            ),
            link=agent_link(settings.public_url, proxy_socket) if proxy.config.api_key else None,
        ),
        revocations=Revocations(bus),
        renders=SharedRenders(),
        file_watch=file_watch,
        # Shared by the replicas through Redis when there is one (resolvers.ratelimit).
        limits=RateLimiter.build(
            {
                PROCESS: settings.rate_limit_process,
                WRITE: settings.rate_limit_write,
                WEBHOOK: settings.rate_limit_webhook,
            },
            settings.redis_url,
        ),
    )
    view = GraphQLView(
        build_schema(
            max_depth=settings.max_query_depth,
            limits=DocumentLimits(
                max_tokens=settings.max_query_tokens,
                anon_max_tokens=settings.anon_max_query_tokens,
            ),
        ),
        max_body_bytes=settings.max_body_bytes,
        # GraphiQL only where GRAPHIQL says so (scripts/serve, for development).
        graphql_ide="graphiql" if settings.graphiql else None,
        keep_alive=True,
        keep_alive_interval=15,
        connection_init_wait_timeout=timedelta(seconds=10),
        allowed_origins=settings.cors_origins,
    )
    view.services = services

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await open_database(settings.database_url)
        await bus.connect()
        # Refuses to start (BackendUnavailable) rather than run code unisolated.
        await backend.start()
        # This replica's lease; lost replicas' terminals, runs and sandboxes end (issue 13).
        leases = Leases(
            sandboxes.owner,
            LeasePolicy(heartbeat_s=settings.replica_heartbeat_s, lease_s=settings.replica_lease_s),
            database_url=settings.database_url,  # PostgreSQL: renews over its own connection
        )
        lost = await reconcile(sandboxes, leases)
        logger.info(
            "interviewlm ready (bus %s, sandboxes %s, %d lost sandboxes marked terminated)",
            settings.event_bus_url.split("@")[-1],
            backend.name,
            lost,
        )
        try:
            async with (
                reaper_running(sandboxes, interval_s=settings.reaper_interval_s),
                leases_running(
                    leases,
                    take_over=partial(take_over, sandboxes),
                    on_fenced=partial(
                        step_down,
                        sandboxes,
                        closers=(terminals.close_all, test_runs.close, services.claude.close),
                    ),
                ),
                webhooks.running(),
                loop_lag_sampled(),
            ):
                yield
        finally:
            # Each step is bounded: a stuck resource must not keep a replica
            # from shutting down (its clients reconnect elsewhere with afterSeq).
            for name, step in (
                ("claude runs", services.claude.close),
                ("agent proxy", close_proxy),
                ("test runs", test_runs.close),
                ("S3 exports", sandboxes.close_exports),
                ("terminals", terminals.close_all),
                ("file watchers", file_watch.close),
                ("live hubs", live.close),
                ("token revocations", services.revocations.close),
                ("rate limits", services.limits.aclose),
                ("sandbox backend", backend.aclose),
                ("event bus", bus.disconnect),
                # Survivors end what is left of this replica's at their next pass.
                ("replica lease", leases.stop),
                ("database", close_database),
            ):
                try:
                    async with asyncio.timeout(10):
                        await step()
                except Exception:
                    logger.exception("closing the %s failed", name)

    async def healthz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in (("database", ping_database), ("bus", bus.ping)):
            try:
                await probe()
                checks[name] = "ok"
            except Exception as exc:  # a health check reports, it does not raise
                logger.warning("health check %s failed: %s", name, exc)
                checks[name] = "unavailable"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", **checks},
            status_code=200 if healthy else 503,
        )

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/graphql", view, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            WebSocketRoute("/graphql", view),
            *proxy_routes(proxy),
            *report_routes(settings),
            *greenhouse_routes(services),
            *metrics_routes(settings, sandboxes),
        ],
        middleware=[
            # Outermost: every line logged while a request is served carries its id.
            Middleware(RequestIds),
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "accept", "x-request-id"],
            ),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.webhooks = webhooks
    return app
