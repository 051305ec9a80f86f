# SPDX-License-Identifier: Apache-2.0
"""Quantization passes: make rounding points explicit, then choose every tensor's QFX format.

Formats follow QFX's range-based calibration: each activation's integer bits cover the largest
magnitude seen on seeded calibration inputs (plus a margin), weights cover their largest
magnitude, and accumulators are *exact* for the layer's actual weights, so no input in the
activation format can overflow them (a layer that would need more than ``acc_bits`` is refused).
Scales are powers of two, so every requantization is a shift, a rounding and a saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwgen.golden.exact import attention_formats, conv_weight_matrix
from hwgen.golden.moe import expert_formats, graph_tasks, index_format
from hwgen.golden.products import exact_fmt
from hwgen.golden.reference import moe_float, run_float, sample_inputs
from hwgen.ir import Graph, Node, Tensor, accumulator_bound
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt, result_fmt_add
from hwgen.units import UnitFormats

__all__ = ["QuantConfig", "SUPPORTED_OPS", "check_supported", "insert_requantize", "load_calibration", "quantize",
           "range_format"]

#: Ops the fixed-point flow implements end to end (quantizer, golden model, compiler).
SUPPORTED_OPS = frozenset({"Linear", "MatMul", "Add", "ReLU", "Requantize", "GELU", "LayerNorm", "Softmax", "Attention",
                           "Conv2d", "Tokens", "ClassToken", "AddConstant", "SelectRow", "Flatten", "MoEGate",
                           "TopK", "Expert", "MaxPool2d"})
#: Ops whose exact result is wider than an activation: a Requantize follows each of them.
_WIDENING_OPS = ("Linear", "MatMul", "Add", "Conv2d", "AddConstant", "MoEGate", "Expert")
#: Widening ops whose exact result is a sum (named ``<out>.sum``); the others' is an accumulator (``<out>.acc``).
_SUM_OPS = ("Add", "AddConstant")
#: Ops that only move codes (a view, a concatenation with a constant, a window's largest code): the output keeps the
#: input's format.
_MOVING_OPS = ("Tokens", "SelectRow", "ClassToken", "Flatten", "MaxPool2d")
#: Ops computed by a unit generated for fixed formats (``UnitFormats``): their input must be a
#: tensor whose format can be chosen (a graph input or a Requantize output).
_UNIT_OPS = ("GELU", "LayerNorm", "Softmax")


@dataclass(frozen=True)
class QuantConfig:
    """How formats are chosen: widths, modes, calibration and per-tensor overrides."""

    act_bits: int = 16
    weight_bits: int = 8
    acc_bits: int = 32
    margin: float = 0.25
    calibration_samples: int = 4
    seed: int = 0
    act_rounding: str = "RND_CONV"
    act_overflow: str = "SAT"
    weight_rounding: str = "RND_CONV"
    weight_overflow: str = "SAT"
    formats: tuple[tuple[str, QFmt], ...] = field(default=())
    #: Formats of the GELU, LayerNorm and softmax units; ``None``: HwParams' defaults at ``act_bits``.
    units: UnitFormats | None = None
    #: The user's calibration inputs of a one-input graph (float arrays of the input's shape);
    #: empty: ``calibration_samples`` seeded random inputs.
    calibration: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, low, high in (("act_bits", 2, 32), ("weight_bits", 2, 32), ("acc_bits", 2, 62),
                                ("calibration_samples", 1, 1024)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed!r}")
        if not isinstance(self.margin, (int, float)) or not 0 <= self.margin <= 100:
            raise ValueError(f"margin must be a number from 0 to 100, not {self.margin!r}")
        for name in ("act_rounding", "weight_rounding"):
            if getattr(self, name) not in ROUNDING_MODES:
                raise ValueError(f"{name} must be one of {', '.join(ROUNDING_MODES)}, not {getattr(self, name)!r}")
        for name in ("act_overflow", "weight_overflow"):
            if getattr(self, name) not in OVERFLOW_MODES:
                raise ValueError(f"{name} must be one of {', '.join(OVERFLOW_MODES)}, not {getattr(self, name)!r}")
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "calibration", tuple(np.asarray(a, dtype=np.float64) for a in self.calibration))
        if self.units is not None and not isinstance(self.units, UnitFormats):
            raise ValueError(f"units must be a UnitFormats, not {type(self.units).__name__}")

    @property
    def unit_formats(self) -> UnitFormats:
        """The units' formats: ``units``, or those of default hardware with ``act_bits`` containers."""
        if self.units is not None:
            return self.units
        from hwgen.hwparams import HwParams

        return HwParams(act_bits=min(bit for bit in (8, 16, 32) if bit >= self.act_bits)).unit_formats()

    @classmethod
    def for_hw(cls, hw, **changes) -> QuantConfig:
        """Widths matching a :class:`~hwgen.hwparams.HwParams`' containers and accumulator."""
        return cls(act_bits=hw.act_bits, weight_bits=hw.weight_bits, acc_bits=hw.acc_bits, units=hw.unit_formats(),
                   **changes)


