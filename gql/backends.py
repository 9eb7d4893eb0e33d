"""Choosing and building the sandbox backend from settings."""

from __future__ import annotations

from gql.settings import Settings
from modal_app.base import SandboxBackend


def build_backend(settings: Settings) -> SandboxBackend:
    if settings.sandbox_backend == "modal":
        from modal_app.modal.backend import ModalSandboxBackend

        return ModalSandboxBackend(
            token_id=settings.modal_token_id, token_secret=settings.modal_token_secret
        )
    from modal_app.local.backend import LocalSandboxBackend

    # The pinned Node tools (TypeScript, the Claude Code CLI) that setup
    # installs; without them TypeScript runs report a compile error.
    toolchain = settings.toolchain_dir.resolve()
    return LocalSandboxBackend(
        settings.sandbox_root.resolve(),
        toolchain_dir=toolchain if (toolchain / "node_modules").is_dir() else None,
        watch_max_dirs=settings.file_watch_max_dirs,
    )
