"""Pure translation of a ``SandboxSpec`` into ``modal.Sandbox.create`` arguments.

Nothing here talks to Modal: ``modal.Volume.from_name``, ``modal.Secret.from_name``
and ``modal.CloudBucketMount`` only record references that the SDK hydrates
when the sandbox is created, so ``sandbox_create_args`` can be tested offline.

Naming: one Modal App per account (``{prefix}-{account}``, from
``spec.tags["account"]``, ``{prefix}-default`` without one) so listing is
scoped by ``app_id``; one Volume per workspace (``{prefix}-ws-{key}``, the key
being ``spec.volume``, else ``spec.tags["session"]``, else a fresh id), mounted
at /workspace, so a session's files outlive its sandbox and can be read back
through the Volume API after termination.

State other replicas need is kept on the sandbox itself as tags (reserved
keys below): the volume, the creation time and the limits that ``exec``
applies with ``ulimit``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import modal

from modal_app.base import WORKSPACE, InvalidSpec, Limits, NetworkPolicy, SandboxSpec, check_spec
from modal_app.paths import normalize_workspace_path, workspace_abspath

# Modal's ceiling for a sandbox's lifetime.
MAX_TIMEOUT_S = 24 * 3600
# The entrypoint must outlive the sandbox's timeout, which is what ends it.
_ENTRYPOINT_SLACK_S = 60

TAG_VOLUME = "interviewlm-volume"
TAG_CREATED = "interviewlm-created"
TAG_LIMITS = "interviewlm-limits"
RESERVED_TAGS = frozenset({TAG_VOLUME, TAG_CREATED, TAG_LIMITS})

# Modal's rules (modal/_utils/name_utils.py): object names are [A-Za-z0-9._-]
# up to 64 characters; tag keys and values the same up to 63.
_NAME_OK = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_DOMAIN = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*$|^\*$")


@dataclass(frozen=True, slots=True)
class BucketMount:
    """An S3 (or S3-compatible) bucket mounted into every sandbox.

    ``key_prefix`` may use ``{account}`` and ``{session}`` so that each account
    (or session) sees only its own part of a shared bucket; it must end in '/'.
    """

    bucket_name: str
    secret_name: str | None = None
    mount_path: str = "/mnt/bucket"
    key_prefix: str | None = None
    read_only: bool = True
    bucket_endpoint_url: str | None = None


@dataclass(frozen=True, slots=True)
class ModalOptions:
    environment: str | None = None
    """Modal environment for Apps, Volumes and Secrets (None: the workspace default)."""
    bucket: BucketMount | None = None
    python_version: str = "3.12"
    verify_credentials: bool = True
    """``start()`` makes one authenticated call, so bad tokens fail at boot, not mid-interview."""
    check_symlinks: bool = True
    """Refuse file paths that resolve outside /workspace (one extra exec per file operation)."""
    max_list_entries: int = 10_000
    """A recursive listing stops there: a workspace (node_modules...) can hold millions."""
    exec_start_timeout_s: float = 120.0
    """Bound on starting a command: to a worker that is gone (before Modal notices) the SDK
    reconnects for about 5 minutes.  Generous: a first exec waits for scheduling."""


@dataclass(frozen=True, slots=True)
class CreateArgs:
    """Everything ``modal.Sandbox.create`` gets, besides ``app`` and ``client``."""

    app_name: str
    volume_name: str
    entrypoint: tuple[str, ...]
    image: modal.Image
    env: dict[str, str | None]
    workdir: str
    timeout: int
    idle_timeout: int | None
    cpu: tuple[float, float]
    memory: tuple[int, int]
    block_network: bool
    outbound_cidr_allowlist: list[str] | None
    outbound_domain_allowlist: list[str] | None
    volumes: dict[str | os.PathLike[str], modal.Volume | modal.CloudBucketMount] = field(
        default_factory=dict
    )
    tags: dict[str, str] = field(default_factory=dict)


def object_name(*parts: str) -> str:
    """A valid Modal object name made from ``parts``, deterministic and at most 63 chars.

    Invalid characters become '-'; an over-long name keeps its head and gets a
    hash of the full name, so distinct inputs stay distinct.
    """
    raw = "-".join(parts)
    name = _NAME_BAD_CHARS.sub("-", raw).strip("-.")
    if name and name == raw and len(name) <= 63:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    head = name[:52].rstrip("-.")
    return f"{head}-{digest}" if head else digest


def app_name(prefix: str, account: str | None) -> str:
    return object_name(prefix, account or "default")


def encode_limits(limits: Limits) -> str:
    return (
        f"n{limits.max_open_files}.f{limits.max_file_size_mb}"
        f".p{limits.max_processes}.t{limits.cpu_seconds}"
    )


def decode_limits(value: str | None) -> Limits | None:
    """The per-process limits of a tag written by ``encode_limits``; None if absent or garbled."""
    if not value:
        return None
    fields: dict[str, int] = {}
    for part in value.split("."):
        if len(part) < 2 or not part[1:].isdigit():
            return None
        fields[part[0]] = int(part[1:])
    if set(fields) != {"n", "f", "p", "t"}:
        return None
    return Limits(
        max_open_files=fields["n"],
        max_file_size_mb=fields["f"],
        max_processes=fields["p"],
        cpu_seconds=fields["t"],
    )


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as the caller set them, without the backend's reserved ones."""
    return {k: v for k, v in tags.items() if k not in RESERVED_TAGS}


