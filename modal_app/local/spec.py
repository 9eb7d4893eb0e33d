"""Validation of what callers hand the local backend: specs, commands, environments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modal_app.base import InvalidSpec, SandboxSpec
from modal_app.local.presets import check_limits
from modal_app.paths import normalize_workspace_path

NETWORK_REFUSED = (
    "local sandboxes have no network (the agent reaches its API proxy through a socket)"
)


def check_spec(spec: SandboxSpec) -> str:
    """Refuse what the local backend cannot honour; return the normalized workdir."""
    if spec.image is not None:
        raise InvalidSpec("the local backend runs language presets only, not image specs")
    if spec.volume is not None:
        raise InvalidSpec("the local backend has no named volumes (the workspace persists)")
    check_limits(spec.limits)
    check_env(spec.env)
    if spec.network.allow_hosts or spec.network.socket_dir:
        raise InvalidSpec(NETWORK_REFUSED)
    if not spec.timeout_s > 0:
        raise InvalidSpec("timeout_s must be positive")
    if spec.idle_timeout_s is not None and not spec.idle_timeout_s > 0:
        raise InvalidSpec("idle_timeout_s must be positive")
    for key, value in spec.tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSpec("tags must map strings to strings")
    return normalize_workspace_path(spec.workdir)


def command_argv(command: Sequence[str] | str) -> list[str]:
    """A sequence is an argv; a string runs under ``sh -c``."""
    if isinstance(command, str):
        if "\x00" in command:
            raise InvalidSpec("command contains a NUL byte")
        return ["/bin/sh", "-c", command]
    argv = list(command)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidSpec("command must be a non-empty sequence of strings")
    if any("\x00" in a for a in argv):
        raise InvalidSpec("command contains a NUL byte")
    return argv


def check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSpec("environment keys and values must be strings")
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise InvalidSpec(f"invalid environment variable name {key!r}")
