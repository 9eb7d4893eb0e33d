"""Commands and terminals started in running Modal sandboxes, tracked until they exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Mapping, Sequence

from modal_app.base import NetworkPolicy
from modal_app.logged import suppressed
from modal_app.modal.process import ModalExecHandle, ModalPtyHandle
from modal_app.modal.refs import SandboxRef, SandboxRefs
from modal_app.modal.shell import AGENT_UID, CANDIDATE_UID, STATE_DIR, exec_wrapper_argv

_BACKSTOP_MARGIN_S = 5
_log = logging.getLogger(__name__)


def _modal_timeout(timeout_s: float | None) -> int | None:
    """Modal's exec timeout: a backstop behind the handle's own sub-second watchdog."""
    if timeout_s is None:
        return None
    # Finite and positive (``check_exec``).  Whole seconds, rounded up, plus
    # room for the watchdog's kill to land first.
    return math.ceil(timeout_s) + _BACKSTOP_MARGIN_S


class Commands:
    """Starts commands and terminals (argv already checked) and keeps them until they exit."""

    def __init__(self, refs: SandboxRefs) -> None:
        self._refs = refs
        # Commands and terminals started here, by sandbox id, until they exit.
        self._live: dict[ModalExecHandle | ModalPtyHandle, str] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def exec(
        self,
        ref: SandboxRef,
        argv: Sequence[str],
        *,
        workdir: str | None,
        env: Mapping[str, str] | None,
        timeout_s: float | None,
        network: NetworkPolicy | None,
        private: bool = False,
    ) -> ModalExecHandle:
        backstop = _modal_timeout(timeout_s)
        state_path = f"{STATE_DIR}/{uuid.uuid4().hex}"
        # The agent is the command granted network; private commands drop
        # privileges in their own launcher (``modal.private``), so keep root.
        agent = network is not None and not network.blocked
        run_as = None if private else AGENT_UID if agent else CANDIDATE_UID
        wrapped = exec_wrapper_argv(argv, state_path=state_path, limits=ref.limits, run_as=run_as)
        release = None
        if network is not None and not network.blocked:
            release = await self._refs.widen(ref, network)
        try:
            async with self._refs.starting(ref):
                process = await ref.sandbox.exec.aio(
                    *wrapped,
                    workdir=workdir,
                    env=dict(env) if env else None,
                    timeout=backstop,
                    text=False,
                )
        except BaseException:
            if release is not None:
                await release()
            raise
        handle = ModalExecHandle(
            process,
            state_path=state_path,
            context=self._refs.context(ref),
            timeout_s=timeout_s,
            on_finish=release,
        )
        self._track(handle, ref)
        return handle

    async def pty(
        self,
        ref: SandboxRef,
        argv: Sequence[str],
        *,
        cols: int,
        rows: int,
        env: Mapping[str, str] | None,
    ) -> ModalPtyHandle:
        state_path = f"{STATE_DIR}/{uuid.uuid4().hex}"
        wrapped = exec_wrapper_argv(
            argv, state_path=state_path, limits=ref.limits, pty_size=(cols, rows)
        )
        pty_env: dict[str, str | None] = {"TERM": "xterm-256color"}
        pty_env.update(env or {})
        async with self._refs.starting(ref):
            process = await ref.sandbox.exec.aio(*wrapped, env=pty_env, pty=True, text=False)
        handle = ModalPtyHandle(
            process, state_path=state_path, context=self._refs.context(ref), size=(cols, rows)
        )
        self._track(handle, ref)
        return handle

    def forget(self, sandbox_id: str) -> None:
        """The sandbox is ending: its handles' processes end with it, nothing to stop later."""
        for handle in [h for h, owner in self._live.items() if owner == sandbox_id]:
            del self._live[handle]

    async def stop_all(self) -> None:
        """Stop every command and terminal still running (bounded), then drop them."""
        handles = list(self._live)
        self._live.clear()
        for watcher in self._watchers:
            watcher.cancel()
        if handles:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await asyncio.gather(
                        *(self._stop_quietly(h) for h in handles), return_exceptions=True
                    )
        for handle in handles:
            handle.abandon()

    @staticmethod
    async def _stop_quietly(handle: ModalExecHandle | ModalPtyHandle) -> None:
        with suppressed(
            _log,
            "stopping a command at shutdown",
            safe_because="it ends with its sandbox or its own timeout",
        ):
            if isinstance(handle, ModalPtyHandle):
                await handle.close()
            else:
                await handle.kill()

    def _track(self, handle: ModalExecHandle | ModalPtyHandle, ref: SandboxRef) -> None:
        """Remember a running handle until it exits (which also releases its network grant)."""
        self._live[handle] = ref.id

        async def watch() -> None:
            with suppressed(
                _log,
                "waiting for a command to forget it",
                safe_because="its caller sees the error from its own wait",
                level=logging.DEBUG,
            ):
                await handle.wait()
            self._live.pop(handle, None)

        task = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
