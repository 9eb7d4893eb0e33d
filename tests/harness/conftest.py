"""Fixtures of the harness suite: the real local backend, one sandbox per language.

The sandbox root is made with ``tempfile`` (0711), not ``tmp_path``: the
sandbox uids must traverse it (see tests/sandbox/conftest.py).  TypeScript
needs a toolchain directory holding ``node_modules/typescript`` (the
repository's ``toolchain/`` after scripts/setup, or
``$INTERVIEWLM_TOOLCHAIN_DIR``); without one the TypeScript tests skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from modal_app.base import Language, Limits, SandboxBackend, SandboxSpec
from modal_app.harness.protocol import CaseInput, HarnessRun
from modal_app.harness.runner import run_harness

REPO = Path(__file__).resolve().parents[2]
EXTENSIONS = {
    Language.PYTHON: ".py",
    Language.JAVASCRIPT: ".js",
    Language.TYPESCRIPT: ".ts",
    Language.GO: ".go",
}


def toolchain_dir() -> Path | None:
    candidates = [REPO / "toolchain"]
    if os.environ.get("INTERVIEWLM_TOOLCHAIN_DIR"):
        candidates.insert(0, Path(os.environ["INTERVIEWLM_TOOLCHAIN_DIR"]))
    for candidate in candidates:
        if (candidate / "node_modules" / "typescript" / "lib" / "typescript.js").is_file():
            return candidate
    return None


class Box:
    """One sandbox of a language; every run writes its solution under a new name."""

    _names = itertools.count()

    def __init__(self, backend: SandboxBackend, sandbox_id: str, language: Language) -> None:
        self.backend = backend
        self.id = sandbox_id
        self.language = language

    async def write(self, source: str, name: str | None = None) -> str:
        path = name or f"sol{next(self._names)}{EXTENSIONS[self.language]}"
        await self.backend.write_file(self.id, path, source.encode())
        return path

    async def run(
        self,
        source: str,
        cases: Sequence[CaseInput],
        *,
        entry: str = "solve",
        total_timeout_s: float = 60,
        **kwargs: Any,
    ) -> HarnessRun:
        path = await self.write(source)
        return await run_harness(
            self.backend,
            self.id,
            language=self.language,
            entrypoint=entry,
            solution_path=path,
            cases=cases,
            total_timeout_s=total_timeout_s,
            **kwargs,
        )


@pytest.fixture(scope="session")
async def harness_backend() -> AsyncIterator[SandboxBackend]:
    if os.geteuid() != 0:
        pytest.skip("the local backend needs root (it runs each sandbox as its own uid)")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (run scripts/setup)")
    from modal_app.local.backend import LocalSandboxBackend

    top = Path(tempfile.mkdtemp(prefix="ilm-harness-tests-"))
    top.chmod(0o711)
    backend = LocalSandboxBackend(top / "sandboxes", toolchain_dir=toolchain_dir())
    await backend.start()
    yield backend
    await backend.aclose()
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
async def boxes(harness_backend: SandboxBackend) -> AsyncIterator[dict[Language, Box]]:
    made: dict[Language, Box] = {}
    for language in Language:
        info = await harness_backend.create(
            SandboxSpec(language=language, limits=Limits(memory_mb=512))
        )
        made[language] = Box(harness_backend, info.id, language)
    yield made
    for box in made.values():
        await harness_backend.terminate(box.id)


@pytest.fixture(params=list(Language), ids=lambda lang: lang.value.lower())
def box(request: pytest.FixtureRequest, boxes: dict[Language, Box]) -> Box:
    language: Language = request.param
    if language is Language.TYPESCRIPT and toolchain_dir() is None:
        pytest.skip("no TypeScript toolchain (scripts/setup, or INTERVIEWLM_TOOLCHAIN_DIR)")
    return boxes[language]
