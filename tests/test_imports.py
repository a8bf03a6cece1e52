"""Imports run one way, and in no circle (docs/design.md, "Imports run one way").

The layers, top to bottom; a layer may import only the layers below it. ``|``: independent
siblings (no study imports another study); ``:``: siblings that may import one another (only in
one direction, since no cycle is allowed). The contract is ``[tool.importlinter]`` in
pyproject.toml, so ``lint-imports`` at the repository root checks the same thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="the import contract needs import-linter (the dev extra)")

import grimp  # noqa: E402  (installed with import-linter)
import networkx as nx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    "normlab.cli",
    "normlab.bench | normlab.nas | normlab.evolve | normlab.nago",
    "normlab.search",
    "normlab.report",
    "normlab.runtime : normlab.train",
    "normlab.models | normlab.data",
    "normlab.layers",
    "normlab._settings : normlab._yaml",
]


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: import-linter depends on tomli there
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _graph() -> nx.DiGraph:
    """normlab's module graph: every import of a normlab module, at the top of a module or inside
    a function, as grimp reads the source."""
    g = grimp.build_graph("normlab", cache_dir=None)
    return nx.DiGraph([(m, i) for m in g.modules for i in g.find_modules_directly_imported_by(m)
                       if i.split(".")[0] == "normlab"])


def test_the_contract_lists_the_layers():
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c["type"] == "layers"]
    assert len(layers) == 1 and layers[0]["layers"] == LAYERS


def test_imports_run_one_way():
    """``lint-imports`` keeps the layers contract (it fails on e.g. models -> nas)."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([*cmd, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "1 kept, 0 broken" in res.stdout


def test_no_import_cycles():
    """No module imports (directly or not) a module that imports it back, nor does any top-level
    subpackage of normlab (which keeps the ``:`` siblings one-way)."""
    graph = _graph()
    assert graph.number_of_nodes() > 50                 # the whole package was read
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles between modules: {cycles}"

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages = nx.DiGraph([(top(a), top(b)) for a, b in graph.edges if top(a) != top(b)])
    cycles = [sorted(c) for c in nx.strongly_connected_components(packages) if len(c) > 1]
    assert not cycles, f"import cycles between normlab's subpackages: {cycles}"


def test_the_cycle_check_sees_imports_inside_functions():
    """ghost.py once imported the registry inside its functions only; such an import is an edge."""
    assert ("normlab.models", "normlab.models.nas") in _graph().edges   # create_model's lazy import
