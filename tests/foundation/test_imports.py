"""The import graph of refit/: no circles between modules nor between packages, and the orders
core imports no other domain.

Every import in a file counts, at module level or inside a function: an import deferred into a
function to dodge a circle is still the circle, only found later and at run time.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "refit"

# The one module of another domain the orders core may import: the request dependencies.
ORDERS_MAY_IMPORT = {"refit.auth.deps"}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The refit module that importing `name` loads: the longest prefix that is one."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".")
                # `from . import x` in a module means its package; in __init__, itself.
                drop = node.level - 1 if is_package else node.level
                base = ".".join(package[: len(package) - drop])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from a import b` loads a.b when that is a module, else takes b from a.
            names = [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"] or [base]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                yield Import(module, target, node.lineno)


def _graph() -> dict[str, list[Import]]:
    modules = _modules()
    return {name: list(_imports_of(name, path, modules)) for name, path in modules.items()}


def _shortest_cycle_through(start: str, graph: dict[str, list[Import]]) -> list[Import] | None:
    came_from: dict[str, Import] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for edge in graph[node]:
            if edge.target == start:
                path = [edge]
                while path[0].source != start:
                    path.insert(0, came_from[path[0].source])
                return path
            if edge.target not in came_from:
                came_from[edge.target] = edge
                queue.append(edge.target)
    return None


def _chain(cycle: list[Import]) -> str:
    steps = [f"{edge.source} (line {edge.line})" for edge in cycle]
    return " → ".join([*steps, cycle[0].source])


def test_the_module_graph_has_no_cycle():
    graph = _graph()
    assert graph.get("refit.orders.service"), "the walk found no imports where some must be"
    cycles: dict[frozenset[str], str] = {}
    for module in sorted(graph):
        cycle = _shortest_cycle_through(module, graph)
        if cycle is not None:
            cycles.setdefault(frozenset(edge.source for edge in cycle), _chain(cycle))
    chains = sorted(cycles.values())
    assert chains == [], "import cycles:\n" + "\n".join(chains)


def _domain(module: str) -> str | None:
    """The domain folder a module is in (refit/<domain>/...), None for a core module."""
    parts = module.split(".")
    if len(parts) < 2 or not (PACKAGE / parts[1]).is_dir() or parts[1] == "models":
        return None
    return parts[1]


def test_the_orders_core_imports_no_other_domain():
    graph = _graph()
    domains = {_domain(module) for module in graph} - {None}
    assert {"orders", "shipping", "auth"} <= domains
    crossings = [
        f"{edge.source} imports {edge.target} (line {edge.line})"
        for module, edges in sorted(graph.items())
        if _domain(module) == "orders"
        for edge in edges
        if _domain(edge.target) not in (None, "orders") and edge.target not in ORDERS_MAY_IMPORT
    ]
    assert crossings == [], "orders reaches into other domains:\n" + "\n".join(crossings)


def _package(module: str) -> str | None:
    """The folder package a module is in (`refit.<folder>`), None for a top-level module."""
    parts = module.split(".")
    return f"refit.{parts[1]}" if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def _package_graph() -> dict[str, dict[str, Import]]:
    """Package -> {package it imports: one import that shows it}. An import of a top-level
    module (refit.app, refit.startup, ...) counts as the packages that module reaches."""
    graph = _graph()
    packages: dict[str, dict[str, Import]] = {}
    for module, edges in graph.items():
        source = _package(module)
        if source is None:
            continue
        found = packages.setdefault(source, {})
        seen: set[str] = set()
        waiting = list(edges)
        while waiting:
            edge = waiting.pop()
            target = _package(edge.target)
            if target is None:
                if edge.target not in seen:
                    seen.add(edge.target)
                    # Through it, still shown as the import in this package that leads there.
                    waiting += [
                        Import(edge.source, onward.target, edge.line)
                        for onward in graph[edge.target]
                    ]
            elif target != source:
                found.setdefault(target, edge)
    return packages


def _package_cycles(graph: dict[str, dict[str, Import]]) -> list[str]:
    cycles: dict[frozenset[str], str] = {}
    for start in sorted(graph):
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue and start not in came_from:
            node = queue.popleft()
            for target in sorted(graph.get(node, {})):
                if target not in came_from:
                    came_from[target] = node
                    queue.append(target)
        if start in came_from:
            path = [start]
            while came_from[path[0]] != start:
                path.insert(0, came_from[path[0]])
            path.insert(0, start)
            steps = [
                f"{a} ({graph[a][b].source} line {graph[a][b].line})" for a, b in pairwise(path)
            ]
            cycles.setdefault(frozenset(path), " → ".join([*steps, start]))
    return sorted(cycles.values())


def test_the_package_graph_has_no_cycle():
    """Modules without a circle can still make one between packages (inspection reading
    payouts for an order's story while payouts read inspection before paying): each package
    imports the packages below it, never one that imports it back."""
    graph = _package_graph()
    assert {"refit.orders", "refit.inspection", "refit.payouts"} <= set(graph)
    drawn = "\n".join(
        f"  {package} → {', '.join(sorted(targets)) or '(nothing)'}"
        for package, targets in sorted(graph.items())
    )
    cycles = _package_cycles(graph)
    assert cycles == [], "package cycles:\n" + "\n".join(cycles) + "\n\nthe graph:\n" + drawn


def _defines_routes(path: Path) -> bool:
    return any(
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == "APIRouter"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
    )


def test_no_package_uses_another_packages_endpoints_as_a_library():
    """What a page or another domain needs of an endpoint module (a read, a limit, a response)
    lives in a module without routes, which both import; only the app wires the routes."""
    modules = _modules()
    endpoints = {name for name, path in modules.items() if _defines_routes(path)}
    assert "refit.backoffice.endpoints" in endpoints
    crossings = [
        f"{edge.source} imports {edge.target} (line {edge.line})"
        for module, edges in sorted(_graph().items())
        for edge in edges
        if edge.target in endpoints
        # The core's one route (refit.metrics: the counters and their /metrics) is no domain's.
        and None not in (_package(module), _package(edge.target))
        and _package(module) != _package(edge.target)
    ]
    assert crossings == [], "endpoint modules used as libraries:\n" + "\n".join(crossings)
