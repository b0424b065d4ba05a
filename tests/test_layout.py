"""The package layout (docs/architecture.md): imports point one way, and there are no cycles.

Every ``import``/``from ... import`` of every module under ``simulator/`` and ``agents/`` (at
any depth, including imports inside functions) is parsed with ``ast`` and checked against the
layer ranks

    venue < agents, world < experiments < figures < cli

A module may import its own layer and lower ones. Agents sit beside the world but below it:
``simulator.world.model`` imports ``agents``, and agents import only ``simulator.venue`` (and
each other). ``simulator/bench.py`` may import anything; ``simulator/__init__.py`` holds only
the lazy ``simulator.run`` alias.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"venue": 0, "agents": 1, "world": 1, "experiments": 2, "figures": 3, "cli": 4}
EXEMPT = {"simulator", "simulator.bench"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(p): p
    for pkg in ("simulator", "agents")
    for p in sorted((ROOT / pkg).rglob("*.py"))
    if ".venv" not in p.parts
}


def layer(mod: str) -> str | None:
    parts = mod.split(".")
    if parts[0] == "agents":
        return "agents"
    if parts[0] == "simulator" and len(parts) > 1 and parts[1] in RANK:
        return parts[1]
    return None


def imports(mod: str) -> set[str]:
    """Modules of this project that ``mod`` imports (``from P import m`` counts as P.m if m is a module)."""
    tree = ast.parse(MODULES[mod].read_text(), filename=str(MODULES[mod]))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{mod}: use absolute imports"
            base = node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out.update(n for n in names if n.split(".")[0] in ("simulator", "agents"))
    return out


GRAPH = {mod: imports(mod) for mod in MODULES}


def test_every_module_is_in_a_layer():
    loose = [m for m in MODULES if layer(m) is None and m not in EXEMPT]
    assert not loose, f"modules outside venue/world/experiments/figures/cli/agents: {loose}"


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m not in EXEMPT))
def test_imports_point_down(mod):
    here = layer(mod)
    bad = []
    for target in sorted(GRAPH[mod]):
        there = layer(target)
        if target in EXEMPT or there is None:
            bad.append(target)  # nothing may import bench or the top-level package
        elif RANK[there] > RANK[here]:
            bad.append(target)
        elif here == "agents" and there != "agents" and there != "venue":
            bad.append(target)  # agents use the venue only
    assert not bad, f"{mod} ({here}) must not import {bad}"


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if t not in MODULES:
                continue
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_old_notebook_alias_still_works():
    from simulator import run
    from simulator.experiments import run as new

    assert run is new
