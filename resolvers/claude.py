"""The Claude agent in the sandbox: askClaude, its live transcript, cancel, time limit.

The agent (by default the pinned Claude Code CLI in ``-p`` stream-json mode)
runs inside the session's sandbox in /workspace, as the sandbox's non-root
user (so the CLI accepts ``bypassPermissions``; ``IS_SANDBOX=1`` says the
same for runtimes that run it as root). The Anthropic key never enters the
sandbox: the agent's key is a token minted for this run, good only at the
server's Messages API proxy (``anthropic_proxy``) and only while the run is
RUNNING; it is handed over on stdin, never in an argv (``agent_launch``).
Conversations are kept in the workspace, so ``--resume`` of the session's
previous conversation survives a sandbox restart; nothing else there is
loaded as the CLI's configuration.

Endings: the CLI's final ``result`` decides SUCCEEDED or FAILED; no result
means FAILED with what the process said (missing binary, auth error);
``cancelClaude`` kills the process tree: CANCELLED; the time limit kills it
too and ends the run FAILED with that reason (a CLI with a key but no network
retries for minutes, and its ``api_retry`` lines are in the transcript).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from modal_app.base import ExecHandle, SandboxError
from models.claude import ClaudeRun, ClaudeRunStatus
from models.sandbox import SandboxRecord
from resolvers import claude_stream as cs
from resolvers import event_kinds as ek
from resolvers import metrics
from resolvers import validation as check
from resolvers.agent_launch import QUIET_ENV, AgentLink, cli_argv, launch
from resolvers.anthropic_proxy import mint_token
from resolvers.auth import Principal
from resolvers.background import BackgroundRuns
from resolvers.bus import EventBus, follow_channel
from resolvers.errors import Conflict, NotFound, SandboxUnavailable
from resolvers.events import without_nul
from resolvers.sandboxes import Sandboxes
from resolvers.sessions import get_session, require_session_access
from resolvers.settling import settled_elsewhere, settled_here

logger = logging.getLogger("interviewlm.claude")
REDACTED = "[redacted]"
TOKEN_GRACE_S = 30
# How long cancelClaude waits for the killed run's end to be recorded.
CANCEL_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class ClaudeConfig:
    api_key: str | None
    command: str | None = None
    """A shell command replacing the CLI; it gets CLAUDE_PROMPT, CLAUDE_RESUME, CLAUDE_MAX_TURNS
    and, like the CLI, ANTHROPIC_BASE_URL and the run token as ANTHROPIC_API_KEY."""
    time_limit_s: float = 600
    max_turns: int = 30


@dataclass
class _Active:
    token: str
    handle: ExecHandle | None = None
    cancelled: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the run's end is recorded (a cancel here waits for it)."""


