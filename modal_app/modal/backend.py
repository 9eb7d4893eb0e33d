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
  to Modal's ``outbound_cidr_allowlist`` / ``outbound_domain_allowlist``;
  "blocked" is created as empty allowlists (networking on, nothing allowed),
  because the SDK promises a replaceable policy only for an allowlist.  The
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
``control`` (Apps, ``Sandbox.create`` / ``list``, volume deletion),
``images``, ``refs`` (attach / cache / helpers / network),
``commands`` (starting and tracking commands and terminals),
``process`` (exec and PTY handles), ``files``, ``shell``
(the in-sandbox sh snippets), ``errors``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence

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
    WatchFilter,
    WorkspaceChanges,
    check_exec,
    check_pty,
    check_spec,
)
from modal_app.logged import suppressed
from modal_app.modal.commands import Commands
from modal_app.modal.control import Apps, create_sandbox, delete_volume, list_sandboxes
from modal_app.modal.errors import translate_errors
from modal_app.modal.files import ModalFiles
from modal_app.modal.images import ImageCatalog
from modal_app.modal.private import private_argv
from modal_app.modal.refs import SandboxRef, SandboxRefs
from modal_app.modal.spec import (
    TAG_VOLUME,
    ModalOptions,
    app_name,
    object_name,
    sandbox_create_args,
    sandbox_workdir,
    user_tags,
)
from modal_app.modal.watch import watch_workspace

_log = logging.getLogger(__name__)


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
    serves_images = True

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
        self._apps = Apps(self._require_client, self._options.environment)
        self._refs = SandboxRefs(
            self._require_client, start_timeout_s=self._options.exec_start_timeout_s
        )
        self._files = ModalFiles(self._refs, self._options, self._require_client)
        self._commands = Commands(self._refs)

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
        await self._commands.stop_all()
        client, self._client = self._client, None
        self._apps.clear()
        self._refs.clear()
        self._files.clear()
        if client is not None:
            with suppressed(
                _log, "closing the Modal client", safe_because="the backend is closing anyway"
            ):
                await client.close.aio()

    def _require_client(self) -> modal.Client:
        if self._client is None:
            raise BackendUnavailable("the Modal backend is not started (call start() first)")
        return self._client

    # -- sandboxes -----------------------------------------------------------

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        check_spec(spec)  # before any call to Modal: a bad spec is the caller's error
        client = self._require_client()
        image = self._images.image_for(spec.language, spec.image)
        now = time.time()
        args = sandbox_create_args(
            spec, image=image, prefix=self._prefix, options=self._options, client=client, now=now
        )
        app = await self._apps.get(args.app_name)
        sandbox = await create_sandbox(args, app=app, client=client)
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
        """Running sandboxes only (the contract; Modal's SDK cannot list finished ones).

        Every listing is scoped to an App: the account's, or without an
        ``account`` tag each of this prefix's Apps in turn.
        """
        if "account" in tags:
            try:
                apps = [await self._apps.get(app_name(self._prefix, tags["account"]), create=False)]
            except SandboxNotFound:
                return []
        else:
            default = app_name(self._prefix, None)
            head = object_name(self._prefix) + "-"
            apps = await self._apps.ours(lambda name: name == default or name.startswith(head))
        return await self._list_in(apps, tags)

    async def _list_in(
        self, apps: builtins.list[modal.App], tags: Mapping[str, str]
    ) -> builtins.list[SandboxInfo]:
        client = self._require_client()
        found: builtins.list[modal.Sandbox] = []
        for app in apps:
            if app.app_id:  # looked up and listed Apps are hydrated
                found += await list_sandboxes(app_id=app.app_id, tags=tags, client=client)
        return [
            _info(ref, SandboxStatus.RUNNING)
            for ref in await self._refs.adopt_all(found)
            # Sandboxes of other programs can carry the same tags; ours have a volume tag.
            # One we terminated may still be listed while Modal shuts it down.
            if TAG_VOLUME in ref.tags and not ref.ended
        ]

    async def terminate(self, sandbox_id: str) -> None:
        """Terminate and wait (bounded) until Modal confirms; handles of it end at once."""
        ref = await self._refs.get(sandbox_id)
        self._commands.forget(ref.id)
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
        # Ended for this replica before the RPC: the worker may answer an exec's
        # wait (NOT_FOUND) before Modal reports the end, and those waits must
        # read as killed, not as errors (test_terminate_while_a_wait_is_pending).
        ref.ended_event.set()
        try:
            with translate_errors():
                await ref.sandbox.terminate.aio()
        except BaseException:
            if not ref.ended:
                ref.ended_event.clear()
            raise
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
        # The volume's sandboxes are all in this sandbox's App (same account).
        try:
            name_of_app = app_name(self._prefix, ref.tags.get("account"))
            app = await self._apps.get(name_of_app, create=False)
        except SandboxNotFound:
            app = None
        for other in await self._list_in([app] if app else [], {TAG_VOLUME: name}):
            if other.id != ref.id and other.status is SandboxStatus.RUNNING:
                return
        await delete_volume(
            name, environment=self._options.environment, client=self._require_client()
        )
        self._files.forget_volume(name)
        await self._refs.forget(ref.id)

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
        ref = await self._refs.running(sandbox_id)
        return await self._commands.exec(
            ref,
            argv,
            workdir=workdir,
            env=env,
            timeout_s=timeout_s,
            network=network,
            private=private,
        )

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
        return await self._commands.pty(ref, argv, cols=cols, rows=rows, env=env)

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

    def watch_workspace(
        self, sandbox_id: str, *, enter: WatchFilter
    ) -> AsyncGenerator[WorkspaceChanges, None]:
        """``filesystem.watch`` in the sandbox, else a listing every few seconds (``watch``)."""
        return watch_workspace(
            self._refs, self._files, sandbox_id, enter, self._options.max_list_entries
        )
