"""The import graph of `src/tesk`: no cycle, and no import from a lower layer to a higher one.

Every `import` and `from ... import` of a tesk module counts, wherever it stands (module level, inside
a function, under `TYPE_CHECKING`): a lazy import hides a dependency from start-up, not from the
design. The walk reads the source with `ast`, so it needs nothing installed and imports nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("tesk", "tesk.models", "tesk.errors", "tesk.config", "tesk.logs", "tesk.telemetry"),
    ("tesk.store", "tesk.filer", "tesk.runner"),
    ("tesk.backends", "tesk.auth"),
    ("tesk.api", "tesk.dashboard"),
    ("tesk.cli", "tesk.client"),
)
"""Bottom to top. A module may import its own layer and the layers below it, never one above."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that `name` is or lies inside (`tesk.store.StoredTask` -> `tesk.store`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the tesk modules it imports."""
    files = {module_name(p): p for p in (SOURCE / "tesk").rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = resolve(name, known)
                if target is not None and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def layer_of(module: str) -> int:
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS in {__file__}")
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = import_graph()


def test_the_walk_sees_the_imports_it_must() -> None:
    """A walk that found nothing would pass every check: make sure it sees known edges."""
    assert "tesk.models" in GRAPH["tesk.store"]
    assert "tesk.api.app" in GRAPH["tesk.cli"] or any(m.startswith("tesk.api") for m in GRAPH["tesk.api.serve"])
    assert len(GRAPH) > 50


def test_there_is_no_import_cycle() -> None:
    found = cycles(GRAPH)
    assert not found, "import cycles (each line: modules that import one another in a ring):\n" + "\n".join(
        " <-> ".join(component) for component in found
    )


def test_no_module_imports_from_a_higher_layer() -> None:
    climbing = sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )
    assert not climbing, "imports that climb a layer:\n" + "\n".join(climbing)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]), ({"a": {"b"}, "b": set()}, [])],
)
def test_the_cycle_finder_finds_a_ring_and_only_a_ring(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_counting_a_metric_loads_no_web_framework() -> None:
    """A backend, the filer or a taskmaster pod counts through `tesk.telemetry` without the API's cost."""
    code = (
        "import sys, tesk.telemetry, tesk.backends.local.runtime, tesk.backends.kubernetes.backend\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'tesk.api') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("role", ["taskmaster", "filer", "worker"])
def test_a_task_pod_loads_only_its_own_command(role: str) -> None:
    """`tesk taskmaster` (and the filer's and Slurm worker's commands) import what they run and no other
    command's modules: each one costs the pod's start, which a taskmaster pays on every task's path."""
    others = {"taskmaster": "tesk.backends.kubernetes.cli", "filer": "tesk.filer.cli",
              "worker": "tesk.backends.slurm.worker"}
    unwanted = [m for r, m in others.items() if r != role] + ["tesk.client.commands", "tesk.api", "rich"]
    code = (
        f"import sys\nsys.argv = ['tesk', {role!r}]\nimport tesk.cli\ntesk.cli._register()\n"
        f"print(sorted(m for m in {unwanted!r} if m in sys.modules), {others[role]!r} in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[] True"