class ClaudeAgent:
    def __init__(
        self,
        sandboxes: Sandboxes,
        bus: EventBus,
        config: ClaudeConfig,
        link: Callable[[], Awaitable[AgentLink]] | None = None,
    ) -> None:
        self.sandboxes = sandboxes
        self.bus = bus
        self.log = sandboxes.log
        self.config = config
        self.link = link
        """How this server's agents reach its API proxy (None: Claude is not configured)."""
        self._active: dict[uuid.UUID, _Active] = {}
        self.runs = BackgroundRuns("agent")

    async def ask(self, principal: Principal, session_id: str, prompt: str) -> ClaudeRun:
        text = check.text("prompt", prompt, max_length=20_000)
        await get_session(principal, session_id)  # who may ask, first
        if not self.config.api_key or self.link is None:
            raise SandboxUnavailable(
                "Claude is not configured on this server: set ANTHROPIC_API_KEY"
            )
        session, sandbox = await self.sandboxes.require_live(principal, session_id)
        previous = (
            await ClaudeRun.filter(session_id=session.id, conversation_id__isnull=False)
            .order_by("-created_at")
            .first()
        )
        token, hashed = mint_token()
        lifetime = timedelta(seconds=self.config.time_limit_s + TOKEN_GRACE_S)
        run = await self.runs.claim(
            ClaudeRun,
            "Claude is already working on this session; wait or cancel",
            session_id=session.id,
            prompt=text,
            live_key=session.id,
            owner=self.sandboxes.owner,
            log_seq=await self.log.last_seq(session.id),
            token_hash=hashed,
            token_expires_at=datetime.now(UTC) + lifetime,
        )
        async with self.runs.launching(partial(self._abandon, run)):
            await self._event(run, ek.ClaudeStarted(str(run.id), prompt=text))
        active = _Active(token)
        self._active[run.id] = active
        resume = previous.conversation_id if previous else None
        self.runs.spawn(self._run(run, sandbox, active, resume))
        return run

    def _command(
        self, run: ClaudeRun, active: _Active, link: AgentLink, resume: str | None
    ) -> tuple[list[str], dict[str, str], bytes]:
        env = {
            **QUIET_ENV,
            "CLAUDE_RESUME": resume or "",
            "CLAUDE_MAX_TURNS": str(self.config.max_turns),
        }
        if self.config.command:
            agent = ["/bin/sh", "-c", self.config.command]
        else:
            agent = cli_argv(self.config.max_turns, resume)
        argv, stdin = launch(link, active.token, run.prompt, agent)
        return argv, env, stdin

    async def _run(
        self, run: ClaudeRun, sandbox: SandboxRecord, active: _Active, resume: str | None
    ) -> None:
        listener = asyncio.create_task(
            follow_channel(self.bus, f"claude:{run.id}", lambda _: self._kill(active))
        )
        outcome: dict[str, Any] = {"status": ClaudeRunStatus.FAILED, "error": None}
        try:
            await self._drive(run, sandbox, active, resume, outcome)
        except SandboxUnavailable:
            outcome.update(status=ClaudeRunStatus.FAILED, error="the sandbox is not available")
        except SandboxError as exc:
            logger.warning("claude run %s could not start: %s", run.id, exc)
            outcome.update(status=ClaudeRunStatus.FAILED, error="the agent could not be started")
        except Exception:
            logger.exception("claude run %s failed", run.id)
            outcome.update(
                status=ClaudeRunStatus.FAILED, error="the agent stopped on a server error"
            )
        finally:
            listener.cancel()
            self._active.pop(run.id, None)
        if active.cancelled:
            outcome.update(status=ClaudeRunStatus.CANCELLED, error="cancelled")
        try:
            await self._finish(run, sandbox, outcome)
        finally:
            active.finished.set()

    async def _drive(
        self,
        run: ClaudeRun,
        sandbox: SandboxRecord,
        active: _Active,
        resume: str | None,
        outcome: dict[str, Any],
    ) -> None:
        assert self.link is not None  # ask() refuses without one
        link = await self.link()
        command, env, stdin = self._command(run, active, link, resume)
        handle = await self.sandboxes.call(
            lambda: self.sandboxes.backend.exec(
                sandbox.backend_id or "",
                command,
                env=env,
                timeout_s=self.config.time_limit_s + 5,
                network=link.network,
            ),
            scope=sandbox.backend_id,  # one sandbox's failure never opens the shared breaker
        )
        active.handle = handle
        if active.cancelled:
            await handle.kill()
        with contextlib.suppress(SandboxError, OSError):
            await handle.write_stdin(stdin)
        await handle.close_stdin()
        lines, stderr = cs.LineBuffer(), bytearray()
        result: cs.Result | None = None
        try:
            async with asyncio.timeout(self.config.time_limit_s):
                async for chunk in handle.output():
                    if chunk.stream == "stderr":
                        stderr += chunk.data[-8192:]
                        continue
                    for line in lines.feed(chunk.data):
                        result = await self._record_line(run, line) or result
                for line in lines.flush():
                    result = await self._record_line(run, line) or result
        except TimeoutError:
            await handle.kill()
            outcome["error"] = f"time limit of {self.config.time_limit_s:g} s reached"
            return
        status = await handle.wait()
        if result is not None:
            ok = not result.is_error and result.subtype == "success"
            outcome.update(
                status=ClaudeRunStatus.SUCCEEDED if ok else ClaudeRunStatus.FAILED,
                error=None if ok else cs.result_error(result.subtype),
                cost_usd=result.cost_usd,
                num_turns=result.num_turns,
                duration_ms=result.duration_ms,
            )
        else:
            # What the agent printed is its own (sandbox) output: kept as an
            # event; the run's error only says what happened.
            said = stderr.decode(errors="replace").strip()[-2000:]
            if said:
                await self._event(run, ek.ClaudeSystem(str(run.id), "stderr", {"stderr": said}))
            code = status.exit_code
            outcome["error"] = "the agent stopped without an answer" + (
                f" (exit code {code})" if code is not None else " (killed)"
            )

    async def _record_line(self, run: ClaudeRun, line: str) -> cs.Result | None:
        result = None
        for item in cs.parse_line(line):
            if isinstance(item, cs.Init | cs.Result) and item.conversation_id:
                await ClaudeRun.filter(id=run.id).update(conversation_id=item.conversation_id)
            if isinstance(item, cs.Result):
                result = item
            await self._event(run, cs.payload_of(str(run.id), item))
        return result

    async def _finish(
        self, run: ClaudeRun, sandbox: SandboxRecord, outcome: dict[str, Any]
    ) -> None:
        status: ClaudeRunStatus = outcome.pop("status")
        if outcome.get("error"):
            outcome["error"] = without_nul(outcome["error"])
        # Clearing the token's hash is what makes it useless from now on. Conditional:
        # a run another replica ended (this one was declared lost, resolvers.leases)
        # is not finished, nor announced, a second time.
        changed = await ClaudeRun.filter(id=run.id, live_key__isnull=False).update(
            status=status,
            live_key=None,
            token_hash=None,
            token_expires_at=None,
            finished_at=datetime.now(UTC),
            **outcome,
        )
        if not changed:
            return
        with contextlib.suppress(SandboxError, SandboxUnavailable):
            await self.sandboxes.sync_workspace(sandbox, source="agent")
        used = await ClaudeRun.get(id=run.id)
        metrics.observe_agent_run(used)
        finished = ek.ClaudeFinished(
            str(run.id),
            status=status,
            error=outcome.get("error"),
            cost_usd=outcome.get("cost_usd"),
            num_turns=outcome.get("num_turns"),
            duration_ms=outcome.get("duration_ms"),
            input_tokens=used.input_tokens,
            output_tokens=used.output_tokens,
            api_requests=used.api_requests,
        )
        await self._event(run, finished)

    async def _abandon(self, run: ClaudeRun) -> None:
        """A run that failed before its task started: FAILED, its key and token freed."""
        await ClaudeRun.filter(id=run.id).update(
            status=ClaudeRunStatus.FAILED,
            error="the agent could not be started",
            live_key=None,
            token_hash=None,
            token_expires_at=None,
            finished_at=datetime.now(UTC),
        )

    async def _event(self, run: ClaudeRun, payload: ek.Payload) -> None:
        await self.log.append(run.session_id, self._scrubbed(payload))

    def _scrubbed(self, payload: ek.Payload) -> ek.Payload:
        # Defense in depth only: the key never enters the sandbox.
        key = self.config.api_key
        dumped = json.dumps(payload.to_json())
        if not key or key not in dumped:
            return payload
        return ek.parse_stored(payload.kind, json.loads(dumped.replace(key, REDACTED)))

    async def _kill(self, active: _Active) -> None:
        active.cancelled = True
        if active.handle is not None:
            await active.handle.kill()

    async def get(self, principal: Principal, run_id: str) -> ClaudeRun:
        rid = check.object_id("runId", run_id)
        run = await ClaudeRun.get_or_none(id=rid)
        if run is None:
            raise NotFound("Claude run")
        await require_session_access(principal, run.session_id, kind="Claude run")
        return run

    async def cancel(self, principal: Principal, run_id: str) -> ClaudeRun:
        run = await self.get(principal, run_id)
        if run.status is not ClaudeRunStatus.RUNNING:
            raise Conflict(f"the run is already {run.status.value}")
        rid = run.id

        async def ended() -> ClaudeRun | None:
            current = await ClaudeRun.get(id=rid)
            return None if current.status is ClaudeRunStatus.RUNNING else current

        # The run ends within moments of the kill: wait for it to be recorded (here:
        # the run's own event; on its replica: its claude.finished on the bus).
        active = self._active.get(rid)
        if active is not None:
            await self._kill(active)
            settled = await settled_here(active.finished, ended, timeout_s=CANCEL_WAIT_S)
        elif await self.bus.publish(f"claude:{rid}", "cancel"):
            settled = await settled_elsewhere(
                self.bus,
                run.session_id,
                ended,
                relevant=lambda r: (
                    isinstance(r.payload, ek.ClaudeFinished) and r.payload.run_id == str(rid)
                ),
                timeout_s=CANCEL_WAIT_S,
            )
        else:
            raise SandboxUnavailable("the run's server cannot be reached; retry")
        return settled or await ClaudeRun.get(id=rid)

    async def close(self) -> None:
        # Runs cut short by a shutdown never reach _finish: end their tokens here.
        try:
            await ClaudeRun.filter(id__in=list(self._active)).update(token_hash=None)
        except Exception:
            # The shutdown goes on; such a token still dies at its expiry (it is
            # minted for the run's time limit plus a grace period).
            logger.warning("could not revoke the tokens of interrupted runs", exc_info=True)
        for rid, active in list(self._active.items()):
            try:
                await self._kill(active)
            except Exception:
                # The other runs must still be stopped; this agent dies with its
                # sandbox, and its exec's own timeout (the run's time limit) ends it.
                logger.warning("could not kill the agent of run %s", rid, exc_info=True)
        await self.runs.close()
