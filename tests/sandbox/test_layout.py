"""The import rules the package docstrings of modal_app state, checked on the source.

modal_app imports nothing of the project's; local/ and modal/ never import
each other; the harness's sandbox-side modules import only the standard
library and each other (they run from source inside the sandbox, registered
under the names the bootstrap gives them); and ``import modal`` inside
modal_app/modal/ is the Modal SDK, not the package itself.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import modal_app
from modal_app import harness

ROOT = Path(modal_app.__file__).parent
OURS = ("gql", "resolvers", "models", "tests", "bench", "scripts")
SANDBOX_SIDE = {f"modal_app.harness.{name}" for name in harness.SUPERVISOR_MODULES}


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports are refused outright)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_module_was_read() -> None:
    """Positive control: the walk sees the modules the rules are about."""
    assert {"modal_app.base", "modal_app.local.bwrap", "modal_app.modal.backend"} <= set(MODULES)
    assert set(MODULES) >= SANDBOX_SIDE
    assert "modal_app.base" in MODULES["modal_app.local.backend"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modal_app_imports_nothing_of_ours(module: str) -> None:
    bad = {name for name in MODULES[module] if name.split(".")[0] in OURS}
    assert not bad, f"{module} imports {bad}"


def test_backends_do_not_import_each_other() -> None:
    for module, names in MODULES.items():
        if module.startswith("modal_app.local"):
            assert not {n for n in names if n.startswith("modal_app.modal")}, module
        if module.startswith("modal_app.modal"):
            assert not {n for n in names if n.startswith("modal_app.local")}, module
        if module.startswith(("modal_app.base", "modal_app.logged", "modal_app.harness")):
            assert not {n for n in names if n.startswith(("modal_app.local", "modal_app.modal"))}


def test_sandbox_side_harness_imports_only_stdlib_and_itself() -> None:
    for module in SANDBOX_SIDE:
        for name in MODULES[module]:
            top = name.split(".")[0]
            if top == "modal_app":
                assert name.rsplit(".", 1)[0] in SANDBOX_SIDE or name in SANDBOX_SIDE, (
                    module,
                    name,
                )
            else:
                assert top in sys.stdlib_module_names, (module, name)


def test_import_modal_is_the_sdk() -> None:
    from modal_app.modal import backend

    assert backend.modal.__name__ == "modal"
    assert hasattr(backend.modal, "Sandbox")
