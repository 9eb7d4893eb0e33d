"""A sandbox's configuration: ``startSandbox(config)`` and ``Question.environment``."""

from __future__ import annotations

import strawberry

from resolvers.sandbox_config import ConfigLimits, SandboxConfig, check_config


@strawberry.input
class EnvVarInput:
    name: str = strawberry.field(
        description="[A-Z_][A-Z0-9_]*; not one the sandbox sets (PATH, HOME, LD_*...)."
    )
    value: str


@strawberry.input(
    description="Every field optional: unset ones come from the question's environment,"
    " else the server's defaults. CPU and memory up to SANDBOX_MAX_CPU and"
    " SANDBOX_MAX_MEMORY_MB; an image only where the sandbox backend serves images (Modal);"
    " the local backend refuses it (BAD_USER_INPUT naming the field)."
)
class SandboxConfigInput:
    image: str | None = strawberry.field(
        default=None,
        description="A registry image (e.g. python:3.12); it replaces the language preset,"
        " so it must bring the language's toolchain.",
    )
    dockerfile_commands: list[str] = strawberry.field(
        default_factory=list,
        description="Dockerfile lines on top of `image` (RUN, ENV, WORKDIR, USER, ARG...).",
    )
    env: list[EnvVarInput] = strawberry.field(
        default_factory=list,
        description="Environment variables for every command (merged by name over the question's).",
    )
    workdir: str | None = strawberry.field(
        default=None, description="Where commands start: /workspace or a directory in it."
    )
    cpu: float | None = strawberry.field(default=None, description="CPU cores.")
    memory_mb: int | None = None

    def checked(self, at: str, limits: ConfigLimits) -> SandboxConfig:
        return check_config(
            at,
            image=self.image,
            dockerfile_commands=self.dockerfile_commands,
            env=[(e.name, e.value) for e in self.env],
            workdir=self.workdir,
            cpu=self.cpu,
            memory_mb=self.memory_mb,
            limits=limits,
        )


@strawberry.type
class EnvVar:
    name: str
    value: str


@strawberry.type(description="A question's default sandbox configuration.")
class SandboxEnvironment:
    image: str | None
    dockerfile_commands: list[str]
    env: list[EnvVar]
    workdir: str = strawberry.field(description="Relative to /workspace ('' is /workspace).")
    cpu: float | None
    memory_mb: int | None

    @classmethod
    def of(cls, config: SandboxConfig) -> SandboxEnvironment:
        return cls(
            image=config.image,
            dockerfile_commands=list(config.dockerfile_commands),
            env=[EnvVar(name=name, value=value) for name, value in config.env],
            workdir=config.workdir or "",
            cpu=config.cpu,
            memory_mb=config.memory_mb,
        )
