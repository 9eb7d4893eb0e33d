"""What the local backend cannot honour in a spec (the common checks are ``base.check_spec``)."""

from __future__ import annotations

from modal_app.base import InvalidSpec, SandboxSpec, check_spec
from modal_app.paths import normalize_workspace_path

NETWORK_REFUSED = (
    "local sandboxes have no network (the agent reaches its API proxy through a socket)"
)


def check_local_spec(spec: SandboxSpec) -> str:
    """Refuse what the local backend cannot honour; return the normalized workdir."""
    check_spec(spec)
    if spec.image is not None:
        raise InvalidSpec("the local backend runs language presets only, not image specs")
    if spec.volume is not None:
        raise InvalidSpec("the local backend has no named volumes (the workspace persists)")
    if spec.network.allow_hosts or spec.network.socket_dir:
        raise InvalidSpec(NETWORK_REFUSED)
    return normalize_workspace_path(spec.workdir)
