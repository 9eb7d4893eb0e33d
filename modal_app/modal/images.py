"""Modal images for the language presets and for ``ImageSpec``.

Every preset starts from ``modal.Image.debian_slim`` and adds Node.js and the
Claude Code CLI, because the agent runs inside the candidate's sandbox
whatever the language; Node comes from the official tarball at a pinned
version (Debian's ``nodejs`` differs between bookworm and trixie, and which of
the two ``debian_slim`` uses depends on the workspace's image builder
version).  JavaScript and TypeScript share one image with the TypeScript
compiler and ``tsx``; Go adds the official Go toolchain.  Network is blocked
at run time, so nothing may be left to download lazily: ``GOTOOLCHAIN=local``
and ``GOPROXY=off`` make Go fail fast instead of hanging on a fetch.

Building an ``Image`` object is lazy in the SDK: it records Dockerfile
steps and talks to Modal only when a sandbox that uses it is created (Modal
caches the built layers by content, so an unchanged recipe is built once per
workspace).  The pins below should move together with the host toolchain the
local backend uses.
"""

from __future__ import annotations

import re

import modal

from modal_app.base import WORKSPACE, ImageSpec, InvalidSpec, Language

PYTHON_VERSION = "3.12"
NODE_VERSION = "24.9.0"
CLAUDE_CODE_VERSION = "2.1.330"
TYPESCRIPT_VERSION = "5.9.3"
TSX_VERSION = "4.23.15"
TYPES_NODE_VERSION = "24.19.2"
GO_VERSION = "1.25.0"
PYTEST_VERSION = "9.2.0"

# Same process environment as the local backend's presets: live output needs
# unbuffered Python, and bytecode caches would clutter the workspace.
BASE_ENV = {
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "GOTELEMETRY": "off",
}
BASE_APT_PACKAGES = ("ca-certificates", "curl", "xz-utils", "git", "procps", "less", "nano")

NODE_INSTALL = (
    f"curl -fsSL https://nodejs.org/dist/v{NODE_VERSION}/node-v{NODE_VERSION}-linux-x64.tar.xz"
    " | tar -xJ -C /usr/local --strip-components=1"
    " --exclude=CHANGELOG.md --exclude=LICENSE --exclude=README.md"
    " && node --version"
)
CLAUDE_INSTALL = (
    f"npm install -g --no-fund --no-audit @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"
)
TYPESCRIPT_INSTALL = (
    "npm install -g --no-fund --no-audit"
    f" typescript@{TYPESCRIPT_VERSION} tsx@{TSX_VERSION} @types/node@{TYPES_NODE_VERSION}"
)
GO_INSTALL = (
    f"curl -fsSL https://go.dev/dl/go{GO_VERSION}.linux-amd64.tar.gz | tar -xz -C /usr/local"
    " && /usr/local/go/bin/go version"
)
GO_ENV = {
    "PATH": "/usr/local/go/bin:/root/go/bin:/usr/local/sbin:/usr/local/bin"
    ":/usr/sbin:/usr/bin:/sbin:/bin",
    "GOTOOLCHAIN": "local",
    "GOPROXY": "off",
}

# Instructions an ImageSpec may use.  COPY/ADD need a build context there is
# none of; FROM would replace the base; CMD/ENTRYPOINT are overridden by the
# sandbox's own entrypoint anyway.
ALLOWED_DOCKERFILE_INSTRUCTIONS = frozenset(
    {"RUN", "ENV", "WORKDIR", "USER", "ARG", "SHELL", "LABEL", "EXPOSE", "STOPSIGNAL"}
)
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._\-/:@]*$", re.IGNORECASE)


def base_image(python_version: str = PYTHON_VERSION) -> modal.Image:
    """Debian slim + Python + Node + the Claude Code CLI, with /workspace present."""
    return (
        modal.Image.debian_slim(python_version=python_version)
        .apt_install(*BASE_APT_PACKAGES)
        .run_commands(NODE_INSTALL, CLAUDE_INSTALL, f"mkdir -p {WORKSPACE}")
        .env(BASE_ENV)
    )


def language_image(language: Language, *, python_version: str = PYTHON_VERSION) -> modal.Image:
    base = base_image(python_version)
    if language is Language.PYTHON:
        return base.pip_install(f"pytest=={PYTEST_VERSION}")
    if language in (Language.JAVASCRIPT, Language.TYPESCRIPT):
        return base.run_commands(TYPESCRIPT_INSTALL)
    if language is Language.GO:
        return base.run_commands(GO_INSTALL).env(GO_ENV)
    raise InvalidSpec(f"no Modal image for language {language!r}")


def validate_image_spec(spec: ImageSpec) -> None:
    """Raise InvalidSpec unless ``spec`` is a registry reference plus allowed Dockerfile lines."""
    if not _IMAGE_REF.match(spec.base):
        raise InvalidSpec(f"image base {spec.base!r} is not a registry image reference")
    for command in spec.commands:
        if "\n" in command or "\r" in command or "\x00" in command:
            raise InvalidSpec("image commands must be single Dockerfile lines")
        instruction = command.strip().split(maxsplit=1)[0].upper() if command.strip() else ""
        if instruction not in ALLOWED_DOCKERFILE_INSTRUCTIONS:
            allowed = ", ".join(sorted(ALLOWED_DOCKERFILE_INSTRUCTIONS))
            raise InvalidSpec(f"image command {command!r} must start with one of: {allowed}")


def spec_image(spec: ImageSpec) -> modal.Image:
    """``Image.from_registry(base)`` followed by the spec's Dockerfile lines as one layer."""
    validate_image_spec(spec)
    image = modal.Image.from_registry(spec.base)
    if spec.commands:
        image = image.dockerfile_commands(list(spec.commands))
    return image


class ImageCatalog:
    """Images memoized per backend, so each recipe object is built and hydrated once."""

    def __init__(self, *, python_version: str = PYTHON_VERSION) -> None:
        self._python_version = python_version
        self._images: dict[Language | ImageSpec, modal.Image] = {}

    def image_for(self, language: Language | None, image: ImageSpec | None) -> modal.Image:
        if language is not None and image is not None:
            raise InvalidSpec("give either a language preset or an image spec, not both")
        key: Language | ImageSpec = image if image is not None else (language or Language.PYTHON)
        if key is Language.TYPESCRIPT:
            key = Language.JAVASCRIPT  # one Node image serves both
        cached = self._images.get(key)
        if cached is None:
            if isinstance(key, ImageSpec):
                cached = spec_image(key)
            else:
                cached = language_image(key, python_version=self._python_version)
            self._images[key] = cached
        return cached