def check_supported(graph: Graph, config: QuantConfig) -> Graph:
    """Refuse graphs with ops the fixed-point flow does not implement yet (before any work is done)."""
    for node in graph.nodes:
        if node.op not in SUPPORTED_OPS:
            raise ValueError(f"op {node.op} is not supported yet")
        if node.op == "Softmax":
            axis, rank = node.attr("axis", -1), len(graph.tensor(node.inputs[0]).shape)
            if axis not in (-1, rank - 1):
                raise ValueError(f"Softmax {node.name!r} must be along the last axis, not axis {axis}")
    return graph


def insert_requantize(graph: Graph, config: QuantConfig) -> Graph:
    """After every Linear, MatMul, Conv2d, Add and AddConstant, put a Requantize from its exact result to an activation.

    The widening op's output is renamed ``<name>.acc`` (``.sum`` for the adds) and the Requantize
    produces the original name, so consumers and graph outputs are untouched.
    """
    tensors = list(graph.tensors)
    nodes: list[Node] = []
    requantized = set(graph.inputs)
    for node in graph.nodes:
        if node.op in _UNIT_OPS and node.inputs[0] not in requantized:
            # The unit's input format is fixed by the hardware: cast into it first.
            source = node.inputs[0]
            cast = f"{source}.to_{node.name}"
            if graph.has_tensor(cast):
                raise ValueError(f"tensor name {cast!r} is reserved for the input of {node.name!r}, rename it")
            tensors.append(Tensor(cast, graph.tensor(source).shape))
            nodes.append(Node(f"{cast}.requantize", "Requantize", (source,), (cast,)))
            node = node.replace(inputs=(cast, *node.inputs[1:]))
        if node.op not in _WIDENING_OPS:
            nodes.append(node)
            if node.op == "Requantize":
                requantized.add(node.outputs[0])
            continue
        out = node.outputs[0]
        wide = f"{out}.{'sum' if node.op in _SUM_OPS else 'acc'}"
        if graph.has_tensor(wide):
            raise ValueError(f"tensor name {wide!r} is reserved for the exact result of {node.name!r}, rename it")
        tensors.append(Tensor(wide, graph.tensor(out).shape))
        nodes.append(node.replace(outputs=(wide,)))
        nodes.append(Node(f"{out}.requantize", "Requantize", (wide,), (out,)))
        requantized.add(out)
    return graph.replace(tensors=tuple(tensors), nodes=tuple(nodes))


def range_format(max_abs: float, width: int, margin: float, rounding: str, overflow: str) -> QFmt:
    """The signed ``width``-bit format with the fewest integer bits whose range covers ``max_abs·(1+margin)``."""
    target = max_abs * (1.0 + margin)
    int_bits = math.floor(math.log2(target)) + 2 if target > 0 else 1
    return QFmt(width, int_bits, True, rounding, overflow)


