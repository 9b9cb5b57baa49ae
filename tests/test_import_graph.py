"""The packages import in one direction (ARCHITECTURE: "Packages import in one direction (no cycles)").

The graph is read from the sources with `ast`: every import statement counts, at the top of a module,
inside a function or under `if TYPE_CHECKING:`, and so does every `cimport` of the compiled engine's
.pxd files. A node is a subpackage of simulator/ (engine, perf, ...) or a top-level module (run.py,
results.py, ...); `simulator` is the package's own __init__ (its public names), at the top. (Python
runs that __init__ before any submodule; that is how packages load, not an import of the code, and
does not count.)
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "simulator"

# The layers, lowest first. A node may import from its own layer or a lower one, never from a higher
# one; nodes of one layer do not need each other but may, as long as there is no cycle.
LAYERS = [
    # the foundation: user-facing errors, units, files written whole, YAML reading and validation
    # errors, device profiles, the job record, the compiled-build manager, the closed-form oracles
    ("errors", "units", "files", "yaml_file", "profiles", "job", "compiled", "oracles"),
    ("perf",),  # the performance model, the model zoo, model jobs' runtimes
    ("calibrate",),  # micro-benchmarks that refit a device profile through the performance model
    ("cluster", "network"),  # pools and their free-capacity index; a pool's fabric
    ("models",),  # per-run models the engine uses: power, cost, failures
    ("policies",),  # the policy interface and every policy
    ("engine",),  # the event loop's core, calendar, recorder, timeline, the Source and Meter interfaces
    # job tables need nothing above the foundation; serving reads request traces with their row readers
    # and features check a scenario's size with theirs
    ("workload",),  # job tables: traces, generators, presets, growth, the size check
    ("serving",),  # LLM serving: services, requests, replica schedulers in closed-form jumps, routers
    ("features",),  # event sources and meters: failures, pool service, burst, network, power, cost, ...
    ("scenario",),  # the validated scenario file
    ("scenario_reference",),  # its key reference and JSON Schema, generated from the models
    ("metrics",),  # summaries, periods, step-function integrals
    # report/ draws the tables of the Results it is handed without importing results.py, and
    # Results.report() calls down into it: the renderer sits below the container that offers it
    ("report",),  # figures, summary rows and estimates in planners' units, the HTML report
    ("results",),  # Results: a run's tables, their files, by_period() and report()
    ("runner",),  # a scenario built, simulated and summarised (simulator.build / run / collect)
    ("experiment",),  # sweeps over scenarios and seeds
    ("planning",),  # optimisers above sweeps: the cheapest purchase
    ("cli", "simulator"),  # the command line; the package's public names
]
LAYER = {node: i for i, layer in enumerate(LAYERS) for node in layer}

# The engine sits below all of these: none may be reached from it, directly or through another node.
NOT_FROM_ENGINE = ("report", "results", "runner", "experiment", "planning", "cli", "simulator")

_CIMPORT = re.compile(r"^\s*from\s+(simulator(?:\.\w+)*)\s+cimport\b|^\s*cimport\s+(simulator(?:\.\w+)*)", re.M)


def node_of(module: str) -> str | None:
    """`simulator.engine.simulation` -> `engine`; `simulator.run` -> `run`; other packages -> None."""
    parts = module.split(".")
    if parts[0] != "simulator":
        return None
    return parts[1] if len(parts) > 1 else "simulator"


def _is_submodule(package: Path, name: str) -> bool:
    return (package / name / "__init__.py").is_file() or (package / f"{name}.py").is_file()


def imports_of(path: Path, package: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in one source file: .py through `ast`, .pxd cimports by
    pattern. `from simulator import x` names module simulator.x when x is one."""
    module_parts = list(path.relative_to(package.parent).with_suffix("").parts)
    is_init = module_parts[-1] == "__init__"
    if is_init:
        module_parts = module_parts[:-1]
    text = path.read_text()
    found: list[tuple[str, int]] = []
    if path.suffix == ".pxd":
        for m in _CIMPORT.finditer(text):
            found.append((m.group(1) or m.group(2), text.count("\n", 0, m.start()) + 1))
        return found
    for n in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(n, ast.Import):
            found += [(alias.name, n.lineno) for alias in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative: from the module's package, up level - 1 more
                base = module_parts if is_init else module_parts[:-1]
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module
            where = package.parent.joinpath(*target.split("."))
            subs = [a.name for a in n.names if where.is_dir() and _is_submodule(where, a.name)]
            found += [(f"{target}.{name}", n.lineno) for name in subs]
            if len(subs) < len(n.names):
                found.append((target, n.lineno))
    return found


def import_graph(package: Path | None = None) -> dict[tuple[str, str], list[str]]:
    """(importing node, imported node) -> the `file:line`s of that import, between different nodes."""
    package = package or PACKAGE
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.pxd")]):
        rel = path.relative_to(package.parent)
        parts = rel.with_suffix("").parts
        source = parts[1] if len(parts) > 2 or parts[1] != "__init__" else "simulator"
        for module, line in sorted(imports_of(path, package), key=lambda found: found[1]):
            target = node_of(module)
            if target is not None and target != source:
                edges[(source, target)].append(f"{rel}:{line}")
    return edges


def _cycles(edges) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    succ = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
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
                components.append(sorted(component))

    for v in sorted({n for edge in edges for n in edge}):
        if v not in index:
            visit(v)
    return components


def _reachable(edges, start: str) -> dict[str, list[str]]:
    """Every node reachable from `start`, with the chain of imports (file:line) that reaches it."""
    succ = defaultdict(list)
    for (a, b), where in sorted(edges.items()):
        succ[a].append((b, where[0]))
    paths, todo = {start: []}, [start]
    while todo:
        v = todo.pop(0)
        for w, where in succ[v]:
            if w not in paths:
                paths[w] = [*paths[v], f"{v} -> {w} ({where})"]
                todo.append(w)
    return paths


def test_every_package_and_module_has_a_layer():
    nodes = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    nodes |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {"simulator"}
    missing = sorted(nodes - set(LAYER))
    assert not missing, f"place {missing} in LAYERS (tests/test_import_graph.py), above everything they import"
    gone = sorted(set(LAYER) - nodes)
    assert not gone, f"LAYERS names {gone}, which simulator/ no longer has"


def test_no_cycles_between_packages():
    edges = import_graph()
    problems = []
    for component in _cycles(edges):
        inside = [f"  {a} -> {b}: {', '.join(where)}" for (a, b), where in sorted(edges.items())
                  if a in component and b in component]
        problems.append(f"{' <-> '.join(component)} import each other:\n" + "\n".join(inside))
    assert not problems, "cycles between packages:\n" + "\n".join(problems)


def test_the_engine_imports_no_report_experiment_or_planning_code():
    edges = import_graph()
    reached = _reachable(edges, "engine")
    bad = [f"engine reaches {node}: " + "; ".join(reached[node]) for node in NOT_FROM_ENGINE if node in reached]
    assert not bad, "\n".join(bad)


def test_every_import_points_down_the_layers():
    bad = [f"{where}: {a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]}, higher)"
           for (a, b), wheres in sorted(import_graph().items()) if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]
           for where in wheres]
    assert not bad, ("imports against the layers (tests/test_import_graph.py LAYERS, lowest first):\n"
                     + "\n".join(bad))


def test_the_graph_sees_every_kind_of_import(tmp_path):
    package = tmp_path / "simulator"
    (package / "engine").mkdir(parents=True)
    (package / "report").mkdir()
    for init in (package / "__init__.py", package / "engine" / "__init__.py", package / "report" / "__init__.py"):
        init.write_text("")
    (package / "run.py").write_text("")
    (package / "report" / "html.py").write_text("")
    (package / "engine" / "loop.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from simulator.report import html\n"
        "def f():\n    import simulator.run\n"
        "def g():\n    from ..report.html import x\n"
        "from simulator import run\n")
    (package / "engine" / "loop.pxd").write_text("from simulator.report.html cimport Page\n")
    edges = import_graph(package)
    assert sorted(edges[("engine", "report")]) == ["simulator/engine/loop.pxd:1", "simulator/engine/loop.py:3",
                                                  "simulator/engine/loop.py:7"]
    assert edges[("engine", "run")] == ["simulator/engine/loop.py:5", "simulator/engine/loop.py:8"]
