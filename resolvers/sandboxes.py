"""Sandbox lifecycle for sessions: start (idempotent), terminate, quota, breaker.

One live sandbox per session, enforced by a unique key in the registry so two
replicas racing to start it end up with one. A restarted sandbox gets the
session's files back from the recording; a first one gets the question's
starter files and a README.md with the prompt (but for paths the editor saved
before any sandbox ran: ``resolvers.workspace.write_file`` records those).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from modal_app.base import (
    Limits,
    SandboxBackend,
    SandboxError,
    SandboxFileError,
    SandboxNotFound,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
)
from models.event import Event
from models.language import Language
from models.question import Question, QuestionLanguage
from models.sandbox import SandboxRecord, SandboxState
from models.session import InterviewSession, SessionStatus
from resolvers import event_kinds as ek
from resolvers import metrics
from resolvers.auth import Principal
from resolvers.breaker import CircuitBreaker
from resolvers.errors import Conflict, RateLimited, SandboxUnavailable
from resolvers.events import EventLog, EventRecord
from resolvers.files import FileRecorder
from resolvers.s3export import Exports
from resolvers.s3sync import S3Config, import_starters
from resolvers.sandbox_config import ConfigLimits, SandboxConfig, effective_config, spec_fields
from resolvers.sessions import get_session
from resolvers.settling import settled_elsewhere, settled_here
from resolvers.webhooks.events import enqueue_session_event
from resolvers.workspace_sync import sync_workspace

T = TypeVar("T")
LIVE = [SandboxState.STARTING, SandboxState.RUNNING]


def replica_id() -> str:
    """``host:pid:token``: the token tells a restarted process from its predecessor even
    with the same pid (pid 1 in a container); ``resolvers.leases`` parses it."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SandboxListener(Protocol):
    """Told when a sandbox this replica started is RUNNING, and when it ends."""

    def running(self, record: SandboxRecord) -> None: ...

    def ended(self, record: SandboxRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    quota: int = 10
    idle_timeout_s: float = 1800
    max_lifetime_s: float = 4 * 3600
    retention_s: float = 7 * 24 * 3600
    max_file_bytes: int = 1 << 20
    limits: Limits = field(default_factory=Limits)
    # What startSandbox(config) and question environments may ask for (resolvers.sandbox_config).
    max_cpu: float = 2.0
    max_memory_mb: int = 2048


class Sandboxes:
    def __init__(
        self,
        backend: SandboxBackend,
        log: EventLog,
        *,
        policy: SandboxPolicy,
        breaker: CircuitBreaker | None = None,
        owner: str | None = None,
        secrets: tuple[str, ...] = (),
        s3: S3Config | None = None,
    ) -> None:
        self.secrets = tuple(s.encode() for s in secrets if s)
        self.backend = backend
        self.log = log
        self.policy = policy
        self.breaker = breaker or CircuitBreaker()
        self.files = FileRecorder(log)
        self.owner = owner or replica_id()
        # Starts in progress in this process: set when each one is over (see settled).
        self._starting: dict[uuid.UUID, asyncio.Event] = {}
        self.listeners: list[SandboxListener] = []
        # Workspaces in S3 (resolvers.s3sync), when the app has a bucket.
        self.s3 = s3
        self.exports = Exports(self, s3) if s3 is not None else None

    async def close_exports(self) -> None:
        if self.exports is not None:
            await self.exports.close()

    def session_ended(self, session: InterviewSession) -> None:
        """Export the ended session to S3 in the background (endSession does not wait)."""
        if self.exports is not None and not session.status.is_open:
            self.exports.later(session.id, session.account_id)

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        deadline_s: float | None = None,
        scope: str | None = None,
        long_running: bool = False,
    ) -> T:
        """Every backend call goes through the breaker (and its deadline).

        ``scope``: the backend id of the one sandbox the call is about, so that
        failures of one (hostile) sandbox alone never open the shared breaker.
        ``long_running``: it lasts as long as the candidate's program (a command,
        a test run), so it never holds the breaker's one trial slot.
        """
        return await self.breaker.call(
            operation, deadline_s=deadline_s, scope=scope, long_running=long_running
        )

    def redact(self, data: bytes) -> bytes:
        """Server secrets never enter the recording, whatever wrote them."""
        for secret in self.secrets:
            data = data.replace(secret, b"[redacted]")
        return data

    async def live(self, session_id: uuid.UUID) -> SandboxRecord | None:
        return await SandboxRecord.get_or_none(session_id=session_id, state__in=LIVE)

    async def latest(self, session_id: uuid.UUID) -> SandboxRecord | None:
        return await SandboxRecord.filter(session_id=session_id).order_by("-created_at").first()

    @property
    def config_limits(self) -> ConfigLimits:
        return ConfigLimits(
            max_cpu=self.policy.max_cpu,
            max_memory_mb=self.policy.max_memory_mb,
            serves_images=self.backend.serves_images,
        )

    async def start(
        self, principal: Principal, session_id: str, config: SandboxConfig | None = None
    ) -> SandboxRecord:
        """``config`` (staff only, checked by ``sandbox_config.check_config``) over the
        question's environment; without one, a restart keeps the previous sandbox's."""
        session = await get_session(principal, session_id)
        if config is not None:
            principal.require_staff()  # the candidate gets the question's environment
        if not session.status.is_open:
            raise Conflict(f"session is {session.status.value}; it cannot start a sandbox")
        existing = await self.live(session.id)
        if existing is not None and config is None:
            return await self.settled(existing)
        wanted = await effective_config(self, session, config)
        if existing is not None:
            if existing.config_json != wanted.to_json():
                raise Conflict("the sandbox runs with another configuration; terminate it first")
            return await self.settled(existing)
        running = await SandboxRecord.filter(account_id=session.account_id, state__in=LIVE).count()
        if running >= self.policy.quota:
            raise RateLimited(
                f"the account already runs {running} sandboxes (quota {self.policy.quota}); "
                "terminate one or end its session first"
            )
        now = datetime.now(UTC)
        try:
            record = await SandboxRecord.create(
                account_id=session.account_id,
                session_id=session.id,
                backend=self.backend.name,
                owner=self.owner,
                live_key=session.id,
                last_activity_at=now,
                config_json=wanted.to_json(),
            )
        except IntegrityError:
            # Another request (or replica) is starting it right now: same answer.
            raced = await self.live(session.id)
            if raced is None:
                raise Conflict("the sandbox is changing state; retry") from None
            return await self.settled(raced)
        done = self._starting[record.id] = asyncio.Event()
        try:
            await self._provision(session, record)
        except BaseException as exc:
            await self._end(record, SandboxState.ERROR, reason=_reason(exc))
            if isinstance(exc, SandboxError):
                raise SandboxUnavailable(f"could not start the sandbox: {exc}") from exc
            raise
        finally:
            del self._starting[record.id]
            done.set()
        return record

    async def settled(self, record: SandboxRecord) -> SandboxRecord:
        """Wait out another request's (or replica's) start of the same sandbox.

        Started here, its end is an ``asyncio.Event``; started on another replica,
        the ``sandbox.started``/``.error``/``.terminated`` event on the bus. The
        registry says how it went (``resolvers.settling``).
        """
        if record.state is SandboxState.STARTING:

            async def check() -> SandboxRecord | None:
                current = await SandboxRecord.get(id=record.id)
                return None if current.state is SandboxState.STARTING else current

            timeout = self.breaker.call_timeout
            done = self._starting.get(record.id)
            if done is not None:
                settled = await settled_here(done, check, timeout_s=timeout)
            else:
                settled = await settled_elsewhere(
                    self.log.bus,
                    record.session_id,
                    check,
                    relevant=partial(_ends_start, str(record.id)),
                    timeout_s=timeout,
                )
            if settled is None:
                raise SandboxUnavailable("the sandbox is still starting; retry")
            record = settled
        if record.state is not SandboxState.RUNNING:
            raise SandboxUnavailable(f"the sandbox could not start: {record.end_reason}")
        return record

    async def _provision(self, session: InterviewSession, record: SandboxRecord) -> None:
        config = SandboxConfig.from_json(record.config_json)
        spec = SandboxSpec(
            # An image replaces the language preset (it brings the toolchain).
            language=None if config.image is not None else Language(session.language),
            **spec_fields(config, self.policy.limits),
            timeout_s=self.policy.max_lifetime_s,
            idle_timeout_s=self.policy.idle_timeout_s,
            tags={"account": str(session.account_id), "session": str(session.id)},
        )
        info = await self.call(lambda: self.backend.create(spec))
        record.backend_id = info.id
        await record.save(update_fields=["backend_id"])
        starters = 0
        if not await Event.exists(session_id=session.id, type=ek.SandboxStarted.KIND):
            # The first sandbox: the starter files, but for what the editor saved before it.
            saved = await self.files.current(session.id)
            for path, data in await _initial_files(session):
                if path not in saved:
                    await self.files.written(session.id, path, data, source="starter")
                    starters += 1
        restored = await self.files.current(session.id)
        for stored in restored.values():
            data = await self.files.content(stored.sha256)
            try:
                await self.call(
                    partial(self.backend.write_file, info.id, stored.path, data), scope=info.id
                )
            except SandboxFileError as exc:
                # One recorded file the filesystem refuses (a file where another is a
                # directory) must not keep the whole workspace from starting.
                await self.files.skipped(
                    session.id, stored.path, size=stored.size, reason=f"not restored: {exc}"
                )
        await self._import_from_s3(session, record)
        record.state = SandboxState.RUNNING
        record.last_activity_at = datetime.now(UTC)
        await record.save(update_fields=["state", "last_activity_at"])
        metrics.SANDBOX_START_DURATION.labels(record.backend).observe(
            metrics.since(record.created_at)
        )
        if session.status is SessionStatus.SCHEDULED:
            async with in_transaction() as conn:
                started = await (
                    InterviewSession.filter(id=session.id, status=SessionStatus.SCHEDULED)
                    .using_db(conn)
                    .update(status=SessionStatus.ACTIVE, started_at=datetime.now(UTC))
                )
                if started:
                    await enqueue_session_event(
                        session, "session.started", using_db=conn, status=SessionStatus.ACTIVE
                    )
            await self.log.append(session.id, ek.SessionStarted(SessionStatus.ACTIVE))
        await self.log.append(
            session.id,
            ek.SandboxStarted(
                str(record.id),
                backend=record.backend,
                language=session.language,
                restored_files=len(restored) - starters,
            ),
        )
        for listener in self.listeners:
            listener.running(record)

    async def _import_from_s3(self, session: InterviewSession, record: SandboxRecord) -> None:
        """The question's S3 starter prefix, once per session (a failed import is tried
        again by the next start); recorded like any change made in the sandbox."""
        if self.s3 is None:
            return
        question = await Question.get(id=session.question_id)
        prefix = question.starter_s3_prefix
        if not prefix or await Event.exists(session_id=session.id, type=ek.WorkspaceImported.KIND):
            return
        await import_starters(self, self.s3, record, prefix)
        with contextlib.suppress(SandboxError, SandboxUnavailable):
            await self.sync_workspace(record, source="s3", thorough=True)

    async def terminate(self, principal: Principal, session_id: str) -> SandboxRecord:
        session = await get_session(principal, session_id)
        record = await self.live(session.id)
        if record is None:
            latest = await self.latest(session.id)
            if latest is None:
                raise Conflict("the session has no sandbox")
            return latest
        return await self.stop(record, reason="terminated by request")

    async def stop(self, record: SandboxRecord, *, reason: str) -> SandboxRecord:
        """Capture the workspace into the recording, then kill everything in it."""
        if record.backend_id is not None:
            # A dead sandbox has nothing new to capture.
            with contextlib.suppress(SandboxError, SandboxUnavailable):
                await self.sync_workspace(record, thorough=True)
            # Recorded as ended even if the backend fails to answer: its own
            # lifetime limit (set at create) stops the sandbox in the end.
            with contextlib.suppress(SandboxUnavailable):
                await self.call(
                    partial(self.backend.terminate, record.backend_id), scope=record.backend_id
                )
        ended = await self._end(record, SandboxState.TERMINATED, reason=reason)
        if self.exports is not None:
            # The reaper stops the sandboxes of expired sessions: those are exported too.
            session = await InterviewSession.get_or_none(id=record.session_id)
            if session is not None:
                self.session_ended(session)
        return ended

    async def _end(
        self, record: SandboxRecord, state: SandboxState, *, reason: str
    ) -> SandboxRecord:
        changed = await SandboxRecord.filter(id=record.id, state__in=LIVE).update(
            state=state, live_key=None, ended_at=datetime.now(UTC), end_reason=reason[:200]
        )
        if changed:
            ended = ek.SandboxTerminated if state is SandboxState.TERMINATED else ek.SandboxFailed
            await self.log.append(record.session_id, ended(str(record.id), reason=reason))
        for listener in self.listeners:
            listener.ended(record)
        return await SandboxRecord.get(id=record.id)

    async def end_lost(self, record: SandboxRecord, *, reason: str) -> bool:
        """Its replica is lost: recorded TERMINATED without a backend call (its processes
        are on that replica's machine: ``resolvers.orphans``). True if this call ended it."""
        changed = await SandboxRecord.filter(
            id=record.id, owner=record.owner, state__in=LIVE
        ).update(
            state=SandboxState.TERMINATED,
            live_key=None,
            ended_at=datetime.now(UTC),
            end_reason=reason[:200],
        )
        if changed:
            ended = ek.SandboxTerminated(str(record.id), reason=reason)
            await self.log.append(record.session_id, ended)
        return bool(changed)

    async def require_live(
        self, principal: Principal, session_id: str
    ) -> tuple[InterviewSession, SandboxRecord]:
        session = await get_session(principal, session_id)
        if not session.status.is_open:
            raise Conflict(f"session is {session.status.value}")
        record = await self.live(session.id)
        if record is None or record.state is not SandboxState.RUNNING or not record.backend_id:
            raise Conflict("the session has no running sandbox; call startSandbox first")
        await SandboxRecord.filter(id=record.id).update(last_activity_at=datetime.now(UTC))
        return session, record

    async def on_backend_gone(self, record: SandboxRecord, exc: Exception) -> None:
        """The backend says the sandbox is gone: make the registry agree."""
        if isinstance(exc, SandboxNotFound | SandboxTerminated):
            await self._end(record, SandboxState.TERMINATED, reason=f"sandbox ended: {exc}")

    async def sync_workspace(
        self, record: SandboxRecord, *, source: str = "sandbox", thorough: bool = False
    ) -> int:
        """Record files changed inside the sandbox (by commands, the terminal, the agent)."""
        return await sync_workspace(self, record, source=source, thorough=thorough)

    async def backend_status(self, record: SandboxRecord) -> SandboxStatus:
        return await self.call(
            lambda: self.backend.status(record.backend_id or ""), scope=record.backend_id
        )


async def _initial_files(session: InterviewSession) -> list[tuple[str, bytes]]:
    question = await Question.get(id=session.question_id)
    language = await QuestionLanguage.get(question_id=question.id, language=session.language)
    files = [(f["path"], f["content"].encode()) for f in language.starter_files]
    if not any(path == "README.md" for path, _ in files):
        files.append(("README.md", f"# {question.title}\n\n{question.prompt}\n".encode()))
    return files


def _ends_start(sandbox_id: str, record: EventRecord) -> bool:
    """Whether the event says the sandbox's start is over (started, failed or stopped)."""
    ended = (ek.SandboxStarted, ek.SandboxFailed, ek.SandboxTerminated)
    return isinstance(record.payload, ended) and record.payload.sandbox_id == sandbox_id


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