def _calibrate(graph: Graph, config: QuantConfig) -> dict:
    """Largest |value| of every tensor over seeded calibration inputs and every task, in float.

    Keyed by tensor name, and by ``(expert node, "hidden" | "expert")`` for the values inside an
    Expert node's FFNs (:func:`hwgen.golden.reference.moe_float`). A multi-task model runs each
    input once per task: one Program serves every task, so each format covers them all.
    """
    ranges: dict[str, float] = {}
    if config.calibration:
        if len(graph.inputs) != 1:
            raise ValueError(f"calibration inputs must be for a one-input graph, not one with {len(graph.inputs)} inputs")
        samples = [{graph.inputs[0]: x} for x in config.calibration]
    else:
        samples = [sample_inputs(graph, seed=config.seed * 1000 + i) for i in range(config.calibration_samples)]
    experts = [node for node in graph.nodes if node.op == "Expert"]
    for inputs in samples:
        for task in range(graph_tasks(graph)):
            values = run_float(graph, inputs, task)
            for name, value in values.items():
                ranges[name] = max(ranges.get(name, 0.0), float(np.abs(value).max(initial=0.0)))
            for node in experts:
                _, inside = moe_float(*(values[name] for name in node.inputs), activation=node.attr("activation", "gelu"))
                for key, value in inside.items():
                    ranges[(node.name, key)] = max(ranges.get((node.name, key), 0.0), value)
    return ranges


