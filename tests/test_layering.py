# SPDX-License-Identifier: Apache-2.0
"""The package is layered as docs/architecture.md draws it, with no import cycles.

Every ``import`` in every module — at the top or inside a function — is read from the source: a
module may import only from its own layer or the layers below, the RTL and HLS generators do not
import each other, and the import graph has no cycle.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Where each installed package's sources live (pyproject.toml's package-dir).
SOURCES = {"hwgen": ROOT / "hwgen", "hwgen.rtl": ROOT / "rtl", "hwgen.cosim": ROOT / "cosim",
           "hwgen.hls_templates": ROOT / "hls_templates", "hwgen.boards": ROOT / "boards"}

#: docs/architecture.md's layers, bottom first. A module belongs to the longest prefix listed.
LAYERS = [
    # The package root holds only the version; hls_templates and boards are data with their paths.
    ("numbers, tools and data", ["hwgen", "hwgen.qfx", "hwgen.toolchain", "hwgen.hls_templates", "hwgen.boards"]),
    ("golden algorithms and the IR", ["hwgen.golden.nonlinear", "hwgen.golden.nonlinear_float",
                                      "hwgen.golden.unit_configs", "hwgen.ir"]),
    ("hardware parameters and the golden model", ["hwgen.units", "hwgen.hwparams", "hwgen.golden"]),
    ("the ISA", ["hwgen.isa"]),
    ("the flow", ["hwgen.frontend", "hwgen.zoo", "hwgen.quant", "hwgen.compiler", "hwgen.pipeline"]),
    ("generators", ["hwgen.rtl", "hwgen.hls", "hwgen.board", "hwgen.project"]),
    ("benches", ["hwgen.cosim"]),
    ("commands", ["hwgen.build", "hwgen.sim", "hwgen.driver", "hwgen.cli", "hwgen.__main__"]),
]
#: Generators of one layer that must not lean on each other: a flow's build depends only on that flow.
APART = [("hwgen.rtl", "hwgen.hls")]


def _modules() -> dict[str, Path]:
    modules = {}
    for package, root in SOURCES.items():
        for path in root.rglob("*.py"):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            if package == "hwgen" and parts and parts[0] in ("rtl", "cosim", "hls_templates", "boards"):
                continue
            modules[".".join([package, *parts])] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The hwgen modules ``name`` imports anywhere in its source (``from pkg import submodule`` counts as the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _layer(module: str) -> int:
    best, level = "", None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, level = prefix, index
    assert level is not None, f"{module} must be in a layer of docs/architecture.md"
    return level


MODULES = _modules()
GRAPH = {name: _imports(name, path, MODULES) for name, path in MODULES.items()}


def test_every_import_goes_down_or_sideways():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in GRAPH.items() for d in deps if _layer(d) > _layer(m)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("a, b", APART)
def test_the_rtl_and_hls_generators_do_not_import_each_other(a, b):
    within = lambda m, p: m == p or m.startswith(p + ".")  # noqa: E731
    crossing = [f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps
                if (within(m, a) and within(d, b)) or (within(m, b) and within(d, a))]
    assert not crossing, crossing


def test_there_are_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module):  # depth-first; a grey node met again closes a cycle
        state[module] = 1
        stack.append(module)
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_check_sees_function_level_imports():
    """sim imports the cosim bench inside a function only; the graph must still hold that edge."""
    assert "hwgen.cosim.tb_accelerator" in GRAPH["hwgen.sim"]
    assert "hwgen.isa.spec" in GRAPH["hwgen.rtl.descriptor"]
