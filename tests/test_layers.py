"""The package's layering holds: cli → recording → testing → runtime → language → expr →
errors.

Every import in the package — at module level, inside functions, under ``TYPE_CHECKING`` —
goes from a layer to the same layer or one to its right, and no two modules import each other,
directly or through others. docs/architecture.md draws the layers.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

from support import ROOT

PACKAGE = ROOT / "scenario_engine"
#: Left to right: a module may import from its own layer and from layers to its right.
LAYERS = ("cli", "recording", "testing", "runtime", "language", "expr", "errors")
#: The package's own ``__init__`` and ``__main__`` stand above every layer.
TOP = "scenario_engine"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import of the package's own modules in a file."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root.name:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            # `from . import x` and `from .pkg import module` name modules too.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _is_module(candidate, root):
                    yield node.lineno, candidate
                    break
            else:
                yield node.lineno, target


def _is_module(name: str, root: Path) -> bool:
    relative = Path(*name.split(".")[1:])
    return (root / relative).with_suffix(".py").is_file() or (root / relative).is_dir()


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else TOP


def rank(module: str) -> int:
    found = layer(module)
    return -1 if found == TOP else LAYERS.index(found)


def graph(root: Path) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        edges.setdefault(module_name(path, root), set()).update(
            target for _, target in imports(path, root)
        )
    return edges


def layering_violations(root: Path) -> list[str]:
    """Every import that goes against the layers, as ``file:line: a imports b``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for line, target in imports(path, root):
            if rank(importer) > rank(target):
                found.append(
                    f"{path.relative_to(root.parent)}:{line}: {importer} "
                    f"({layer(importer)}) imports {target} ({layer(target)})"
                )
    return found


def cycles(root: Path) -> list[list[str]]:
    """The strongly connected components of the import graph with more than one module (or
    a module importing itself): Tarjan's algorithm, iteratively."""
    edges = graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(sorted(component))
    return found


def test_every_import_follows_the_layers() -> None:
    assert layering_violations(PACKAGE) == []


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(PACKAGE) == []


def test_every_module_is_in_a_layer() -> None:
    loose = [
        module_name(p, PACKAGE)
        for p in PACKAGE.glob("*.py")
        if p.stem not in ("__init__", "__main__", "errors")
    ]
    assert loose == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "scenario_engine"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    for directory in [package, *(p for p in package.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    return package


def test_the_check_fails_on_a_reversed_import(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "errors.py": "",
            "expr/values.py": "from ..errors import ScenarioEngineError\n",
            "runtime/engine.py": "from ..expr import values\n",
            # The reversed arrow, hidden where a quick look would miss it.
            "expr/evaluate.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from ..runtime.engine import Engine
            def run():
                from scenario_engine.testing import runner
        """,
            "testing/runner.py": "",
        },
    )
    assert layering_violations(package) == [
        "scenario_engine/expr/evaluate.py:4: scenario_engine.expr.evaluate (expr) imports "
        "scenario_engine.runtime.engine (runtime)",
        "scenario_engine/expr/evaluate.py:6: scenario_engine.expr.evaluate (expr) imports "
        "scenario_engine.testing.runner (testing)",
    ]


def test_the_check_finds_a_cycle_within_a_layer(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "runtime/server.py": "from .admin import Admin\n",
            "runtime/admin.py": "from . import journal\n",
            "runtime/journal.py": "from .server import Server\n",
            "runtime/compression.py": "from .journal import Journal\n",
        },
    )
    assert layering_violations(package) == []
    assert cycles(package) == [
        [
            "scenario_engine.runtime.admin",
            "scenario_engine.runtime.journal",
            "scenario_engine.runtime.server",
        ]
    ]
