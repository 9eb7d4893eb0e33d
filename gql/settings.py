"""Settings, read from the environment by the app factory (never at import time).

Every variable is listed in ``.env.example``; unset variables take the embedded
defaults (SQLite under ``./var/``, in-memory event bus, local sandboxes).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resolvers.ratelimit import (
    DEFAULT_PROCESS_RATE,
    DEFAULT_WEBHOOK_RATE,
    DEFAULT_WRITE_RATE,
    Rate,
)
from resolvers.s3sync import S3Config, s3_config
from resolvers.webhooks.config import DEFAULT_RETRY_SCHEDULE_S


class SettingsError(ValueError):
    """An environment variable has a value the server cannot use."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a finite number, not negative, got {value}")
    return value


def _secret(env: Mapping[str, str], name: str, *, min_length: int = 32) -> str:
    """A server secret; unset, a random one for this process (see its setting's docs)."""
    raw = env.get(name, "").strip()
    if not raw:
        return secrets.token_urlsafe(32)
    if len(raw) < min_length:
        raise SettingsError(f"{name} must be at least {min_length} characters")
    return raw


def _rate(env: Mapping[str, str], name: str, default: Rate | None) -> Rate | None:
    """A rate limit, ``<count>/<period>`` (e.g. ``300/60s``) or ``off`` (resolvers.ratelimit)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return Rate.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _seconds_list(
    env: Mapping[str, str], name: str, default: tuple[float, ...]
) -> tuple[float, ...]:
    """A comma-separated list of durations in seconds (fractions allowed), at least one."""
    parts = _list(env, name)
    if not parts:
        return default
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated seconds, got {parts!r}") from None
    if any(not 0 <= v < 10**7 for v in values):
        raise SettingsError(f"{name} must hold durations between 0 and 10^7 seconds")
    return values


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite://var/interviewlm.sqlite3"
    redis_url: str | None = None
    sandbox_backend: str = "local"
    sandbox_root: Path = Path("var/sandboxes")
    toolchain_dir: Path = Path("toolchain")
    modal_token_id: str | None = None
    modal_token_secret: str | None = field(default=None, repr=False)
    anthropic_api_key: str | None = field(default=None, repr=False)
    claude_command: str | None = None
    anthropic_upstream_url: str = "https://api.anthropic.com"
    claude_max_requests_per_run: int = 200
    claude_max_tokens_per_run: int = 5_000_000
    cors_origins: tuple[str, ...] = ()
    public_url: str = "http://localhost:8000"
    command_timeout_s: int = 30
    command_timeout_max_s: int = 300
    output_cap_bytes: int = 1 << 20
    sandbox_idle_timeout_s: int = 1800
    sandbox_max_lifetime_s: int = 4 * 3600
    workspace_retention_s: int = 7 * 24 * 3600
    account_sandbox_quota: int = 10
    # startSandbox(config) and a question's environment may ask for up to this much
    # (the default sandbox gets resolvers.sandboxes.Limits: 1 CPU, 512 MB).
    sandbox_max_cpu: float = 2.0
    sandbox_max_memory_mb: int = 2048
    reaper_interval_s: int = 30
    # Replica leases (resolvers.leases): a replica that has not renewed its lease for
    # replica_lease_s is lost; the others end what it held within about that long.
    replica_heartbeat_s: float = 5.0
    replica_lease_s: float = 20.0
    # Live subscriptions one token may hold on one replica (gql.ws): a candidate's page
    # needs a handful; an interviewer's dashboard may watch every live session at once.
    max_subscriptions_per_token: int = 50
    max_subscriptions_per_staff_token: int = 500
    test_run_timeout_s: int = 300
    claude_time_limit_s: int = 600
    candidate_token_ttl_s: int = 7 * 24 * 3600
    max_body_bytes: int = 4 << 20
    anon_max_body_bytes: int = 64 << 10
    max_query_tokens: int = 5_000
    anon_max_query_tokens: int = 1_000
    graphiql: bool = False
    max_query_depth: int = 12
    max_file_bytes: int = 1 << 20
    session_output_cap_bytes: int = 4 << 20
    session_storage_budget_bytes: int = 64 << 20
    max_terminals_per_session: int = 4
    webhook_allow_private_networks: bool = False
    webhook_retry_schedule_s: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_S
    webhook_timeout_s: int = 10
    webhook_poll_interval_ms: int = 1000
    webhook_concurrency: int = 16
    """Endpoints one replica serves at once; 0: this replica delivers no webhooks."""
    event_append_retry_s: float = 30.0
    """How long an append waits out an unreachable database before failing (resolvers.events)."""
    file_watch: bool = True
    file_watch_events_per_s: int = 50
    file_watch_burst: int = 100
    file_watch_max_dirs: int = 2_000
    file_watch_path_interval_ms: int = 1000
    log_level: str = "INFO"
    log_format: str = "text"
    """``text`` (readable) or ``json`` (one object per line): gql.logs."""
    metrics: bool = True
    """Serve ``/metrics`` (gql.metrics_endpoint): open unless ``metrics_token`` is set."""
    metrics_token: str | None = field(default=None, repr=False)
    report_link_ttl_s: int = 30 * 24 * 3600
    # Report link tokens are HMACs of the link's id under it (resolvers.report_links).
    # Unset: random per process -- links still open everywhere, but each replica (and
    # each restart) mints its own rather than handing out the same URL again.
    report_link_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    credential_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    """Seals credentials the server sends later (resolvers.credentials); shared by replicas."""
    # What the report's agent cost is computed with: the proxy's metered tokens at these
    # prices (USD per million tokens), not what the agent in the sandbox reports.
    claude_input_usd_per_mtok: float = 3.0
    claude_output_usd_per_mtok: float = 15.0
    # Token buckets per token and class (resolvers.ratelimit); None: the class is unlimited.
    # Generous: they stop floods and scripts, not people (nor the test suite).
    rate_limit_process: Rate | None = DEFAULT_PROCESS_RATE
    rate_limit_write: Rate | None = DEFAULT_WRITE_RATE
    rate_limit_webhook: Rate | None = DEFAULT_WEBHOOK_RATE
    # Workspaces in S3 (resolvers.s3sync): None unless S3_BUCKET is set.
    s3: S3Config | None = None

    @property
    def event_bus_url(self) -> str:
        return self.redis_url or "memory://"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        backend = env.get("SANDBOX_BACKEND", "local").strip() or "local"
        if backend not in {"local", "modal"}:
            raise SettingsError(f"SANDBOX_BACKEND must be 'local' or 'modal', got {backend!r}")
        database_url = env.get("DATABASE_URL", "").strip() or d.database_url
        if not database_url.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise SettingsError("DATABASE_URL must be a sqlite:// or postgres:// URL")
        upstream = (
            env.get("ANTHROPIC_UPSTREAM_URL", "").strip() or d.anthropic_upstream_url
        ).rstrip("/")
        if not upstream.startswith(("https://", "http://")):
            raise SettingsError("ANTHROPIC_UPSTREAM_URL must be an http:// or https:// URL")
        log_format = env.get("LOG_FORMAT", "").strip().lower() or d.log_format
        if log_format not in {"text", "json"}:
            raise SettingsError(f"LOG_FORMAT must be 'text' or 'json', got {log_format!r}")
        heartbeat_s = max(0.1, _float(env, "REPLICA_HEARTBEAT_SECONDS", d.replica_heartbeat_s))
        lease_s = _float(env, "REPLICA_LEASE_SECONDS", d.replica_lease_s)
        if lease_s < 2 * heartbeat_s:
            # One late heartbeat must not make a live replica look lost.
            raise SettingsError(
                "REPLICA_LEASE_SECONDS must be at least twice REPLICA_HEARTBEAT_SECONDS"
            )
        return cls(
            database_url=database_url,
            redis_url=env.get("REDIS_URL", "").strip() or None,
            sandbox_backend=backend,
            sandbox_root=Path(env.get("SANDBOX_ROOT", "").strip() or d.sandbox_root),
            toolchain_dir=Path(env.get("TOOLCHAIN_DIR", "").strip() or d.toolchain_dir),
            modal_token_id=env.get("MODAL_TOKEN_ID") or None,
            modal_token_secret=env.get("MODAL_TOKEN_SECRET") or None,
            anthropic_api_key=env.get("ANTHROPIC_API_KEY") or None,
            claude_command=env.get("CLAUDE_COMMAND") or None,
            anthropic_upstream_url=upstream,
            claude_max_requests_per_run=_int(
                env, "CLAUDE_MAX_REQUESTS_PER_RUN", d.claude_max_requests_per_run
            ),
            claude_max_tokens_per_run=_int(
                env, "CLAUDE_MAX_TOKENS_PER_RUN", d.claude_max_tokens_per_run
            ),
            cors_origins=_list(env, "CORS_ORIGINS"),
            public_url=(env.get("PUBLIC_URL", "").strip() or d.public_url).rstrip("/"),
            command_timeout_s=_int(env, "COMMAND_TIMEOUT_SECONDS", d.command_timeout_s),
            command_timeout_max_s=_int(env, "COMMAND_TIMEOUT_MAX_SECONDS", d.command_timeout_max_s),
            output_cap_bytes=_int(env, "OUTPUT_CAP_BYTES", d.output_cap_bytes),
            sandbox_idle_timeout_s=_int(
                env, "SANDBOX_IDLE_TIMEOUT_SECONDS", d.sandbox_idle_timeout_s
            ),
            sandbox_max_lifetime_s=_int(
                env, "SANDBOX_MAX_LIFETIME_SECONDS", d.sandbox_max_lifetime_s
            ),
            workspace_retention_s=_int(env, "WORKSPACE_RETENTION_SECONDS", d.workspace_retention_s),
            account_sandbox_quota=_int(env, "ACCOUNT_SANDBOX_QUOTA", d.account_sandbox_quota),
            sandbox_max_cpu=_float(env, "SANDBOX_MAX_CPU", d.sandbox_max_cpu),
            sandbox_max_memory_mb=_int(env, "SANDBOX_MAX_MEMORY_MB", d.sandbox_max_memory_mb),
            reaper_interval_s=_int(env, "REAPER_INTERVAL_SECONDS", d.reaper_interval_s),
            replica_heartbeat_s=heartbeat_s,
            replica_lease_s=lease_s,
            max_subscriptions_per_token=max(
                1, _int(env, "MAX_SUBSCRIPTIONS_PER_TOKEN", d.max_subscriptions_per_token)
            ),
            max_subscriptions_per_staff_token=max(
                1,
                _int(env, "MAX_SUBSCRIPTIONS_PER_STAFF_TOKEN", d.max_subscriptions_per_staff_token),
            ),
            test_run_timeout_s=_int(env, "TEST_RUN_TIMEOUT_SECONDS", d.test_run_timeout_s),
            claude_time_limit_s=_int(env, "CLAUDE_TIME_LIMIT_SECONDS", d.claude_time_limit_s),
            candidate_token_ttl_s=_int(env, "CANDIDATE_TOKEN_TTL_SECONDS", d.candidate_token_ttl_s),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", d.max_body_bytes),
            anon_max_body_bytes=_int(env, "ANON_MAX_BODY_BYTES", d.anon_max_body_bytes),
            max_query_tokens=_int(env, "MAX_QUERY_TOKENS", d.max_query_tokens),
            anon_max_query_tokens=_int(env, "ANON_MAX_QUERY_TOKENS", d.anon_max_query_tokens),
            graphiql=_bool(env, "GRAPHIQL", d.graphiql),
            max_query_depth=_int(env, "MAX_QUERY_DEPTH", d.max_query_depth),
            max_file_bytes=_int(env, "MAX_FILE_BYTES", d.max_file_bytes),
            session_output_cap_bytes=_int(
                env, "SESSION_OUTPUT_CAP_BYTES", d.session_output_cap_bytes
            ),
            session_storage_budget_bytes=_int(
                env, "SESSION_STORAGE_BUDGET_BYTES", d.session_storage_budget_bytes
            ),
            max_terminals_per_session=_int(
                env, "MAX_TERMINALS_PER_SESSION", d.max_terminals_per_session
            ),
            webhook_allow_private_networks=_bool(
                env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", d.webhook_allow_private_networks
            ),
            webhook_retry_schedule_s=_seconds_list(
                env, "WEBHOOK_RETRY_SCHEDULE", d.webhook_retry_schedule_s
            ),
            webhook_timeout_s=max(1, _int(env, "WEBHOOK_TIMEOUT_SECONDS", d.webhook_timeout_s)),
            webhook_poll_interval_ms=max(
                10, _int(env, "WEBHOOK_POLL_INTERVAL_MS", d.webhook_poll_interval_ms)
            ),
            webhook_concurrency=max(0, _int(env, "WEBHOOK_CONCURRENCY", d.webhook_concurrency)),
            event_append_retry_s=_float(env, "EVENT_APPEND_RETRY_SECONDS", d.event_append_retry_s),
            file_watch=_bool(env, "FILE_WATCH", d.file_watch),
            file_watch_events_per_s=_int(
                env, "FILE_WATCH_EVENTS_PER_SECOND", d.file_watch_events_per_s
            ),
            file_watch_burst=_int(env, "FILE_WATCH_BURST", d.file_watch_burst),
            file_watch_max_dirs=_int(env, "FILE_WATCH_MAX_DIRS", d.file_watch_max_dirs),
            file_watch_path_interval_ms=max(
                0, _int(env, "FILE_WATCH_PATH_INTERVAL_MS", d.file_watch_path_interval_ms)
            ),
            log_level=(env.get("LOG_LEVEL", "").strip() or d.log_level).upper(),
            log_format=log_format,
            metrics=_bool(env, "METRICS", d.metrics),
            metrics_token=env.get("METRICS_TOKEN", "").strip() or None,
            report_link_ttl_s=_int(env, "REPORT_LINK_TTL_SECONDS", d.report_link_ttl_s),
            report_link_secret=_secret(env, "REPORT_LINK_SECRET"),
            credential_key=_secret(env, "CREDENTIAL_KEY"),
            claude_input_usd_per_mtok=_float(
                env, "CLAUDE_INPUT_USD_PER_MTOK", d.claude_input_usd_per_mtok
            ),
            claude_output_usd_per_mtok=_float(
                env, "CLAUDE_OUTPUT_USD_PER_MTOK", d.claude_output_usd_per_mtok
            ),
            rate_limit_process=_rate(env, "RATE_LIMIT_PROCESS", d.rate_limit_process),
            rate_limit_write=_rate(env, "RATE_LIMIT_WRITE", d.rate_limit_write),
            rate_limit_webhook=_rate(env, "RATE_LIMIT_WEBHOOK", d.rate_limit_webhook),
            s3=s3_config(env),
        )
