# SPDX-License-Identifier: Apache-2.0
"""Float rewrites before quantization: CNN ops that become ops the accelerator already runs.

- ``BatchNorm2d`` after a ``Conv2d`` is folded into the convolution's weight and bias
  (:func:`fold_batchnorm_params`, which the ONNX front end's Conv + BatchNormalization fusion uses too).
- ``AvgPool2d(k, s, p)`` is a depthwise ``Conv2d`` (``groups = C``) with constant weights ``1/(kh·kw)``, no
  bias and the same padding (counted as zeros), so the golden model defines it like any convolution.
- ``GlobalAvgPool`` of a ``(C, H, W)`` map is ``MatMul(mean, Tokens(x))``: a constant ``(1, H·W)`` row of
  ``1/(H·W)`` times the map's ``H·W`` pixel rows, a one-row LINEAR with ``B_ROWMAJOR`` (docs/isa.md §3.9).
  Its output becomes the ``(1, C)`` row (a ``Flatten`` of it is a view).
- ``Linear(Flatten(x))`` of a ``(C, H, W)`` map is a ``Conv2d`` whose kernel is the whole map (``(N, C, H, W)``,
  the Linear's weight in PyTorch's ``(c, h, w)`` flatten order), then a ``Flatten`` of its ``(N, 1, 1)``
  output (a view): the CONV gathers the channels-last map as one row, so no transposed copy is made.

The passes take and return a float graph and run first in :data:`hwgen.pipeline.PASSES`; the float
reference runs the graph before and after alike (up to float rounding).
"""

from __future__ import annotations

import numpy as np

from hwgen.ir import Graph, Node, Tensor
from hwgen.ir.ops import OPS

__all__ = ["fold_batchnorm_params", "fold_batchnorm", "lower_pools", "lower_flatten_linear", "LOWERED_OPS"]

#: Ops these passes replace before quantization: the fixed-point flow never sees them.
LOWERED_OPS = frozenset({"BatchNorm2d", "AvgPool2d", "GlobalAvgPool"})


