# SPDX-License-Identifier: Apache-2.0
"""The flow as one explicit, ordered list of pure passes, then compilation.

``PASSES`` is the whole graph pipeline: each entry is ``(name, pass)`` with ``pass(graph, config)
-> graph``, and ``verify`` runs after every one. :func:`build` runs them and compiles; with
``save_dir`` every intermediate graph and the final artefacts are written, so a later step can
start from them (``load_graph``, ``Program.load``, ``MemoryImage.load``) without rerunning the
front end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hwgen.compiler import MemoryImage, Program, compile_graph, hardware_problem
from hwgen.frontend import Model
from hwgen.hwparams import HwParams
from hwgen.ir import Graph, save_graph, verify
from hwgen.quant import QuantConfig, check_supported, insert_requantize, quantize
from hwgen.quant.rewrite import fold_batchnorm, lower_flatten_linear, lower_pools

__all__ = ["PASSES", "run_passes", "build", "Build", "save_build"]

log = logging.getLogger(__name__)

Pass = Callable[[Graph, QuantConfig], Graph]

PASSES: list[tuple[str, Pass]] = [
    # Float rewrites into ops the accelerator runs: BatchNorm2d into its Conv2d, pools into convolutions and rows.
    ("fold_batchnorm", fold_batchnorm),
    ("lower_pools", lower_pools),
    ("lower_flatten_linear", lower_flatten_linear),
    # Then: refuse ops the fixed-point flow does not implement before spending calibration time.
    ("check_supported", check_supported),
    # Before formats: every point where a value narrows must be an explicit node to receive one.
    ("insert_requantize", insert_requantize),
    # Last: calibration runs the complete float graph, and accumulators are sized from quantized weights.
    ("quantize", quantize),
]


def run_passes(graph: Graph, config: QuantConfig, *, save_dir: str | Path | None = None, stop_after: str | None = None) -> Graph:
    """Run :data:`PASSES` in order with ``verify`` after each; optionally save each result."""
    names = [name for name, _ in PASSES]
    if stop_after is not None and stop_after not in names:
        raise ValueError(f"stop_after must be one of {', '.join(names)}, not {stop_after!r}")
    verify(graph)
    for index, (name, step) in enumerate(PASSES, start=1):
        graph = verify(step(graph, config))
        log.info("pass %s done: %d nodes", name, len(graph.nodes))
        if save_dir is not None:
            save_graph(graph, Path(save_dir) / f"{index:02d}_{name}")
        if name == stop_after:
            break
    return graph


@dataclass(frozen=True)
class Build:
    """Everything the flow produced for one model and one accelerator."""

    qgraph: Graph
    program: Program
    image: MemoryImage
    hw: HwParams


def build(model: Model, hw: HwParams, config: QuantConfig | None = None, *, save_dir: str | Path | None = None) -> Build:
    """Quantize ``model`` for ``hw`` (containers and accumulator from ``hw`` unless ``config`` says) and compile it."""
    problem = hardware_problem(model.graph, hw)
    if problem is not None:
        raise ValueError(problem)
    if config is None:
        config = QuantConfig.for_hw(hw, formats=model.formats)
    qgraph = run_passes(model.graph, config, save_dir=None if save_dir is None else Path(save_dir) / "passes")
    program, image = compile_graph(qgraph, hw)
    result = Build(qgraph, program, image, hw)
    if save_dir is not None:
        save_build(result, save_dir)
    return result


def save_build(result: Build, directory: str | Path) -> Path:
    """Write ``qgraph.yaml``/``.npz`` (as ``qgraph/``), ``program.bin``, ``program.txt``, ``memory.bin``/``.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_graph(result.qgraph, directory / "qgraph")
    result.program.save(directory / "program.bin")
    (directory / "program.txt").write_text(result.program.listing(result.image.labels), encoding="utf-8")
    result.image.save(directory)
    return directory
