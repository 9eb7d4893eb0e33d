"""A sandbox's configuration from the API: ``startSandbox(config)`` and a question's
``environment`` (issue 14, seed 003).

Both name, each optionally: a registry image plus Dockerfile lines, environment
variables, a working directory under /workspace, CPU and memory. Everything is
checked here, before any sandbox exists, so a refusal is BAD_USER_INPUT naming
the field; the backends check again at create (``modal_app.base.check_spec``,
``modal_app.modal.images.validate_image_spec``, ``modal_app.local.spec``).

Rules, and why:

* CPU and memory: at most the server's SANDBOX_MAX_CPU / SANDBOX_MAX_MEMORY_MB;
  unset, the server's defaults (``SandboxPolicy.limits``).
* An image only where the backend serves images (Modal); the local backend runs
  its language presets only. An image replaces the language preset: it must
  bring the language's toolchain (and Node with the Claude CLI for the agent).
* Environment variables are exactly the ones given (the server's own
  environment is never merged in). Names the sandbox machinery sets are refused
  (PATH, HOME, LD_*, NODE_OPTIONS, the agent's ANTHROPIC_*/CLAUDE_*...): overriding
  them would break commands, test runs or the agent, or redirect the agent.
* The working directory is inside /workspace (relative, or absolute under it;
  no ``..``): the same check as every file path.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from modal_app.base import WORKSPACE, ImageSpec, InvalidPath, Limits
from modal_app.paths import normalize_workspace_path, workspace_abspath
from models.question import Question
from models.sandbox import SandboxRecord
from models.session import InterviewSession
from resolvers.errors import BadUserInput

MAX_ENV_VARS = 64
MAX_ENV_VALUE = 4096
MAX_ENV_TOTAL = 32 * 1024
MAX_IMAGE_REF = 256
MAX_DOCKERFILE_COMMANDS = 50
MAX_DOCKERFILE_LINE = 4096
MIN_MEMORY_MB = 128
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
RESERVED_ENV = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TMPDIR", "TERM", "HOSTNAME"}
    | {"NODE_OPTIONS", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "GOTOOLCHAIN", "GOPROXY"}
)
RESERVED_ENV_PREFIXES = ("LD_", "BASH_FUNC_", "ANTHROPIC_", "CLAUDE_", "INTERVIEWLM_", "MODAL_")
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._\-/:@]*$", re.IGNORECASE)
# The same set as modal_app.modal.images.ALLOWED_DOCKERFILE_INSTRUCTIONS (tested equal):
# COPY/ADD have no build context, FROM would replace the image, CMD/ENTRYPOINT are moot.
DOCKERFILE_INSTRUCTIONS = frozenset(
    {"RUN", "ENV", "WORKDIR", "USER", "ARG", "SHELL", "LABEL", "EXPOSE", "STOPSIGNAL"}
)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Every field optional; None (or empty) means "the default"."""

    image: str | None = None
    dockerfile_commands: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    """Normalized: relative to /workspace ("" is /workspace itself)."""
    cpu: float | None = None
    memory_mb: int | None = None

    def over(self, base: SandboxConfig) -> SandboxConfig:
        """This config's fields over ``base``'s (environment variables merged by name)."""
        env = dict(base.env) | dict(self.env)
        image = self.image if self.image is not None else base.image
        return SandboxConfig(
            image=image,
            dockerfile_commands=(
                self.dockerfile_commands if self.image is not None else base.dockerfile_commands
            ),
            env=tuple(env.items()),
            workdir=self.workdir if self.workdir is not None else base.workdir,
            cpu=self.cpu if self.cpu is not None else base.cpu,
            memory_mb=self.memory_mb if self.memory_mb is not None else base.memory_mb,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "image": self.image,
                "dockerfile_commands": list(self.dockerfile_commands),
                "env": [list(pair) for pair in self.env],
                "workdir": self.workdir,
                "cpu": self.cpu,
                "memory_mb": self.memory_mb,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> SandboxConfig:
        if not text:
            return cls()
        data: dict[str, Any] = json.loads(text)
        return cls(
            image=data.get("image"),
            dockerfile_commands=tuple(data.get("dockerfile_commands") or ()),
            env=tuple((str(k), str(v)) for k, v in data.get("env") or ()),
            workdir=data.get("workdir"),
            cpu=data.get("cpu"),
            memory_mb=data.get("memory_mb"),
        )


@dataclass(frozen=True, slots=True)
class ConfigLimits:
    max_cpu: float
    max_memory_mb: int
    serves_images: bool = True


def _env(at: str, pairs: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    if len(pairs) > MAX_ENV_VARS:
        raise BadUserInput(f"{at}.env", f"at most {MAX_ENV_VARS} variables")
    seen: dict[str, str] = {}
    total = 0
    for i, (name, value) in enumerate(pairs):
        if not _ENV_NAME.match(name):
            raise BadUserInput(f"{at}.env[{i}].name", "must match [A-Z_][A-Z0-9_]* (128 at most)")
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            raise BadUserInput(f"{at}.env[{i}].name", f"{name} is set by the sandbox itself")
        if name in seen:
            raise BadUserInput(f"{at}.env[{i}].name", f"{name} is given twice")
        if len(value) > MAX_ENV_VALUE:
            raise BadUserInput(f"{at}.env[{i}].value", f"over {MAX_ENV_VALUE} characters")
        if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
            raise BadUserInput(f"{at}.env[{i}].value", "must not contain NUL or lone surrogates")
        total += len(name) + len(value)
        seen[name] = value
    if total > MAX_ENV_TOTAL:
        raise BadUserInput(f"{at}.env", f"over {MAX_ENV_TOTAL} characters in all")
    return tuple(seen.items())


def _image(at: str, image: str, commands: Sequence[str], limits: ConfigLimits) -> None:
    if not limits.serves_images:
        raise BadUserInput(
            f"{at}.image",
            "this server's sandbox backend (local) runs the language presets only, no images",
        )
    if len(image) > MAX_IMAGE_REF or not _IMAGE_REF.match(image):
        raise BadUserInput(f"{at}.image", "must be a registry image reference (e.g. python:3.12)")
    if len(commands) > MAX_DOCKERFILE_COMMANDS:
        raise BadUserInput(f"{at}.dockerfileCommands", f"at most {MAX_DOCKERFILE_COMMANDS} lines")
    for i, line in enumerate(commands):
        where = f"{at}.dockerfileCommands[{i}]"
        if len(line) > MAX_DOCKERFILE_LINE or any(c in line for c in "\r\n\x00"):
            raise BadUserInput(where, f"one Dockerfile line of at most {MAX_DOCKERFILE_LINE}")
        words = line.split(maxsplit=1)
        if not words or words[0].upper() not in DOCKERFILE_INSTRUCTIONS:
            allowed = ", ".join(sorted(DOCKERFILE_INSTRUCTIONS))
            raise BadUserInput(where, f"must start with one of: {allowed}")


def check_config(
    at: str,
    *,
    image: str | None,
    dockerfile_commands: Sequence[str],
    env: Sequence[tuple[str, str]],
    workdir: str | None,
    cpu: float | None,
    memory_mb: int | None,
    limits: ConfigLimits,
) -> SandboxConfig:
    """The config as given, checked (``at``: the argument's name, e.g. ``config``)."""
    if image is not None:
        _image(at, image, dockerfile_commands, limits)
    elif dockerfile_commands:
        field = f"{at}.dockerfileCommands"
        if not limits.serves_images:
            raise BadUserInput(field, "this server's sandbox backend (local) builds no images")
        raise BadUserInput(field, f"needs {at}.image (the lines build on it)")
    normalized = None
    if workdir is not None:
        try:
            normalized = normalize_workspace_path(workdir)
        except InvalidPath as exc:
            raise BadUserInput(f"{at}.workdir", f"must be inside {WORKSPACE}: {exc}") from None
    if cpu is not None and not (math.isfinite(cpu) and 0 < cpu <= limits.max_cpu):
        raise BadUserInput(f"{at}.cpu", f"must be more than 0 and at most {limits.max_cpu}")
    if memory_mb is not None and not MIN_MEMORY_MB <= memory_mb <= limits.max_memory_mb:
        raise BadUserInput(
            f"{at}.memoryMb", f"must be between {MIN_MEMORY_MB} and {limits.max_memory_mb}"
        )
    return SandboxConfig(
        image=image,
        dockerfile_commands=tuple(dockerfile_commands),
        env=_env(at, env),
        workdir=normalized,
        cpu=cpu,
        memory_mb=memory_mb,
    )


def recheck(at: str, config: SandboxConfig, limits: ConfigLimits) -> SandboxConfig:
    """A stored config against today's limits (the settings or the backend may have changed)."""
    return check_config(
        at,
        image=config.image,
        dockerfile_commands=config.dockerfile_commands,
        env=config.env,
        workdir=config.workdir,
        cpu=config.cpu,
        memory_mb=config.memory_mb,
        limits=limits,
    )


def spec_fields(config: SandboxConfig, default: Limits) -> Mapping[str, Any]:
    """``SandboxSpec`` keyword arguments for a checked config (besides language and tags)."""
    limits = replace(
        default,
        cpu=config.cpu if config.cpu is not None else default.cpu,
        memory_mb=config.memory_mb if config.memory_mb is not None else default.memory_mb,
    )
    image = None
    if config.image is not None:
        image = ImageSpec(base=config.image, commands=config.dockerfile_commands)
    return {
        "image": image,
        "env": dict(config.env),
        "workdir": workspace_abspath(config.workdir or ""),
        "limits": limits,
    }


class _Starter(Protocol):
    @property
    def config_limits(self) -> ConfigLimits: ...

    async def latest(self, session_id: uuid.UUID) -> SandboxRecord | None: ...


async def effective_config(
    sandboxes: _Starter, session: InterviewSession, config: SandboxConfig | None
) -> SandboxConfig:
    """What a new sandbox of ``session`` runs with: ``config`` over the question's
    environment; without ``config``, what the session's previous sandbox ran with (a
    restart, by anyone, keeps the interviewer's choice), else the question's. Stored
    configs are checked again: the limits or the backend may have changed since."""
    limits = sandboxes.config_limits
    if config is None:
        previous = await sandboxes.latest(session.id)
        if previous is not None and previous.config_json:
            return recheck("config", SandboxConfig.from_json(previous.config_json), limits)
    question = await Question.get(id=session.question_id)
    base = recheck(
        "question.environment", SandboxConfig.from_json(question.environment_json), limits
    )
    return base if config is None else recheck("config", config.over(base), limits)
