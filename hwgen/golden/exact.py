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
from hwgen.golden import attention, moe, nonlinear, unit_configs
from hwgen.golden.products import exact_matmul, matmul
from hwgen.ir import Graph, Node
from hwgen.ir.ops import OPS
from hwgen.qfx import QFmt

__all__ = ["run", "quantize_inputs", "exact_matmul", "matmul", "pool2d", "attention_formats", "pair",
           "conv_windows", "conv_dense_weight", "conv_weight_matrix", "EXACT_OPS"]


def pair(value) -> tuple[int, int]:
    """A kernel, stride or padding attribute as ``(y, x)``: an int stands for both."""
    return (value, value) if isinstance(value, int) else tuple(value)


def pool2d(x: np.ndarray, attrs: dict, fill, reduce) -> np.ndarray:
    """``reduce`` over every pooling window of ``x`` (C, H, W), padding with ``fill``: float and integer alike."""
    (kh, kw), (sh, sw), (ph, pw) = pair(attrs["kernel"]), pair(attrs["stride"]), pair(attrs["padding"])
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return reduce(windows, axis=(3, 4))


def conv_windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The (grid_h·grid_w, kh·kw·C) rows of a (C, H, W) input's windows, the input bordered by ``padding`` zeros:
    row ``(gy, gx)`` row-major over the grid, columns ordered ``(ky, kx, c)`` — the rows a CONV gathers from a
    zero-bordered feature map (docs/isa.md §3.9, §4)."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    x = np.pad(x, ((0, 0), (py, py), (px, px)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sy, ::sx]  # (C, gh, gw, kh, kw)
    grid_h, grid_w = windows.shape[1:3]
    return windows.transpose(1, 2, 3, 4, 0).reshape(grid_h * grid_w, kh * kw * x.shape[0])


def conv_dense_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """The (O, C, kh, kw) kernel of an (O, C/groups, kh, kw) grouped one: zero outside each output's group
    (block-diagonal over the channels), so a grouped convolution is a dense one (docs/isa.md §3.9)."""
    if groups == 1:
        return weight
    out, per_group = weight.shape[:2]
    dense = np.zeros((out, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    outs_per_group = out // groups
    for g in range(groups):
        rows = slice(g * outs_per_group, (g + 1) * outs_per_group)
        dense[rows, g * per_group:(g + 1) * per_group] = weight[rows]
    return dense


def conv_weight_matrix(weight: np.ndarray, groups: int = 1) -> np.ndarray:
    """The (kh·kw·C, O) matrix of an (O, C/groups, kh, kw) kernel, rows ordered ``(ky, kx, c)`` like
    :func:`conv_windows` (block-diagonal for ``groups > 1``)."""
    weight = conv_dense_weight(weight, groups)
    return weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])


