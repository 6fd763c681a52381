"""Layers point one way: resources -> hyperv/windows -> remoting -> pure helpers, and no module of
either package imports (even for type checking only) a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Provider modules by layer; a module may import only modules of its own layer or below.
PROVIDER_LAYERS: dict[str, int] = {
    "hvreplica_provider.engine_values": 0,
    "hvreplica_provider.clock": 0,
    "hvreplica_provider.pki": 0,
    "hvreplica_provider.inputs": 0,
    "hvreplica_provider.remoting": 1,
    "hvreplica_provider.windows": 2,
    "hvreplica_provider.hyperv": 2,
    "hvreplica_provider.resources": 3,
    "hvreplica_provider.resources.base": 3,
    "hvreplica_provider.resources.certificate_authority": 3,
    "hvreplica_provider.resources.host_certificate": 3,
    "hvreplica_provider.resources.replica_server": 3,
    "hvreplica_provider.resources.replication_relationship": 3,
    "hvreplica_provider.resources.test_failover": 3,
    "hvreplica_provider.resources.replication_wait": 3,
    "hvreplica_provider.topology": 4,
    "hvreplica_provider.stack": 5,
    "hvreplica_provider.testing": 5,
    "hvreplica_provider": 6,
}


def _modules(package: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of `known` that `module` imports anywhere (top level, functions, TYPE_CHECKING)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {t for t in targets if t in known and t != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ["hvreplica_provider", "hvsim"])
def test_no_import_cycles(package: str) -> None:
    known = _modules(package)
    graph = {m: _imports(m, p, known) for m, p in known.items()}
    assert _cycles(graph) == []


def test_provider_layers_point_down() -> None:
    known = _modules("hvreplica_provider")
    assert set(known) == set(PROVIDER_LAYERS), "give every provider module a layer in PROVIDER_LAYERS"
    upward = [
        f"{m} imports {t}"
        for m, path in known.items()
        for t in sorted(_imports(m, path, known))
        if PROVIDER_LAYERS[t] > PROVIDER_LAYERS[m]
    ]
    assert upward == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
