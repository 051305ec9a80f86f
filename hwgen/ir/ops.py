# SPDX-License-Identifier: Apache-2.0
"""The op table: every op the IR knows, with its operands, attributes and shape rule.

The table names ops that later issues implement (LayerNorm, Softmax, GELU, Conv2d, Attention,
MoE gate / top-k / experts) so they plug in without reshaping the IR; :func:`verify` accepts them
all, and the quantizer, golden model and compiler say "op X is not supported yet" for the ones
they do not implement. Shape rules raise ``ValueError`` with a message that does not name the node
(the verifier prefixes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["OpSpec", "OPS", "REQUIRED"]

Shape = tuple[int, ...]

#: Marks an attribute without default.
REQUIRED = object()


@dataclass(frozen=True)
class OpSpec:
    """One op: operand roles (the last ``optional`` of them may be omitted), outputs, attributes."""

    name: str
    operands: tuple[str, ...]
    outputs: tuple[str, ...]
    shape_rule: Callable[[tuple[Shape, ...], dict[str, Any]], tuple[Shape, ...]]
    optional: int = 0
    constant_operands: tuple[str, ...] = ()
    attrs: tuple[tuple[str, tuple[type, ...], Any], ...] = ()
    doc: str = ""

    def attr_defaults(self) -> dict[str, Any]:
        """Attributes that have defaults, with them."""
        return {name: default for name, _, default in self.attrs if default is not REQUIRED}


def _shape(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _need_rank(role: str, shape: Shape, low: int, high: int | None = None) -> None:
    if len(shape) < low or (high is not None and len(shape) > high):
        want = f"rank {low}" if high == low else f"rank at least {low}" if high is None else f"rank {low} to {high}"
        raise ValueError(f"{role} must have {want}, not shape {_shape(shape)}")


def _need(role: str, shape: Shape, expected: Shape) -> None:
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{role} must have shape {_shape(expected)}, not {_shape(shape)}")


def _linear(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, weight = shapes[0], shapes[1]
    _need_rank("input", x, 1)
    _need_rank("weight", weight, 2, 2)
    if weight[0] != x[-1]:
        raise ValueError(f"weight must have shape ({x[-1]}, N) to match the input's {x[-1]} columns, not {_shape(weight)}")
    if len(shapes) > 2:
        _need("bias", shapes[2], (weight[1],))
    return (x[:-1] + (weight[1],),)


def _matmul(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    a, b = shapes
    _need_rank("a", a, 1)
    _need_rank("b", b, 2)
    if attrs.get("transpose_b", False):
        b = b[:-2] + (b[-1], b[-2])
    if len(b) > 2 and (len(a) != len(b) or a[:-2] != b[:-2]):
        raise ValueError(f"batched b must have the same leading dimensions as a, not {_shape(b)} for a {_shape(a)}")
    if b[-2] != a[-1]:
        raise ValueError(f"b must have {a[-1]} rows to match a's {a[-1]} columns, not shape {_shape(b)}")
    return (a[:-1] + (b[-1],),)


def _same_as_first(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    return (shapes[0],)


def _add(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    a, b = shapes
    if a != b:
        raise ValueError(f"inputs must have the same shape, not {_shape(a)} and {_shape(b)}")
    return (a,)


def _layernorm(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, gamma, beta = shapes
    _need_rank("input", x, 1)
    _need("gamma", gamma, (x[-1],))
    _need("beta", beta, (x[-1],))
    if not attrs["eps"] > 0:
        raise ValueError(f"eps must be positive, not {attrs['eps']!r}")
    return (x,)


def _softmax(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 1)
    if not -len(x) <= attrs["axis"] < len(x):
        raise ValueError(f"axis must be in {-len(x)}..{len(x) - 1}, not {attrs['axis']}")
    return (x,)


def _gelu(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    if attrs["approximate"] not in ("erf", "tanh"):
        raise ValueError(f"approximate must be one of erf, tanh, not {attrs['approximate']!r}")
    return (shapes[0],)


def _pair(name: str, value: Any, low: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= low for v in pair):
        raise ValueError(f"{name} must be an integer ≥ {low} or a pair of them, not {value!r}")
    return pair


def _conv2d(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, weight = shapes[0], shapes[1]
    _need_rank("input", x, 3, 3)
    _need_rank("weight", weight, 4, 4)
    stride = _pair("stride", attrs["stride"], 1)
    padding = _pair("padding", attrs["padding"], 0)
    groups = attrs["groups"]
    if groups < 1 or x[0] % groups or weight[0] % groups:
        raise ValueError(f"groups must divide the {x[0]} input and {weight[0]} output channels, not {groups}")
    if weight[1] != x[0] // groups:
        raise ValueError(f"weight must have {x[0] // groups} input channels per group, not shape {_shape(weight)}")
    if len(shapes) > 2:
        _need("bias", shapes[2], (weight[0],))
    out_hw = []
    for size, k, s, p in zip(x[1:], weight[2:], stride, padding):
        span = size + 2 * p - k
        if span < 0:
            raise ValueError(f"kernel {_shape(weight[2:])} must fit the padded input {_shape(x[1:])}")
        out_hw.append(span // s + 1)
    return ((weight[0], *out_hw),)


def _batchnorm2d(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 3, 3)
    for role, shape in zip(("mean", "var", "gamma", "beta"), shapes[1:]):
        _need(role, shape, (x[0],))
    if not attrs["eps"] > 0:
        raise ValueError(f"eps must be positive, not {attrs['eps']!r}")
    return (x,)


def _attention(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    q, k, v = shapes
    for role, shape in (("q", q), ("k", k), ("v", v)):
        _need_rank(role, shape, 2, 2)
    if k[1] != q[1]:
        raise ValueError(f"k must have {q[1]} columns like q, not shape {_shape(k)}")
    _need("v", v, k)
    heads = attrs["heads"]
    if heads < 1 or q[1] % heads:
        raise ValueError(f"heads must divide the dimension {q[1]}, not {heads}")
    return (q,)


def _moe_gate(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, weight = shapes
    _need_rank("input", x, 2, 2)
    tasks = attrs["tasks"]
    if tasks < 1:
        raise ValueError(f"tasks must be a positive integer, not {tasks}")
    # One gate: W_g (D, E); one gate per task (M³ViT's multi-gate): (tasks, D, E), the task chosen at run time.
    if tasks == 1:
        _need_rank("weight", weight, 2, 2)
        if weight[0] != x[1]:
            raise ValueError(f"weight must have shape ({x[1]}, E), not {_shape(weight)}")
    elif len(weight) != 3 or weight[:2] != (tasks, x[1]):
        raise ValueError(f"weight must have shape ({tasks}, {x[1]}, E) for {tasks} tasks, not {_shape(weight)}")
    return ((x[0], weight[-1]),)


def _topk(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 1)
    k = attrs["k"]
    if not 1 <= k <= x[-1]:
        raise ValueError(f"k must be in 1..{x[-1]}, not {k}")
    out = x[:-1] + (k,)
    return (out, out)


def _expert(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, scores, indices, w1, b1, w2, b2 = shapes
    _need_rank("input", x, 2, 2)
    _need_rank("scores", scores, 2, 2)
    if scores[0] != x[0]:
        raise ValueError(f"scores must have {x[0]} rows like the input, not shape {_shape(scores)}")
    _need("indices", indices, scores)
    _need_rank("w1", w1, 3, 3)
    experts, dim, hidden = w1
    if dim != x[1]:
        raise ValueError(f"w1 must have shape (E, {x[1]}, H), not {_shape(w1)}")
    _need("b1", b1, (experts, hidden))
    _need("w2", w2, (experts, hidden, dim))
    _need("b2", b2, (experts, dim))
    if attrs["activation"] not in ("gelu", "relu"):
        raise ValueError(f"activation must be one of gelu, relu, not {attrs['activation']!r}")
    return (x,)


def _clip(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    if not attrs["min"] < attrs["max"]:
        raise ValueError(f"min must be below max, not {attrs['min']!r} and {attrs['max']!r}")
    return (shapes[0],)


def _pool2d(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 3, 3)
    kernel = _pair("kernel", attrs["kernel"], 1)
    stride = _pair("stride", attrs["stride"], 1)
    padding = _pair("padding", attrs["padding"], 0)
    out_hw = []
    for size, k, s, p in zip(x[1:], kernel, stride, padding):
        if p >= k:
            raise ValueError(f"padding must be smaller than the kernel {_shape(kernel)}, not {_shape(padding)}")
        if size + 2 * p < k:
            raise ValueError(f"kernel {_shape(kernel)} must fit the padded input {_shape(x[1:])}")
        out_hw.append((size + 2 * p - k) // s + 1)
    return ((x[0], *out_hw),)


def _global_pool(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 3, 3)
    return ((x[0], 1, 1),)


def _flatten(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 2)
    size = 1
    for d in x:
        size *= d
    return ((size,),)


def _tokens(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 3, 3)
    return ((x[1] * x[2], x[0]),)


def _class_token(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, token = shapes
    _need_rank("input", x, 2, 2)
    _need("token", token, (1, x[1]))
    return ((x[0] + 1, x[1]),)


def _add_constant(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x, value = shapes
    _need("value", value, x)
    return (x,)


def _select_row(shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> tuple[Shape, ...]:
    x = shapes[0]
    _need_rank("input", x, 2, 2)
    if not 0 <= attrs["index"] < x[0]:
        raise ValueError(f"index must be in 0..{x[0] - 1}, not {attrs['index']}")
    return ((x[1],),)


_INT = (int,)
_BOOL = (bool,)
_FLOAT = (int, float)
_STR = (str,)
_PAIR = (int, tuple, list)

#: Every op of the IR, by name. Operand roles are positional.
OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("Linear", ("input", "weight", "bias"), ("output",), _linear, optional=1,
               constant_operands=("weight", "bias"), doc="x · W + b, W of shape (K, N)"),
        OpSpec("MatMul", ("a", "b"), ("output",), _matmul, attrs=(("transpose_b", _BOOL, False),),
               doc="a · b, or a · bᵀ with transpose_b (b of shape (N, K), as K in Q·Kᵀ); b a constant or an activation"),
        OpSpec("Add", ("a", "b"), ("output",), _add, doc="elementwise a + b (residual)"),
        OpSpec("ReLU", ("input",), ("output",), _same_as_first, doc="max(x, 0)"),
        OpSpec("Clip", ("input",), ("output",), _clip, attrs=(("min", _FLOAT, REQUIRED), ("max", _FLOAT, REQUIRED)),
               doc="min(max(x, min), max) (ReLU6 is Clip(0, 6))"),
        OpSpec("Requantize", ("input",), ("output",), _same_as_first,
               doc="cast into the output tensor's format (inserted by quantization)"),
        OpSpec("LayerNorm", ("input", "gamma", "beta"), ("output",), _layernorm,
               constant_operands=("gamma", "beta"), attrs=(("eps", _FLOAT, 1e-5),),
               doc="(x − mean) / sqrt(var + eps) · gamma + beta over the last axis"),
        OpSpec("Softmax", ("input",), ("output",), _softmax, attrs=(("axis", _INT, -1),), doc="softmax along axis"),
        OpSpec("GELU", ("input",), ("output",), _gelu, attrs=(("approximate", _STR, "erf"),),
               doc="x · Φ(x) (erf form, or the tanh approximation)"),
        OpSpec("Conv2d", ("input", "weight", "bias"), ("output",), _conv2d, optional=1,
               constant_operands=("weight", "bias"),
               attrs=(("stride", _PAIR, 1), ("padding", _PAIR, 0), ("groups", _INT, 1)),
               doc="2-D convolution of a (C, H, W) input with an (O, C/groups, kh, kw) kernel"),
        OpSpec("BatchNorm2d", ("input", "mean", "var", "gamma", "beta"), ("output",), _batchnorm2d,
               constant_operands=("mean", "var", "gamma", "beta"), attrs=(("eps", _FLOAT, 1e-5),),
               doc="(x − mean[c]) / sqrt(var[c] + eps) · gamma[c] + beta[c] per channel of a (C, H, W) input; folded "
                   "into the Conv2d before it before quantization"),
        OpSpec("Attention", ("q", "k", "v"), ("output",), _attention,
               attrs=(("heads", _INT, REQUIRED), ("score_format", _STR, ""), ("prob_format", _STR, "")),
               doc="multi-head softmax(q·kᵀ / sqrt(d_head)) · v on projected q, k, v; a quantized graph names "
                   "the formats of its scores and probabilities (the softmax unit's, set by the quantizer)"),
        OpSpec("MoEGate", ("input", "weight"), ("logits",), _moe_gate, constant_operands=("weight",),
               attrs=(("tasks", _INT, 1),),
               doc="gate logits x · W_g (no bias), W_g of shape (D, E), or (tasks, D, E) with one gate per task "
                   "(the task is an argument of the run, hwgen.golden.moe.task_weight)"),
        OpSpec("TopK", ("input",), ("values", "indices"), _topk, attrs=(("k", _INT, REQUIRED),),
               doc="the k largest entries of the last axis (ties to the lower index) and their indices"),
        OpSpec("Expert", ("input", "scores", "indices", "w1", "b1", "w2", "b2"), ("output",), _expert,
               constant_operands=("w1", "b1", "w2", "b2"),
               attrs=(("activation", _STR, "gelu"), ("hidden_acc_format", _STR, ""), ("hidden_format", _STR, ""),
                      ("expert_acc_format", _STR, ""), ("expert_format", _STR, "")),
               doc="Σ_j scores[t,j] · FFN_{indices[t,j]}(x[t]) over the selected experts; a quantized graph names "
                   "the formats inside each expert's FFN (set by the quantizer, hwgen.golden.moe)"),
        # Shape and pooling ops the ONNX front end needs (CNN heads, ViT tokens); the float
        # reference runs them, the fixed-point flow does not yet.
        OpSpec("MaxPool2d", ("input",), ("output",), _pool2d,
               attrs=(("kernel", _PAIR, REQUIRED), ("stride", _PAIR, 1), ("padding", _PAIR, 0)),
               doc="max over kernel windows of a (C, H, W) input (padding never wins)"),
        OpSpec("AvgPool2d", ("input",), ("output",), _pool2d,
               attrs=(("kernel", _PAIR, REQUIRED), ("stride", _PAIR, 1), ("padding", _PAIR, 0)),
               doc="mean over kernel windows of a (C, H, W) input (padding counted as zeros)"),
        OpSpec("GlobalAvgPool", ("input",), ("output",), _global_pool, doc="mean over H and W: (C, H, W) → (C, 1, 1)"),
        OpSpec("Flatten", ("input",), ("output",), _flatten, doc="row-major flatten to one axis"),
        OpSpec("Tokens", ("input",), ("output",), _tokens,
               doc="(C, H, W) feature map → (H·W, C) tokens, row-major over H, W (patch embedding hand-over)"),
        OpSpec("ClassToken", ("input", "token"), ("output",), _class_token, constant_operands=("token",),
               doc="prepend the constant (1, D) class token to (T, D) tokens → (T + 1, D)"),
        OpSpec("AddConstant", ("input", "value"), ("output",), _add_constant, constant_operands=("value",),
               doc="x + a constant of the same shape (position embedding)"),
        OpSpec("SelectRow", ("input",), ("output",), _select_row, attrs=(("index", _INT, 0),),
               doc="row ``index`` of (T, D) tokens → (D,) (the class token for the classifier)"),
    )
}


def node_macs(op: str, in_shapes: tuple[Shape, ...], out_shapes: tuple[Shape, ...], attrs: dict[str, Any]) -> int:
    """Multiply-accumulates one node performs (0 for elementwise and normalization ops)."""
    def prod(shape: Shape) -> int:
        result = 1
        for d in shape:
            result *= d
        return result

    if op in ("Linear", "MatMul", "MoEGate"):
        return prod(out_shapes[0]) * in_shapes[0][-1]
    if op == "Conv2d":
        weight = in_shapes[1]
        return prod(out_shapes[0]) * prod(weight[1:])
    if op == "Attention":
        (t, d), (s, _) = in_shapes[0], in_shapes[1]
        return 2 * t * s * d
    if op == "Expert":
        x, scores, _, w1 = in_shapes[:4]
        return 2 * scores[0] * scores[1] * w1[1] * w1[2]
    return 0
