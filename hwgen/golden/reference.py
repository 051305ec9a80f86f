# SPDX-License-Identifier: Apache-2.0
"""The float64 reference executor: what every model computes in exact-ish arithmetic.

It runs float and quantized graphs alike, always on the constants' float values and ignoring
formats (a Requantize is the identity), so it is the accuracy baseline of the quantized model and
the source of the ranges that calibration reads. It knows every op of the IR, including the ones
the fixed-point flow does not support yet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from hwgen.golden import moe
from hwgen.golden.exact import matmul, pool2d
from hwgen.ir import OPS, Graph, Node

__all__ = ["run_float", "sample_inputs", "moe_float", "FLOAT_OPS"]

_erf = np.frompyfunc(math.erf, 1, 1)


def sample_inputs(graph: Graph, seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Seeded float inputs for every graph input from its distribution (times ``scale``)."""
    rng = np.random.default_rng([seed, 0x1A9E5])
    out = {}
    for name in graph.inputs:
        dist = graph.distribution(name)
        out[name] = dist.sample(graph.tensor(name).shape, rng) * scale
    return out


def _linear(args, attrs):
    x, w = args[0], args[1]
    y = matmul(x, w)
    return (y + args[2],) if len(args) > 2 else (y,)


def _layernorm(args, attrs):
    x, gamma, beta = args
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + attrs["eps"]) * gamma + beta,)


def _softmax_along(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _gelu_values(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _conv2d(args, attrs):
    x, w = args[0], args[1]
    sh, sw = (attrs["stride"],) * 2 if isinstance(attrs["stride"], int) else tuple(attrs["stride"])
    ph, pw = (attrs["padding"],) * 2 if isinstance(attrs["padding"], int) else tuple(attrs["padding"])
    groups = attrs["groups"]
    c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    out_h = (padded.shape[1] - kh) // sh + 1
    out_w = (padded.shape[2] - kw) // sw + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    og = o // groups
    y = np.empty((o, out_h, out_w))
    for g in range(groups):
        patch = windows[g * cg : (g + 1) * cg]  # (cg, out_h, out_w, kh, kw)
        y[g * og : (g + 1) * og] = np.einsum("chwij,ocij->ohw", patch, w[g * og : (g + 1) * og])
    if len(args) > 2:
        y += args[2][:, None, None]
    return (y,)


def _batchnorm2d(args, attrs):
    x, mean, var, gamma, beta = args
    scale = gamma / np.sqrt(var + attrs["eps"])
    return ((x - mean[:, None, None]) * scale[:, None, None] + beta[:, None, None],)


def _attention(args, attrs):
    q, k, v = args
    heads = attrs["heads"]
    d = q.shape[1] // heads
    out = np.empty_like(q)
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        scores = matmul(q[:, cols], k[:, cols].T) / math.sqrt(d)
        out[:, cols] = matmul(_softmax_along(scores, -1), v[:, cols])
    return (out,)


def _topk(args, attrs):
    values, order = moe.topk(args[0], attrs["k"])
    return values, order.astype(np.float64)


def moe_float(x, scores, indices, w1, b1, w2, b2, activation: str = "gelu") -> tuple[np.ndarray, dict[str, float]]:
    """The float Expert layer, expert by expert over :func:`hwgen.golden.moe.dispatch`'s token lists,
    and the largest |value| of the FFNs' hidden pre-activations and outputs (``hidden``, ``expert``: calibration)."""
    act = (lambda h: np.maximum(h, 0.0)) if activation == "relu" else (lambda h: _gelu_values(h, "erf"))
    out = np.zeros_like(x)
    ranges = {"hidden": 0.0, "expert": 0.0}
    for e, (tokens, slots) in enumerate(moe.dispatch(indices, w1.shape[0])):
        if not len(tokens):
            continue
        pre = matmul(x[tokens], w1[e]) + b1[e]
        y = matmul(act(pre), w2[e]) + b2[e]
        np.add.at(out, tokens, scores[tokens, slots][:, None] * y)  # a token may repeat an expert
        ranges["hidden"] = max(ranges["hidden"], float(np.abs(pre).max()))
        ranges["expert"] = max(ranges["expert"], float(np.abs(y).max()))
    return out, ranges


def _expert(args, attrs):
    return (moe_float(*args, activation=attrs["activation"])[0],)


#: The float definition of every op: f(arguments, attributes with defaults) -> outputs.
FLOAT_OPS: dict[str, Callable[[list[np.ndarray], dict], tuple[np.ndarray, ...]]] = {
    "Linear": _linear,
    "MatMul": lambda args, attrs: (matmul(args[0], np.swapaxes(args[1], -1, -2) if attrs["transpose_b"] else args[1]),),
    "Add": lambda args, attrs: (args[0] + args[1],),
    "ReLU": lambda args, attrs: (np.maximum(args[0], 0.0),),
    "Clip": lambda args, attrs: (np.clip(args[0], attrs["min"], attrs["max"]),),
    "Requantize": lambda args, attrs: (args[0],),
    "LayerNorm": _layernorm,
    "Softmax": lambda args, attrs: (_softmax_along(args[0], attrs["axis"]),),
    "GELU": lambda args, attrs: (_gelu_values(args[0], attrs["approximate"]),),
    "Conv2d": _conv2d,
    "BatchNorm2d": _batchnorm2d,
    "Attention": _attention,
    "MoEGate": lambda args, attrs: (matmul(args[0], args[1]),),
    "TopK": _topk,
    "Expert": _expert,
    "MaxPool2d": lambda args, attrs: (pool2d(args[0], attrs, -np.inf, np.max),),
    "AvgPool2d": lambda args, attrs: (pool2d(args[0], attrs, 0.0, np.mean),),
    "GlobalAvgPool": lambda args, attrs: (args[0].mean(axis=(1, 2), keepdims=True),),
    "Flatten": lambda args, attrs: (args[0].reshape(-1),),
    "Tokens": lambda args, attrs: (args[0].reshape(args[0].shape[0], -1).T,),
    "ClassToken": lambda args, attrs: (np.concatenate([args[1], args[0]], axis=0),),
    "AddConstant": lambda args, attrs: (args[0] + args[1],),
    "SelectRow": lambda args, attrs: (args[0][attrs["index"]],),
}
assert set(FLOAT_OPS) == set(OPS), "the float reference defines every IR op"


def _run_node(node: Node, args: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    attrs = {**OPS[node.op].attr_defaults(), **dict(node.attrs)}
    return FLOAT_OPS[node.op](args, attrs)


def run_float(graph: Graph, inputs: Mapping[str, np.ndarray], task: int = 0) -> dict[str, np.ndarray]:
    """Every tensor's float64 value (constants included) for float ``inputs`` of every graph input.

    ``task`` selects the gate of a multi-task MoE model (``MoEGate`` with ``tasks``); 0 otherwise.
    """
    task = moe.check_task(graph, task)
    values: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in inputs:
            raise ValueError(f"inputs must give every graph input, but {name!r} is missing")
        x = np.asarray(inputs[name], dtype=np.float64)
        if x.shape != graph.tensor(name).shape:
            raise ValueError(f"input {name!r} must have shape {graph.tensor(name).shape}, not {x.shape}")
        values[name] = x
    for tensor in graph.constants:
        values[tensor.name] = tensor.value
    for node in graph.nodes:
        outs = _run_node(node, moe.task_weight(node, [values[n] for n in node.inputs], task))
        for name, out in zip(node.outputs, outs):
            values[name] = np.asarray(out, dtype=np.float64)
    return values
