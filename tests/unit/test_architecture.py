"""Arrows point inward: the domain imports only the standard library; the public API is stable."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import creditbook

SRC = Path(creditbook.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_domain_imports_only_the_standard_library_and_itself() -> None:
    offenders = {}
    for path in sorted((SRC / "domain").glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("creditbook.domain") or top == "__future__":
                continue
            if top not in sys.stdlib_module_names:
                offenders.setdefault(path.name, []).append(name)
    assert offenders == {}


def test_adapters_and_service_never_import_entrypoints() -> None:
    for package in ("domain", "service", "adapters", "catalog"):
        for path in (SRC / package).rglob("*.py"):
            bad = [n for n in _imports(path) if n.startswith("creditbook.entrypoints")]
            assert bad == [], f"{path} imports {bad}"


def test_the_public_api_lists_exactly_what_it_exports() -> None:
    public = {name for name in dir(creditbook) if not name.startswith("_")}
    exported = set(creditbook.__all__)
    assert len(exported) == len(creditbook.__all__), "listed twice"
    assert exported <= public | {"__version__"}, "listed but not defined"
    # Every public name that is not a submodule is listed.
    unlisted = {
        name
        for name in public - exported
        if not isinstance(getattr(creditbook, name), type(creditbook))
    }
    assert unlisted == set()
