"""The package's shape: no import cycles (TYPE_CHECKING imports count too), no tools in the product."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "streamer"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every module of ``streamer`` and the ``streamer``/``streamer_bench`` modules it imports, anywhere
    in it (top level, functions, ``if TYPE_CHECKING:``)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from streamer.session import ws`` imports the module streamer.session.ws (its package's
                # __init__ runs first, as for every submodule, and is not counted as a dependency)
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                targets.update(submodules or {node.module})
        graph[name] = {t for t in targets if t.split(".")[0] in ("streamer", "streamer_bench") and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_server_package_has_no_import_cycles() -> None:
    assert _cycles(_imports()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_reaches_for_the_tools() -> None:
    """Benchmarks and test doubles are not imported by the server; ``streamer bench`` imports them lazily."""
    offenders = {
        name: sorted(t for t in targets if t.startswith("streamer_bench"))
        for name, targets in _imports().items()
        if name != "streamer.cli"
    }
    assert {name: t for name, t in offenders.items() if t} == {}
    assert not (PACKAGE / "bench.py").exists() and not (PACKAGE / "wer.py").exists()
