"""The package's shape: no import cycles (TYPE_CHECKING imports count too) in the server or the bench, imports
only downwards through the layers, aiohttp only at the edge, no tools in the product."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "streamer"
BENCH = PACKAGE.parent / "streamer_bench"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(*packages: Path, external: bool = False) -> dict[str, set[str]]:
    """Every module of the packages (``streamer`` by default) and the ``streamer``/``streamer_bench``
    modules it imports, anywhere in it (top level, functions, ``if TYPE_CHECKING:``); with ``external``,
    the other top-level packages it imports instead."""
    modules = {_module(p): p for package in packages or (PACKAGE,) for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from streamer.session import ws`` imports the module streamer.edge.ws (its package's
                # __init__ runs first, as for every submodule, and is not counted as a dependency)
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                targets.update(submodules or {node.module})
        ours = ("streamer", "streamer_bench")
        if external:
            graph[name] = {t.split(".")[0] for t in targets if t.split(".")[0] not in ours}
        else:
            graph[name] = {t for t in targets if t.split(".")[0] in ours and t != name}
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


def test_the_bench_has_no_import_cycles() -> None:
    assert _cycles(_imports(BENCH)) == []


# The server's layers, lowest first: a module imports its own package and the layers below, never a peer
# of its layer nor a layer above (``streamer.cli`` reaches for the bench, lazily; see below). The client
# library stands apart: it must run without the server's code.
LAYERS: list[set[str]] = [
    {"errors", "protocol", "logs", "looplag", "progress", "metrics", "tracing"},
    {"guards", "pipeline"},
    {"config"},  # the settings name the key tiers of guards
    {"config_env"},  # the settings read from STREAMER_* (the command line's, once)
    {"state"},
    {"services"},
    {"session"},
    {"edge"},
    {"adapters"},
    {"openapi_bodies"},
    {"openapi", "listen"},
    {"app"},
    {"cli"},
    {"__main__"},
]
CLIENT = {"client", "client_audio", "client_resend", "client_cli"}
# what runs only above the session domain: the HTTP server
EDGE_ONLY = {"aiohttp"}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for name, targets in graph.items():
        here = _part(name)
        for target in targets:
            there = _part(target)
            if not target.startswith("streamer.") or there == here or here == "" or there == "":
                continue
            if here in CLIENT:
                if there not in CLIENT | {"progress"}:
                    wrong.append(f"{name} -> {target} (the client library imports no server code)")
            elif there in CLIENT:
                if here != "cli":
                    wrong.append(f"{name} -> {target} (only the command line uses the client)")
            elif _layer(there) > _layer(here) or (_layer(there) == _layer(here) and _layer(here) > 0):
                wrong.append(f"{name} -> {target}")
    return sorted(wrong)


def test_every_module_has_a_layer() -> None:
    parts = {_part(name) for name in _imports()} - {""}
    assert parts - CLIENT - set().union(*LAYERS) == set()


def test_imports_only_go_down_the_layers() -> None:
    assert _upward(_imports()) == []


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {
        "streamer.guards.admission": {"streamer.pipeline.batcher", "streamer.errors"},
        "streamer.session.runtime": {"streamer.pipeline.asr", "streamer.edge.socket"},
        "streamer.client": {"streamer.protocol"},
    }
    assert _upward(graph) == [
        "streamer.client -> streamer.protocol (the client library imports no server code)",
        "streamer.guards.admission -> streamer.pipeline.batcher",
        "streamer.session.runtime -> streamer.edge.socket",
    ]


def test_aiohttp_only_at_the_edge() -> None:
    """The domain (session, pipeline, guards, state, services and below) never imports aiohttp."""
    domain = {part for layer in LAYERS[: _layer("session") + 1] for part in layer}
    below = {
        name: sorted(packages & EDGE_ONLY)
        for name, packages in _imports(external=True).items()
        if _part(name) in domain
    }
    assert {name: found for name, found in below.items() if found} == {}


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
