# SPDX-License-Identifier: Apache-2.0
"""Small ONNX graphs built with onnx.helper for the importer tests: each exporter pattern, seeded weights."""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


class G:
    """A graph under construction: ``op`` adds a node and returns its output name."""

    def __init__(self, shape, seed: int = 0, opset: int = 17):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.opset, self.count = [], [], opset, 0
        self.shape = tuple(shape)
        self.uses_qonnx = False

    def const(self, value, dtype=np.float32) -> str:
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, *shape, bound=None) -> str:
        bound = bound or 1 / math.sqrt(shape[0] if len(shape) == 2 else int(np.prod(shape[1:])))
        return self.const(self.rng.uniform(-bound, bound, size=shape))

    def op(self, op: str, *inputs: str, outputs: int = 1, domain: str = "", **attrs):
        self.count += 1
        names = [f"{op.lower()}{self.count}" + (f"_{i}" if i else "") for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=f"/{op}_{self.count}", domain=domain, **attrs))
        self.uses_qonnx |= domain == QONNX
        return names[0] if outputs == 1 else names

    def model(self, output: str, *, input_shape=None, input_type=TensorProto.FLOAT):
        graph = helper.make_graph(
            self.nodes, "test", [helper.make_tensor_value_info("x", input_type, list(input_shape or self.shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        opsets = [helper.make_opsetid("", self.opset)] + ([helper.make_opsetid(QONNX, 2)] if self.uses_qonnx else [])
        # The IR version of the ai.onnx opset (make_model would stamp the newest, which ORT may lag).
        ir_version = helper.find_min_ir_version_for([opsets[0]])
        return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)

    # --------------------------------------------------------------------------- patterns

    def linear(self, x: str, k: int, n: int, bias: bool = True) -> str:
        y = self.op("MatMul", x, self.weight(k, n))
        return self.op("Add", y, self.const(self.rng.uniform(-0.5, 0.5, n))) if bias else y

    def gemm(self, x: str, k: int, n: int) -> str:
        return self.op("Gemm", x, self.weight(n, k), self.const(self.rng.uniform(-0.5, 0.5, n)), transB=1)

    def layernorm(self, x: str, d: int, eps: float = 1e-6) -> str:
        return self.op("LayerNormalization", x, self.const(self.rng.uniform(0.8, 1.2, d)),
                       self.const(self.rng.uniform(-0.1, 0.1, d)), axis=-1, epsilon=eps)

    def layernorm_decomposed(self, x: str, d: int, eps: float = 1e-5) -> str:
        if self.opset >= 18:
            axes = self.const([-1], np.int64)
            mean = self.op("ReduceMean", x, axes)
        else:
            mean = self.op("ReduceMean", x, axes=[-1])
        diff = self.op("Sub", x, mean)
        square = self.op("Pow", diff, self.const(2.0))
        var = self.op("ReduceMean", square, self.const([-1], np.int64)) if self.opset >= 18 else \
            self.op("ReduceMean", square, axes=[-1])
        std = self.op("Sqrt", self.op("Add", var, self.const(eps)))
        y = self.op("Div", diff, std)
        y = self.op("Mul", y, self.const(self.rng.uniform(0.8, 1.2, d)))
        return self.op("Add", y, self.const(self.rng.uniform(-0.1, 0.1, d)))

    def gelu_erf(self, x: str, dynamo: bool = False) -> str:
        erf = self.op("Add", self.op("Erf", self.op("Div", x, self.const(math.sqrt(2)))), self.const(1.0))
        if dynamo:
            return self.op("Mul", self.op("Mul", x, self.const(0.5)), erf)
        return self.op("Mul", self.op("Mul", x, erf), self.const(0.5))

    def gelu_tanh(self, x: str, pow_form: bool = True) -> str:
        cube = self.op("Pow", x, self.const(3.0)) if pow_form else self.op("Mul", self.op("Mul", x, x), x)
        inner = self.op("Add", x, self.op("Mul", cube, self.const(0.044715)))
        t = self.op("Add", self.op("Tanh", self.op("Mul", inner, self.const(math.sqrt(2 / math.pi)))), self.const(1.0))
        return self.op("Mul", self.op("Mul", x, t), self.const(0.5))

    def quant(self, x: str, scale: float, bits: int, signed: int = 1, narrow: int = 0, mode: str = "ROUND",
              zeropt: float = 0.0) -> str:
        return self.op("Quant", x, self.const(scale), self.const(zeropt), self.const(float(bits)), domain=QONNX,
                       signed=signed, narrow=narrow, rounding_mode=mode)


def mlp_block(opset: int = 17, seed: int = 0, tokens: int = 5, dim: int = 16, hidden: int = 32,
              decomposed_ln: bool = False, gelu: str = "erf") -> object:
    """A ViT MLP half: LayerNorm → Linear → GELU → Linear → residual Add → Softmax."""
    g = G((1, tokens, dim), seed, opset)
    h = g.layernorm_decomposed("x", dim) if decomposed_ln else g.layernorm("x", dim)
    h = g.linear(h, dim, hidden)
    h = {"erf": g.gelu_erf, "dynamo": lambda v: g.gelu_erf(v, dynamo=True), "tanh": g.gelu_tanh,
         "tanh-mul": lambda v: g.gelu_tanh(v, pow_form=False),
         "op": lambda v: g.op("Gelu", v, approximate="none")}[gelu](h)
    h = g.linear(h, hidden, dim)
    h = g.op("Add", h, "x")
    return g.model(g.op("Softmax", h, axis=-1))


def attention_block(opset: int = 17, seed: int = 0, tokens: int = 5, heads: int = 2, d: int = 8,
                    select: str = "split", scale: str = "q") -> object:
    """timm's Attention: qkv Linear → Reshape [1,T,3,H,d] → Transpose(2,0,3,1,4) → q, k, v → scale → q·kᵀ
    → Softmax → ·v → Transpose(0,2,1,3) → Reshape [1,T,D] → proj Linear → residual Add.

    ``select``: split (legacy: Split + Squeeze), slice (dynamo: Slice + Squeeze), gather (3 Gather).
    ``scale``: q (Mul(q, d^-½)), both (Mul(q, d^-¼), Mul(kᵀ, d^-¼)), scores (Div(q·kᵀ, √d)).
    """
    dim = heads * d
    g = G((1, tokens, dim), seed, opset)
    qkv = g.linear("x", dim, 3 * dim)
    packed = g.op("Transpose", g.op("Reshape", qkv, g.const([1, tokens, 3, heads, d], np.int64)), perm=[2, 0, 3, 1, 4])
    axes = g.const([0], np.int64)
    if select == "split":
        parts = g.op("Split", packed, g.const([1, 1, 1], np.int64), outputs=3, axis=0)
        q, k, v = (g.op("Squeeze", p, axes) for p in parts)
    elif select == "slice":
        q, k, v = (g.op("Squeeze", g.op("Slice", packed, g.const([i], np.int64), g.const([i + 1], np.int64), axes), axes)
                   for i in range(3))
    else:
        q, k, v = (g.op("Gather", packed, g.const(i, np.int64), axis=0) for i in range(3))
    kt = g.op("Transpose", k, perm=[0, 1, 3, 2])
    if scale == "q":
        scores = g.op("MatMul", g.op("Mul", q, g.const(d**-0.5)), kt)
    elif scale == "both":
        scores = g.op("MatMul", g.op("Mul", q, g.const(d**-0.25)), g.op("Mul", kt, g.const(d**-0.25)))
    else:
        scores = g.op("Div", g.op("MatMul", q, kt), g.const(math.sqrt(d)))
    h = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    h = g.op("Reshape", g.op("Transpose", h, perm=[0, 2, 1, 3]), g.const([1, tokens, dim], np.int64))
    h = g.linear(h, dim, dim)
    return g.model(g.op("Add", h, "x"))


def tiny_vit(opset: int = 17, seed: int = 0, image: int = 8, patch: int = 4, dim: int = 8, classes: int = 3,
             flatten: str = "reshape") -> object:
    """Patch embedding (Conv k = s → Reshape | Flatten → Transpose) → class token → position embedding
    → attention block → LayerNorm → class-token Gather → Gemm head."""
    g = G((1, 3, image, image), seed, opset)
    n = (image // patch) ** 2
    h = g.op("Conv", "x", g.weight(dim, 3, patch, patch), g.const(np.zeros(dim)), strides=[patch, patch],
             kernel_shape=[patch, patch])
    if flatten == "reshape":  # dynamo: a constant target shape
        h = g.op("Reshape", h, g.const([1, dim, n], np.int64))
    else:  # legacy: the target computed from Shape → Slice → Concat (folded by the importer)
        head = g.op("Slice", g.op("Shape", h), g.const([0], np.int64), g.const([2], np.int64))
        h = g.op("Reshape", h, g.op("Concat", head, g.const([-1], np.int64), axis=0))
    h = g.op("Transpose", h, perm=[0, 2, 1])
    h = g.op("Concat", g.const(g.rng.normal(0, 0.02, (1, 1, dim))), h, axis=1)
    h = g.op("Add", h, g.const(g.rng.normal(0, 0.02, (1, n + 1, dim))))
    h = g.layernorm(h, dim)
    h = g.op("Gather", h, g.const(0, np.int64), axis=1)
    return g.model(g.gemm(h, dim, classes))


def tiny_cnn(opset: int = 17, seed: int = 0, dynamo: bool = False) -> object:
    """Conv + BN + Relu → MaxPool → Conv → Relu → AveragePool → global average pool → Flatten → Gemm."""
    g = G((1, 3, 12, 12), seed, opset)
    h = g.op("Conv", "x", g.weight(6, 3, 3, 3), pads=[1, 1, 1, 1])
    h = g.op("BatchNormalization", h, g.const(g.rng.uniform(0.5, 1.5, 6)), g.const(g.rng.uniform(-0.2, 0.2, 6)),
             g.const(g.rng.uniform(-0.1, 0.1, 6)), g.const(g.rng.uniform(0.5, 2.0, 6)))
    h = g.op("MaxPool", g.op("Relu", h), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    h = g.op("Relu", g.op("Conv", h, g.weight(8, 6, 3, 3), g.const(np.zeros(8)), pads=[1, 1, 1, 1]))
    h = g.op("AveragePool", h, kernel_shape=[2, 2], strides=[2, 2])
    if dynamo:
        h = g.op("Reshape", g.op("ReduceMean", h, g.const([2, 3], np.int64), keepdims=1) if opset >= 18 else
                 g.op("ReduceMean", h, axes=[2, 3], keepdims=1), g.const([1, 8], np.int64))
    else:
        h = g.op("Flatten", g.op("GlobalAveragePool", h), axis=1)
    return g.model(g.gemm(h, 8, 4))


def quant_reference(x, scale, bits, signed, narrow, mode):
    """QONNX Quant (frontends.md §1.2), written out independently: clamp to the integer grid, round, rescale."""
    lo = -(2 ** (bits - 1)) + narrow if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1 - narrow
    y = np.clip(np.asarray(x, np.float64) / scale, lo, hi)
    rounded = {"ROUND": np.round(y), "FLOOR": np.floor(y), "DOWN": np.trunc(y),
               "HALF_UP": np.sign(y) * np.floor(np.abs(y) + 0.5),
               "HALF_DOWN": np.sign(y) * np.ceil(np.abs(y) - 0.5)}[mode]
    return rounded * scale


def mobilenet_block(opset: int = 17, seed: int = 0, channels: int = 8, expand: int = 4) -> object:
    """MobileNetV2's inverted residual: 1x1 expand + BN + ReLU6 → 3x3 depthwise + BN + ReLU6 → 1x1 project + BN → Add."""
    g = G((1, channels, 8, 8), seed, opset)
    hidden = channels * expand

    def bn(h, c):
        return g.op("BatchNormalization", h, g.const(g.rng.uniform(0.5, 1.5, c)), g.const(g.rng.uniform(-0.2, 0.2, c)),
                    g.const(g.rng.uniform(-0.1, 0.1, c)), g.const(g.rng.uniform(0.5, 2.0, c)))

    def relu6(h):
        return g.op("Clip", h, g.const(0.0), g.const(6.0))

    h = relu6(bn(g.op("Conv", "x", g.weight(hidden, channels, 1, 1)), hidden))
    h = relu6(bn(g.op("Conv", h, g.weight(hidden, 1, 3, 3), pads=[1, 1, 1, 1], group=hidden), hidden))
    h = bn(g.op("Conv", h, g.weight(channels, hidden, 1, 1)), channels)
    return g.model(g.op("Add", h, "x"))
