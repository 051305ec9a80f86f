# SPDX-License-Identifier: Apache-2.0
"""Read a model spec (YAML, documented in ``docs/model-spec.md``) into a float :class:`~hwgen.ir.Graph`.

Every problem in a spec is one ``ValueError`` line naming the file and the layer: unknown op or
key, bad shape, missing or mis-shaped weight, wrong dtype. Weights come from an ``.npz`` next to
the spec or are generated from the spec's seed (one generator per tensor, seeded by the model seed
and the tensor's name, so adding a layer does not change the others' weights).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hwgen.ir import DISTRIBUTIONS, OPS, Graph, InputDistribution, Node, Tensor, verify
from hwgen.ir.verify import attr_problem
from hwgen.qfx import QFmt

__all__ = ["Model", "load_spec", "parse_spec", "random_weight"]

_TOP_KEYS = ("name", "description", "seed", "weights", "inputs", "layers", "outputs", "formats")
_INPUT_KEYS = ("shape", "distribution", "scale")
_COMMON_LAYER_KEYS = ("name", "op", "input", "inputs")


@dataclass(frozen=True)
class Model:
    """A loaded model: the float graph, the spec's per-tensor format requests and where it came from.

    ``notes`` say what a front end changed on the user's request (e.g. a rounded QONNX scale); the
    build report lists them.
    """

    graph: Graph
    formats: tuple[tuple[str, QFmt], ...] = ()
    source: str = ""
    notes: tuple[str, ...] = ()


class _SpecError(ValueError):
    pass


def random_weight(seed: int, name: str, shape: tuple[int, ...], bound: float, center: float = 0.0) -> np.ndarray:
    """Uniform weights on [center − bound, center + bound] from a generator seeded by (seed, name)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return center + rng.uniform(-bound, bound, size=shape)


@dataclass
class _Context:
    where: str
    seed: int
    arrays: dict[str, np.ndarray] | None  # None: random weights
    weights_file: str
    used: set[str]

    def fail(self, message: str) -> None:
        raise _SpecError(f"{self.where}: {message}")

    def constant(self, name: str, shape: tuple[int, ...], bound: float, center: float = 0.0) -> Tensor:
        if self.arrays is None:
            return Tensor(name, shape, value=random_weight(self.seed, name, shape, bound, center))
        if name not in self.arrays:
            self.fail(f"weight {name!r} is missing from {self.weights_file}")
        array = self.arrays[name]
        if array.dtype.kind != "f":
            self.fail(f"weight {name!r} must be a float array, not {array.dtype}")
        if array.shape != shape:
            self.fail(f"weight {name!r} must have shape {shape}, not {array.shape}")
        if not np.isfinite(array).all():
            self.fail(f"weight {name!r} must be finite, not contain NaN or infinity")
        self.used.add(name)
        return Tensor(name, shape, value=array.astype(np.float64))


