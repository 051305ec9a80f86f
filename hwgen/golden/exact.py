# SPDX-License-Identifier: Apache-2.0
"""The bit-exact definition of every fixed-point op, on int64 raw codes.

``run(qgraph, inputs)`` executes a quantized graph op by op; these functions are the spec that
``isa_sim``, the RTL and the HLS kernels must reproduce bit for bit. All arithmetic is exact
integer arithmetic: products and sums through :mod:`hwgen.qfx` (``add``, ``cast``) or, for matrix
products, :func:`exact_matmul`, which is provably the same integers (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from hwgen import qfx
from hwgen.golden import nonlinear, unit_configs
from hwgen.ir import Graph, Node
from hwgen.ir.ops import OPS
from hwgen.qfx import QFmt

__all__ = ["run", "quantize_inputs", "exact_matmul", "matmul", "EXACT_OPS"]

#: Largest magnitude every integer below which a float64 holds exactly.
_FLOAT_EXACT = 2**53


def _max_abs(raw: np.ndarray) -> int:
    return int(np.abs(raw).max(initial=0))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (b 2-D, or batched like a) without BLAS.

    NumPy's einsum loops run in the calling thread: on a loaded machine multithreaded BLAS is
    10x slower for these small products, and its summation order varies with the thread count.
    """
    if b.ndim == 2:
        return np.einsum("...k,kn->...n", a, b)
    return np.einsum("...mk,...kn->...mn", a, b)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` of int64 arrays (the sum of the ``qfx.mul`` products along K).

    When ``K · max|a| · max|b| < 2**53`` every product and every partial sum, in any order, is an
    integer a float64 holds exactly, so the float64 product *is* the integer product (and
    faster); otherwise the product is summed in int64, which is exact below 2**63.
    """
    k = a.shape[-1]
    bound = k * _max_abs(a) * _max_abs(b)
    if bound < _FLOAT_EXACT:
        return matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    if bound < 2**63:
        return matmul(a.astype(np.int64), b.astype(np.int64))
    raise ValueError(f"matrix product must stay below 2**63 in magnitude, not reach {bound}")


def _linear(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    acc = exact_matmul(args[0], args[1])
    if len(args) > 2:
        # The bias is aligned to the products' binary point (verify guarantees it has no more fraction bits).
        acc = acc + (args[2] << (out[0].frac_bits - fmts[2].frac_bits))
    return (out[0].check_raw(acc, f"accumulator of {node.name!r}"),)


def _matmul(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    b = np.swapaxes(args[1], -1, -2) if _attr(node, "transpose_b") else args[1]
    return (out[0].check_raw(exact_matmul(args[0], b), f"accumulator of {node.name!r}"),)


def _add(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    total, _ = qfx.add(args[0], fmts[0], args[1], fmts[1])
    return (total,)


def _relu(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    return (np.maximum(args[0], 0),)


def _requantize(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    return (out[0].cast(args[0], fmts[0]),)


def _attr(node: Node, key: str):
    """An attribute of ``node``, or the op table's default."""
    return node.attr(key, OPS[node.op].attr_defaults().get(key))


def _gelu(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    return (nonlinear.gelu(unit_configs.gelu_config(fmts[0], out[0]), args[0]),)


def _layernorm(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    cfg = unit_configs.layernorm_config(fmts[0], fmts[1], fmts[2], out[0], _attr(node, "eps"))
    return (nonlinear.layernorm(cfg, *args),)


def _softmax(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    x = args[0]
    axis = _attr(node, "axis")
    if axis not in (-1, x.ndim - 1):
        raise ValueError(f"Softmax {node.name!r} must be along the last axis, not axis {axis}")
    return (nonlinear.softmax(unit_configs.softmax_config(fmts[0], out[0]), x),)


#: The bit-exact definition of each supported op: f(node, raw args, arg formats, output formats).
EXACT_OPS: dict[str, Callable[[Node, list[np.ndarray], list[QFmt], list[QFmt]], tuple[np.ndarray, ...]]] = {
    "Linear": _linear,
    "MatMul": _matmul,
    "Add": _add,
    "ReLU": _relu,
    "Requantize": _requantize,
    "GELU": _gelu,
    "LayerNorm": _layernorm,
    "Softmax": _softmax,
}


def quantize_inputs(qgraph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw codes of float inputs in their graph input formats (ap_fixed assignment of doubles)."""
    return {name: qgraph.tensor(name).fmt.quantize(inputs[name]) for name in qgraph.inputs}


def run(qgraph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor's int64 raw codes for raw ``inputs`` (a dict, or one array for a one-input graph)."""
    if not qgraph.is_quantized:
        raise ValueError("graph must be quantized (formats on every tensor) to run bit-exactly, not a float graph")
    if not isinstance(inputs, Mapping):
        if len(qgraph.inputs) != 1:
            raise ValueError(f"inputs must be a dict naming each of {', '.join(qgraph.inputs)}, not one array")
        inputs = {qgraph.inputs[0]: inputs}
    values: dict[str, np.ndarray] = {}
    for name in qgraph.inputs:
        if name not in inputs:
            raise ValueError(f"inputs must give every graph input, but {name!r} is missing")
        tensor = qgraph.tensor(name)
        raw = tensor.fmt.check_raw(inputs[name], f"input {name!r}")
        if raw.shape != tensor.shape:
            raise ValueError(f"input {name!r} must have shape {tensor.shape}, not {raw.shape}")
        values[name] = raw
    for tensor in qgraph.constants:
        values[tensor.name] = tensor.raw
    for node in qgraph.nodes:
        op = EXACT_OPS.get(node.op)
        if op is None:
            raise ValueError(f"op {node.op} is not supported yet")
        args = [values[n] for n in node.inputs]
        fmts = [qgraph.tensor(n).fmt for n in node.inputs]
        outs = [qgraph.tensor(n).fmt for n in node.outputs]
        for name, result in zip(node.outputs, op(node, args, fmts, outs)):
            values[name] = np.asarray(result, dtype=np.int64)
    return values