def _linear(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    acc = exact_matmul(args[0], args[1])
    if len(args) > 2:
        # The bias is aligned to the products' binary point (verify guarantees it has no more fraction bits).
        acc = acc + (args[2] << (out[0].frac_bits - fmts[2].frac_bits))
    return (out[0].check_raw(acc, f"accumulator of {node.name!r}"),)


def _conv2d(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    """The exact sums of the zero-bordered input's windows by the (block-diagonal) weight matrix, then the bias
    aligned to the products' binary point, as a Linear: what a CONV computes (docs/isa.md §3.9)."""
    x, w = args[0], args[1]
    stride, padding = pair(_attr(node, "stride")), pair(_attr(node, "padding"))
    rows = conv_windows(x, w.shape[2:], stride, padding)
    acc = exact_matmul(rows, conv_weight_matrix(w, _attr(node, "groups")))
    if len(args) > 2:
        acc = acc + (args[2] << (out[0].frac_bits - fmts[2].frac_bits))
    grid_h = (x.shape[1] + 2 * padding[0] - w.shape[2]) // stride[0] + 1
    acc = acc.T.reshape(w.shape[0], grid_h, -1)  # pixels are rows: back to (O, grid_h, grid_w)
    return (out[0].check_raw(acc, f"accumulator of {node.name!r}"),)


def _add_constant(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    total, _ = qfx.add(args[0], fmts[0], args[1], fmts[1])
    return (total,)


def _class_token(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    if not fmts[0] == fmts[1] == out[0]:
        raise ValueError(f"ClassToken {node.name!r} must keep one format for its tokens, class token and output, "
                         f"not {fmts[0]}, {fmts[1]} and {out[0]}")
    return (np.concatenate([args[1], args[0]], axis=0),)


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


def attention_formats(node: Node, fmts: list[QFmt], out: QFmt, width: int, keys: int) -> attention.AttentionFormats:
    """The formats of a quantized Attention node whose q has ``width`` columns and k ``keys`` rows.

    Its score and probability formats are attributes the quantizer sets (the softmax unit's formats).
    """
    score, prob = _attr(node, "score_format"), _attr(node, "prob_format")
    if not score or not prob:
        raise ValueError(f"Attention {node.name!r} must have score_format and prob_format (set by the quantizer)")
    heads = _attr(node, "heads")
    return attention.AttentionFormats(fmts[0], fmts[1], fmts[2], out, QFmt.parse(score), QFmt.parse(prob), heads,
                                      width // heads, keys)


def _attention(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    q, k, v = args
    f = attention_formats(node, fmts, out[0], q.shape[1], k.shape[0])
    return (attention.attention(f, q, k, v),)


def _topk(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    if out[0] != fmts[0]:
        raise ValueError(f"TopK {node.name!r} must keep its input format {fmts[0]}, not {out[0]}")
    values, indices = moe.topk(args[0], _attr(node, "k"))
    return values, out[1].check_raw(indices, f"indices of {node.name!r}")


def _expert(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    f = moe.expert_formats(node, fmts, args[1].shape[1])
    if out[0] != f.sum:
        raise ValueError(f"Expert {node.name!r} must give the exact weighted sum {f.sum}, not {out[0]}")
    return (moe.moe(f, *args),)


def _maxpool2d(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
    if out[0] != fmts[0]:
        raise ValueError(f"MaxPool2d {node.name!r} must keep its input format {fmts[0]}, not {out[0]}")
    padded_min = np.iinfo(np.int64).min
    return (pool2d(args[0], {"kernel": _attr(node, "kernel"), "stride": _attr(node, "stride"),
                              "padding": _attr(node, "padding")}, padded_min, np.max),)


def _moved(move: Callable[[np.ndarray, Node], np.ndarray]):
    """An op that only moves codes: the output keeps the input's format."""
    def run(node: Node, args: list[np.ndarray], fmts: list[QFmt], out: list[QFmt]) -> tuple[np.ndarray, ...]:
        if out[0] != fmts[0]:
            raise ValueError(f"{node.op} {node.name!r} must keep its input format {fmts[0]}, not {out[0]}")
        return (move(args[0], node),)

    return run


#: The bit-exact definition of each supported op: f(node, raw args, arg formats, output formats).
EXACT_OPS: dict[str, Callable[[Node, list[np.ndarray], list[QFmt], list[QFmt]], tuple[np.ndarray, ...]]] = {
    "Linear": _linear,
    "Conv2d": _conv2d,
    "MatMul": _matmul,
    "Add": _add,
    "ReLU": _relu,
    "Requantize": _requantize,
    "GELU": _gelu,
    "LayerNorm": _layernorm,
    "Softmax": _softmax,
    "Attention": _attention,
    "MoEGate": _linear,  # the task's W_g (moe.task_weight): a Linear without bias
    "TopK": _topk,
    "Expert": _expert,
    "MaxPool2d": _maxpool2d,
    "Flatten": _moved(lambda x, node: x.reshape(-1)),
    "Tokens": _moved(lambda x, node: x.reshape(x.shape[0], -1).T),
    "SelectRow": _moved(lambda x, node: x[_attr(node, "index")]),
    "ClassToken": _class_token,
    "AddConstant": _add_constant,
}


def quantize_inputs(qgraph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw codes of float inputs in their graph input formats (ap_fixed assignment of doubles)."""
    return {name: qgraph.tensor(name).fmt.quantize(inputs[name]) for name in qgraph.inputs}


def run(qgraph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray, task: int = 0) -> dict[str, np.ndarray]:
    """Every tensor's int64 raw codes for raw ``inputs`` (a dict, or one array for a one-input graph).

    ``task`` selects the gate of a multi-task MoE model (``MoEGate`` with ``tasks``); 0 otherwise.
    """
    if not qgraph.is_quantized:
        raise ValueError("graph must be quantized (formats on every tensor) to run bit-exactly, not a float graph")
    task = moe.check_task(qgraph, task)
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
        args = moe.task_weight(node, [values[n] for n in node.inputs], task)
        fmts = [qgraph.tensor(n).fmt for n in node.inputs]
        outs = [qgraph.tensor(n).fmt for n in node.outputs]
        for name, result in zip(node.outputs, op(node, args, fmts, outs)):
            values[name] = np.asarray(result, dtype=np.int64)
    return values
