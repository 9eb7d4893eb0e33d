"""On-disk layout and metadata of local sandboxes.

Layout under the backend root (``SANDBOX_ROOT``)::

    <root>/                    root-owned, 0711 (sandbox uids may traverse, not list)
    <root>/.etc/               generated passwd/group/hosts bound into every sandbox
    <root>/<id>/               root-owned, 0711
    <root>/<id>/sandbox.json   metadata, root-only (0600): tags, limits, uid, status
    <root>/<id>/workspace/     /workspace, owned by the sandbox uid, 0700
    <root>/<id>/home/          /home/sandbox (caches, shell history), same owner

The metadata file is what lets a fresh backend process attach to and list
sandboxes created by an earlier one.  It is rewritten atomically (temp file +
rename) but not fsynced: it has to survive a server crash, for which the page
cache is enough, and an fsync per create would cost more than the rest of create.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from modal_app.base import (
    Language,
    Limits,
    SandboxError,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxStatus,
)

ID_PREFIX = "sb-"
_ID_RE = re.compile(r"^sb-[A-Za-z0-9_-]{16}$")
META_NAME = "sandbox.json"


def new_sandbox_id() -> str:
    # 96 random bits; the alphabet is URL-safe and never contains '/' or '.'.
    return ID_PREFIX + secrets.token_urlsafe(12)


def check_sandbox_id(sandbox_id: object) -> str:
    """Return the id if it is well formed; anything else cannot name a sandbox here."""
    if not isinstance(sandbox_id, str) or not _ID_RE.fullmatch(sandbox_id):
        raise SandboxNotFound(f"malformed sandbox id {sandbox_id!r}")
    return sandbox_id


@dataclass(frozen=True, slots=True)
class SandboxMeta:
    id: str
    created_at: float
    uid: int
    """Host uid (and gid) every process and file of this sandbox runs as/belongs to."""
    tags: Mapping[str, str] = field(default_factory=dict)
    language: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = ""
    limits: Limits = field(default_factory=Limits)
    timeout_s: float = 3600.0
    idle_timeout_s: float | None = None
    allow_hosts: tuple[str, ...] = ()
    status: str = SandboxStatus.RUNNING.value
    terminated_at: float | None = None

    @classmethod
    def new(cls, spec: SandboxSpec, *, uid: int, workdir: str) -> SandboxMeta:
        """A new sandbox's metadata: a fresh id, created now, with what it keeps of ``spec``."""
        return cls(
            id=new_sandbox_id(),
            created_at=time.time(),
            uid=uid,
            tags=dict(spec.tags),
            language=spec.language.value if spec.language else None,
            env=dict(spec.env),
            workdir=workdir,
            limits=spec.limits,
            timeout_s=spec.timeout_s,
            idle_timeout_s=spec.idle_timeout_s,
            allow_hosts=tuple(spec.network.allow_hosts),
        )

    @property
    def terminated(self) -> bool:
        return self.status == SandboxStatus.TERMINATED.value

    @property
    def language_enum(self) -> Language | None:
        return Language(self.language) if self.language else None

    def info(self) -> SandboxInfo:
        return SandboxInfo(
            id=self.id,
            status=SandboxStatus(self.status),
            tags=dict(self.tags),
            created_at=self.created_at,
        )

    def with_terminated(self) -> SandboxMeta:
        return replace(self, status=SandboxStatus.TERMINATED.value, terminated_at=time.time())

    def to_json(self) -> str:
        data = asdict(self)
        data["allow_hosts"] = list(self.allow_hosts)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxMeta:
        data: dict[str, Any] = json.loads(text)
        data["limits"] = Limits(**data.get("limits", {}))
        data["allow_hosts"] = tuple(data.get("allow_hosts", ()))
        data["tags"] = dict(data.get("tags", {}))
        data["env"] = dict(data.get("env", {}))
        return cls(**data)


class MetaStore:
    """Reads and writes sandbox directories and their metadata under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def sandbox_dir(self, sandbox_id: str) -> Path:
        return self.root / check_sandbox_id(sandbox_id)

    def workspace(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "workspace"

    def home(self, sandbox_id: str) -> Path:
        return self.sandbox_dir(sandbox_id) / "home"

    def load(self, sandbox_id: str) -> SandboxMeta:
        path = self.sandbox_dir(sandbox_id) / META_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SandboxNotFound(f"no sandbox {sandbox_id}") from None
        try:
            meta = SandboxMeta.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise SandboxError(f"metadata of sandbox {sandbox_id} is corrupt: {exc}") from None
        if meta.id != sandbox_id:
            raise SandboxNotFound(f"no sandbox {sandbox_id}")
        return meta

    def save(self, meta: SandboxMeta) -> None:
        directory = self.sandbox_dir(meta.id)
        tmp = directory / f".{META_NAME}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, meta.to_json().encode())
        finally:
            os.close(fd)
        os.replace(tmp, directory / META_NAME)

    def create_dirs(self, meta: SandboxMeta) -> None:
        """Create the sandbox's directories; the sandbox uid owns only what it may write."""
        directory = self.sandbox_dir(meta.id)
        os.mkdir(directory, 0o711)
        # umask-proof: bwrap (as the sandbox uid) must traverse it, not list it
        os.chmod(directory, 0o711)  # noqa: S103
        for name in ("workspace", "home"):
            sub = directory / name
            os.mkdir(sub, 0o700)
            os.chown(sub, meta.uid, meta.uid)
        self.save(meta)

    def all(self) -> list[SandboxMeta]:
        metas: list[SandboxMeta] = []
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return metas
        for name in names:
            if not _ID_RE.fullmatch(name):
                continue
            try:
                metas.append(self.load(name))
            except SandboxError:
                # A half-created or foreign directory is not a sandbox; skip it.
                continue
        return metas