def fold_batchnorm_params(weight: np.ndarray, bias: np.ndarray | None, mean: np.ndarray, var: np.ndarray,
                          gamma: np.ndarray, beta: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The (O, C, kh, kw) weight and (O,) bias of a convolution followed by a batch normalization."""
    factor = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    bias = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64)
    folded_weight = np.asarray(weight, np.float64) * factor.reshape(-1, *([1] * (np.ndim(weight) - 1)))
    return folded_weight, (bias - np.asarray(mean, np.float64)) * factor + np.asarray(beta, np.float64)


def _attr(node: Node, key: str):
    return node.attr(key, OPS[node.op].attr_defaults().get(key))


def fold_batchnorm(graph: Graph, config=None) -> Graph:
    """Every ``BatchNorm2d`` folded into the ``Conv2d`` producing its input (read by it alone)."""
    if not any(node.op == "BatchNorm2d" for node in graph.nodes):
        return graph
    tensors = {t.name: t for t in graph.tensors}
    nodes: list[Node | None] = list(graph.nodes)
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    for i, node in enumerate(graph.nodes):
        if node.op != "BatchNorm2d":
            continue
        x = node.inputs[0]
        conv = graph.producer(x)
        if conv is not None:
            conv = nodes[index[conv.name]]
        if conv is None or conv.op != "Conv2d" or len(graph.consumers(x)) != 1 or x in graph.outputs:
            what = "a graph input" if conv is None else f"{conv.op} {conv.name!r}" if conv.op != "Conv2d" else \
                f"Conv2d {conv.name!r} whose output is also read elsewhere"
            raise ValueError(f"BatchNorm2d {node.name!r} must follow a Conv2d read by it alone (it is folded into "
                             f"the convolution), not {what}")
        weight = tensors[conv.inputs[1]]
        if len(graph.consumers(weight.name)) != 1:
            raise ValueError(f"BatchNorm2d {node.name!r} must fold into a Conv2d whose weight {weight.name!r} is its "
                             f"own, not shared with other layers")
        bias = tensors[conv.inputs[2]] if len(conv.inputs) > 2 else None
        mean, var, gamma, beta = (tensors[name].value for name in node.inputs[1:])
        w, b = fold_batchnorm_params(weight.value, None if bias is None else bias.value, mean, var, gamma, beta,
                                     _attr(node, "eps"))
        bias_name = bias.name if bias is not None else f"{conv.name}.bias"
        if bias is None and bias_name in tensors:
            raise ValueError(f"tensor name {bias_name!r} is reserved for the bias BatchNorm2d {node.name!r} folds into "
                             f"Conv2d {conv.name!r}, rename it")
        tensors[weight.name] = weight.replace(value=w)
        tensors[bias_name] = Tensor(bias_name, (w.shape[0],), value=b)
        for name in node.inputs[1:] + (x,):
            del tensors[name]
        nodes[index[conv.name]] = conv.replace(inputs=(conv.inputs[0], weight.name, bias_name), outputs=node.outputs)
        nodes[i] = None
    return graph.replace(tensors=tuple(tensors.values()), nodes=tuple(n for n in nodes if n is not None))


def lower_pools(graph: Graph, config=None) -> Graph:
    """``AvgPool2d`` as a depthwise ``Conv2d``, ``GlobalAvgPool`` as ``MatMul(mean row, Tokens(x))``."""
    if not any(node.op in ("AvgPool2d", "GlobalAvgPool") for node in graph.nodes):
        return graph
    tensors: list[Tensor] = list(graph.tensors)
    names = {t.name for t in tensors}
    nodes: list[Node] = []

    def new_tensor(tensor: Tensor, node: Node) -> str:
        if tensor.name in names:
            raise ValueError(f"tensor name {tensor.name!r} is reserved for the lowering of {node.op} {node.name!r}, "
                             f"rename it")
        names.add(tensor.name)
        tensors.append(tensor)
        return tensor.name

    for node in graph.nodes:
        x = node.inputs[0]
        channels, height, width = graph.tensor(x).shape if node.op in ("AvgPool2d", "GlobalAvgPool") else (0, 0, 0)
        if node.op == "AvgPool2d":
            kernel = _attr(node, "kernel")
            kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
            weight = new_tensor(Tensor(f"{node.name}.weight", (channels, 1, kh, kw),
                                       value=np.full((channels, 1, kh, kw), 1.0 / (kh * kw))), node)
            attrs = {"stride": _attr(node, "stride"), "padding": _attr(node, "padding"), "groups": channels}
            nodes.append(Node(node.name, "Conv2d", (x, weight), node.outputs, attrs))
        elif node.op == "GlobalAvgPool":
            out = node.outputs[0]
            for consumer in graph.consumers(out):
                if consumer.op != "Flatten":
                    raise ValueError(f"GlobalAvgPool {node.name!r} must be read by Flatten layers only (its (C, 1, 1) "
                                     f"output is computed as a row of C), not by {consumer.op} {consumer.name!r}")
            pixels = height * width
            mean = new_tensor(Tensor(f"{node.name}.mean", (1, pixels), value=np.full((1, pixels), 1.0 / pixels)), node)
            tokens = new_tensor(Tensor(f"{node.name}.tokens", (pixels, channels)), node)
            nodes.append(Node(f"{node.name}.tokens", "Tokens", (x,), (tokens,)))
            nodes.append(Node(node.name, "MatMul", (mean, tokens), (out,)))
            tensors = [t.replace(shape=(1, channels)) if t.name == out else t for t in tensors]
        else:
            nodes.append(node)
    return graph.replace(tensors=tuple(tensors), nodes=tuple(nodes))


def lower_flatten_linear(graph: Graph, config=None) -> Graph:
    """Each ``Linear`` reading the ``Flatten`` of a ``(C, H, W)`` map (``H·W > 1``) as a whole-map ``Conv2d`` and a
    ``Flatten`` of its ``(N, 1, 1)`` output. Flattens read by anything else are left (and refused downstream)."""
    flattens = {node.outputs[0]: node for node in graph.nodes if node.op == "Flatten"
                and len(graph.tensor(node.inputs[0]).shape) == 3 and graph.tensor(node.inputs[0]).shape[1:] != (1, 1)}
    rewrites = [node for node in graph.nodes if node.op == "Linear" and node.inputs[0] in flattens
                and graph.tensor(node.inputs[1]).is_constant and len(graph.consumers(node.inputs[1])) == 1]
    if not rewrites:
        return graph
    tensors = {t.name: t for t in graph.tensors}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node not in rewrites:
            nodes.append(node)
            continue
        x = flattens[node.inputs[0]].inputs[0]
        channels, height, width = graph.tensor(x).shape
        weight = tensors[node.inputs[1]]
        features = weight.shape[1]
        kernel = np.asarray(weight.value).T.reshape(features, channels, height, width)
        tensors[weight.name] = weight.replace(shape=kernel.shape, value=kernel)
        out = node.outputs[0]
        conv_out = f"{node.name}.map"
        if conv_out in tensors:
            raise ValueError(f"tensor name {conv_out!r} is reserved for the lowering of Linear {node.name!r}, rename it")
        tensors[conv_out] = Tensor(conv_out, (features, 1, 1))
        nodes.append(Node(node.name, "Conv2d", (x, *node.inputs[1:]), (conv_out,), {}))
        nodes.append(Node(f"{node.name}.flatten", "Flatten", (conv_out,), (out,)))
    used = {name for node in nodes for name in node.inputs} | set(graph.outputs)
    for flatten in flattens.values():  # a Flatten read by the rewritten Linears alone is gone
        if flatten.outputs[0] not in used:
            nodes.remove(flatten)
            del tensors[flatten.outputs[0]]
    return graph.replace(tensors=tuple(tensors.values()), nodes=tuple(nodes))
