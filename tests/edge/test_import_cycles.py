"""The edge agent's modules import each other without a cycle.

A cycle (``edge.agent`` importing ``edge.commands``, which imports ``edge.agent`` back) means two
modules are one in disguise: neither can be read, tested or replaced alone. The walk is the
architecture test's (:func:`tests.test_architecture.imports_of`): imports under
``TYPE_CHECKING``, inside functions and through the lazy registries count too, since each is a
dependency all the same.
"""

from __future__ import annotations

from pathlib import Path

from tests.test_architecture import REPO, imports_of


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (``from p import m`` counts as ``p.m`` when
    ``m`` is a module)."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports_of(path, root):
            targets = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in modules]
            if not targets or len(targets) < len(imp.names):
                targets.append(imp.module)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module, as a path that closes on itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the edge package is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(_path(graph, sorted(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A walk through ``group`` from its first module back to it, for the failure message."""
    members, start = set(group), group[0]
    path, seen, node = [start], {start}, start
    while True:
        nxt = sorted(graph[node] & members, key=lambda m: (m in seen and m != start, m))[0]
        path.append(nxt)
        if nxt == start or nxt in seen:
            return path
        seen.add(nxt)
        node = nxt


def test_edge_modules_have_no_import_cycle() -> None:
    """Test that no edge module imports, directly or through others, a module that imports it."""
    found = cycles(import_graph(REPO, "edge"))
    assert not found, (
        "import cycles in edge/ (split the shared part out, or depend on a Protocol):\n"
        + "\n".join(" -> ".join(c) for c in found)
    )


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    """Test that the check sees a cycle closed by a TYPE_CHECKING and a function-level import, as
    edge.agent and edge.commands had."""
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "__init__.py").write_text("")
    (tmp_path / "edge" / "agent.py").write_text("def run():\n    from edge.commands import run_command\n")
    (tmp_path / "edge" / "commands.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edge.agent import Agent\n"
    )
    (tmp_path / "edge" / "outbox.py").write_text("from edge import agent\n")
    assert cycles(import_graph(tmp_path, "edge")) == [["edge.agent", "edge.commands", "edge.agent"]]
