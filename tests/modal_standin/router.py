"""The stand-in's task command router: one per sandbox, as Modal runs one per worker.

The SDK (``modal/sandbox/_task_command_router_client.py``) reaches it at the
URL ``SandboxGetCommandRouterAccess`` (or ``SandboxCreateV2``) hands out,
over plain http/2 only because the control plane URL is on localhost, with
``authorization: Bearer <jwt>``; UNAUTHENTICATED makes it fetch a fresh JWT
once.  Exec ids are chosen by the client (a uuid doubling as idempotency
key), so a retried ``TaskExecStart`` must not start a second process.

A finished task answers NOT_FOUND (the SDK's comment on ``exec_wait``: "if
just the task shuts down, the task command router will return NOT_FOUND").
``ModalStandin.lose_worker`` closes this server instead: the connection is
refused, which is what a vanished worker looks like.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpclib.server
from grpclib import GRPCError, Status
from grpclib.protocol import H2Protocol
from modal._utils.grpc_testing import patch_mock_servicer
from modal_proto import api_pb2
from modal_proto import task_command_router_pb2 as sr
from modal_proto.task_command_router_grpc import TaskCommandRouterBase

from tests.modal_standin.execs import ExecState, OutputBuffer
from tests.modal_standin.state import Faults, StandinSandbox

_CHUNK = 1 << 16
Stream = grpclib.server.Stream[Any, Any]


@patch_mock_servicer  # every RPC not defined here answers UNIMPLEMENTED
class CommandRouter(TaskCommandRouterBase):
    def __init__(self, sandbox: StandinSandbox, faults: Faults, secrets: dict[str, dict[str, str]]):
        self.sandbox = sandbox
        self.faults = faults
        self.secrets = secrets

    async def _begin(self, stream: Stream, rpc: str) -> Any:
        self.faults.router_calls.append(rpc)
        await self.faults.apply(rpc)
        if stream.metadata.get("authorization") != f"Bearer {self.sandbox.router_jwt}":
            raise GRPCError(Status.UNAUTHENTICATED, "stand-in: bad or expired router JWT")
        return await stream.recv_message()

    def _task(self, task_id: str) -> None:
        if task_id != self.sandbox.task_id:
            raise GRPCError(Status.NOT_FOUND, f"task {task_id} is not on this worker")
        if self.sandbox.result is not None or self.sandbox.container is None:
            raise GRPCError(Status.NOT_FOUND, f"task {task_id} has finished")

    def _exec(self, task_id: str, exec_id: str) -> ExecState:
        if task_id != self.sandbox.task_id:
            raise GRPCError(Status.NOT_FOUND, f"task {task_id} is not on this worker")
        container = self.sandbox.container
        state = container.execs.get(exec_id) if container is not None else None
        if state is None:
            raise GRPCError(Status.NOT_FOUND, f"exec {exec_id} not found")
        return state

    async def TaskExecStart(self, stream: Stream) -> None:
        req: sr.TaskExecStartRequest = await self._begin(stream, "TaskExecStart")
        self._task(req.task_id)
        container = self.sandbox.container
        assert container is not None
        if req.exec_id not in container.execs:
            env = dict(self.sandbox.env)
            for source in req.secret_sources:
                if source.HasField("env"):
                    env.update(source.env.contents)
                elif source.secret_id:
                    env.update(self.secrets.get(source.secret_id, {}))
            for entry in req.env:
                env[entry.key] = entry.value
            pty = None
            if req.HasField("pty_info") and req.pty_info.enabled:
                pty = (req.pty_info.winsz_rows or 24, req.pty_info.winsz_cols or 80)
                if req.pty_info.env_term:
                    env["TERM"] = req.pty_info.env_term
            devnull = sr.TaskExecStdoutConfig.TASK_EXEC_STDOUT_CONFIG_DEVNULL
            err_devnull = sr.TaskExecStderrConfig.TASK_EXEC_STDERR_CONFIG_DEVNULL
            state = await container.exec(
                req.exec_id,
                list(req.command_args),
                env=env,
                cwd=req.workdir or self.sandbox.definition.workdir or "/",
                pty=pty,
                stdout=req.stdout_config != devnull,
                stderr=req.stderr_config != err_devnull,
            )
            if req.timeout_secs:
                asyncio.get_running_loop().call_later(
                    req.timeout_secs, self._expire, req.exec_id, state
                )
        await stream.send_message(sr.TaskExecStartResponse())

    def _expire(self, exec_id: str, state: ExecState) -> None:
        container = self.sandbox.container
        if container is not None and not state.exited.is_set():
            container.kill(exec_id)

    async def TaskExecStdioRead(self, stream: Stream) -> None:
        req: sr.TaskExecStdioReadRequest = await self._begin(stream, "TaskExecStdioRead")
        state = self._exec(req.task_id, req.exec_id)
        stdout = sr.TaskExecStdioFileDescriptor.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
        buffer: OutputBuffer = state.stdout if req.file_descriptor == stdout else state.stderr
        offset = req.offset
        # Stream what is there from ``offset`` on, then follow the fd until EOF
        # (never an empty message: the SDK raises on one).
        while True:
            changed = buffer.changed
            if offset < len(buffer.data):
                chunk = bytes(buffer.data[offset : offset + _CHUNK])
                offset += len(chunk)
                await stream.send_message(sr.TaskExecStdioReadResponse(data=chunk))
                continue
            if buffer.eof:
                return
            await changed.wait()

    async def TaskExecStdinWrite(self, stream: Stream) -> None:
        req: sr.TaskExecStdinWriteRequest = await self._begin(stream, "TaskExecStdinWrite")
        state = self._exec(req.task_id, req.exec_id)
        await self._write(state, req.offset, req.data, req.eof)
        await stream.send_message(sr.TaskExecStdinWriteResponse())

    async def TaskExecStdinWriteStream(self, stream: Stream) -> None:
        self.faults.router_calls.append("TaskExecStdinWriteStream")
        await self.faults.apply("TaskExecStdinWriteStream")
        if stream.metadata.get("authorization") != f"Bearer {self.sandbox.router_jwt}":
            raise GRPCError(Status.UNAUTHENTICATED, "stand-in: bad or expired router JWT")
        state: ExecState | None = None
        offset = 0
        async for msg in stream:
            which = msg.WhichOneof("payload")
            if which == "start":
                state = self._exec(msg.start.task_id, msg.start.exec_id)
                offset = msg.start.offset
            elif state is None:
                raise GRPCError(Status.INVALID_ARGUMENT, "stdin stream must begin with start")
            elif which == "end":
                await self._write(state, offset, b"", True)
            else:
                await self._write(state, offset, msg.data, False)
                offset += len(msg.data)
        await stream.send_message(sr.TaskExecStdinWriteStreamResponse())

    async def TaskExecStdinStatus(self, stream: Stream) -> None:
        req: sr.TaskExecStdinStatusRequest = await self._begin(stream, "TaskExecStdinStatus")
        state = self._exec(req.task_id, req.exec_id)
        await stream.send_message(
            sr.TaskExecStdinStatusResponse(
                num_bytes_written=state.stdin_written, closed=state.stdin_closed
            )
        )

    async def _write(self, state: ExecState, offset: int, data: bytes, eof: bool) -> None:
        try:
            await state.write_stdin(offset, data, eof)
        except BrokenPipeError as exc:
            raise GRPCError(Status.FAILED_PRECONDITION, f"stand-in: {exc}") from exc
        except ValueError as exc:
            raise GRPCError(Status.OUT_OF_RANGE, f"stand-in: {exc}") from exc

    async def TaskExecPoll(self, stream: Stream) -> None:
        req: sr.TaskExecPollRequest = await self._begin(stream, "TaskExecPoll")
        state = self._exec(req.task_id, req.exec_id)
        _check_shutdown(state)
        await stream.send_message(_exit_status(sr.TaskExecPollResponse(), state))

    async def TaskExecWait(self, stream: Stream) -> None:
        req: sr.TaskExecWaitRequest = await self._begin(stream, "TaskExecWait")
        state = self._exec(req.task_id, req.exec_id)
        await state.exited.wait()
        _check_shutdown(state)
        await stream.send_message(_exit_status(sr.TaskExecWaitResponse(), state))

    async def TaskSetNetworkAccess(self, stream: Stream) -> None:
        req: sr.TaskSetNetworkAccessRequest = await self._begin(stream, "TaskSetNetworkAccess")
        self._task(req.task_id)
        created = self.sandbox.definition.network_access.network_access_type
        if (
            not self.faults.replaceable_blocked_network
            and created == api_pb2.NetworkAccess.NetworkAccessType.BLOCKED
        ):
            # The SDK documents a replaceable outbound policy only for sandboxes
            # created with an allowlist; the stand-in holds us to that.
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                "stand-in: the network policy of a sandbox created with block_network=True "
                "is not replaceable (create it with an allowlist, even an empty one)",
            )
        # Recorded, not enforced: the stand-in's containers have no network at
        # all (see the notes); tests assert on ``network_changes``.
        access = api_pb2.NetworkAccess()
        access.CopyFrom(req.network_access)
        self.sandbox.network = access
        self.sandbox.network_changes.append(access)
        await stream.send_message(sr.TaskSetNetworkAccessResponse())


def _check_shutdown(state: ExecState) -> None:
    # The SDK's comment on exec_wait: "if just the task shuts down, the task
    # command router will return a NOT_FOUND error" -- not the SIGKILL status.
    if state.exited.is_set() and state.by_shutdown:
        raise GRPCError(Status.NOT_FOUND, "stand-in: the task has finished")


def _exit_status(response: Any, state: ExecState) -> Any:
    if state.exited.is_set():
        if state.exit_signal is not None:
            response.signal = state.exit_signal
        else:
            response.code = state.exit_code or 0
    return response


class WorkerServer(grpclib.server.Server):
    """A grpclib server whose open connections can be cut, as a dying worker's are.

    ``Server.close`` only stops accepting connections: HTTP/2 connections a
    client already holds keep being served.
    """

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self._protocols: list[H2Protocol] = []

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        self._protocols.append(protocol)
        return protocol

    def open_connections(self) -> int:
        return sum(
            1
            for protocol in self._protocols
            if getattr(protocol, "connection", None) is not None
            and not protocol.connection._transport.is_closing()
        )

    def sever(self) -> None:
        """Stop listening and abort every connection (the client sees a reset)."""
        self.close()
        for protocol in self._protocols:
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection._transport.abort()
