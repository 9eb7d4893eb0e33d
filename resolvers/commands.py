"""``runCommand``: a command in the session's sandbox, never on the host.

The log gets ``command.started``, the output as coalesced ``command.output``
events (up to the output cap, then one ``command.truncated``; and within the
session's recorded-output cap, then one ``output.truncated``), and
``command.exited``; files the command changed are recorded after it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial

from modal_app.base import ExecResult, OutputChunk, SandboxError, run
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.errors import SandboxUnavailable
from resolvers.event_kinds import (
    CommandExited,
    CommandFailed,
    CommandOutput,
    CommandStarted,
    CommandTruncated,
)
from resolvers.output import OutputCoalescer, capped_emit
from resolvers.sandboxes import Sandboxes

MAX_COMMAND_CHARS = 10_000
# Beyond the command's own timeout, how long the backend may take to report it.
GRACE_S = 30


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: int
    truncated: bool


async def run_command(
    sandboxes: Sandboxes,
    principal: Principal,
    session_id: str,
    command: str,
    *,
    timeout_s: int,
    max_timeout_s: int,
    output_cap: int,
) -> CommandResult:
    check.text("command", command, max_length=MAX_COMMAND_CHARS)
    check.int_range("timeoutSeconds", timeout_s, low=1, high=max_timeout_s)
    session, record = await sandboxes.require_live(principal, session_id)
    backend_id = record.backend_id or ""
    command_id = str(uuid.uuid4())
    log = sandboxes.log
    await log.append(
        session.id, CommandStarted(command_id, command=command, timeout_seconds=timeout_s)
    )

    async def emit(stream: str, text: str) -> None:
        await log.append(session.id, CommandOutput(command_id, stream, text))

    coalescer = OutputCoalescer(capped_emit(log, session.id, emit, command_id=command_id))

    async def on_output(chunk: OutputChunk) -> None:
        await coalescer.feed(chunk.stream, chunk.data)

    try:
        # Through the breaker like every backend call: an open breaker refuses at
        # once, and a backend that never reports counts against this sandbox.
        result: ExecResult = await sandboxes.call(
            partial(
                run,
                sandboxes.backend,
                backend_id,
                command,
                timeout_s=timeout_s,
                output_cap=output_cap,
                on_output=on_output,
            ),
            deadline_s=timeout_s + GRACE_S,
            scope=backend_id,
            long_running=True,
        )
    except SandboxUnavailable as exc:
        await coalescer.close()
        await log.append(session.id, CommandFailed(command_id, error=exc.message))
        raise
    except SandboxError as exc:
        await coalescer.close()
        await log.append(session.id, CommandFailed(command_id, error=str(exc)))
        await sandboxes.on_backend_gone(record, exc)
        raise SandboxUnavailable(f"the command could not run: {exc}") from exc
    await coalescer.close()
    if result.truncated:
        await log.append(session.id, CommandTruncated(command_id, limit_bytes=output_cap))
    await log.append(
        session.id,
        CommandExited(
            command_id,
            exit_code=result.exit_code,
            signal=result.signal,
            timed_out=result.timed_out,
            duration_ms=result.duration_ms,
            truncated=result.truncated,
        ),
    )
    await sandboxes.sync_workspace(record)
    return CommandResult(
        command_id=command_id,
        exit_code=result.exit_code,
        stdout=result.stdout.decode(errors="replace"),
        stderr=result.stderr.decode(errors="replace"),
        timed_out=result.timed_out,
        duration_ms=result.duration_ms,
        truncated=result.truncated,
    )
