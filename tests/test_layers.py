"""Imports point one way: ``models``, ``modal_app`` <- ``resolvers`` <- ``gql``.

Read from the source with ``ast`` (the package docstrings state the rules;
tests/sandbox/test_layout.py checks the finer ones inside modal_app).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    # models may use modal_app.base's Language (see models/language.py), nothing above it.
    "models": {"resolvers", "gql", "strawberry", "starlette", "uvicorn"},
    "resolvers": {"gql", "strawberry", "starlette", "uvicorn"},
    "modal_app": {"models", "resolvers", "gql", "strawberry", "starlette", "tortoise"},
}


def top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def sources(package: str) -> list[Path]:
    return [
        p
        for p in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in p.relative_to(ROOT).parts
    ]


def test_the_walk_sees_the_imports() -> None:
    """Positive control: a module known to import across layers is seen doing so."""
    assert "resolvers" in top_level_imports(ROOT / "gql" / "schema.py")
    assert "models" in top_level_imports(ROOT / "resolvers" / "sessions.py")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    bad = {
        str(path.relative_to(ROOT)): sorted(top_level_imports(path) & FORBIDDEN[package])
        for path in sources(package)
    }
    assert not {k: v for k, v in bad.items() if v}
