# SPDX-License-Identifier: Apache-2.0
"""Built-in models by name (``<name>.yaml`` in this folder); a spec path works wherever a name does."""

from __future__ import annotations

from pathlib import Path

from hwgen.frontend.spec import Model, load_spec
from hwgen.ir.ops import OPS, node_macs

__all__ = ["ZOO_DIR", "names", "resolve", "load_model", "macs"]

#: Folder holding the built-in model specs.
ZOO_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the built-in models, sorted."""
    return sorted(p.stem for p in ZOO_DIR.glob("*.yaml"))


def resolve(model: str | Path) -> Path:
    """The file of a zoo name, or a path to a YAML spec or an ONNX file."""
    if isinstance(model, str) and model in names():
        return ZOO_DIR / f"{model}.yaml"
    path = Path(model)
    if path.suffix in (".yaml", ".yml", ".onnx") and path.is_file():
        return path
    raise ValueError(f"model must be a zoo name ({', '.join(names())}), a YAML spec path or an .onnx file,"
                     f" not {str(model)!r}")


def load_model(model: str | Path, *, seed: int | None = None, round_scales: bool = False) -> Model:
    """Load a zoo model, a spec file (``seed`` overrides its weight seed) or an ONNX/QONNX file.

    ``round_scales``: round QONNX scales that are not powers of two to the nearest one (noted in
    ``Model.notes``) instead of refusing them.
    """
    path = resolve(model)
    if path.suffix == ".onnx":
        from hwgen.frontend.onnx import load_onnx

        return load_onnx(path, round_scales=round_scales)
    return load_spec(path, seed=seed)


def macs(model: Model) -> int:
    """Multiply-accumulates of one run of the model."""
    graph = model.graph
    total = 0
    for node in graph.nodes:
        attrs = {**OPS[node.op].attr_defaults(), **dict(node.attrs)}
        in_shapes = tuple(graph.tensor(n).shape for n in node.inputs)
        out_shapes = tuple(graph.tensor(n).shape for n in node.outputs)
        total += node_macs(node.op, in_shapes, out_shapes, attrs)
    return total
