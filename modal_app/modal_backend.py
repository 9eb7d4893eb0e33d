"""The Modal sandbox backend (production): ``SandboxBackend`` over the modal SDK 1.6.4.

Design
------
* Credentials are explicit: ``start()`` builds a ``modal.Client`` from the
  token id/secret it was given (never from ``os.environ``) and every SDK call
  gets that client, so several backends (or tests) can coexist in a process.
  All calls use the SDK's async ``.aio`` interface.
* One Modal App per account, one Volume per workspace mounted at /workspace,
  language images and ``ImageSpec`` images from ``modal_images``; the spec is
  translated by the pure ``modal_spec.sandbox_create_args``.  Sandboxes are
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
* Commands run through a small ``sh`` prologue (``modal_shell``) that records
  the pid, applies the ``Limits`` with ``ulimit`` and ``exec``s the command;
  kill, PTY resize and the symlink check are helper commands (the SDK has no
  RPC for them).  The sandbox image must therefore provide ``/bin/sh``.
* Files go through ``Sandbox.filesystem`` while the sandbox runs and through
  the Volume API (``read_file``, ``listdir``, ``batch_upload``,
  ``remove_file``) once it has ended; ``mkdir`` has no Volume equivalent and
  raises ``SandboxTerminated`` then.  Paths are checked lexically by
  ``paths.normalize_workspace_path`` and, while running, resolved through
  symlinks inside the sandbox (``ModalOptions.check_symlinks``).
* Errors: every SDK call runs inside ``modal_errors.translate_errors``; calls on
  an existing sandbox additionally turn "not found"/"unavailable" into
  ``SandboxTerminated`` when a poll shows the sandbox has ended.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import modal
import modal.exception as mx
from modal.stream_type import StreamType
from modal.types import FileEntry as VolumeEntry
from modal.types import FileEntryType, FileInfo, FileType

from modal_app.base import (
    WORKSPACE,
    BackendUnavailable,
    ExecHandle,
    FileEntry,
    FileNotFoundInSandbox,
    FileTooLarge,
    InvalidPath,
    InvalidSpec,
    Limits,
    NetworkPolicy,
    PtyHandle,
    SandboxError,
    SandboxFileError,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
)
from modal_app.modal_errors import translate_errors
from modal_app.modal_images import ImageCatalog
from modal_app.modal_process import ModalExecHandle, ModalPtyHandle
from modal_app.modal_shell import GUARD_ESCAPES, STATE_DIR, exec_wrapper_argv, guard_argv
from modal_app.modal_spec import (
    TAG_CREATED,
    TAG_LIMITS,
    TAG_VOLUME,
    ModalOptions,
    app_name,
    check_env,
    decode_limits,
    sandbox_create_args,
    sandbox_workdir,
    split_allow_hosts,
    user_tags,
)
from modal_app.paths import normalize_workspace_path, workspace_abspath

T = TypeVar("T")

_SANDBOX_ID = re.compile(r"^sb-[A-Za-z0-9]+$")
_HELPER_TIMEOUT_S = 30
_LIST_CONCURRENCY = 8
# Exit codes of a sandbox's entrypoint that mean "ended normally": our sleep
# finishing, Modal's timeout (124) and termination (137 / 143).
_ORDERLY_EXITS = frozenset({0, 124, 137, 143})


@dataclass(eq=False)
class _Ref:
    """What this replica knows about one sandbox."""

    sandbox: modal.Sandbox
    tags: dict[str, str]
    created_at: float
    volume_name: str | None
    limits: Limits | None
    network: NetworkPolicy | None = None
    """The creation policy, when this replica created the sandbox."""
    ended: bool = False
    widenings: list[tuple[list[str], list[str]]] = field(default_factory=list)
    net_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.sandbox.object_id


def status_from_returncode(returncode: int | None) -> SandboxStatus:
    if returncode is None:
        return SandboxStatus.RUNNING
    return SandboxStatus.TERMINATED if returncode in _ORDERLY_EXITS else SandboxStatus.ERROR


def entry_from_info(relative: str, info: FileInfo) -> FileEntry:
    kind = {FileType.DIRECTORY: "dir", FileType.SYMLINK: "symlink"}.get(info.type, "file")
    return FileEntry(path=relative, kind=kind, size=info.size, mtime=info.modified_time)  # type: ignore[arg-type]


def entry_from_volume(entry: VolumeEntry) -> FileEntry:
    kind = {FileEntryType.DIRECTORY: "dir", FileEntryType.SYMLINK: "symlink"}.get(
        entry.type, "file"
    )
    return FileEntry(
        path=entry.path.strip("/"),
        kind=kind,  # type: ignore[arg-type]
        size=entry.size,
        mtime=float(entry.mtime),
    )


def _argv(command: Sequence[str] | str) -> list[str]:
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    if not argv or not argv[0]:
        raise InvalidSpec("empty command")
    if any("\x00" in arg for arg in argv):
        raise InvalidSpec("command contains a NUL byte")
    return argv


def _exec_timeout(timeout_s: float | None) -> int | None:
    if timeout_s is None:
        return None
    if not timeout_s > 0:
        raise InvalidSpec(f"timeout_s must be positive, got {timeout_s!r}")
    # Modal takes whole seconds; rounding up never cuts a command short.
    return max(1, -int(-timeout_s // 1))


class ModalSandboxBackend:
    """``SandboxBackend`` on Modal; see the module docstring."""

    name = "modal"

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
        self._refs: dict[str, _Ref] = {}
        self._volumes: dict[str, modal.Volume] = {}
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
        client, self._client = self._client, None
        self._apps.clear()
        self._refs.clear()
        self._volumes.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close.aio()

    @staticmethod
    async def _stop_quietly(handle: ModalExecHandle | ModalPtyHandle) -> None:
        with contextlib.suppress(Exception):
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
        ref = _Ref(
            sandbox=sandbox,
            tags=args.tags,
            created_at=float(int(now)),
            volume_name=args.volume_name,
            limits=spec.limits,
            network=spec.network,
        )
        self._refs[ref.id] = ref
        return self._info(ref, SandboxStatus.RUNNING)

    async def attach(self, sandbox_id: str) -> SandboxInfo:
        ref = await self._ref(sandbox_id, refresh=True)
        return self._info(ref, await self._poll_status(ref))

    async def status(self, sandbox_id: str) -> SandboxStatus:
        return await self._poll_status(await self._ref(sandbox_id))

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

        async def describe(sandbox: modal.Sandbox) -> _Ref | None:
            async with limit:
                with contextlib.suppress(SandboxNotFound, SandboxTerminated):
                    return await self._adopt(sandbox)
            return None

        refs = await asyncio.gather(*(describe(sandbox) for sandbox in found))
        return [
            self._info(ref, status_from_returncode(ref.sandbox.returncode))
            for ref in refs
            # Sandboxes of other programs can carry the same tags; ours have a volume tag.
            if ref is not None and TAG_VOLUME in ref.tags
        ]

    async def terminate(self, sandbox_id: str) -> None:
        ref = await self._ref(sandbox_id)
        for handle in [h for h, owner in self._live.items() if owner == ref.id]:
            # Their processes end with the sandbox; nothing to stop at aclose.
            del self._live[handle]
        if ref.ended or await self._finished(ref):
            ref.ended = True
            return
        # Flush the workspace volume before the container goes, so the Volume
        # API sees the last writes right after termination.
        with contextlib.suppress(Exception):
            await self._helper(ref, ["sh", "-c", 'sync "$1" || sync', "sync", WORKSPACE])
        with translate_errors():
            await ref.sandbox.terminate.aio()
        ref.ended = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(30):
                await ref.sandbox.wait.aio(raise_on_termination=False)

    async def remove(self, sandbox_id: str) -> None:
        """Delete the workspace volume of an ended sandbox; idempotent.

        A volume is per workspace, so it is kept while another running sandbox
        (a later one of the same session) still mounts it.
        """
        try:
            ref = await self._ref(sandbox_id)
        except SandboxNotFound:
            return
        if not ref.ended and not await self._finished(ref):
            raise SandboxError(f"sandbox {sandbox_id} is still running: terminate it first")
        ref.ended = True
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
        self._volumes.pop(name, None)

    @staticmethod
    def _account_tag(ref: _Ref) -> dict[str, str]:
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
    ) -> ExecHandle:
        argv = _argv(command)
        workdir = None if cwd is None else sandbox_workdir(cwd)
        check_env(env or {})
        timeout = _exec_timeout(timeout_s)
        ref = await self._running_ref(sandbox_id)
        state_path = f"{STATE_DIR}/{uuid.uuid4().hex}"
        wrapped = exec_wrapper_argv(argv, state_path=state_path, limits=ref.limits)
        release = None
        if network is not None and not network.blocked:
            release = await self._widen(ref, network)
        started = time.monotonic()
        try:
            async with self._on_sandbox(ref):
                process = await ref.sandbox.exec.aio(
                    *wrapped,
                    workdir=workdir,
                    env=dict(env) if env else None,
                    timeout=timeout,
                    text=False,
                )
        except BaseException:
            if release is not None:
                await release()
            raise
        handle = ModalExecHandle(
            process,
            state_path=state_path,
            helper=lambda helper_argv: self._helper(ref, helper_argv),
            deadline=started + timeout if timeout else None,
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
        if cols <= 0 or rows <= 0:
            raise InvalidSpec("terminal size must be positive")
        argv = _argv(command)
        check_env(env or {})
        ref = await self._running_ref(sandbox_id)
        state_path = f"{STATE_DIR}/{uuid.uuid4().hex}"
        wrapped = exec_wrapper_argv(
            argv, state_path=state_path, limits=ref.limits, pty_size=(cols, rows)
        )
        pty_env: dict[str, str | None] = {"TERM": "xterm-256color"}
        pty_env.update(env or {})
        async with self._on_sandbox(ref):
            process = await ref.sandbox.exec.aio(*wrapped, env=pty_env, pty=True, text=False)
        handle = ModalPtyHandle(
            process,
            state_path=state_path,
            helper=lambda helper_argv: self._helper(ref, helper_argv),
            size=(cols, rows),
        )
        self._track(handle, ref)
        return handle

    def _track(self, handle: ModalExecHandle | ModalPtyHandle, ref: _Ref) -> None:
        """Remember a running handle until it exits (which also releases its network grant)."""
        self._live[handle] = ref.id

        async def watch() -> None:
            with contextlib.suppress(Exception):
                await handle.wait()
            self._live.pop(handle, None)

        task = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _helper(self, ref: _Ref, argv: Sequence[str]) -> int:
        """Run a short helper command next to the candidate's and return its exit code."""
        async with self._on_sandbox(ref):
            process = await ref.sandbox.exec.aio(
                *argv,
                timeout=_HELPER_TIMEOUT_S,
                stdout=StreamType.DEVNULL,
                stderr=StreamType.DEVNULL,
                text=False,
            )
            return await process.wait.aio()

    async def _widen(self, ref: _Ref, policy: NetworkPolicy) -> Callable[[], Awaitable[None]]:
        grant = split_allow_hosts(policy)
        async with ref.net_lock:
            ref.widenings.append(grant)
            try:
                await self._apply_network(ref)
            except BaseException:
                ref.widenings.remove(grant)
                raise
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            async with ref.net_lock:
                ref.widenings.remove(grant)
                await self._apply_network(ref)

        return release

    async def _apply_network(self, ref: _Ref) -> None:
        cidrs: list[str] = []
        domains: list[str] = []
        if ref.network is not None and not ref.network.blocked:
            cidrs, domains = split_allow_hosts(ref.network)
        for extra_cidrs, extra_domains in ref.widenings:
            cidrs += extra_cidrs
            domains += extra_domains
        # Both lists given (even empty) means an allowlist; the SDK has no way
        # back to "blocked" other than allowing nothing.
        async with self._on_sandbox(ref):
            await ref.sandbox._experimental_set_outbound_network_policy.aio(
                outbound_cidr_allowlist=sorted(set(cidrs)),
                outbound_domain_allowlist=sorted(set(domains)),
            )

    # -- files ---------------------------------------------------------------

    async def list_files(
        self, sandbox_id: str, path: str = "", *, recursive: bool = True
    ) -> builtins.list[FileEntry]:
        rel = normalize_workspace_path(path)
        cap = self._options.max_list_entries

        async def running(sandbox: modal.Sandbox) -> list[FileEntry]:
            entries: list[FileEntry] = []
            limit = asyncio.Semaphore(_LIST_CONCURRENCY)

            async def walk(directory: str) -> None:
                if len(entries) >= cap:
                    return
                async with limit:
                    infos = await sandbox.filesystem.list_files.aio(workspace_abspath(directory))
                children = []
                for info in sorted(infos, key=lambda i: i.name):
                    if len(entries) >= cap:
                        break
                    child = f"{directory}/{info.name}" if directory else info.name
                    entries.append(entry_from_info(child, info))
                    if recursive and info.type == FileType.DIRECTORY:
                        children.append(child)
                await asyncio.gather(*(walk(child) for child in children))

            try:
                with translate_errors():
                    await walk(rel)
            except InvalidPath:
                # Not a directory: like the local backend, list the file itself.
                info = await sandbox.filesystem.stat.aio(workspace_abspath(rel))
                if info.type == FileType.DIRECTORY:
                    raise
                return [entry_from_info(rel, info)]
            return sorted(entries, key=lambda e: e.path)

        async def stopped(volume: modal.Volume) -> list[FileEntry]:
            found = await volume.listdir.aio(rel or "/", recursive=recursive)
            entries = sorted((entry_from_volume(e) for e in found), key=lambda e: e.path)
            return entries[:cap]

        return await self._file_op(sandbox_id, rel, True, running, stopped)

    async def stat(self, sandbox_id: str, path: str) -> FileEntry:
        rel = normalize_workspace_path(path)

        async def running(sandbox: modal.Sandbox) -> FileEntry:
            return entry_from_info(rel, await sandbox.filesystem.stat.aio(workspace_abspath(rel)))

        async def stopped(volume: modal.Volume) -> FileEntry:
            if not rel:
                return FileEntry(path="", kind="dir", size=0, mtime=0.0)
            parent = rel.rpartition("/")[0]
            for entry in await volume.listdir.aio(parent or "/"):
                if entry.path.strip("/") == rel:
                    return entry_from_volume(entry)
            raise FileNotFoundInSandbox(f"no such file or directory: {rel}")

        return await self._file_op(sandbox_id, rel, False, running, stopped)

    async def read_file(self, sandbox_id: str, path: str) -> bytes:
        rel = normalize_workspace_path(path)
        if not rel:
            raise InvalidPath("the workspace root is a directory")

        async def running(sandbox: modal.Sandbox) -> bytes:
            return await sandbox.filesystem.read_bytes.aio(workspace_abspath(rel))

        async def stopped(volume: modal.Volume) -> bytes:
            return b"".join([chunk async for chunk in volume.read_file.aio(rel)])

        return await self._file_op(sandbox_id, rel, True, running, stopped)

    async def write_file(self, sandbox_id: str, path: str, data: bytes) -> None:
        rel = normalize_workspace_path(path)
        if not rel:
            raise InvalidPath("cannot write to the workspace root")
        ref = await self._ref(sandbox_id)
        if ref.limits is not None and len(data) > ref.limits.max_file_size_mb << 20:
            raise FileTooLarge(f"{rel}: over the {ref.limits.max_file_size_mb} MiB file limit")

        async def running(sandbox: modal.Sandbox) -> None:
            await sandbox.filesystem.write_bytes.aio(data, workspace_abspath(rel))

        async def stopped(volume: modal.Volume) -> None:
            async with volume.batch_upload.aio(force=True) as batch:
                batch.put_file(io.BytesIO(data), f"/{rel}")

        await self._file_op(sandbox_id, rel, True, running, stopped)

    async def delete(self, sandbox_id: str, path: str) -> None:
        rel = normalize_workspace_path(path)
        if not rel:
            raise InvalidPath("cannot delete the workspace root")

        async def running(sandbox: modal.Sandbox) -> None:
            await sandbox.filesystem.remove.aio(workspace_abspath(rel), recursive=True)

        async def stopped(volume: modal.Volume) -> None:
            await volume.remove_file.aio(rel, recursive=True)

        await self._file_op(sandbox_id, rel, False, running, stopped)

    async def mkdir(self, sandbox_id: str, path: str) -> None:
        rel = normalize_workspace_path(path)

        async def running(sandbox: modal.Sandbox) -> None:
            if rel:
                await sandbox.filesystem.make_directory.aio(
                    workspace_abspath(rel), create_parents=True
                )

        await self._file_op(sandbox_id, rel, True, running, None)

    async def _file_op(
        self,
        sandbox_id: str,
        rel: str,
        follow_last: bool,
        running: Callable[[modal.Sandbox], Awaitable[T]],
        stopped: Callable[[modal.Volume], Awaitable[T]] | None,
    ) -> T:
        """``running`` through the live sandbox, or ``stopped`` on its volume once it has ended."""
        ref = await self._ref(sandbox_id)
        if not ref.ended:
            try:
                async with self._on_sandbox(ref):
                    if rel and self._options.check_symlinks:
                        await self._check_inside(ref, rel, follow_last)
                    return await running(ref.sandbox)
            except SandboxTerminated:
                ref.ended = True
        if stopped is None:
            raise SandboxTerminated(f"sandbox {sandbox_id} has ended; its workspace is read-only")
        if ref.volume_name is None:
            raise SandboxTerminated(f"sandbox {sandbox_id} has ended and has no workspace volume")
        volume = self._volumes.get(ref.volume_name)
        if volume is None:
            volume = modal.Volume.from_name(
                ref.volume_name, environment_name=self._options.environment, client=self._client
            )
            self._volumes[ref.volume_name] = volume
        with translate_errors(not_found=FileNotFoundInSandbox):
            return await stopped(volume)

    async def _check_inside(self, ref: _Ref, rel: str, follow_last: bool) -> None:
        code = await self._helper(ref, guard_argv(workspace_abspath(rel), follow_last=follow_last))
        if code == GUARD_ESCAPES:
            raise InvalidPath(f"{rel!r} resolves outside {WORKSPACE}")
        if code != 0:
            raise SandboxFileError(f"could not resolve {rel!r} (exit code {code})")

    # -- references and errors -------------------------------------------------

    @contextlib.asynccontextmanager
    async def _on_sandbox(self, ref: _Ref) -> AsyncIterator[None]:
        """``translate_errors`` for calls on an existing sandbox, which may have ended.

        The SDK reports a call on a finished sandbox as "not found", "sandbox
        unavailable" or an unspecific filesystem error; a poll tells which.
        """
        try:
            with translate_errors():
                yield
        except (SandboxNotFound, SandboxFileError) as exc:
            if type(exc) in (SandboxNotFound, SandboxFileError) and await self._finished(ref):
                ref.ended = True
                raise SandboxTerminated(f"sandbox {ref.id} has ended") from exc
            raise

    async def _finished(self, ref: _Ref) -> bool:
        try:
            return await ref.sandbox.poll.aio() is not None
        except Exception:
            return False

    async def _poll_status(self, ref: _Ref) -> SandboxStatus:
        with translate_errors():
            returncode = await ref.sandbox.poll.aio()
        if returncode is not None:
            ref.ended = True
        return status_from_returncode(returncode)

    async def _ref(self, sandbox_id: str, *, refresh: bool = False) -> _Ref:
        ref = self._refs.get(sandbox_id)
        if ref is not None and not refresh:
            return ref
        client = self._require_client()
        if not _SANDBOX_ID.match(sandbox_id):
            raise SandboxNotFound(f"no Modal sandbox {sandbox_id!r}")
        try:
            with translate_errors():
                sandbox = await modal.Sandbox.from_id.aio(sandbox_id, client=client)
        except InvalidSpec as exc:
            raise SandboxNotFound(f"no Modal sandbox {sandbox_id!r}") from exc
        return await self._adopt(sandbox)

    async def _running_ref(self, sandbox_id: str) -> _Ref:
        ref = await self._ref(sandbox_id)
        if ref.ended:
            raise SandboxTerminated(f"sandbox {sandbox_id} has ended")
        return ref

    async def _adopt(self, sandbox: modal.Sandbox) -> _Ref:
        """A reference for a sandbox handle from ``from_id`` / ``list``, read from its tags."""
        tags: dict[str, str] = {}
        with contextlib.suppress(mx.Error):
            tags = await sandbox.get_tags.aio()
        known = self._refs.get(sandbox.object_id)
        created = tags.get(TAG_CREATED, "")
        ref = _Ref(
            sandbox=sandbox,
            tags=tags,
            created_at=float(created) if created.isdigit() else 0.0,
            volume_name=tags.get(TAG_VOLUME) or (known.volume_name if known else None),
            limits=decode_limits(tags.get(TAG_LIMITS)) or (known.limits if known else None),
            network=known.network if known else None,
            ended=sandbox.returncode is not None,
        )
        if known is not None:
            ref.widenings = known.widenings
            ref.net_lock = known.net_lock
        self._refs[ref.id] = ref
        return ref

    @staticmethod
    def _info(ref: _Ref, status: SandboxStatus) -> SandboxInfo:
        return SandboxInfo(
            id=ref.id, status=status, tags=user_tags(ref.tags), created_at=ref.created_at
        )
