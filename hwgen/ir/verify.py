# SPDX-License-Identifier: Apache-2.0
"""``verify(graph)``: the invariants every pass must keep, checked after every pass.

Each violation raises a one-line ``ValueError`` naming the node or tensor and what is wrong.
Structure: unique names, known ops with the right operands and attributes, one producer per
tensor, topological order, shapes by each op's rule. Formats (once quantized): every tensor has
one, constants carry raw codes in range, and the exactness rules of the arithmetic ops hold (a
Linear's or Conv2d's accumulator format holds every possible sum; an Add's or AddConstant's output
is ap_fixed's exact sum format; a ReLU and the ops that only move codes keep their input's format).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwgen import qfx
from hwgen.ir.graph import DISTRIBUTIONS, Graph, Node
from hwgen.ir.ops import OPS, REQUIRED, OpSpec

__all__ = ["verify", "accumulator_bound", "attr_problem"]


def _where(node: Node) -> str:
    return f"node {node.name!r} ({node.op})"


def verify(graph: Graph) -> Graph:
    """Check every invariant of ``graph``; return it unchanged, or raise ``ValueError``."""
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a hwgen.ir.Graph, not {type(graph).__name__}")
    _check_names(graph)
    produced = _check_structure(graph)
    _check_shapes(graph)
    if graph.is_quantized:
        _check_formats(graph)
    for name in graph.outputs:
        if name not in produced and name not in graph.inputs:
            raise ValueError(f"graph output {name!r} must be produced by a node or be a graph input")
    return graph


def _check_names(graph: Graph) -> None:
    seen: set[str] = set()
    for tensor in graph.tensors:
        if not isinstance(tensor.name, str) or not tensor.name:
            raise ValueError(f"tensor names must be non-empty strings, not {tensor.name!r}")
        if tensor.name in seen:
            raise ValueError(f"tensor names must be unique, but {tensor.name!r} appears twice")
        seen.add(tensor.name)
        if any(d < 1 for d in tensor.shape) or not tensor.shape:
            raise ValueError(f"tensor {tensor.name!r} must have a non-empty shape of positive sizes, not {tensor.shape}")
        if tensor.is_constant and tensor.value.shape != tensor.shape:
            raise ValueError(f"constant {tensor.name!r} must hold values of shape {tensor.shape}, not {tensor.value.shape}")
        if tensor.raw is not None and not tensor.is_constant:
            raise ValueError(f"tensor {tensor.name!r} has raw codes but no values: only constants carry data")
    nodes: set[str] = set()
    for node in graph.nodes:
        if not isinstance(node.name, str) or not node.name:
            raise ValueError(f"node names must be non-empty strings, not {node.name!r}")
        if node.name in nodes:
            raise ValueError(f"node names must be unique, but {node.name!r} appears twice")
        nodes.add(node.name)
    for role, names in (("input", graph.inputs), ("output", graph.outputs)):
        if not names:
            raise ValueError(f"a graph must have at least one {role}")
        for name in names:
            if not graph.has_tensor(name):
                raise ValueError(f"graph {role} {name!r} must be a tensor of the graph")
    if len(set(graph.inputs)) != len(graph.inputs):
        raise ValueError(f"graph inputs must be unique, not {list(graph.inputs)}")
    for name in graph.inputs:
        if graph.tensor(name).is_constant:
            raise ValueError(f"graph input {name!r} must be an activation, not a constant")
    for dist in graph.input_distributions:
        if dist.tensor not in graph.inputs:
            raise ValueError(f"input distribution must name a graph input, not {dist.tensor!r}")
        if dist.kind not in DISTRIBUTIONS:
            raise ValueError(f"distribution of {dist.tensor!r} must be one of {', '.join(DISTRIBUTIONS)}, not {dist.kind!r}")
        if not dist.scale > 0:
            raise ValueError(f"distribution scale of {dist.tensor!r} must be positive, not {dist.scale!r}")


def attr_problem(spec: OpSpec, attrs: dict[str, Any]) -> str | None:
    """What is wrong with ``attrs`` for op ``spec`` (unknown, missing or mistyped), or None."""
    known = {name for name, _, _ in spec.attrs}
    for key in attrs:
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            return f"attribute must be one of {allowed}, not {key!r}"
    for name, types, default in spec.attrs:
        if name not in attrs:
            if default is REQUIRED:
                return f"attribute {name!r} is required"
            continue
        value = attrs[name]
        # bool is an int in Python: only an attribute declared bool takes one.
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            kinds = " or ".join(t.__name__ for t in types)
            return f"attribute {name!r} must be {kinds}, not {value!r}"
    return None


def _check_attrs(node: Node, spec: OpSpec) -> None:
    problem = attr_problem(spec, dict(node.attrs))
    if problem:
        raise ValueError(f"{_where(node)}: {problem}")


def _check_structure(graph: Graph) -> set[str]:
    available = set(graph.inputs) | {t.name for t in graph.constants}
    produced: set[str] = set()
    for node in graph.nodes:
        spec = OPS.get(node.op)
        if spec is None:
            raise ValueError(f"node {node.name!r}: op must be one of {', '.join(OPS)}, not {node.op!r}")
        low, high = len(spec.operands) - spec.optional, len(spec.operands)
        if not low <= len(node.inputs) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            raise ValueError(f"{_where(node)}: needs {count} inputs ({', '.join(spec.operands)}), not {len(node.inputs)}")
        if len(node.outputs) != len(spec.outputs):
            raise ValueError(f"{_where(node)}: needs {len(spec.outputs)} outputs ({', '.join(spec.outputs)}), not {len(node.outputs)}")
        _check_attrs(node, spec)
        for role, name in zip(spec.operands, node.inputs):
            if not graph.has_tensor(name):
                raise ValueError(f"{_where(node)}: input {name!r} is not a tensor of the graph")
            if name not in available:
                if any(name in later.outputs for later in graph.nodes):
                    raise ValueError(f"{_where(node)}: reads {name!r} before the node producing it (nodes must be in topological order)")
                raise ValueError(f"{_where(node)}: input {name!r} has no producer and is neither a graph input nor a constant")
            if role in spec.constant_operands and not graph.tensor(name).is_constant:
                raise ValueError(f"{_where(node)}: {role} {name!r} must be a constant")
        for name in node.outputs:
            if not graph.has_tensor(name):
                raise ValueError(f"{_where(node)}: output {name!r} is not a tensor of the graph")
            if name in graph.inputs or graph.tensor(name).is_constant:
                raise ValueError(f"{_where(node)}: output {name!r} must not be a graph input or a constant")
            if name in produced:
                raise ValueError(f"{_where(node)}: output {name!r} already has a producer (one producer per tensor)")
            produced.add(name)
            available.add(name)
    for tensor in graph.tensors:
        if not tensor.is_constant and tensor.name not in graph.inputs and tensor.name not in produced:
            raise ValueError(f"tensor {tensor.name!r} must be a graph input, a constant or a node's output")
    gates = [node for node in graph.nodes if node.op == "MoEGate"]
    for node in gates:
        if node.attr("tasks", 1) != gates[0].attr("tasks", 1):
            raise ValueError(f"{_where(node)}: tasks must be the model's {gates[0].attr('tasks', 1)} (as gate"
                             f" {gates[0].name!r}), not {node.attr('tasks', 1)}")
    return produced


def _check_shapes(graph: Graph) -> None:
    for node in graph.nodes:
        spec = OPS[node.op]
        attrs = {**spec.attr_defaults(), **dict(node.attrs)}
        shapes = tuple(graph.tensor(name).shape for name in node.inputs)
        try:
            expected = spec.shape_rule(shapes, attrs)
        except ValueError as exc:
            raise ValueError(f"{_where(node)}: {exc}") from None
        for name, shape in zip(node.outputs, expected):
            actual = graph.tensor(name).shape
            if actual != tuple(shape):
                raise ValueError(f"{_where(node)}: output {name!r} must have shape {tuple(shape)}, not {actual}")


def accumulator_bound(x_fmt: qfx.QFmt, weight_raw: np.ndarray, bias_raw: np.ndarray | None, bias_shift: int) -> int:
    """Largest |sum| a Linear can reach: max over outputs of Σ_k |w[k,n]| · max|x| + |bias[n] aligned|.

    ``max|x|`` is the largest magnitude of any raw code of ``x_fmt``, so no input can exceed it;
    ``bias_shift`` is the left shift aligning the bias to the products' binary point.
    """
    x_max = max(abs(x_fmt.min_raw), abs(x_fmt.max_raw))
    magnitude = np.abs(weight_raw)
    # Column sums in int64 when they cannot overflow it (always, for storage formats), else in Python ints.
    exact_in_int64 = int(magnitude.max(initial=0)) * max(weight_raw.shape[0], 1) < 2**62
    column = magnitude.sum(axis=0) if exact_in_int64 else magnitude.astype(object).sum(axis=0)
    total = column.astype(object) * x_max
    if bias_raw is not None:
        total = total + np.abs(bias_raw).astype(object) * (1 << bias_shift)
    return int(max(total.max(initial=0), 0))


def _bits_for(bound: int) -> int:
    """Width of the smallest signed format holding every integer in [-bound, bound]."""
    return bound.bit_length() + 1


def _check_formats(graph: Graph) -> None:
    for tensor in graph.tensors:
        if tensor.fmt is None:
            raise ValueError(f"tensor {tensor.name!r} must have a format: a quantized graph formats every tensor")
        if tensor.is_constant:
            if tensor.raw is None:
                raise ValueError(f"constant {tensor.name!r} must carry raw codes in a quantized graph")
            if tensor.raw.shape != tensor.shape:
                raise ValueError(f"constant {tensor.name!r} must hold raw codes of shape {tensor.shape}, not {tensor.raw.shape}")
            try:
                tensor.fmt.check_raw(tensor.raw, f"raw codes of {tensor.name!r}")
            except ValueError as exc:
                raise ValueError(str(exc)) from None
    for node in graph.nodes:
        fmts = [graph.tensor(name).fmt for name in node.inputs]
        out = graph.tensor(node.outputs[0]).fmt
        if node.op in ("Linear", "MatMul", "Conv2d", "MoEGate"):
            _check_product_accumulator(graph, node, fmts, out)
        elif node.op in ("Add", "AddConstant"):
            exact = qfx.result_fmt_add(fmts[0], fmts[1])
            if (out.width, out.int_bits, out.signed) != (exact.width, exact.int_bits, exact.signed):
                raise ValueError(f"{_where(node)}: output format must be the exact sum format {exact}, not {out}")
        elif node.op in ("ReLU", "Tokens", "SelectRow", "ClassToken", "TopK"):
            if out != fmts[0]:
                raise ValueError(f"{_where(node)}: output format must be the input's {fmts[0]}, not {out}")
            if node.op == "ClassToken" and fmts[1] != out:
                raise ValueError(f"{_where(node)}: class token format must be the output's {out}, not {fmts[1]}")


def _check_product_accumulator(graph: Graph, node: Node, fmts: list[Any], out: qfx.QFmt) -> None:
    x_fmt, w_fmt = fmts[0], fmts[1]
    product_frac = x_fmt.frac_bits + w_fmt.frac_bits
    if out.frac_bits != product_frac or not out.signed and (x_fmt.signed or w_fmt.signed):
        raise ValueError(
            f"{_where(node)}: accumulator format must keep the products' {product_frac} fraction bits"
            f" exactly, not {out}"
        )
    weight = graph.tensor(node.inputs[1])
    k = graph.tensor(node.inputs[0]).shape[-1]
    # A Conv2d's (O, C, kh, kw) kernel bounds its sums as the (C·kh·kw, O) matrix of its columns.
    matrix = weight.raw
    if node.op == "Conv2d":
        matrix = matrix.reshape(matrix.shape[0], -1).T
    x = graph.tensor(node.inputs[0])
    if x.is_constant and not weight.is_constant and len(weight.shape) == 2 and not node.attr("transpose_b", False):
        # Constant rows times an activation (a global average pool): bounded by the rows' actual codes.
        bound = accumulator_bound(w_fmt, x.raw.T, None, 0)
    elif node.op == "MoEGate" and matrix.ndim == 3:
        # One gate per task: the largest of the tasks' bounds.
        bound = max(accumulator_bound(x_fmt, task_matrix, None, 0) for task_matrix in matrix)
    elif weight.is_constant and matrix.ndim == 2:
        bias, bias_shift = None, 0
        if len(node.inputs) > 2:
            bias_tensor = graph.tensor(node.inputs[2])
            bias_shift = product_frac - bias_tensor.fmt.frac_bits
            if bias_shift < 0:
                raise ValueError(
                    f"{_where(node)}: bias format must have at most the products' {product_frac} fraction bits,"
                    f" not {bias_tensor.fmt}"
                )
            bias = bias_tensor.raw
        bound = accumulator_bound(x_fmt, matrix, bias, bias_shift)
    else:
        bound = k * max(abs(x_fmt.min_raw), x_fmt.max_raw) * max(abs(w_fmt.min_raw), w_fmt.max_raw)
    if out.min_raw > -bound or out.max_raw < bound:
        raise ValueError(
            f"{_where(node)}: accumulator format must hold every sum (a {_bits_for(bound)}-bit signed format), not {out}"
        )
