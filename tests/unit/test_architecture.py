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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (SRC.parent / relative).with_suffix(".py").is_file() or (
        SRC.parent / relative / "__init__.py"
    ).is_file()


def _edges(path: Path, text: str | None = None) -> set[str]:
    """Every module ``path`` imports: at the top, inside functions, under TYPE_CHECKING.

    Relative imports are resolved; ``from pkg import mod`` is an edge to ``pkg.mod``.
    """
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:
                if _is_module(f"{module}.{alias.name}"):
                    found.add(f"{module}.{alias.name}")
    return found


def _cycles(packages: tuple[str, ...]) -> list[list[str]]:
    """The import cycles among the modules of ``packages`` (strongly connected components)."""
    graph: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((SRC / package).rglob("*.py")):
            graph[_module_name(path)] = set()
    for module in graph:
        path = SRC.parent / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[module] = {m for m in _edges(path) if m in graph and m != module}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_modules_of_the_service_layer_import_each_other_in_no_circle() -> None:
    assert _cycles(("service",)) == []


def test_the_cycle_check_sees_imports_inside_functions_and_under_type_checking() -> None:
    text = "import typing\nif typing.TYPE_CHECKING:\n    from creditbook.service import kernel\n"
    text += "def f() -> None:\n    from .ports import UnitOfWork\n"
    found = _edges(SRC / "service" / "requests.py", text)
    assert {"creditbook.service.kernel", "creditbook.service.ports"} <= found
