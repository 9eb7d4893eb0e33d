"""The Modal sandbox backend (production): ``SandboxBackend`` over the modal SDK 1.6.4.

Design
------
* Credentials are explicit: ``start()`` builds a ``modal.Client`` from the
  token id/secret it was given (never from ``os.environ``) and every SDK call
  gets that client, so several backends (or tests) can coexist in a process.
  All calls use the SDK's async ``.aio`` interface.
* One Modal App per account, one Volume per workspace mounted at /workspace,
  language images and ``ImageSpec`` images from ``images``; the spec is
  translated by the pure ``spec.sandbox_create_args``.  Sandboxes are
  shared by every API replica: anything a replica needs later (volume, limits,
  creation time) is stored in the sandbox's tags, and the in-process cache of
  handles is only an optimisation -- any id can be attached with
  ``Sandbox.from_id``.
* Network is blocked unless ``NetworkPolicy.allow_hosts`` is set, which maps
  to Modal's ``outbound_cidr_allowlist`` / ``outbound_domain_allowlist``.  The
  per-command widening ``exec(network=...)`` (for the Claude agent) uses
  ``Sandbox._experimental_set_outbound_network_policy`` -- the only network
  control 1.6.4 has for a running sandbox -- so on Modal it widens the whole
  sandbox while that command runs (only to the listed hosts), then restores the
  sandbox's policy.  A policy this replica did not create is restored as
  "nothing allowed": failing closed.
* Commands run through a small ``sh`` prologue (``shell``) that records
  the pid, applies the ``Limits`` with ``ulimit`` and ``exec``s the command;
  kill, PTY resize and the symlink check are helper commands (the SDK has no
  RPC for them).  The sandbox image must therefore provide ``/bin/sh``.
* Files go through ``Sandbox.filesystem`` while the sandbox runs and through
  the Volume API (``read_file``, ``listdir``, ``batch_upload``,
  ``remove_file``) once it has ended; ``mkdir`` has no Volume equivalent and
  raises ``SandboxTerminated`` then.  Paths are checked lexically by
  ``paths.normalize_workspace_path`` and, while running, resolved through
  symlinks inside the sandbox (``ModalOptions.check_symlinks``).
* Errors: every SDK call runs inside ``errors.translate_errors``; calls on
  an existing sandbox additionally turn "not found"/"unavailable" into
  ``SandboxTerminated`` when a poll shows the sandbox has ended.

Modules: ``spec`` (spec -> create arguments, names, tags),
``images``, ``refs`` (attach / cache / helpers / network),
``process`` (exec and PTY handles), ``files``, ``shell``
(the in-sandbox sh snippets), ``errors``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence

import modal

from modal_app.base import (
    WORKSPACE,
    AgentProxyRoute,
    BackendUnavailable,
    ExecHandle,
    FileEntry,
    InvalidSpec,
    NetworkPolicy,
    PtyHandle,
    SandboxError,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
    check_exec,
    check_pty,
    check_spec,
)
from modal_app.logged import suppressed
from modal_app.modal.errors import translate_errors
from modal_app.modal.files import ModalFiles
from modal_app.modal.images import ImageCatalog
from modal_app.modal.private import private_argv
from modal_app.modal.process import ModalExecHandle, ModalPtyHandle
from modal_app.modal.refs import SandboxRef, SandboxRefs, status_from_returncode
from modal_app.modal.shell import STATE_DIR, exec_wrapper_argv
from modal_app.modal.spec import (
    TAG_VOLUME,
    ModalOptions,
    app_name,
    sandbox_create_args,
    sandbox_workdir,
    user_tags,
)

_BACKSTOP_MARGIN_S = 5
_log = logging.getLogger(__name__)


def _modal_timeout(timeout_s: float | None) -> int | None:
    """Modal's exec timeout: a backstop behind the handle's own sub-second watchdog."""
    if timeout_s is None:
        return None
    # Finite and positive (``check_exec``).  Whole seconds, rounded up, plus
    # room for the watchdog's kill to land first.
    return math.ceil(timeout_s) + _BACKSTOP_MARGIN_S


def _info(ref: SandboxRef, status: SandboxStatus) -> SandboxInfo:
    return SandboxInfo(
        id=ref.id, status=status, tags=user_tags(ref.tags), created_at=ref.created_at
    )


class ModalSandboxBackend:
    """``SandboxBackend`` on Modal; see the module docstring."""

    name = "modal"
    shares_sandboxes_across_replicas = True
    """Sandboxes run on Modal; any replica attaches to one by id."""
    agent_proxy_route: AgentProxyRoute = "egress"
    """The agent's command gets egress to PUBLIC_URL's host (no host sockets here)."""

    def __init__(
        self,
        *,
        token_id: str | None,
        token_secret: str | None,
        app_prefix: str = "interviewlm",
        options: ModalOptions | None = None,
    ) -> None:
        self._token_id = token_id
        self._token_secret = token_secret
        self._prefix = app_prefix
        self._options = options or ModalOptions()
        self._images = ImageCatalog(python_version=self._options.python_version)
        self._client: modal.Client | None = None
        self._apps: dict[str, modal.App] = {}
        self._refs = SandboxRefs(self._require_client)
        self._files = ModalFiles(self._refs, self._options, self._require_client)
        # Commands and terminals started here, by sandbox id, until they exit.
        self._live: dict[ModalExecHandle | ModalPtyHandle, str] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        if not self._token_id or not self._token_secret:
            raise BackendUnavailable(
                "Modal credentials are not set: SANDBOX_BACKEND=modal needs "
                "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
            )
        with translate_errors():
            client = await modal.Client.from_credentials.aio(self._token_id, self._token_secret)
            if self._options.verify_credentials:
                try:
                    # hello.aio is unannotated in the 1.6.4 stubs.
                    await client.hello.aio()  # type: ignore[no-untyped-call]
                except BaseException:
                    await client.close.aio()
                    raise
        self._client = client

    async def aclose(self) -> None:
        """Stop the commands and terminals this process started; sandboxes keep running.

        Sandboxes belong to sessions, not to this replica: another replica (or
        this one after a restart) attaches to them by id.
        """
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
        client, self._client = self._client, None
        self._apps.clear()
        self._refs.clear()
        self._files.clear()
        if client is not None:
            with suppressed(
                _log, "closing the Modal client", safe_because="the backend is closing anyway"
            ):
                await client.close.aio()

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

    def _require_client(self) -> modal.Client:
        if self._client is None:
            raise BackendUnavailable("the Modal backend is not started (call start() first)")
        return self._client

    async def _app(self, name: str, *, create: bool = True) -> modal.App:
        app = self._apps.get(name)
        if app is None:
            with translate_errors():
                app = await modal.App.lookup.aio(
                    name,
                    client=self._require_client(),
                    environment_name=self._options.environment,
                    create_if_missing=create,
                )
            self._apps[name] = app
        return app

    # -- sandboxes -----------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        check_spec(spec)  # before any call to Modal: a bad spec is the caller's error
        client = self._require_client()
        image = self._images.image_for(spec.language, spec.image)
        now = time.time()
        args = sandbox_create_args(
            spec, image=image, prefix=self._prefix, options=self._options, client=client, now=now
        )
        app = await self._app(args.app_name)
        with translate_errors():
            sandbox = await modal.Sandbox.create.aio(
                *args.entrypoint,
                app=app,
                client=client,
                image=args.image,
                env=args.env,
                workdir=args.workdir,
                timeout=args.timeout,
                idle_timeout=args.idle_timeout,
                cpu=args.cpu,
                memory=args.memory,
                block_network=args.block_network,
                outbound_cidr_allowlist=args.outbound_cidr_allowlist,
                outbound_domain_allowlist=args.outbound_domain_allowlist,
                volumes=args.volumes,
                tags=args.tags,
            )
        ref = SandboxRef(
            sandbox=sandbox,
            tags=args.tags,
            created_at=float(int(now)),
            volume_name=args.volume_name,
            limits=spec.limits,
            network=spec.network,
        )
        self._refs.add(ref)
        return _info(ref, SandboxStatus.RUNNING)

    async def attach(self, sandbox_id: str) -> SandboxInfo:
        ref = await self._refs.get(sandbox_id, refresh=True)
        return _info(ref, await self._refs.poll_status(ref))

    async def status(self, sandbox_id: str) -> SandboxStatus:
        return await self._refs.poll_status(await self._refs.get(sandbox_id))

    async def list(self, tags: Mapping[str, str]) -> list[SandboxInfo]:
        client = self._require_client()
        app_id: str | None = None
        if "account" in tags:
            try:
                app = await self._app(app_name(self._prefix, tags["account"]), create=False)
            except SandboxNotFound:
                return []
            app_id = app.app_id
        found: list[modal.Sandbox] = []
        with translate_errors():
            listing = modal.Sandbox.list.aio(app_id=app_id, tags=dict(tags), client=client)
            found.extend([sandbox async for sandbox in listing])
        limit = asyncio.Semaphore(16)

        async def describe(sandbox: modal.Sandbox) -> SandboxRef | None:
            async with limit:
                with contextlib.suppress(SandboxNotFound, SandboxTerminated):
                    return await self._refs.adopt(sandbox)
            return None

        refs = await asyncio.gather(*(describe(sandbox) for sandbox in found))
        return [
            _info(ref, status_from_returncode(ref.sandbox.returncode))
            for ref in refs
            # Sandboxes of other programs can carry the same tags; ours have a volume tag.
            if ref is not None and TAG_VOLUME in ref.tags
        ]

    async def terminate(self, sandbox_id: str) -> None:
        """Terminate and wait (bounded) until Modal confirms; handles of it end at once."""
        ref = await self._refs.get(sandbox_id)
        for handle in [h for h, owner in self._live.items() if owner == ref.id]:
            # Their processes end with the sandbox; nothing to stop at aclose.
            del self._live[handle]
        if ref.ended or await self._refs.finished(ref):
            ref.mark_ended()
            return
        # Flush the workspace before the container goes, so the Volume API
        # sees the last writes after termination.
        with suppressed(
            _log,
            f"flushing the workspace of sandbox {ref.id} before terminating it",
            safe_because="terminating anyway: only writes not yet synced can be missing",
        ):
            async with asyncio.timeout(5):
                await self._refs.helper(ref, ["sh", "-c", 'sync "$1" || sync', "sync", WORKSPACE])
        with translate_errors():
            await ref.sandbox.terminate.aio()
        ref.mark_ended()
        await ref.settle(timeout_s=20)

    async def remove(self, sandbox_id: str) -> None:
        """Delete the workspace volume of an ended sandbox; idempotent.

        A volume is per workspace, so it is kept while another running sandbox
        (a later one of the same session) still mounts it.
        """
        try:
            ref = await self._refs.get(sandbox_id)
        except SandboxNotFound:
            return
        if not ref.ended and not await self._refs.finished(ref):
            raise SandboxError(f"sandbox {sandbox_id} is still running: terminate it first")
        name = ref.volume_name
        if name is None:
            return
        for other in await self.list({TAG_VOLUME: name, **self._account_tag(ref)}):
            if other.id != ref.id and other.status is SandboxStatus.RUNNING:
                return
        with translate_errors():
            await modal.Volume.objects.delete.aio(
                name,
                allow_missing=True,
                environment_name=self._options.environment,
                client=self._require_client(),
            )
        self._files.forget_volume(name)

    @staticmethod
    def _account_tag(ref: SandboxRef) -> dict[str, str]:
        account = ref.tags.get("account")
        return {"account": account} if account else {}

    # -- commands ------------------------------------------------------------

    async def exec(
        self,
        sandbox_id: str,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        network: NetworkPolicy | None = None,
        private: bool = False,
    ) -> ExecHandle:
        argv = check_exec(command, env=env, timeout_s=timeout_s, sh_path="sh")
        if private:
            if network is not None and not network.blocked:
                raise InvalidSpec("a private command has no network")
            argv = private_argv(argv)  # best effort on Modal: see modal.private
        workdir = None if cwd is None else sandbox_workdir(cwd)
        if network is not None and network.socket_dir:
            # Host sockets exist only for local sandboxes; here the agent
            # reaches the proxy at PUBLIC_URL through the widened egress.
            raise InvalidSpec("Modal sandboxes cannot bind host sockets")
        backstop = _modal_timeout(timeout_s)
        ref = await self._refs.running(sandbox_id)
        state_path = f"{STATE_DIR}/{uuid.uuid4().hex}"
        wrapped = exec_wrapper_argv(argv, state_path=state_path, limits=ref.limits)
        release = None
        if network is not None and not network.blocked:
            release = await self._refs.widen(ref, network)
        try:
            async with self._refs.on_sandbox(ref):
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

    async def open_pty(
        self,
        sandbox_id: str,
        *,
        cols: int = 80,
        rows: int = 24,
        command: Sequence[str] = ("bash", "-l"),
        env: Mapping[str, str] | None = None,
    ) -> PtyHandle:
        argv = check_pty(command, cols=cols, rows=rows, env=env)
        ref = await self._refs.running(sandbox_id)
        state_path = f"{STATE_DIR}/{uuid.uuid4().hex}"
        wrapped = exec_wrapper_argv(
            argv, state_path=state_path, limits=ref.limits, pty_size=(cols, rows)
        )
        pty_env: dict[str, str | None] = {"TERM": "xterm-256color"}
        pty_env.update(env or {})
        async with self._refs.on_sandbox(ref):
            process = await ref.sandbox.exec.aio(*wrapped, env=pty_env, pty=True, text=False)
        handle = ModalPtyHandle(
            process, state_path=state_path, context=self._refs.context(ref), size=(cols, rows)
        )
        self._track(handle, ref)
        return handle

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

    # -- files (``files``) -----------------------------------------------

    async def list_files(
        self, sandbox_id: str, path: str = "", *, recursive: bool = True
    ) -> builtins.list[FileEntry]:
        return await self._files.list_files(sandbox_id, path, recursive=recursive)

    async def stat(self, sandbox_id: str, path: str) -> FileEntry:
        return await self._files.stat(sandbox_id, path)

    async def read_file(self, sandbox_id: str, path: str, *, max_bytes: int | None = None) -> bytes:
        return await self._files.read_file(sandbox_id, path, max_bytes=max_bytes)

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        await self._files.write_file(sandbox_id, path, data)

    async def delete(self, sandbox_id: str, path: str) -> None:
        await self._files.delete(sandbox_id, path)

    async def mkdir(self, sandbox_id: str, path: str) -> None:
        await self._files.mkdir(sandbox_id, path)
