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

from hwgen.golden.reference import run_float, sample_inputs
from hwgen.ir import Graph, Node, Tensor, accumulator_bound
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt, result_fmt_add

__all__ = ["QuantConfig", "SUPPORTED_OPS", "check_supported", "insert_requantize", "quantize", "range_format"]

#: Ops the fixed-point flow implements end to end (quantizer, golden model, compiler).
SUPPORTED_OPS = frozenset({"Linear", "MatMul", "Add", "ReLU", "Requantize"})
#: Ops whose exact result is wider than an activation: a Requantize follows each of them.
_WIDENING_OPS = ("Linear", "MatMul", "Add")


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

    @classmethod
    def for_hw(cls, hw, **changes) -> QuantConfig:
        """Widths matching a :class:`~hwgen.hwparams.HwParams`' containers and accumulator."""
        return cls(act_bits=hw.act_bits, weight_bits=hw.weight_bits, acc_bits=hw.acc_bits, **changes)


def check_supported(graph: Graph, config: QuantConfig) -> Graph:
    """Refuse graphs with ops the fixed-point flow does not implement yet (before any work is done)."""
    for node in graph.nodes:
        if node.op not in SUPPORTED_OPS:
            raise ValueError(f"op {node.op} is not supported yet")
    return graph


def insert_requantize(graph: Graph, config: QuantConfig) -> Graph:
    """After every Linear, MatMul and Add, put a Requantize from its exact result to an activation.

    The widening op's output is renamed ``<name>.acc`` (``.sum`` for Add) and the Requantize
    produces the original name, so consumers and graph outputs are untouched.
    """
    tensors = list(graph.tensors)
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.op not in _WIDENING_OPS:
            nodes.append(node)
            continue
        out = node.outputs[0]
        wide = f"{out}.{'sum' if node.op == 'Add' else 'acc'}"
        if graph.has_tensor(wide):
            raise ValueError(f"tensor name {wide!r} is reserved for the exact result of {node.name!r}, rename it")
        tensors.append(Tensor(wide, graph.tensor(out).shape))
        nodes.append(node.replace(outputs=(wide,)))
        nodes.append(Node(f"{out}.requantize", "Requantize", (wide,), (out,)))
    return graph.replace(tensors=tuple(tensors), nodes=tuple(nodes))


def range_format(max_abs: float, width: int, margin: float, rounding: str, overflow: str) -> QFmt:
    """The signed ``width``-bit format with the fewest integer bits whose range covers ``max_abs·(1+margin)``."""
    target = max_abs * (1.0 + margin)
    int_bits = math.floor(math.log2(target)) + 2 if target > 0 else 1
    return QFmt(width, int_bits, True, rounding, overflow)


def _calibrate(graph: Graph, config: QuantConfig) -> dict[str, float]:
    """Largest |value| of every tensor over seeded calibration inputs, in float."""
    ranges: dict[str, float] = {}
    for sample in range(config.calibration_samples):
        values = run_float(graph, sample_inputs(graph, seed=config.seed * 1000 + sample))
        for name, value in values.items():
            ranges[name] = max(ranges.get(name, 0.0), float(np.abs(value).max(initial=0.0)))
    return ranges


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
    ranges = _calibrate(graph, config)
    fmts: dict[str, QFmt] = {}
    raws: dict[str, np.ndarray] = {}

    def activation(name: str) -> QFmt:
        return requested.get(name) or range_format(
            ranges[name], config.act_bits, config.margin, config.act_rounding, config.act_overflow
        )

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
    for node in graph.nodes:
        in_fmts = [fmts.get(n) for n in node.inputs]
        out = node.outputs[0]
        if node.op in ("Linear", "MatMul"):
            fmts[out] = _accumulator_format(graph, node, config, fmts, raws, requested, weight)
        elif node.op == "Add":
            fmts[out] = result_fmt_add(in_fmts[0], in_fmts[1])
        elif node.op == "ReLU":
            fmts[out] = in_fmts[0]
        elif node.op == "Requantize":
            fmts[out] = activation(out)
    tensors = []
    for tensor in graph.tensors:
        if tensor.name not in fmts:
            raise ValueError(f"tensor {tensor.name!r} is not read by any node, so no format can be chosen for it")
        tensors.append(tensor.replace(fmt=fmts[tensor.name], raw=raws.get(tensor.name)))
    return graph.replace(tensors=tuple(tensors))


def _accumulator_format(graph, node, config, fmts, raws, requested, weight) -> QFmt:
    x_fmt = fmts[node.inputs[0]]
    b_tensor = graph.tensor(node.inputs[1])
    w_fmt = weight(b_tensor) if b_tensor.is_constant else fmts[node.inputs[1]]
    product_frac = x_fmt.frac_bits + w_fmt.frac_bits
    if b_tensor.is_constant and b_tensor.raw is None and raws[b_tensor.name].ndim == 2:
        bias_raw, bias_shift = None, 0
        if len(node.inputs) > 2:
            bias = graph.tensor(node.inputs[2])
            bias_fmt = requested.get(bias.name)
            if bias_fmt is None:
                # Already on the products' binary point, so the hardware adds it without shifting.
                natural = range_format(float(np.abs(bias.value).max(initial=0.0)), 2, 0.0, "TRN", "WRAP").int_bits
                width = max(natural + product_frac, 2)
                if width > config.acc_bits:
                    raise _accumulator_error(node, config, width)
                bias_fmt = QFmt(width, width - product_frac, True, config.weight_rounding, "SAT")
            bias_shift = product_frac - bias_fmt.frac_bits
            if bias_shift < 0:
                raise ValueError(
                    f"format of {bias.name!r} must have at most the products' {product_frac} fraction bits"
                    f" ({x_fmt} times {w_fmt}), not {bias_fmt}"
                )
            fmts[bias.name] = bias_fmt
            raws[bias.name] = bias_raw = bias_fmt.quantize(bias.value)
        bound = accumulator_bound(x_fmt, raws[b_tensor.name], bias_raw, bias_shift)
    else:
        k = graph.tensor(node.inputs[0]).shape[-1]
        bound = k * max(-x_fmt.min_raw, x_fmt.max_raw) * max(-w_fmt.min_raw, w_fmt.max_raw)
    width = max(bound.bit_length() + 1, 2)
    if width > config.acc_bits:
        raise _accumulator_error(node, config, width)
    return QFmt(width, width - product_frac, True)


def _accumulator_error(node: Node, config: QuantConfig, width: int) -> ValueError:
    return ValueError(
        f"accumulator of layer {node.name!r} must fit acc_bits={config.acc_bits}, but its exact sums need"
        f" {width} bits; raise acc_bits or narrow the formats of its operands"
    )
