"""The Claude agent in the sandbox: askClaude, its live transcript, cancel, time limit.

The agent (by default the pinned Claude Code CLI in ``-p`` stream-json mode)
runs inside the session's sandbox in /workspace, as the sandbox's non-root
user (so the CLI accepts ``bypassPermissions``; ``IS_SANDBOX=1`` says the
same for runtimes that run it as root). Its config dir is in the workspace,
so ``--resume`` of the session's previous conversation survives a sandbox
restart. ``ANTHROPIC_API_KEY`` is given to that one process and scrubbed from
everything it prints before anything is recorded. The agent gets network
only through the backend's allowlist (Modal) or the operator's explicit
opt-in (``CLAUDE_ALLOW_NETWORK``, local backend).

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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from modal_app.base import ExecHandle, NetworkPolicy, SandboxError
from models.claude import ClaudeRun, ClaudeRunStatus
from models.sandbox import SandboxRecord
from resolvers import claude_stream as cs
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.bus import EventBus, follow_channel
from resolvers.errors import Conflict, NotFound, SandboxUnavailable
from resolvers.events import without_nul
from resolvers.sandboxes import Sandboxes
from resolvers.sessions import get_session, require_session_access

logger = logging.getLogger("interviewlm.claude")
CONFIG_DIR = "/workspace/.interviewlm/claude"
API_HOSTS = ("api.anthropic.com",)
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class ClaudeConfig:
    api_key: str | None
    command: str | None = None
    """A shell command replacing the CLI; it gets CLAUDE_PROMPT, CLAUDE_RESUME, CLAUDE_MAX_TURNS."""
    allow_network: bool = False
    time_limit_s: float = 600
    max_turns: int = 30


@dataclass
class _Active:
    handle: ExecHandle | None = None
    cancelled: bool = False


class ClaudeAgent:
    def __init__(self, sandboxes: Sandboxes, bus: EventBus, config: ClaudeConfig) -> None:
        self.sandboxes = sandboxes
        self.bus = bus
        self.log = sandboxes.log
        self.config = config
        self._active: dict[uuid.UUID, _Active] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def ask(self, principal: Principal, session_id: str, prompt: str) -> ClaudeRun:
        text = check.text("prompt", prompt, max_length=20_000)
        await get_session(principal, session_id, log=self.log)  # who may ask, first
        if not self.config.api_key:
            raise SandboxUnavailable(
                "Claude is not configured on this server: set ANTHROPIC_API_KEY"
            )
        session, sandbox = await self.sandboxes.require_live(principal, session_id)
        previous = (
            await ClaudeRun.filter(session_id=session.id, conversation_id__isnull=False)
            .order_by("-created_at")
            .first()
        )
        try:
            run = await ClaudeRun.create(
                session_id=session.id,
                prompt=text,
                live_key=session.id,
                owner=self.sandboxes.owner,
                log_seq=await self.log.last_seq(session.id),
            )
        except IntegrityError:
            raise Conflict("Claude is already working on this session; wait or cancel") from None
        await self._event(run, "claude.started", {"prompt": text})
        active = _Active()
        self._active[run.id] = active
        resume = previous.conversation_id if previous else None
        task = asyncio.create_task(self._run(run, sandbox, active, resume))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    def _command(self, prompt: str, resume: str | None) -> tuple[list[str] | str, dict[str, str]]:
        env = {
            "ANTHROPIC_API_KEY": self.config.api_key or "",
            "CLAUDE_CONFIG_DIR": CONFIG_DIR,
            "IS_SANDBOX": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_PROMPT": prompt,
            "CLAUDE_RESUME": resume or "",
            "CLAUDE_MAX_TURNS": str(self.config.max_turns),
        }
        if self.config.command:
            return self.config.command, env
        argv = [
            "claude",
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
            "--max-turns",
            str(self.config.max_turns),
        ]
        if resume:
            argv += ["--resume", resume]
        return argv, env

    async def _run(
        self, run: ClaudeRun, sandbox: SandboxRecord, active: _Active, resume: str | None
    ) -> None:
        listener = asyncio.create_task(
            follow_channel(self.bus, f"claude:{run.id}", lambda _: self._kill(active))
        )
        outcome: dict[str, Any] = {"status": ClaudeRunStatus.FAILED, "error": None}
        try:
            await self._drive(run, sandbox, active, resume, outcome)
        except Exception as exc:
            logger.exception("claude run %s failed", run.id)
            outcome.update(status=ClaudeRunStatus.FAILED, error=f"the agent could not run: {exc}")
        finally:
            listener.cancel()
            self._active.pop(run.id, None)
        if active.cancelled:
            outcome.update(status=ClaudeRunStatus.CANCELLED, error="cancelled")
        await self._finish(run, sandbox, outcome)

    async def _drive(
        self,
        run: ClaudeRun,
        sandbox: SandboxRecord,
        active: _Active,
        resume: str | None,
        outcome: dict[str, Any],
    ) -> None:
        command, env = self._command(run.prompt, resume)
        network = None
        if self.config.allow_network or self.sandboxes.backend.name == "modal":
            network = NetworkPolicy(allow_hosts=API_HOSTS)
        handle = await self.sandboxes.call(
            lambda: self.sandboxes.backend.exec(
                sandbox.backend_id or "",
                command,
                env=env,
                timeout_s=self.config.time_limit_s + 5,
                network=network,
            )
        )
        active.handle = handle
        if active.cancelled:
            await handle.kill()
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
                error=None if ok else self._scrub(result.result or result.subtype),
                cost_usd=result.cost_usd,
                num_turns=result.num_turns,
                duration_ms=result.duration_ms,
            )
        else:
            said = self._scrub(stderr.decode(errors="replace").strip()[-2000:])
            outcome["error"] = said or f"the agent exited with code {status.exit_code}"

    async def _record_line(self, run: ClaudeRun, line: str) -> cs.Result | None:
        result = None
        for item in cs.parse_line(line):
            kind = _KINDS[type(item)]
            payload = asdict(item)
            if isinstance(item, cs.Init | cs.Result) and item.conversation_id:
                await ClaudeRun.filter(id=run.id).update(conversation_id=item.conversation_id)
            if isinstance(item, cs.Result):
                result = item
            await self._event(run, f"claude.{kind}", payload)
        return result

    async def _finish(
        self, run: ClaudeRun, sandbox: SandboxRecord, outcome: dict[str, Any]
    ) -> None:
        status: ClaudeRunStatus = outcome.pop("status")
        if outcome.get("error"):
            outcome["error"] = without_nul(outcome["error"])
        await ClaudeRun.filter(id=run.id).update(
            status=status, live_key=None, finished_at=datetime.now(UTC), **outcome
        )
        with contextlib.suppress(SandboxError, SandboxUnavailable):
            await self.sandboxes.sync_workspace(sandbox, source="agent")
        await self._event(run, "claude.finished", {"status": status.value, **outcome})

    async def _event(self, run: ClaudeRun, type_: str, payload: dict[str, Any]) -> None:
        await self.log.append(
            run.session_id, type_, self._scrub_payload({"runId": str(run.id), **payload})
        )

    def _scrub(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, REDACTED) if key else text

    def _scrub_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = self.config.api_key
        dumped = json.dumps(payload)
        if not key or key not in dumped:
            return payload
        return dict(json.loads(dumped.replace(key, REDACTED)))

    async def _kill(self, active: _Active) -> None:
        active.cancelled = True
        if active.handle is not None:
            await active.handle.kill()

    async def get(self, principal: Principal, run_id: str) -> ClaudeRun:
        rid = check.object_id("runId", run_id)
        run = await ClaudeRun.get_or_none(id=rid)
        if run is None:
            raise NotFound("Claude run")
        await require_session_access(principal, run.session_id, kind="Claude run", log=self.log)
        return run

    async def cancel(self, principal: Principal, run_id: str) -> ClaudeRun:
        run = await self.get(principal, run_id)
        if run.status is not ClaudeRunStatus.RUNNING:
            raise Conflict(f"the run is already {run.status.value}")
        active = self._active.get(run.id)
        if active is not None:
            await self._kill(active)
        elif not await self.bus.publish(f"claude:{run.id}", "cancel"):
            raise SandboxUnavailable("the run's server cannot be reached; retry")
        for _ in range(100):  # the run ends within moments of the kill
            run = await ClaudeRun.get(id=run.id)
            if run.status is not ClaudeRunStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        return run

    async def close(self) -> None:
        for active in list(self._active.values()):
            with contextlib.suppress(Exception):
                await self._kill(active)
        for task in list(self._tasks):
            task.cancel()


_KINDS: dict[type, str] = {
    cs.Init: "init",
    cs.Text: "text",
    cs.ToolUse: "tool_use",
    cs.ToolResult: "tool_result",
    cs.Result: "result",
    cs.System: "system",
    cs.Raw: "raw",
    cs.ParseError: "error",
}
