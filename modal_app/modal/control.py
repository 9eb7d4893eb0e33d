"""Modal calls outside any sandbox: Apps, creating and listing sandboxes, deleting volumes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import modal

from modal_app.modal.errors import translate_errors
from modal_app.modal.spec import CreateArgs


class Apps:
    """The Modal Apps sandboxes run in (one per account), looked up once per name."""

    def __init__(self, client: Callable[[], modal.Client], environment: str | None) -> None:
        self._client = client
        self._environment = environment
        self._apps: dict[str, modal.App] = {}

    def clear(self) -> None:
        self._apps.clear()

    async def get(self, name: str, *, create: bool = True) -> modal.App:
        app = self._apps.get(name)
        if app is None:
            with translate_errors():
                app = await modal.App.lookup.aio(
                    name,
                    client=self._client(),
                    environment_name=self._environment,
                    create_if_missing=create,
                )
            self._apps[name] = app
        return app

    async def ours(self, is_ours: Callable[[str], bool]) -> list[modal.App]:
        """The live Apps of this environment whose names ``is_ours`` accepts.

        Listing sandboxes without an App scans the profile's whole environment
        (deprecated in 1.6.4); listing App by App keeps to ours and to
        ``ModalOptions.environment``.
        """
        client = self._client()
        with translate_errors():
            if self._environment:
                environment = modal.Environment.from_name(self._environment, client=client)
            else:
                environment = modal.Environment.from_context(client=client)
            apps = await environment.apps.list.aio()
        found: list[modal.App] = []
        for app in apps:
            if app.name and is_ours(app.name):
                self._apps.setdefault(app.name, app)
                found.append(app)
        return found


async def create_sandbox(
    args: CreateArgs, *, app: modal.App, client: modal.Client
) -> modal.Sandbox:
    """``Sandbox.create`` with everything ``spec.sandbox_create_args`` worked out."""
    with translate_errors():
        return await modal.Sandbox.create.aio(
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


async def list_sandboxes(
    *, app_id: str, tags: Mapping[str, str], client: modal.Client
) -> list[modal.Sandbox]:
    """The running sandboxes of one App carrying ``tags`` (the SDK lists no finished ones)."""
    found: list[modal.Sandbox] = []
    with translate_errors():
        listing = modal.Sandbox.list.aio(app_id=app_id, tags=dict(tags), client=client)
        found.extend([sandbox async for sandbox in listing])
    return found


async def delete_volume(name: str, *, environment: str | None, client: modal.Client) -> None:
    """Delete a workspace volume; a missing one is already gone."""
    with translate_errors():
        await modal.Volume.objects.delete.aio(
            name, allow_missing=True, environment_name=environment, client=client
        )