def load_calibration(path, graph: Graph) -> tuple[np.ndarray, ...]:
    """Calibration inputs from an ``.npy`` of shape (N, *input shape), a leading batch 1 allowed: one line per problem."""
    from pathlib import Path

    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"calibration file must be a readable .npy array, not {str(path)!r}: {' '.join(str(exc).split())}") from None
    if len(graph.inputs) != 1:
        raise ValueError(f"calibration inputs must be for a one-input model, not one with {len(graph.inputs)} inputs")
    shape = graph.tensor(graph.inputs[0]).shape
    if array.ndim == len(shape) + 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.dtype.kind != "f" or array.shape[1:] != shape or not len(array):
        raise ValueError(f"calibration file {path.name} must hold float inputs of shape (N, {', '.join(map(str, shape))}),"
                         f" not {array.dtype} {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"calibration file {path.name} must hold finite numbers, not NaN or infinity")
    return tuple(array)


def _overridable(graph: Graph, name: str) -> bool:
    producer = graph.producer(name)
    return producer is None or producer.op == "Requantize"


def quantize(graph: Graph, config: QuantConfig) -> Graph:
    """Choose every tensor's format and quantize every constant (after :func:`insert_requantize`)."""
    if graph.is_quantized:
        raise ValueError("graph must be a float graph to quantize, not an already quantized one")
    check_supported(graph, config)
    requested = dict(config.formats)
    for name in requested:
        if not graph.has_tensor(name):
            raise ValueError(f"format override must name a tensor of the graph, not {name!r}")
        if not _overridable(graph, name):
            producer = graph.producer(name)
            raise ValueError(
                f"format of {name!r} cannot be chosen: it is the exact output of {producer.op} {producer.name!r};"
                f" set the format of a graph input, a weight or a layer output instead"
            )
    units = config.unit_formats
    forced = _unit_input_formats(graph, units)
    for name, fmt in forced.items():
        if name in requested and requested[name] != fmt:
            raise ValueError(f"format of {name!r} must be {fmt} (the input format of the unit reading it), not {requested[name]}")
    ranges = _calibrate(graph, config)
    fmts: dict[str, QFmt] = {}
    raws: dict[str, np.ndarray] = {}

    def activation(name: str) -> QFmt:
        return forced.get(name) or requested.get(name) or range_format(
            ranges[name], config.act_bits, config.margin, config.act_rounding, config.act_overflow
        )

    def unit_constant(node: Node, tensor: Tensor, fmt: QFmt) -> None:
        largest = float(np.abs(tensor.value).max(initial=0.0))
        if largest > fmt.max_raw * fmt.lsb:
            raise ValueError(
                f"{tensor.name!r} of {node.op} {node.name!r} must fit the unit's {fmt} (|value| ≤ {fmt.max_raw * fmt.lsb:g}),"
                f" not reach {largest:g}"
            )
        fmts[tensor.name] = fmt
        raws[tensor.name] = fmt.quantize(tensor.value)

    def weight(tensor: Tensor) -> QFmt:
        fmt = requested.get(tensor.name) or range_format(
            float(np.abs(tensor.value).max(initial=0.0)), config.weight_bits, 0.0,
            config.weight_rounding, config.weight_overflow,
        )
        fmts[tensor.name] = fmt
        raws[tensor.name] = fmt.quantize(tensor.value)
        return fmt

    for name in graph.inputs:
        fmts[name] = activation(name)
    nodes = []
    for node in graph.nodes:
        in_fmts = [fmts.get(n) for n in node.inputs]
        out = node.outputs[0]
        if node.op in ("Linear", "MatMul", "Conv2d", "MoEGate"):
            fmts[out] = _accumulator_format(graph, node, config, fmts, raws, requested, weight)
        elif node.op == "TopK":
            # The scores are the probabilities themselves; the indices integers in act_bits containers.
            fmts[out] = in_fmts[0]
            fmts[node.outputs[1]] = index_format(config.act_bits)
        elif node.op == "Expert":
            node = _quantize_expert(graph, node, config, units, fmts, raws, requested, weight, ranges)
        elif node.op == "Add":
            fmts[out] = result_fmt_add(in_fmts[0], in_fmts[1])
        elif node.op == "AddConstant":
            # The constant is added like an activation (the residual of a LINEAR): an act_bits format of its range.
            value = graph.tensor(node.inputs[1])
            fmts[value.name] = requested.get(value.name) or range_format(
                float(np.abs(value.value).max(initial=0.0)), config.act_bits, 0.0, config.act_rounding,
                config.act_overflow)
            raws[value.name] = fmts[value.name].quantize(value.value)
            fmts[out] = result_fmt_add(in_fmts[0], fmts[value.name])
        elif node.op in _MOVING_OPS:
            fmts[out] = in_fmts[0]
            if node.op == "ClassToken":
                # Copied as is into row 0 of the output: the class token takes the tokens' format.
                token = graph.tensor(node.inputs[1])
                if requested.get(token.name, in_fmts[0]) != in_fmts[0]:
                    raise ValueError(f"format of {token.name!r} must be the tokens' {in_fmts[0]} (ClassToken "
                                     f"{node.name!r} copies it), not {requested[token.name]}")
                fmts[token.name] = in_fmts[0]
                raws[token.name] = in_fmts[0].quantize(token.value)
        elif node.op == "ReLU":
            fmts[out] = in_fmts[0]
        elif node.op == "Requantize":
            fmts[out] = activation(out)
        elif node.op == "GELU":
            fmts[out] = units.gelu
        elif node.op == "Softmax":
            fmts[out] = units.softmax_out
        elif node.op == "LayerNorm":
            for name in node.inputs[1:]:
                unit_constant(node, graph.tensor(name), units.layernorm_param)
            fmts[out] = units.layernorm_out
        elif node.op == "Attention":
            fmts[out] = activation(out)
            node = _quantize_attention(graph, node, config, units, fmts)
        nodes.append(node)
    tensors = []
    for tensor in graph.tensors:
        if tensor.name not in fmts:
            raise ValueError(f"tensor {tensor.name!r} is not read by any node, so no format can be chosen for it")
        tensors.append(tensor.replace(fmt=fmts[tensor.name], raw=raws.get(tensor.name)))
    return graph.replace(tensors=tuple(tensors), nodes=tuple(nodes))


def _quantize_attention(graph: Graph, node: Node, config: QuantConfig, units: UnitFormats, fmts: dict[str, QFmt]) -> Node:
    """An Attention node with its score and probability formats (the softmax unit's), its accumulators checked."""
    node = node.replace(attrs={**dict(node.attrs), "score_format": str(units.softmax_in),
                               "prob_format": str(units.softmax_out)})
    q, k = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
    f = attention_formats(node, [fmts[name] for name in node.inputs], fmts[node.outputs[0]], q.shape[1], k.shape[0])
    if f.acc_bits > config.acc_bits:
        raise _accumulator_error(node, config, f.acc_bits)
    return node


def _unit_input_formats(graph: Graph, units: UnitFormats) -> dict[str, QFmt]:
    """The format each unit op's input must have; a tensor read by two units must suit both."""
    wanted = {"GELU": units.gelu, "LayerNorm": units.layernorm_in, "Softmax": units.softmax_in}
    forced: dict[str, QFmt] = {}
    for node in graph.nodes:
        if node.op not in wanted:
            continue
        name, fmt = node.inputs[0], wanted[node.op]
        if not _overridable(graph, name):
            raise ValueError(f"input {name!r} of {node.op} {node.name!r} must be a graph input or a Requantize output")
        if forced.setdefault(name, fmt) != fmt:
            raise ValueError(f"format of {name!r} must be one unit input format, not both {forced[name]} and {fmt}")
    return forced


def _accumulator_format(graph, node, config, fmts, raws, requested, weight) -> QFmt:
    a_tensor = graph.tensor(node.inputs[0])
    if a_tensor.is_constant and a_tensor.name not in fmts:
        # A constant read as activation rows (a global average pool's row of 1/(H·W)): it weighs the rows of b, so
        # it takes a weight_bits format of its range (in an activation container), which keeps the sums narrow.
        fmts[a_tensor.name] = requested.get(a_tensor.name) or range_format(
            float(np.abs(a_tensor.value).max(initial=0.0)), config.weight_bits, 0.0, config.weight_rounding,
            config.weight_overflow)
        raws[a_tensor.name] = fmts[a_tensor.name].quantize(a_tensor.value)
    x_fmt = fmts[node.inputs[0]]
    b_tensor = graph.tensor(node.inputs[1])
    w_fmt = weight(b_tensor) if b_tensor.is_constant else fmts[node.inputs[1]]
    product_frac = x_fmt.frac_bits + w_fmt.frac_bits
    conv = node.op == "Conv2d"
    if b_tensor.is_constant and b_tensor.raw is None and (conv or raws[b_tensor.name].ndim == 2 or node.op == "MoEGate"):
        bias_raw, bias_shift = None, 0
        if len(node.inputs) > 2:
            bias = graph.tensor(node.inputs[2])
            bias_fmt = _bias_format(node, bias, product_frac, config, requested, x_fmt, w_fmt)
            bias_shift = product_frac - bias_fmt.frac_bits
            fmts[bias.name] = bias_fmt
            raws[bias.name] = bias_raw = bias_fmt.quantize(bias.value)
        b_raw = raws[b_tensor.name]
        if conv:
            b_raw = conv_weight_matrix(b_raw, node.attr("groups", 1))
        elif node.attr("transpose_b", False):
            b_raw = b_raw.T
        # A multi-task gate's (tasks, D, E) weight: every task's sums must fit.
        matrices = b_raw if b_raw.ndim == 3 else [b_raw]
        bound = max(accumulator_bound(x_fmt, matrix, bias_raw, bias_shift) for matrix in matrices)
    elif a_tensor.is_constant and len(b_tensor.shape) == 2 and not node.attr("transpose_b", False):
        # Constant rows times an activation: the sums are bounded by the rows' actual codes.
        bound = accumulator_bound(w_fmt, raws[a_tensor.name].T, None, 0)
    else:
        k = graph.tensor(node.inputs[0]).shape[-1]
        bound = k * max(-x_fmt.min_raw, x_fmt.max_raw) * max(-w_fmt.min_raw, w_fmt.max_raw)
    return _exact_accumulator(node, config, bound, product_frac)


def _bias_format(node: Node, bias: Tensor, product_frac: int, config: QuantConfig, requested, x_fmt: QFmt,
                 w_fmt: QFmt) -> QFmt:
    """A bias's format: requested, or already on the products' binary point (the hardware adds it unshifted)."""
    bias_fmt = requested.get(bias.name)
    if bias_fmt is None:
        natural = range_format(float(np.abs(bias.value).max(initial=0.0)), 2, 0.0, "TRN", "WRAP").int_bits
        width = max(natural + product_frac, 2)
        if width > config.acc_bits:
            raise _accumulator_error(node, config, width)
        bias_fmt = QFmt(width, width - product_frac, True, config.weight_rounding, "SAT")
    if bias_fmt.frac_bits > product_frac:
        raise ValueError(
            f"format of {bias.name!r} must have at most the products' {product_frac} fraction bits"
            f" ({x_fmt} times {w_fmt}), not {bias_fmt}"
        )
    return bias_fmt


def _exact_accumulator(node: Node, config: QuantConfig, bound: int, product_frac: int) -> QFmt:
    """The signed format holding every sum up to ``bound`` on the products' binary point, within ``acc_bits``."""
    fmt = exact_fmt(bound, product_frac)
    if fmt.width > config.acc_bits:
        raise _accumulator_error(node, config, fmt.width)
    return fmt


def _quantize_expert(graph: Graph, node: Node, config: QuantConfig, units: UnitFormats, fmts: dict[str, QFmt],
                     raws: dict[str, np.ndarray], requested, weight, ranges) -> Node:
    """An Expert node with the formats inside its FFNs (hwgen.golden.moe, step 5), its weights quantized.

    One format per tensor for all experts (one descriptor runs whichever expert the gate picks);
    accumulators exact for the worst expert; the hidden format is the GELU lanes' (calibrated for
    ReLU), the expert outputs' calibrated over every expert's tokens; the output is the exact sum.
    """
    x_fmt, score_fmt = fmts[node.inputs[0]], fmts[node.inputs[1]]
    w1, b1, w2, b2 = (graph.tensor(name) for name in node.inputs[3:])
    relu = node.attr("activation", "gelu") == "relu"

    def layer(x: QFmt, w: Tensor, b: Tensor) -> QFmt:
        w_fmt = weight(w)
        frac = x.frac_bits + w_fmt.frac_bits
        b_fmt = _bias_format(node, b, frac, config, requested, x, w_fmt)
        fmts[b.name], raws[b.name] = b_fmt, b_fmt.quantize(b.value)
        shift = frac - b_fmt.frac_bits
        bound = max(accumulator_bound(x, raws[w.name][e], raws[b.name][e], shift) for e in range(w.shape[0]))
        return _exact_accumulator(node, config, bound, frac)

    def calibrated(key: str) -> QFmt:
        return range_format(ranges[(node.name, key)], config.act_bits, config.margin, config.act_rounding,
                            config.act_overflow)

    hidden_acc = layer(x_fmt, w1, b1)
    hidden = calibrated("hidden") if relu else units.gelu
    expert_acc = layer(hidden, w2, b2)
    node = node.replace(attrs={**dict(node.attrs), "hidden_acc_format": str(hidden_acc), "hidden_format": str(hidden),
                               "expert_acc_format": str(expert_acc), "expert_format": str(calibrated("expert"))})
    k = graph.tensor(node.inputs[1]).shape[-1]
    fmts[node.outputs[0]] = expert_formats(node, [fmts[name] for name in node.inputs], k).sum
    return node


def _accumulator_error(node: Node, config: QuantConfig, width: int) -> ValueError:
    return ValueError(
        f"accumulator of layer {node.name!r} must fit acc_bits={config.acc_bits}, but its exact sums need"
        f" {width} bits; raise acc_bits or narrow the formats of its operands"
    )