def check_tags(tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        if key in RESERVED_TAGS:
            raise InvalidSpec(f"tag {key!r} is reserved by the Modal backend")
        if not _NAME_OK.match(key) or not _NAME_OK.match(value):
            raise InvalidSpec(
                f"tag {key!r}={value!r}: Modal tags are 1-63 characters of letters, digits, '.-_'"
            )


def split_allow_hosts(policy: NetworkPolicy) -> tuple[list[str], list[str]]:
    """(CIDRs, domains) of a policy's allowed hosts; raises InvalidSpec for anything else."""
    cidrs: list[str] = []
    domains: list[str] = []
    for host in policy.allow_hosts:
        try:
            cidrs.append(str(ipaddress.ip_network(host, strict=False)))
            continue
        except ValueError:
            pass
        if not _DOMAIN.match(host) or len(host) > 253:
            raise InvalidSpec(f"allowed host {host!r} is neither a CIDR nor a domain name")
        domains.append(host.lower())
    return cidrs, domains


def sandbox_workdir(workdir: str) -> str:
    """The absolute in-sandbox directory of a workspace path (relative, or absolute inside it)."""
    return workspace_abspath(normalize_workspace_path(workdir))


def _seconds(value: float, what: str, *, ceiling: int | None = None) -> int:
    if not value > 0 or math.isinf(value):
        raise InvalidSpec(f"{what} must be a positive number of seconds, got {value!r}")
    seconds = max(1, math.ceil(value))
    if ceiling is not None and seconds > ceiling:
        raise InvalidSpec(f"{what} must be at most {ceiling} seconds on Modal, got {value!r}")
    return seconds


def bucket_mount(
    bucket: BucketMount,
    *,
    account: str,
    session: str,
    environment: str | None,
    client: modal.Client | None,
) -> modal.CloudBucketMount:
    prefix = None
    if bucket.key_prefix is not None:
        prefix = bucket.key_prefix.format(account=account, session=session)
        if not prefix.endswith("/"):
            raise InvalidSpec("bucket key_prefix must end with '/'")
    secret = None
    if bucket.secret_name is not None:
        secret = modal.Secret.from_name(
            bucket.secret_name, environment_name=environment, client=client
        )
    return modal.CloudBucketMount(
        bucket_name=bucket.bucket_name,
        bucket_endpoint_url=bucket.bucket_endpoint_url,
        key_prefix=prefix,
        secret=secret,
        read_only=bucket.read_only,
    )


def sandbox_create_args(
    spec: SandboxSpec,
    *,
    image: modal.Image,
    prefix: str,
    options: ModalOptions,
    client: modal.Client | None,
    now: float,
    workspace_key: str | None = None,
) -> CreateArgs:
    """Translate ``spec`` (validating it) into the arguments of ``modal.Sandbox.create``.

    ``workspace_key`` names a fresh volume when neither ``spec.volume`` nor a
    ``session`` tag does (default: a random id).
    """
    check_spec(spec)
    check_tags(spec.tags)
    timeout = _seconds(spec.timeout_s, "timeout_s", ceiling=MAX_TIMEOUT_S)
    idle = None
    if spec.idle_timeout_s is not None:
        idle = _seconds(spec.idle_timeout_s, "idle_timeout_s", ceiling=MAX_TIMEOUT_S)

    account = spec.tags.get("account")
    session = spec.tags.get("session")
    key = spec.volume or session or workspace_key or uuid.uuid4().hex
    volume_name = object_name(prefix, "ws", key)
    volumes: dict[str | os.PathLike[str], modal.Volume | modal.CloudBucketMount] = {
        WORKSPACE: modal.Volume.from_name(
            volume_name,
            create_if_missing=True,
            environment_name=options.environment,
            client=client,
        )
    }
    if options.bucket is not None:
        mount_path = options.bucket.mount_path
        if not mount_path.startswith("/") or mount_path.rstrip("/") in ("", WORKSPACE):
            raise InvalidSpec(f"bucket mount path {mount_path!r} must be absolute, not /workspace")
        volumes[mount_path] = bucket_mount(
            options.bucket,
            account=account or "default",
            session=session or key,
            environment=options.environment,
            client=client,
        )

    # A blocked policy is an allowlist of nothing, not ``block_network=True``:
    # the SDK lets a running sandbox's policy be replaced (our per-command
    # widening for the agent) only when it was created with an allowlist.
    cidrs, domains = ([], []) if spec.network.blocked else split_allow_hosts(spec.network)
    block = False

    # Node sizes its heap from the host, not the container: keep V8 under the
    # memory limit so a hog fails with "heap out of memory", not an OOM kill.
    heap_mb = max(32, spec.limits.memory_mb * 3 // 4)
    env: dict[str, str | None] = {"NODE_OPTIONS": f"--max-old-space-size={heap_mb}"}
    env.update(spec.env)

    tags = dict(spec.tags)
    tags[TAG_VOLUME] = volume_name
    tags[TAG_CREATED] = str(int(now))
    tags[TAG_LIMITS] = encode_limits(spec.limits)

    return CreateArgs(
        app_name=app_name(prefix, account),
        volume_name=volume_name,
        entrypoint=("sleep", str(timeout + _ENTRYPOINT_SLACK_S)),
        image=image,
        env=env,
        workdir=sandbox_workdir(spec.workdir),
        timeout=timeout,
        idle_timeout=idle,
        cpu=(spec.limits.cpu, spec.limits.cpu),
        memory=(spec.limits.memory_mb, spec.limits.memory_mb),
        block_network=block,
        outbound_cidr_allowlist=cidrs,
        outbound_domain_allowlist=domains,
        volumes=volumes,
        tags=tags,
    )