def _positive_int(ctx: _Context, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        ctx.fail(f"{key} must be a positive integer, not {value!r}")
    return value


def _layer_operands(ctx: _Context, layer: dict[str, Any]) -> list[str]:
    if "input" in layer and "inputs" in layer:
        ctx.fail("give either input or inputs, not both")
    raw = [layer["input"]] if "input" in layer else layer.get("inputs")
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
        ctx.fail(f"inputs must be a tensor name or a list of tensor names, not {raw!r}")
    return raw


# Each op's spec keys and how its constants are made: (extra keys, builder(ctx, layer, operand shapes)
# -> (constant tensors appended to the operands, attrs, output names)).
_Builder = Callable[[_Context, dict[str, Any], str, list[tuple[int, ...]]], tuple[list[Tensor], dict[str, Any], list[str]]]


def _linear(ctx, layer, name, shapes):
    k = shapes[0][-1]
    n = _positive_int(ctx, "features", layer.get("features"))
    bound = 1.0 / np.sqrt(k)
    consts = [ctx.constant(f"{name}.weight", (k, n), bound)]
    if layer.get("bias", True):
        consts.append(ctx.constant(f"{name}.bias", (n,), bound))
    return consts, {}, [name]


def _matmul(ctx, layer, name, shapes):
    attrs = {}
    if "transpose_b" in layer:
        if not isinstance(layer["transpose_b"], bool):
            ctx.fail(f"transpose_b must be true or false, not {layer['transpose_b']!r}")
        attrs["transpose_b"] = layer["transpose_b"]
    if len(shapes) == 2:
        if "features" in layer:
            ctx.fail("features must not be given when MatMul has two inputs")
        return [], attrs, [name]
    k = shapes[0][-1]
    n = _positive_int(ctx, "features", layer.get("features"))
    shape = (n, k) if attrs.get("transpose_b") else (k, n)
    return [ctx.constant(f"{name}.weight", shape, 1.0 / np.sqrt(k))], attrs, [name]


def _plain(ctx, layer, name, shapes):
    return [], {}, [name]


def _attrs_only(*keys: str) -> _Builder:
    def build(ctx, layer, name, shapes):
        return [], {k: layer[k] for k in keys if k in layer}, [name]

    return build


def _layernorm(ctx, layer, name, shapes):
    d = shapes[0][-1]
    consts = [ctx.constant(f"{name}.gamma", (d,), 0.1, 1.0), ctx.constant(f"{name}.beta", (d,), 0.1)]
    return consts, {k: layer[k] for k in ("eps",) if k in layer}, [name]


def _conv2d(ctx, layer, name, shapes):
    c = shapes[0][0]
    out = _positive_int(ctx, "channels", layer.get("channels"))
    kernel = layer.get("kernel")
    pair = [kernel, kernel] if isinstance(kernel, int) and not isinstance(kernel, bool) else kernel
    if not isinstance(pair, list) or len(pair) != 2 or not all(
        isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in pair
    ):
        ctx.fail(f"kernel must be a positive integer or a list of two, not {kernel!r}")
    kh, kw = pair
    groups = layer.get("groups", 1)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or c % groups:
        ctx.fail(f"groups must be a positive divisor of the {c} input channels, not {groups!r}")
    bound = 1.0 / np.sqrt(c // groups * kh * kw)
    consts = [ctx.constant(f"{name}.weight", (out, c // groups, kh, kw), bound)]
    if layer.get("bias", True):
        consts.append(ctx.constant(f"{name}.bias", (out,), bound))
    attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in layer.items() if k in ("stride", "padding")}
    attrs["groups"] = groups
    return consts, attrs, [name]


def _batchnorm2d(ctx, layer, name, shapes):
    c = shapes[0][0]
    consts = [ctx.constant(f"{name}.mean", (c,), 0.1), ctx.constant(f"{name}.var", (c,), 0.25, 1.0),
              ctx.constant(f"{name}.gamma", (c,), 0.25, 1.0), ctx.constant(f"{name}.beta", (c,), 0.1)]
    return consts, {k: layer[k] for k in ("eps",) if k in layer}, [name]


def _moe_gate(ctx, layer, name, shapes):
    d = shapes[0][-1]
    e = _positive_int(ctx, "experts", layer.get("experts"))
    tasks = _positive_int(ctx, "tasks", layer.get("tasks", 1))
    # One gate per task (M³ViT's multi-gate): the tasks' matrices stacked, the task chosen at run time.
    shape = (d, e) if tasks == 1 else (tasks, d, e)
    return [ctx.constant(f"{name}.weight", shape, 1.0 / np.sqrt(d))], {"tasks": tasks} if tasks > 1 else {}, [name]


def _topk(ctx, layer, name, shapes):
    return [], {k: layer[k] for k in ("k",) if k in layer}, [name, f"{name}.indices"]


def _expert(ctx, layer, name, shapes):
    d = shapes[0][-1]
    e = _positive_int(ctx, "experts", layer.get("experts"))
    h = _positive_int(ctx, "hidden", layer.get("hidden"))
    consts = [
        ctx.constant(f"{name}.w1", (e, d, h), 1.0 / np.sqrt(d)),
        ctx.constant(f"{name}.b1", (e, h), 1.0 / np.sqrt(d)),
        ctx.constant(f"{name}.w2", (e, h, d), 1.0 / np.sqrt(h)),
        ctx.constant(f"{name}.b2", (e, d), 1.0 / np.sqrt(h)),
    ]
    return consts, {k: layer[k] for k in ("activation",) if k in layer}, [name]


def _pool(ctx, layer, name, shapes):
    attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in layer.items() if k in ("kernel", "stride", "padding")}
    return [], attrs, [name]


def _class_token(ctx, layer, name, shapes):
    return [ctx.constant(f"{name}.token", (1, shapes[0][-1]), 0.02)], {}, [name]


def _add_constant(ctx, layer, name, shapes):
    return [ctx.constant(f"{name}.value", tuple(shapes[0]), 0.02)], {}, [name]


#: Spec keys and constant builder of every op a spec may use (the IR's op table, spec side).
_LAYERS: dict[str, tuple[tuple[str, ...], int, _Builder]] = {
    # op: (extra keys, number of activation operands (0 = 1 or 2 for MatMul), builder)
    "Linear": (("features", "bias"), 1, _linear),
    "MatMul": (("features", "transpose_b"), 0, _matmul),
    "Add": ((), 2, _plain),
    "ReLU": ((), 1, _plain),
    "Clip": (("min", "max"), 1, _attrs_only("min", "max")),
    "Requantize": ((), 1, _plain),
    "LayerNorm": (("eps",), 1, _layernorm),
    "Softmax": (("axis",), 1, _attrs_only("axis")),
    "GELU": (("approximate",), 1, _attrs_only("approximate")),
    "Conv2d": (("channels", "kernel", "stride", "padding", "groups", "bias"), 1, _conv2d),
    "BatchNorm2d": (("eps",), 1, _batchnorm2d),
    "Attention": (("heads",), 3, _attrs_only("heads")),
    "MoEGate": (("experts", "tasks"), 1, _moe_gate),
    "TopK": (("k",), 1, _topk),
    "Expert": (("experts", "hidden", "activation"), 3, _expert),
    "MaxPool2d": (("kernel", "stride", "padding"), 1, _pool),
    "AvgPool2d": (("kernel", "stride", "padding"), 1, _pool),
    "GlobalAvgPool": ((), 1, _plain),
    "Flatten": ((), 1, _plain),
    "Tokens": ((), 1, _plain),
    "ClassToken": ((), 1, _class_token),
    "AddConstant": ((), 1, _add_constant),
    "SelectRow": (("index",), 1, _attrs_only("index")),
}
assert set(_LAYERS) == set(OPS), "every IR op must be describable in a spec"


def _shape_of(ctx: _Context, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value
    ):
        ctx.fail(f"shape must be a non-empty list of positive integers, not {value!r}")
    return tuple(value)


def _check_keys(ctx: _Context, data: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    for key in data:
        if key not in allowed:
            ctx.fail(f"{what} key must be one of {', '.join(allowed)}, not {key!r}")


def parse_spec(document: Any, *, where: str = "spec", base_dir: Path | None = None, seed: int | None = None) -> Model:
    """Build a verified float graph from a parsed YAML document; ``seed`` overrides the spec's."""
    try:
        return _parse(document, where, base_dir or Path.cwd(), seed)
    except _SpecError as exc:
        raise ValueError(str(exc)) from None


def _parse(document: Any, where: str, base_dir: Path, seed_override: int | None) -> Model:
    ctx = _Context(where, 0, None, "", set())
    if not isinstance(document, dict):
        ctx.fail(f"a model spec must be a mapping, not {type(document).__name__}")
    _check_keys(ctx, document, _TOP_KEYS, "top-level")
    for key in ("name", "inputs", "layers", "outputs"):
        if key not in document:
            ctx.fail(f"key {key!r} is required")
    name = document["name"]
    if not isinstance(name, str) or not name:
        ctx.fail(f"name must be a non-empty string, not {name!r}")
    seed = document.get("seed", 0) if seed_override is None else seed_override
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        ctx.fail(f"seed must be a non-negative integer, not {seed!r}")
    ctx.seed = seed
    weights = document.get("weights", "random")
    if weights != "random":
        if not isinstance(weights, str):
            ctx.fail(f"weights must be 'random' or the path of an .npz file, not {weights!r}")
        path = (base_dir / weights).resolve()
        if not path.is_file():
            ctx.fail(f"weights file {weights!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                ctx.arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            ctx.fail(f"weights file {weights!r} must be an .npz of arrays: {exc}")
        ctx.weights_file = weights

    tensors: dict[str, Tensor] = {}
    inputs = document["inputs"]
    if not isinstance(inputs, dict) or not inputs:
        ctx.fail(f"inputs must be a mapping of input names to {{shape: [...]}}, not {inputs!r}")
    distributions = []
    for input_name, entry in inputs.items():
        ctx.where = f"{where}: input {input_name!r}"
        if not isinstance(entry, dict) or "shape" not in entry:
            ctx.fail(f"an input must be a mapping with a shape, not {entry!r}")
        _check_keys(ctx, entry, _INPUT_KEYS, "input")
        tensors[input_name] = Tensor(input_name, _shape_of(ctx, entry["shape"]))
        kind = entry.get("distribution", "uniform")
        if kind not in DISTRIBUTIONS:
            ctx.fail(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, not {kind!r}")
        scale = entry.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            ctx.fail(f"scale must be a positive number, not {scale!r}")
        distributions.append(InputDistribution(input_name, kind, float(scale)))

    layers = document["layers"]
    if not isinstance(layers, list) or not layers:
        ctx.where = where
        ctx.fail("layers must be a non-empty list")
    nodes = []
    for index, layer in enumerate(layers, start=1):
        ctx.where = f"{where}: layer {index}"
        if not isinstance(layer, dict):
            ctx.fail(f"a layer must be a mapping, not {layer!r}")
        layer_name = layer.get("name")
        if not isinstance(layer_name, str) or not layer_name:
            ctx.fail(f"name must be a non-empty string, not {layer_name!r}")
        ctx.where = f"{where}: layer {index} ({layer_name})"
        op = layer.get("op")
        if op not in _LAYERS:
            ctx.fail(f"op must be one of {', '.join(_LAYERS)}, not {op!r}")
        extra_keys, operand_count, build = _LAYERS[op]
        _check_keys(ctx, layer, _COMMON_LAYER_KEYS + extra_keys, f"{op} layer")
        operands = _layer_operands(ctx, layer)
        if operand_count and len(operands) != operand_count:
            ctx.fail(f"{op} takes {operand_count} input{'s' if operand_count > 1 else ''}, not {len(operands)}")
        if not operand_count and len(operands) not in (1, 2):
            ctx.fail(f"{op} takes 1 input (with features) or 2, not {len(operands)}")
        for operand in operands:
            if operand not in tensors:
                ctx.fail(f"input {operand!r} must name a model input or an earlier layer")
        shapes = [tensors[o].shape for o in operands]
        consts, attrs, outputs = build(ctx, layer, layer_name, shapes)
        for out in outputs + [c.name for c in consts]:
            if out in tensors:
                ctx.fail(f"name {out!r} is already used by another input, layer or weight")
        for const in consts:
            tensors[const.name] = const
        spec = OPS[op]
        problem = attr_problem(spec, attrs)
        if problem:
            ctx.fail(problem)
        try:
            out_shapes = spec.shape_rule(tuple(shapes + [c.shape for c in consts]), {**spec.attr_defaults(), **attrs})
        except ValueError as exc:
            ctx.fail(str(exc))
        for out, shape in zip(outputs, out_shapes):
            tensors[out] = Tensor(out, shape)
        nodes.append(Node(layer_name, op, tuple(operands) + tuple(c.name for c in consts), tuple(outputs), attrs))

    ctx.where = where
    outputs = document["outputs"]
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
        ctx.fail(f"outputs must be a non-empty list of tensor names, not {outputs!r}")
    for out in outputs:
        if out not in tensors or tensors[out].is_constant:
            ctx.fail(f"output {out!r} must name a model input or a layer")
    if ctx.arrays is not None:
        unused = sorted(set(ctx.arrays) - ctx.used)
        if unused:
            ctx.fail(f"weights file {ctx.weights_file!r} must hold only the model's weights, not {', '.join(unused)}")

    formats = document.get("formats") or {}
    if not isinstance(formats, dict):
        ctx.fail(f"formats must be a mapping of tensor names to formats, not {formats!r}")
    requested = []
    for tensor_name, text in formats.items():
        if tensor_name not in tensors:
            ctx.fail(f"formats: tensor name must be an input, layer or weight of the model, not {tensor_name!r}")
        try:
            requested.append((tensor_name, QFmt.parse(text)))
        except ValueError as exc:
            ctx.fail(f"formats: {tensor_name}: {exc}")

    description = document.get("description", "")
    if not isinstance(description, str):
        ctx.fail(f"description must be a string, not {description!r}")
    graph = Graph(
        name=name,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        tensors=tuple(tensors.values()),
        nodes=tuple(nodes),
        input_distributions=tuple(distributions),
        description=description.strip(),
    )
    try:
        verify(graph)
    except ValueError as exc:
        ctx.fail(str(exc))
    return Model(graph, tuple(requested), where)


def load_spec(path: str | Path, *, seed: int | None = None) -> Model:
    """Read a YAML model spec from ``path``; weights paths are relative to the spec's folder."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model spec must be an existing YAML file, not {str(path)!r}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ValueError(f"{path.name}: not valid YAML: {problem}") from None
    return parse_spec(document, where=path.name, base_dir=path.parent, seed=seed)
