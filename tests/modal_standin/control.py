"""The stand-in's control plane: the subset of ``modal.client.ModalClient`` our backend calls.

Auth, as the SDK sends it (``modal/client.py::_get_metadata``): every call
carries ``x-modal-token-id`` / ``x-modal-token-secret`` (checked here:
UNAUTHENTICATED otherwise, which the SDK raises as ``AuthError``).  Sandbox
RPCs of V2 sandboxes also carry ``x-modal-auth-token``, a JWT the SDK got
from ``AuthTokenGet`` and decodes itself (it needs an ``exp`` claim);
unknown tokens are refused.

Everything not defined here answers UNIMPLEMENTED (``patch_mock_servicer``),
so a new SDK call on our code path shows up as a loud failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpclib.server
from google.protobuf import empty_pb2
from grpclib import GRPCError, Status
from modal._utils.grpc_testing import patch_mock_servicer
from modal_proto import api_pb2
from modal_proto.api_grpc import ModalClientBase

from tests.modal_standin.state import Volume, mint_id, unsigned_jwt

if TYPE_CHECKING:
    from tests.modal_standin.server import ModalStandin

Stream = grpclib.server.Stream[Any, Any]
IMAGE_BUILDER_VERSION = "2025.06"
_CREATE = (
    api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
    api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
)
_LIST_PAGE = 100


@patch_mock_servicer  # every RPC not defined here answers UNIMPLEMENTED
class ControlPlane(ModalClientBase):
    def __init__(self, standin: ModalStandin) -> None:
        self.s = standin
        self.apps: dict[tuple[str, str], str] = {}
        self.images: dict[str, api_pb2.Image] = {}
        self.volumes: dict[str, Volume] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.auth_tokens: set[str] = set()
        self.calls: list[str] = []
        """Names of the RPCs received, in order (tests assert on the protocol)."""
        self.requests: list[tuple[str, Any]] = []
        """(RPC name, request message) of every call that got past auth, in order."""

    async def _begin(self, stream: Stream, rpc: str, *, sandbox_auth: bool = False) -> Any:
        self.calls.append(rpc)
        await self.s.faults.apply(rpc)
        md = stream.metadata
        if (md.get("x-modal-token-id"), md.get("x-modal-token-secret")) != self.s.credentials:
            raise GRPCError(Status.UNAUTHENTICATED, "stand-in: invalid token id or secret")
        if sandbox_auth and md.get("x-modal-auth-token") not in self.auth_tokens:
            raise GRPCError(
                Status.UNAUTHENTICATED, "stand-in: missing or unknown x-modal-auth-token"
            )
        request = await stream.recv_message()
        self.requests.append((rpc, request))
        return request

    def requests_of(self, rpc: str) -> list[Any]:
        return [request for name, request in self.requests if name == rpc]

    # -- session ----------------------------------------------------------------

    async def ClientHello(self, stream: Stream) -> None:
        await self._begin(stream, "ClientHello")
        await stream.send_message(api_pb2.ClientHelloResponse())

    async def AuthTokenGet(self, stream: Stream) -> None:
        await self._begin(stream, "AuthTokenGet")
        token = unsigned_jwt({"exp": int(time.time()) + 3600, "jti": mint_id("tk")})
        self.auth_tokens.add(token)
        await stream.send_message(api_pb2.AuthTokenGetResponse(token=token))

    async def EnvironmentGetOrCreate(self, stream: Stream) -> None:
        req = await self._begin(stream, "EnvironmentGetOrCreate")
        settings = api_pb2.EnvironmentSettings(image_builder_version=IMAGE_BUILDER_VERSION)
        metadata = api_pb2.EnvironmentMetadata(
            name=req.deployment_name or "main", settings=settings
        )
        await stream.send_message(
            api_pb2.EnvironmentGetOrCreateResponse(environment_id="en-standin", metadata=metadata)
        )

    # -- apps, images, secrets --------------------------------------------------

    async def AppGetOrCreate(self, stream: Stream) -> None:
        req = await self._begin(stream, "AppGetOrCreate")
        key = (req.environment_name or "main", req.app_name)
        app_id = self.apps.get(key)
        if app_id is None:
            if req.object_creation_type not in _CREATE:
                raise GRPCError(Status.NOT_FOUND, f"App {req.app_name!r} not found")
            app_id = self.apps[key] = mint_id("ap")
        await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id=app_id))

    async def AppList(self, stream: Stream) -> None:
        # ``Environment.apps.list``: how the backend finds its per-account Apps.
        req = await self._begin(stream, "AppList")
        environment = req.environment_name or "main"
        apps = [
            api_pb2.AppListResponse.AppListItem(
                app_id=app_id, name=name, state=api_pb2.APP_STATE_EPHEMERAL
            )
            for (env, name), app_id in self.apps.items()
            if env == environment
        ]
        await stream.send_message(api_pb2.AppListResponse(apps=apps))

    async def ImageGetOrCreate(self, stream: Stream) -> None:
        req = await self._begin(stream, "ImageGetOrCreate")
        # Nothing is built: commands run on the host's system view (see the
        # notes); only ENV lines of the recipe are honoured, at sandbox start.
        image_id = mint_id("im")
        self.images[image_id] = req.image
        result = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
        metadata = api_pb2.ImageMetadata(image_builder_version=req.builder_version)
        await stream.send_message(
            api_pb2.ImageGetOrCreateResponse(image_id=image_id, result=result, metadata=metadata)
        )

    def image_env(self, image_id: str) -> dict[str, str]:
        """``ENV`` lines of an image and its bases, bases first."""
        image = self.images.get(image_id)
        if image is None:
            return {}
        env: dict[str, str] = {}
        for base in image.base_images:
            env.update(self.image_env(base.image_id))
        for command in image.dockerfile_commands:
            words = shlex.split(command)
            if words[:1] == ["ENV"]:
                for word in words[1:]:
                    key, _, value = word.partition("=")
                    env[key] = value
        return env

    async def SecretGetOrCreate(self, stream: Stream) -> None:
        req = await self._begin(stream, "SecretGetOrCreate")
        secret_id = mint_id("st")
        self.secrets[secret_id] = dict(req.env_dict)
        await stream.send_message(api_pb2.SecretGetOrCreateResponse(secret_id=secret_id))

    # -- volumes ----------------------------------------------------------------

    async def VolumeGetOrCreate(self, stream: Stream) -> None:
        req = await self._begin(stream, "VolumeGetOrCreate")
        environment = req.environment_name or "main"
        found = next(
            (
                v
                for v in self.volumes.values()
                if v.name == req.deployment_name and v.environment == environment
            ),
            None,
        )
        if found is None:
            if req.object_creation_type not in _CREATE:
                raise GRPCError(Status.NOT_FOUND, f"Volume {req.deployment_name!r} not found")
            volume_id = mint_id("vo")
            path = self.s.root / "volumes" / volume_id
            path.mkdir(parents=True)
            found = self.volumes[volume_id] = Volume(
                volume_id, req.deployment_name, environment, path
            )
        version = api_pb2.VolumeFsVersion.VOLUME_FS_VERSION_V2
        await stream.send_message(
            api_pb2.VolumeGetOrCreateResponse(
                volume_id=found.volume_id,
                version=version,
                metadata=api_pb2.VolumeMetadata(version=version, name=found.name),
            )
        )

    async def _committed(self, volume_id: str) -> None:
        """Wait for a commit of the volume in progress (a sandbox using it is ending)."""
        async with self.s.volume_lock(volume_id):
            pass

    def volume(self, volume_id: str) -> Volume:
        found = self.volumes.get(volume_id)
        if found is None:
            raise GRPCError(Status.NOT_FOUND, f"Volume {volume_id} not found")
        return found

    async def VolumeDelete(self, stream: Stream) -> None:
        req = await self._begin(stream, "VolumeDelete")
        await self._committed(req.volume_id)
        volume = self.volume(req.volume_id)
        del self.volumes[req.volume_id]
        await asyncio.to_thread(shutil.rmtree, volume.path, True)
        await stream.send_message(empty_pb2.Empty())

    async def VolumeListFiles2(self, stream: Stream) -> None:
        req = await self._begin(stream, "VolumeListFiles2")
        await self._committed(req.volume_id)
        root = self.volume(req.volume_id).path
        entries = await asyncio.to_thread(_list_volume, root, req.path, req.recursive)
        if entries is None:
            raise GRPCError(Status.NOT_FOUND, f"{req.path!r} not found")
        for start in range(0, max(len(entries), 1), _LIST_PAGE):
            batch = entries[start : start + _LIST_PAGE]
            await stream.send_message(api_pb2.VolumeListFiles2Response(entries=batch))

    async def VolumeGetFile2(self, stream: Stream) -> None:
        req = await self._begin(stream, "VolumeGetFile2")
        await self._committed(req.volume_id)
        target = _inside(self.volume(req.volume_id).path, req.path)
        if not os.path.isfile(target):
            raise GRPCError(Status.NOT_FOUND, f"{req.path!r} not found")
        data = await asyncio.to_thread(Path(target).read_bytes)
        start = min(req.start, len(data))
        end = len(data) if not req.len else min(len(data), start + req.len)
        # Whole blocks from ``start`` (which the SDK only sets block-aligned).
        urls = self.s.blobs.download_urls(data[start:end])
        await stream.send_message(
            api_pb2.VolumeGetFile2Response(
                get_urls=urls, size=len(data), start=start, len=end - start
            )
        )

    async def VolumePutFiles2(self, stream: Stream) -> None:
        req = await self._begin(stream, "VolumePutFiles2")
        await self._committed(req.volume_id)
        root = self.volume(req.volume_id).path
        blocks = self.s.blobs.blocks
        missing = [
            api_pb2.VolumePutFiles2Response.MissingBlock(
                file_index=f, block_index=b, put_url=self.s.blobs.put_url(block.contents_sha256)
            )
            for f, file in enumerate(req.files)
            for b, block in enumerate(file.blocks)
            if block.contents_sha256 not in blocks
        ]
        if missing:
            await stream.send_message(api_pb2.VolumePutFiles2Response(missing_blocks=missing))
            return
        for file in req.files:
            target = Path(_inside(root, file.path))
            if req.disallow_overwrite_existing_files and target.exists():
                raise GRPCError(Status.ALREADY_EXISTS, f"{file.path!r} already exists")
            data = b"".join(blocks[block.contents_sha256] for block in file.blocks)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[: file.size])
            target.chmod(file.mode & 0o7777 or 0o644)
        await stream.send_message(api_pb2.VolumePutFiles2Response())

    async def VolumeRemoveFile2(self, stream: Stream) -> None:
        req = await self._begin(stream, "VolumeRemoveFile2")
        await self._committed(req.volume_id)
        target = _inside(self.volume(req.volume_id).path, req.path)
        if not os.path.lexists(target):
            raise GRPCError(Status.NOT_FOUND, f"{req.path!r} not found")
        if os.path.isdir(target) and not os.path.islink(target):
            if not req.recursive:
                raise GRPCError(Status.INVALID_ARGUMENT, f"{req.path!r} is a directory")
            await asyncio.to_thread(shutil.rmtree, target)
        else:
            os.unlink(target)
        await stream.send_message(empty_pb2.Empty())

    # -- sandboxes --------------------------------------------------------------

    async def SandboxCreateV2(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxCreateV2", sandbox_auth=True)
        sandbox = await self.s.create_sandbox(req)
        response = api_pb2.SandboxCreateV2Response(
            sandbox_id=sandbox.sandbox_id,
            task_id=sandbox.task_id,
            metadata=api_pb2.SandboxHandleMetadata(app_id=sandbox.app_id),
        )
        if self.s.access_at_create:
            response.command_router_access.CopyFrom(self.s.router_access(sandbox))
        await stream.send_message(response)

    async def SandboxGetTaskIdV2(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxGetTaskIdV2", sandbox_auth=True)
        sandbox = self.s.sandbox(req.sandbox_id)
        if sandbox.result is not None:
            # A finished sandbox has no task to talk to: the SDK raises
            # ConflictError("Sandbox already finished") from this.
            await stream.send_message(api_pb2.SandboxGetTaskIdResponse(task_result=sandbox.result))
        else:
            await stream.send_message(api_pb2.SandboxGetTaskIdResponse(task_id=sandbox.task_id))

    async def SandboxGetCommandRouterAccess(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxGetCommandRouterAccess", sandbox_auth=True)
        sandbox = self.s.sandbox(req.sandbox_id) if req.sandbox_id else self.s.by_task(req.task_id)
        if sandbox.result is not None:
            raise GRPCError(Status.FAILED_PRECONDITION, "Sandbox already finished")
        access = self.s.router_access(sandbox)
        await stream.send_message(
            api_pb2.SandboxGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt)
        )

    async def SandboxWaitV2(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxWaitV2", sandbox_auth=True)
        sandbox = self.s.sandbox(req.sandbox_id)
        if sandbox.result is None and req.timeout > 0:
            # A long poll: answer when it finishes or the client's timeout ends.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sandbox.finished.wait(), req.timeout)
        metadata = api_pb2.SandboxHandleMetadata(app_id=sandbox.app_id)
        response = api_pb2.SandboxWaitResponse(metadata=metadata)
        if sandbox.result is not None:
            response.result.CopyFrom(sandbox.result)
            response.metadata.result.CopyFrom(sandbox.result)
        await stream.send_message(response)

    async def SandboxTagsGetV2(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxTagsGetV2", sandbox_auth=True)
        sandbox = self.s.sandbox(req.sandbox_id)
        tags = [api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sandbox.tags.items()]
        await stream.send_message(api_pb2.SandboxTagsGetResponse(tags=tags))

    async def SandboxListV2(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxListV2", sandbox_auth=True)
        wanted = {t.tag_name: t.tag_value for t in req.tags}
        found = []
        for sandbox in sorted(self.s.sandboxes.values(), key=lambda s: -s.created_at):
            if req.app_id and sandbox.app_id != req.app_id:
                continue
            if not req.include_finished and sandbox.result is not None:
                continue
            if req.before_timestamp and sandbox.created_at >= req.before_timestamp:
                continue
            if not wanted.items() <= sandbox.tags.items():
                continue
            found.append(self.s.sandbox_info(sandbox))
            if len(found) == _LIST_PAGE:
                break
        await stream.send_message(api_pb2.SandboxListResponse(sandboxes=found))

    async def SandboxTerminateV2(self, stream: Stream) -> None:
        req = await self._begin(stream, "SandboxTerminateV2", sandbox_auth=True)
        sandbox = self.s.sandbox(req.sandbox_id)
        existing = sandbox.result
        await self.s.end_sandbox(sandbox, api_pb2.GenericResult.GENERIC_STATUS_TERMINATED)
        response = api_pb2.SandboxTerminateResponse()
        if existing is not None:
            response.existing_result.CopyFrom(existing)
        await stream.send_message(response)


def _inside(root: os.PathLike[str], path: str) -> str:
    """A volume path (absolute or relative to the volume root) on the host; no escapes."""
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, path.lstrip("/")))
    if target != base and not target.startswith(base + os.sep):
        raise GRPCError(Status.INVALID_ARGUMENT, f"{path!r} is outside the volume")
    return target


def _list_volume(
    root: os.PathLike[str], path: str, recursive: bool
) -> list[api_pb2.FileEntry] | None:
    base = os.path.realpath(root)
    top = _inside(root, path)
    if not os.path.lexists(top):
        return None
    kinds = {True: api_pb2.FileEntry.FileType.DIRECTORY, False: api_pb2.FileEntry.FileType.FILE}

    def entry(full: str) -> api_pb2.FileEntry:
        st = os.lstat(full)
        kind = (
            api_pb2.FileEntry.FileType.SYMLINK
            if os.path.islink(full)
            else kinds[os.path.isdir(full)]
        )
        return api_pb2.FileEntry(
            path=os.path.relpath(full, base), type=kind, mtime=int(st.st_mtime), size=st.st_size
        )

    if not os.path.isdir(top):
        return [entry(top)]
    found: list[api_pb2.FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            found.append(entry(os.path.join(dirpath, name)))
        if not recursive:
            break
    return found
