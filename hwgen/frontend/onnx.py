# SPDX-License-Identifier: Apache-2.0
"""Read an ONNX or QONNX file (opsets 13 to 21) into a float :class:`~hwgen.ir.Graph` (docs/frontends.md).

The import is an explicit, ordered list of small pure passes (:data:`PASSES`) over a plain,
immutable picture of the ONNX graph (:class:`Net`): checks, shape inference and constant folding,
then pattern fusion into the IR's ops (LayerNorm, GELU, Linear, Conv + BatchNorm, attention), then
one last pass that maps every remaining node to an IR node. QONNX ``Quant`` nodes with a
power-of-two scale and a zero zero-point become exact fixed-point formats (:func:`quant_format`),
which the quantizer keeps instead of calibrating (``Model.formats``).

Every node the import cannot map is collected into one error (:class:`OnnxImportError`) that names
each node, its op type and why; every other problem (unreadable file, dynamic shape, batch ≠ 1,
missing external data, a scale that is not a power of two) is one line naming the file.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwgen.frontend.spec import Model
from hwgen.ir import Graph, InputDistribution, Node, Tensor, verify
from hwgen.ir.serialize import npz_bytes
from hwgen.qfx import QFmt
from hwgen.quant.rewrite import fold_batchnorm_params

__all__ = [
    "OnnxImportError",
    "Net",
    "ONode",
    "PASSES",
    "QONNX_DOMAINS",
    "load_onnx",
    "read_net",
    "quant_format",
    "to_spec",
    "spec_files",
    "onnxruntime_outputs",
]

log = logging.getLogger(__name__)

#: ai.onnx opsets the importer is tested on.
OPSETS = range(13, 22)
#: Domains of the QONNX custom ops (Brevitas writes the first; older files the last).
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
_QONNX_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc", "FloatQuant")
#: QONNX rounding modes → the ap_fixed rounding that gives the same integers (shared/reference/frontends.md §1.2).
_ROUNDING = {"ROUND": "RND_CONV", "HALF_EVEN": "RND_CONV", "FLOOR": "TRN", "DOWN": "TRN_ZERO",
             "HALF_UP": "RND_INF", "HALF_DOWN": "RND_ZERO"}
#: Ops that only carry a value through.
_ALIAS_OPS = ("Identity", "Dropout")


class OnnxImportError(ValueError):
    """An ONNX file hwgen cannot import; the message is one line (or one report of every bad node)."""


# ------------------------------------------------------------------------------------- the picture


@dataclass(frozen=True)
class ONode:
    """One ONNX node: op type, domain, input and output names ('' = omitted optional), attributes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    domain: str = ""

    def attr(self, key: str, default: Any = None) -> Any:
        return dict(self.attrs).get(key, default)


@dataclass(frozen=True)
class Net:
    """An ONNX graph as the passes see it: nodes in order, constants, static shapes (batch included).

    ``formats`` are exact formats found on tensors (QONNX), ``notes`` what the import changed on the
    user's request (rounded scales), both keyed and worded for the report.
    """

    where: str
    opset: int
    qonnx_version: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[ONode, ...]
    consts: dict[str, np.ndarray] = field(compare=False)
    shapes: dict[str, tuple[int, ...]] = field(compare=False)
    formats: tuple[tuple[str, QFmt], ...] = ()
    notes: tuple[str, ...] = ()
    round_scales: bool = False

    def replace(self, **changes: Any) -> Net:
        return dataclasses.replace(self, **changes)

    def fail(self, message: str) -> None:
        raise OnnxImportError(f"{self.where}: {message}")

    def node_error(self, node: ONode, problem: str) -> None:
        self.fail(f"node {node.name!r} ({node.op}, opset {self.opset}): {problem}")

    # Lookups are cached on the instance: a Net never changes after construction.

    @functools.cached_property
    def _producers(self) -> dict[str, ONode]:
        return {out: node for node in self.nodes for out in node.outputs}

    @functools.cached_property
    def _consumers(self) -> dict[str, list[ONode]]:
        readers: dict[str, list[ONode]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                readers.setdefault(name, []).append(node)
        return readers

    def producer(self, name: str) -> ONode | None:
        return self._producers.get(name)

    def consumers(self, name: str) -> list[ONode]:
        return list(self._consumers.get(name, ()))

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        if name not in self.shapes:
            self.fail(f"tensor {name!r} must have a static shape after shape inference, not an unknown one"
                      " (an op of a newer opset than the file declares?)")
        return self.shapes[name]


def _attr_value(attr) -> Any:
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return tuple(v.decode() if isinstance(v, bytes) else v for v in value)
    if hasattr(value, "dims"):  # TensorProto
        return numpy_helper.to_array(value)
    return value


def _node_name(node, index: int) -> str:
    return node.name or f"#{index} {node.op_type}"


# ---------------------------------------------------------------------------------- 1. load, check


def read_net(path: str | Path, *, round_scales: bool = False) -> Net:
    """Load ``path`` (external data resolved next to it) and check it: one line per problem."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    where = path.name
    if not path.is_file():
        raise OnnxImportError(f"model must be an existing .onnx file, not {str(path)!r}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise OnnxImportError(f"{where}: not a readable ONNX file: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = dict((e.key, e.value) for e in tensor.external_data).get("location", "")
            if not (path.parent / location).is_file():
                raise OnnxImportError(f"{where}: external data file {location!r} of initializer {tensor.name!r} must exist"
                                      f" next to the model, not be missing")
    try:
        onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:  # noqa: BLE001
        raise OnnxImportError(f"{where}: external data must be readable: {' '.join(str(exc).split())}") from None

    opset, qonnx_version = 0, 1
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            opset = entry.version
        elif entry.domain in QONNX_DOMAINS:
            qonnx_version = entry.version
    if opset not in OPSETS:
        raise OnnxImportError(f"{where}: ai.onnx opset must be {OPSETS[0]} to {OPSETS[-1]}, not {opset}"
                              "; re-export with opset_version=17 or convert with onnx.version_converter")
    graph = proto.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise OnnxImportError(f"{where}: model must have exactly one graph input, not {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = []
    for d in dims:
        if not d.HasField("dim_value"):
            raise OnnxImportError(f"{where}: input {inputs[0].name!r} must have a static shape, not the dynamic"
                                  f" dimension {d.dim_param or '?'!r}; export with fixed input sizes")
        shape.append(d.dim_value)
    if not shape or shape[0] != 1:
        raise OnnxImportError(f"{where}: input {inputs[0].name!r} must have batch dimension 1, not shape {tuple(shape)}")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise OnnxImportError(f"{where}: input {inputs[0].name!r} must be float32, not"
                              f" {onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)}")
    nodes = []
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") + QONNX_DOMAINS:
            nodes.append(ONode(_node_name(node, index), node.op_type, tuple(node.input), tuple(node.output),
                               (), node.domain))
            continue
        attrs = tuple(sorted((a.name, _attr_value(a)) for a in node.attribute))
        nodes.append(ONode(_node_name(node, index), node.op_type, tuple(node.input), tuple(node.output), attrs,
                           node.domain))
    return Net(where, opset, qonnx_version, (inputs[0].name,), tuple(o.name for o in graph.output), tuple(nodes),
               consts, {inputs[0].name: tuple(shape)}, round_scales=round_scales)


# ------------------------------------------------------------------ 2. shapes and constant folding


def _is_qonnx(node: ONode) -> bool:
    return node.domain in QONNX_DOMAINS or node.op in _QONNX_OPS


def _proto(net: Net):
    """A ModelProto of ``net`` with QONNX nodes hidden behind Identity (qonnx's trick) for shape inference."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    for node in net.nodes:
        if _is_qonnx(node):
            nodes.append(helper.make_node("Identity", [node.inputs[0]], [node.outputs[0]], name=node.name))
        elif node.domain not in ("", "ai.onnx"):
            continue
        else:
            nodes.append(helper.make_node(node.op, list(node.inputs), list(node.outputs), name=node.name,
                                          **{k: list(v) if isinstance(v, tuple) else
                                             (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v)
                                             for k, v in node.attrs}))
    inits = [numpy_helper.from_array(v, name) for name, v in net.consts.items()]
    x = net.inputs[0]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(x, TensorProto.FLOAT, net.shapes[x])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in net.outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", net.opset)])


def infer_shapes(net: Net) -> Net:
    """Every tensor's static shape (``onnx.shape_inference`` with data propagation)."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(_proto(net), data_prop=True)
    shapes = dict(net.shapes)
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return net.replace(shapes=shapes)


def _evaluate(net: Net, node: ONode, args: list[np.ndarray | None]) -> list[np.ndarray]:
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    attrs = {k: list(v) if isinstance(v, tuple) else (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v)
             for k, v in node.attrs}
    proto = helper.make_node(node.op, list(node.inputs), list(node.outputs), **attrs)
    feeds = {n: a for n, a in zip(node.inputs, args) if n}
    return ReferenceEvaluator(proto, opsets={"": net.opset}).run(None, feeds)


def fold_constants(net: Net) -> Net:
    """Evaluate every standard node whose inputs are constants (and ``Shape`` of static tensors).

    QONNX quantizers are never folded here: they become formats. A constant with an exact format
    keeps it through ops that only move its values (the Transpose an exporter puts after a weight
    Quant). Unused constants are dropped.
    """
    consts = dict(net.consts)
    formats = dict(net.formats)
    nodes = []
    for node in net.nodes:
        if node.op == "Constant" and not node.domain:
            (key, value), = node.attrs
            if key != "value":
                value = np.array(value, dtype=np.float32 if key.startswith("value_float") else np.int64)
            consts[node.outputs[0]] = np.asarray(value)
            continue
        if node.op == "Shape" and not node.domain and node.inputs[0] in net.shapes:
            shape = np.array(net.shapes[node.inputs[0]], dtype=np.int64)
            start, end = node.attr("start", 0), node.attr("end", None)
            consts[node.outputs[0]] = shape[start:end]
            continue
        if _is_qonnx(node) or node.domain or not all(n == "" or n in consts for n in node.inputs):
            nodes.append(node)
            continue
        for name, value in zip(node.outputs, _evaluate(net, node, [consts.get(n) for n in node.inputs])):
            consts[name] = np.asarray(value)
            if node.op in _SHAPE_OPS + _ALIAS_OPS and node.inputs[0] in formats:
                formats[name] = formats[node.inputs[0]]
    used = {n for node in nodes for n in node.inputs} | set(net.outputs) | set(net.inputs)
    return net.replace(nodes=tuple(nodes), consts={k: v for k, v in consts.items() if k in used},
                       formats=tuple((k, v) for k, v in formats.items() if k in used or k not in consts))


def drop_aliases(net: Net) -> Net:
    """Remove Identity and Dropout nodes, and reshapes that keep the shape (readers read the source)."""
    rename: dict[str, str] = {}
    nodes = []
    for node in net.nodes:
        keeps_shape = (node.op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze") and node.inputs[0] in net.shapes
                       and net.shapes.get(node.outputs[0]) == net.shapes[node.inputs[0]])
        if (node.op in _ALIAS_OPS or keeps_shape) and not node.domain:
            rename[node.outputs[0]] = rename.get(node.inputs[0], node.inputs[0])
            continue
        nodes.append(node)
    if not rename:
        return net
    nodes = [dataclasses.replace(n, inputs=tuple(rename.get(i, i) for i in n.inputs)) for n in nodes]
    outputs = tuple(rename.get(o, o) for o in net.outputs)
    return net.replace(nodes=tuple(nodes), outputs=outputs)


# --------------------------------------------------------------------------------------- QONNX


def _po2_exponent(scale: float) -> int | None:
    mantissa, exponent = math.frexp(scale)
    return exponent - 1 if mantissa == 0.5 else None


def quant_format(net: Net, node: ONode) -> tuple[QFmt, tuple[str, ...]]:
    """The QFX format that is exactly QONNX ``Quant`` ``node`` (and the notes of any rounding asked for).

    z = 0 and s = 2^e: ``clamp(round(x / s), min, max) · s`` is a cast into ``QFmt(b, b + e, signed,
    rounding, SAT or SAT_SYM)`` (shared/reference/frontends.md §1.3). Anything else is refused naming the node.
    """
    def refuse(problem: str) -> None:
        net.node_error(node, problem)

    if node.op not in ("Quant", "IntQuant"):
        refuse("QONNX op must be Quant or IntQuant to become a fixed-point format, not " + node.op)
    if len(node.inputs) != 4:
        refuse(f"Quant must have 4 inputs (x, scale, zeropt, bitwidth), not {len(node.inputs)}")
    values = []
    for role, name in zip(("scale", "zero point", "bit width"), node.inputs[1:]):
        value = net.const(name)
        if value is None:
            refuse(f"{role} must be a constant, not the computed tensor {name!r}")
        values.append(np.asarray(value, dtype=np.float64))
    scale, zeropt, bits = values
    if bits.size != 1 or bits.flat[0] != int(bits.flat[0]) or not 2 <= int(bits.flat[0]) <= 32:
        refuse(f"bit width must be one integer from 2 to 32, not {bits.ravel().tolist()}")
    if np.any(zeropt != 0):
        refuse(f"zero point must be 0 (asymmetric quantization has no fixed-point form), not {zeropt.ravel()[:4].tolist()}")
    if scale.size != 1 and not np.all(scale == scale.flat[0]):
        refuse("scale must be one value for the whole tensor (per-channel scales are not supported yet),"
               f" not {scale.size} different values")
    for key in ("signed", "narrow"):
        if node.attr(key) is None:
            refuse(f"attribute {key!r} must be given (QONNX's code requires it)")
    signed, narrow = bool(node.attr("signed")), bool(node.attr("narrow"))
    mode = str(node.attr("rounding_mode", "ROUND")).upper()
    if mode not in _ROUNDING:
        refuse(f"rounding_mode must be one of {', '.join(_ROUNDING)} (those have an ap_fixed twin), not {mode}")
    if narrow and not signed:
        refuse("narrow must be 0 for an unsigned Quant (its top code 2^b − 2 has no ap_ufixed form), not 1")
    s = float(scale.flat[0])
    if not s > 0 or not math.isfinite(s):
        refuse(f"scale must be a positive number, not {s!r}")
    exponent = _po2_exponent(s)
    notes: tuple[str, ...] = ()
    if exponent is None:
        nearest = round(math.log2(s))
        if not net.round_scales:
            refuse(f"scale must be a power of two, not {s:.6g} (nearest: 2^{nearest} = {2.0**nearest:.9g});"
                   " quantize with power-of-two scales (Brevitas *FixedPoint quantizers) or pass --round-scales")
        exponent = nearest
        error = abs(2.0**nearest / s - 1)
        notes = (f"{node.name}: scale {s:.6g} rounded to 2^{nearest} = {2.0**nearest:.9g}"
                 f" (its step and range × {2.0**nearest / s:.6f}, {100 * error:.2f} % off the exported quantizer)",)
    b = int(bits.flat[0])
    return QFmt(b, b + exponent, signed, _ROUNDING[mode], "SAT_SYM" if narrow else "SAT"), notes


def fold_weight_quant(net: Net) -> Net:
    """A ``Quant`` of a constant becomes the quantized constant, its format recorded (exact)."""
    consts = dict(net.consts)
    formats, notes, nodes = list(net.formats), list(net.notes), []
    for node in net.nodes:
        if node.op in ("Quant", "IntQuant") and _is_qonnx(node) and node.inputs[0] in consts:
            fmt, extra = quant_format(net, node)
            consts[node.outputs[0]] = fmt.to_float(fmt.quantize(np.asarray(consts[node.inputs[0]], np.float64)))
            formats.append((node.outputs[0], fmt))
            notes.extend(extra)
            continue
        nodes.append(node)
    return net.replace(nodes=tuple(nodes), consts=consts, formats=tuple(formats), notes=tuple(notes))


# ------------------------------------------------------------------------------ 3. pattern fusion


def _scalar(net: Net, name: str) -> float | None:
    value = net.const(name)
    if value is None or value.size != 1:
        return None
    return float(value.ravel()[0])


def _other(node: ONode, name: str) -> str | None:
    """The other input of a two-input node that reads ``name``."""
    if len(node.inputs) != 2 or name not in node.inputs:
        return None
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _only_consumer(net: Net, name: str, op: str) -> ONode | None:
    readers = net.consumers(name)
    if len(readers) == 1 and readers[0].op == op and name not in net.outputs:
        return readers[0]
    return None


def _close(value: float | None, target: float, rel: float = 1e-6) -> bool:
    return value is not None and abs(value - target) <= rel * abs(target)


@dataclass
class _Found:
    """A match: the nodes it replaces, the node replacing them, new constants and their formats."""

    matched: list[ONode]
    new: ONode | tuple[ONode, ...]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    formats: list[tuple[str, QFmt]] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def const(self, name: str, value: np.ndarray, net: Net | None = None, source: str | None = None) -> str:
        """Add constant ``name``; with ``source``, it keeps ``source``'s exact format (same values)."""
        self.consts[name] = np.asarray(value)
        fmt = dict(net.formats).get(source) if net is not None and source else None
        if fmt is not None:
            self.formats.append((name, fmt))
        return name


def _rewrite(net: Net, found: _Found) -> Net:
    """Replace the matched nodes by the new one, placed where the last of them was."""
    ids = {id(n) for n in found.matched}
    last = max(i for i, n in enumerate(net.nodes) if id(n) in ids)
    new = found.new if isinstance(found.new, tuple) else (found.new,)
    nodes = [m for i, n in enumerate(net.nodes) for m in (new if i == last else () if id(n) in ids else (n,))]
    return net.replace(nodes=tuple(nodes), consts={**net.consts, **found.consts},
                       formats=net.formats + tuple(found.formats), shapes={**net.shapes, **found.shapes})


def _fixpoint(match: Callable[[Net, ONode], _Found | None]) -> Callable[[Net], Net]:
    def run(net: Net) -> Net:
        changed = True
        while changed:
            changed = False
            for node in net.nodes:
                found = match(net, node)
                if found is not None:
                    net = _rewrite(net, found)
                    changed = True
                    break
        return net

    run.__name__ = match.__name__.removeprefix("_match_")
    run.__doc__ = match.__doc__
    return run


def _match_layernorm(net: Net, node: ONode):
    """ReduceMean → Sub → Pow(2) | Mul(d, d) → ReduceMean → Add(ε) → Sqrt → Div → Mul(γ) → Add(β) → LayerNormalization."""
    if node.op != "ReduceMean":
        return None
    x, rank = node.inputs[0], len(net.shape(node.inputs[0]))

    def last_axis(reduce: ONode) -> bool:
        axes = reduce.attr("axes") if len(reduce.inputs) < 2 else tuple(net.const(reduce.inputs[1]).ravel())
        return axes is not None and len(axes) == 1 and int(axes[0]) in (-1, rank - 1) and reduce.attr("keepdims", 1) == 1

    if not last_axis(node):
        return None
    sub = _only_consumer(net, node.outputs[0], "Sub")
    if sub is None or sub.inputs != (x, node.outputs[0]):
        return None
    d = sub.outputs[0]
    readers = net.consumers(d)
    square = next((r for r in readers if (r.op == "Pow" and _scalar(net, r.inputs[1]) == 2.0)
                   or (r.op == "Mul" and r.inputs == (d, d))), None)
    div = next((r for r in readers if r.op == "Div" and r.inputs[0] == d), None)
    if square is None or div is None or len(readers) != 2:
        return None
    mean2 = _only_consumer(net, square.outputs[0], "ReduceMean")
    if mean2 is None or not last_axis(mean2):
        return None
    add = _only_consumer(net, mean2.outputs[0], "Add")
    eps = add and _scalar(net, _other(add, mean2.outputs[0]) or "")
    if eps is None:
        return None
    sqrt = _only_consumer(net, add.outputs[0], "Sqrt")
    if sqrt is None or div.inputs[1] != sqrt.outputs[0]:
        return None
    chain = [node, sub, square, mean2, add, sqrt, div]
    out, dim = div.outputs[0], net.shape(x)[-1]
    gamma, beta = np.ones(dim, np.float32), np.zeros(dim, np.float32)
    mul = _only_consumer(net, out, "Mul")
    if mul is not None and net.const(_other(mul, out)) is not None:
        gamma = np.broadcast_to(net.const(_other(mul, out)), (dim,))
        chain.append(mul)
        out = mul.outputs[0]
        plus = _only_consumer(net, out, "Add")
        if plus is not None and net.const(_other(plus, out)) is not None:
            beta = np.broadcast_to(net.const(_other(plus, out)), (dim,))
            chain.append(plus)
            out = plus.outputs[0]
    found = _Found(chain, ONode(div.name, "LayerNormalization", (x, f"{out}::gamma", f"{out}::beta"), (out,),
                                (("axis", -1), ("epsilon", eps))))
    found.const(f"{out}::gamma", np.array(gamma))
    found.const(f"{out}::beta", np.array(beta))
    return found


def _gelu_tail(net: Net, x: str, inner: str, chain: list[ONode]):
    """From Add(inner, 1): Mul(x)·Mul(0.5) in either order, or Mul(0.5·x) → the GELU output name."""
    plus = _only_consumer(net, inner, "Add")
    if plus is None or _scalar(net, _other(plus, inner) or "") != 1.0:
        return None
    p = plus.outputs[0]
    mul = _only_consumer(net, p, "Mul")
    if mul is None:
        return None
    other = _other(mul, p)
    if other == x:
        half = _only_consumer(net, mul.outputs[0], "Mul")
        if half is None or not _close(_scalar(net, _other(half, mul.outputs[0]) or ""), 0.5):
            return None
        return chain + [plus, mul, half], half.outputs[0]
    if _close(_scalar(net, other), 0.5):  # Mul(0.5, 1 + erf) then Mul(x, ·)
        outer = _only_consumer(net, mul.outputs[0], "Mul")
        if outer is None or _other(outer, mul.outputs[0]) != x:
            return None
        return chain + [plus, mul, outer], outer.outputs[0]
    producer = net.producer(other) if other else None
    if (producer is not None and producer.op == "Mul" and x in producer.inputs
            and _close(_scalar(net, _other(producer, x) or ""), 0.5) and len(net.consumers(other)) == 1):
        return chain + [producer, plus, mul], mul.outputs[0]
    return None


def _match_gelu_erf(net: Net, node: ONode):
    """Div(x, √2) | Mul(x, 1/√2) → Erf → Add(1) → Mul(x) → Mul(0.5) (any Mul order) → Gelu."""
    if node.op != "Erf":
        return None
    scaled = net.producer(node.inputs[0])
    if scaled is None or len(net.consumers(scaled.outputs[0])) != 1:
        return None
    if scaled.op == "Div" and _close(_scalar(net, scaled.inputs[1]), math.sqrt(2)):
        x = scaled.inputs[0]
    elif scaled.op == "Mul" and any(_close(_scalar(net, n), 1 / math.sqrt(2)) for n in scaled.inputs):
        x = next(n for n in scaled.inputs if not _close(_scalar(net, n), 1 / math.sqrt(2)))
    else:
        return None
    found = _gelu_tail(net, x, node.outputs[0], [scaled, node])
    if found is None:
        return None
    chain, out = found
    return _Found(chain, ONode(node.name, "Gelu", (x,), (out,), (("approximate", "none"),)))


def _match_gelu_tanh(net: Net, node: ONode):
    """Pow(x, 3) | Mul(Mul(x, x), x) → Mul(0.044715) → Add(x) → Mul(√(2/π)) → Tanh → Add(1) → Mul → Mul → Gelu."""
    if node.op != "Tanh":
        return None
    scale = net.producer(node.inputs[0])
    if scale is None or scale.op != "Mul":
        return None
    k = next((n for n in scale.inputs if _close(_scalar(net, n), math.sqrt(2 / math.pi), 1e-5)), None)
    inner = net.producer(_other(scale, k)) if k else None
    if inner is None or inner.op != "Add":
        return None
    for x in inner.inputs:
        cubic = net.producer(_other(inner, x))
        if cubic is None or cubic.op != "Mul":
            continue
        c = next((n for n in cubic.inputs if _close(_scalar(net, n), 0.044715, 1e-5)), None)
        cube = net.producer(_other(cubic, c)) if c else None
        if cube is None:
            continue
        chain = [cube, cubic, inner, scale, node]
        if cube.op == "Pow" and cube.inputs[0] == x and _scalar(net, cube.inputs[1]) == 3.0:
            pass
        elif cube.op == "Mul" and x in cube.inputs:
            square = net.producer(_other(cube, x))
            if square is None or square.op != "Mul" or square.inputs != (x, x):
                continue
            chain.insert(0, square)
        else:
            continue
        found = _gelu_tail(net, x, node.outputs[0], chain)
        if found is not None:
            return _Found(found[0], ONode(node.name, "Gelu", (x,), (found[1],), (("approximate", "tanh"),)))
    return None


def _match_batchnorm(net: Net, node: ONode):
    """Conv → BatchNormalization (constants) → Conv with the normalization folded into its weight and bias."""
    if node.op != "BatchNormalization":
        return None
    conv = net.producer(node.inputs[0])
    params = [net.const(n) for n in node.inputs[1:5]]
    if conv is None or conv.op != "Conv" or any(p is None for p in params) or len(net.consumers(conv.outputs[0])) != 1:
        return None
    gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
    weight = net.const(conv.inputs[1])
    if weight is None:
        return None
    bias = net.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
    w, b = f"{node.outputs[0]}::weight", f"{node.outputs[0]}::bias"
    if any(name in dict(net.formats) for name in conv.inputs[1:]):
        log.warning("%s: BatchNormalization %r folded into a quantized Conv: its weight formats are recalibrated",
                    net.where, node.name)
    found = _Found([conv, node], dataclasses.replace(conv, inputs=(conv.inputs[0], w, b), outputs=(node.outputs[0],)))
    folded_weight, folded_bias = fold_batchnorm_params(weight, bias, mean, var, gamma, beta, node.attr("epsilon", 1e-5))
    found.const(w, folded_weight)
    found.const(b, folded_bias)
    return found


def _match_linear(net: Net, node: ONode):
    """MatMul(x, W const) [→ Add(b const)], or Gemm(x, B, C) (transB, alpha, beta folded) → hwgen Linear."""
    if node.op == "Gemm":
        weight = net.const(node.inputs[1])
        if weight is None or node.attr("transA", 0):
            return None
        w = np.asarray(weight, np.float64) * node.attr("alpha", 1.0)
        w = w.T if node.attr("transB", 0) else w
        bias = net.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if len(node.inputs) > 2 and node.inputs[2] and bias is None:
            return None
        found = _Found([node], ONode(node.name, "hwgen.Linear", (), node.outputs))
        names = [node.inputs[0], found.const(f"{node.outputs[0]}::weight", w, net,
                                             node.inputs[1] if node.attr("alpha", 1.0) == 1.0 else None)]
        if bias is not None:
            names.append(found.const(f"{node.outputs[0]}::bias",
                                     np.broadcast_to(np.asarray(bias, np.float64) * node.attr("beta", 1.0), (w.shape[1],)),
                                     net, node.inputs[2] if node.attr("beta", 1.0) == 1.0 else None))
        found.new = dataclasses.replace(found.new, inputs=tuple(names))
        return found
    if node.op != "MatMul" or net.const(node.inputs[1]) is None or net.const(node.inputs[0]) is not None:
        return None
    if net.const(node.inputs[1]).ndim != 2:
        return None
    out, names = node.outputs[0], [node.inputs[0], node.inputs[1]]
    found = _Found([node], node)
    add = _only_consumer(net, out, "Add")
    n = net.const(node.inputs[1]).shape[1]
    if add is not None:
        bias = net.const(_other(add, out) or "")
        if bias is not None and bias.size == n and bias.shape[-1:] == (n,):
            names.append(found.const(f"{add.outputs[0]}::bias", bias.reshape(n), net, _other(add, out)))
            found.matched.append(add)
            out = add.outputs[0]
    found.new = ONode(node.name, "hwgen.Linear", tuple(names), (out,))
    return found


#: Ops that only move elements; chains of them are checked by tracing element indices through them.
_SHAPE_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Slice", "Split", "Flatten")


def _shape_chain(net: Net, start: str, end: str, limit: int = 12) -> list[ONode] | None:
    """The shape-only nodes leading from ``start`` to ``end`` (first input each), or None."""
    chain, name = [], end
    while name != start:
        node = net.producer(name)
        if node is None or node.op not in _SHAPE_OPS or len(chain) >= limit:
            return None
        if any(net.const(n) is None for n in node.inputs[1:] if n):
            return None
        chain.insert(0, node)
        name = node.inputs[0]
    return chain


def _trace(net: Net, chain: list[ONode], index: np.ndarray, end: str) -> np.ndarray:
    """Where each element of ``end`` comes from: ``index`` (element numbers of the start) pushed through ``chain``."""
    values = {chain[0].inputs[0] if chain else end: index}
    for node in chain:
        outs = _evaluate(net, node, [values[node.inputs[0]]] + [net.const(n) for n in node.inputs[1:]])
        values.update(zip(node.outputs, outs))
    return np.asarray(values[end])


def _scaled(net: Net, name: str) -> tuple[str, float, list[ONode]]:
    """Walk back through Mul / Div by scalar constants: (source, factor, the nodes)."""
    factor, nodes = 1.0, []
    while True:
        node = net.producer(name)
        if node is None or node.op not in ("Mul", "Div") or len(net.consumers(name)) != 1:
            return name, factor, nodes
        const = _scalar(net, node.inputs[1]) if node.op == "Div" else next(
            (v for v in (_scalar(net, n) for n in node.inputs) if v is not None), None)
        if const is None or (node.op == "Div" and const == 0):
            return name, factor, nodes
        factor *= 1 / const if node.op == "Div" else const
        nodes.append(node)
        name = node.inputs[0] if node.op == "Div" or _scalar(net, node.inputs[1]) is not None else node.inputs[1]


def _match_attention(net: Net, node: ONode):
    """timm's attention: packed qkv Linear → Reshape → Transpose → Split/Slice/Gather → scale → MatMul → Softmax
    → MatMul → Transpose → Reshape, becomes three Linears (q, k, v) and one multi-head Attention.

    Every shape-only chain is checked by tracing element indices through it, so any arrangement of
    Reshape/Transpose/Split/Slice/Gather/Squeeze that selects the same elements matches — including
    torch's nn.MultiheadAttention, whose Transposes around the projections only move the batch axis
    of size 1 (its output projection, a Linear on [T, D], is absorbed and re-emitted on [1, T, D]).
    """
    if node.op != "Softmax" or node.attr("axis", -1) not in (-1, len(net.shape(node.inputs[0])) - 1):
        return None
    scores, factor, scale_nodes = _scaled(net, node.inputs[0])
    qk = net.producer(scores)
    out_mm = _only_consumer(net, node.outputs[0], "MatMul")
    if qk is None or qk.op != "MatMul" or out_mm is None or out_mm.inputs[0] != node.outputs[0]:
        return None
    q_end, q_factor, q_nodes = _scaled(net, qk.inputs[0])
    k_end, k_factor, k_nodes = _scaled(net, qk.inputs[1])
    v_end = out_mm.inputs[1]
    if any(net.const(n) is not None for n in (q_end, k_end, v_end)) or len(net.shape(q_end)) != 4:
        return None
    _, heads, tokens, d = net.shape(q_end)
    dim = heads * d
    # The packed projection: follow q back to a Linear with 3·D outputs.
    packed = q_end
    while net.producer(packed) is not None and net.producer(packed).op in _SHAPE_OPS:
        packed = net.producer(packed).inputs[0]
    linear = net.producer(packed)
    packed_shape = net.shape(packed)
    if (linear is None or linear.op != "hwgen.Linear" or packed_shape[-1] != 3 * dim
            or math.prod(packed_shape) != tokens * 3 * dim):
        return None
    # Its input: [1, T, D], or (nn.MultiheadAttention) a Transpose of it that keeps the element order.
    x, x_chain = linear.inputs[0], []
    if net.shape(x) != (1, tokens, dim):
        source = x
        while net.producer(source) is not None and net.producer(source).op in ("Transpose", "Reshape"):
            source = net.producer(source).inputs[0]
            if net.shape(source) == (1, tokens, dim):
                break
        x_chain = _shape_chain(net, source, x) if net.shape(source) == (1, tokens, dim) else None
        order = np.arange(tokens * dim, dtype=np.int64).reshape(1, tokens, dim)
        if not x_chain or not np.array_equal(_trace(net, x_chain, order, x).ravel(), order.ravel()):
            return None
        x = source
    chains = [_shape_chain(net, packed, end) for end in (q_end, k_end, v_end)]
    if any(c is None for c in chains):
        return None
    index = np.arange(tokens * 3 * dim, dtype=np.int64).reshape(packed_shape)
    t, h, j = np.meshgrid(np.arange(tokens), np.arange(heads), np.arange(d), indexing="ij")
    base = (t * 3 * dim + h * d + j).transpose(1, 0, 2)[None]  # [1, H, T, d]
    want = (base, (base + dim).transpose(0, 1, 3, 2), base + 2 * dim)  # q, kᵀ, v
    for chain, end, expected in zip(chains, (q_end, k_end, v_end), want):
        got = _trace(net, chain, index, end)
        if got.shape != expected.shape or not np.array_equal(got, expected):
            return None
    total = factor * q_factor * k_factor
    if not _close(total, d**-0.5, 1e-5):
        return None
    # The output: Transpose/Reshape back to [1, T, D] (or [T, D]) with head h in columns h·d … h·d + d − 1.
    out, out_chain = out_mm.outputs[0], []
    while net.shape(out) not in ((1, tokens, dim), (tokens, dim)):
        nxt = net.consumers(out)
        if len(nxt) != 1 or nxt[0].op not in ("Transpose", "Reshape") or len(out_chain) >= 4:
            return None
        out_chain.append(nxt[0])
        out = nxt[0].outputs[0]
    heads_index = np.arange(dim * tokens, dtype=np.int64).reshape(net.shape(out_mm.outputs[0]))
    got = _trace(net, out_chain, heads_index, out)
    if not np.array_equal(got.reshape(tokens, dim), heads_index.reshape(heads, tokens, d).transpose(1, 0, 2)
                          .reshape(tokens, dim)):
        return None
    # [T, D] (nn.MultiheadAttention): the output projection and the layout back to [1, T, N] come along.
    proj, proj_chain = None, []
    if net.shape(out) == (tokens, dim):
        proj = _only_consumer(net, out, "hwgen.Linear")
        if proj is None or proj.inputs[0] != out:
            return None
        end = proj.outputs[0]
        width = net.shape(end)[-1]
        while net.shape(end) != (1, tokens, width):
            nxt = net.consumers(end)
            if len(nxt) != 1 or nxt[0].op not in ("Transpose", "Reshape") or len(proj_chain) >= 4:
                return None
            proj_chain.append(nxt[0])
            end = nxt[0].outputs[0]
        order = np.arange(tokens * width, dtype=np.int64).reshape(tokens, width)
        if not np.array_equal(_trace(net, proj_chain, order, end).ravel(), order.ravel()):
            return None
        out_chain.append(proj)
        out_chain.extend(proj_chain)
    chain_nodes = {id(n): n for c in chains for n in c}
    matched = (list(chain_nodes.values()) + scale_nodes + q_nodes + k_nodes + [qk, node, out_mm] + out_chain
               + x_chain)
    inside = {id(n) for n in matched} | {id(linear)}
    if any(id(r) not in inside for r in net.consumers(packed)) or packed in net.outputs:
        return None
    final = out_chain[-1] if out_chain else out_mm
    for n in matched:  # nothing outside the pattern may read its intermediate values
        if n is not final and any(id(r) not in inside for o in n.outputs for r in net.consumers(o)):
            return None
    matched.append(linear)
    weight = np.asarray(net.const(linear.inputs[1]), np.float64)
    bias = np.asarray(net.const(linear.inputs[2]), np.float64) if len(linear.inputs) > 2 else None
    found = _Found(matched, ())
    new = []
    stem = re.sub(r"_output_0$", "", packed)  # names of the new q, k, v tensors
    for part, role in enumerate("qkv"):
        cols = slice(part * dim, (part + 1) * dim)
        # A slice of a quantized tensor keeps its (per-tensor) format.
        names = [x, found.const(f"{stem}::{role}_weight", weight[:, cols], net, linear.inputs[1])]
        if bias is not None:
            names.append(found.const(f"{stem}::{role}_bias", bias[cols], net, linear.inputs[2]))
        new.append(ONode(f"{linear.name}::{role}", "hwgen.Linear", tuple(names), (f"{stem}::{role}",)))
    found.shapes.update({f"{stem}::{r}": (1, tokens, dim) for r in "qkv"})
    if proj is None:
        new.append(ONode(node.name, "hwgen.Attention", tuple(f"{stem}::{r}" for r in "qkv"), (out,), (("heads", heads),)))
    else:
        attn = f"{stem}::attention"
        new.append(ONode(node.name, "hwgen.Attention", tuple(f"{stem}::{r}" for r in "qkv"), (attn,), (("heads", heads),)))
        new.append(dataclasses.replace(proj, inputs=(attn, *proj.inputs[1:]), outputs=(final.outputs[0],)))
        found.shapes[attn] = (1, tokens, dim)
    found.new = tuple(new)
    return found


def _match_tokens(net: Net, node: ONode):
    """Conv output [1, C, H, W] → Reshape [1, C, H·W] | Flatten(2) → Transpose(0, 2, 1) → hwgen Tokens (patch embedding)."""
    if node.op != "Transpose" or tuple(node.attr("perm", ())) != (0, 2, 1):
        return None
    flat = net.producer(node.inputs[0])
    if flat is None or flat.op not in ("Reshape", "Flatten") or len(net.consumers(flat.outputs[0])) != 1:
        return None
    source = flat.inputs[0]
    shape = net.shapes.get(source, ())
    if len(shape) != 4 or shape[0] != 1 or net.shapes.get(flat.outputs[0]) != (1, shape[1], shape[2] * shape[3]):
        return None
    return _Found([flat, node], ONode(node.name, "hwgen.Tokens", (source,), node.outputs))


fuse_layernorm = _fixpoint(_match_layernorm)
fuse_gelu_erf = _fixpoint(_match_gelu_erf)
fuse_gelu_tanh = _fixpoint(_match_gelu_tanh)
fuse_batchnorm = _fixpoint(_match_batchnorm)
fuse_linear = _fixpoint(_match_linear)
fuse_attention = _fixpoint(_match_attention)
fuse_tokens = _fixpoint(_match_tokens)


# ------------------------------------------------------------------------------------- 4. to IR

_SANITIZE = re.compile(r"[^A-Za-z0-9_.]+")


@dataclass
class _Builder:
    net: Net
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # ONNX tensor → IR tensor
    formats: dict[str, QFmt] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ir_name(self, onnx_name: str) -> str:
        # "/blocks.0/mlp/fc1/Add_output_0" → "blocks.0_mlp_fc1_Add": readable in the spec and the report.
        base = _SANITIZE.sub("_", re.sub(r"_output_0$", "", onnx_name)).strip("_.") or "t"
        name, i = base, 1
        while name in self.tensors:
            i += 1
            name = f"{base}_{i}"
        return name

    def act(self, name: str) -> str:
        if name not in self.names:
            raise _Skip(f"input {name!r} comes from a node that was not imported")
        return self.names[name]

    def shape(self, name: str) -> tuple[int, ...]:
        shape = self.net.shape(name)
        if not shape or shape[0] != 1:
            raise _Skip(f"tensor {name!r} must keep batch dimension 1 first, not shape {shape}")
        return shape[1:]

    def const(self, onnx_name: str, ir_name: str, value: np.ndarray | None = None) -> str:
        value = self.net.const(onnx_name) if value is None else value
        if ir_name in self.tensors:
            raise _Skip(f"weight name {ir_name!r} is already used")
        self.tensors[ir_name] = Tensor(ir_name, np.shape(value), value=np.asarray(value, np.float64))
        fmt = dict(self.net.formats).get(onnx_name)
        if fmt is not None:
            self.formats[ir_name] = fmt
        return ir_name

    def add(self, op: str, onnx_out: str, operands: list[str], consts: list[tuple[str, str, np.ndarray | None]],
            attrs: dict[str, Any] | None = None) -> str:
        name = self.ir_name(onnx_out)
        const_names = [self.const(src, f"{name}.{role}", value) for role, src, value in consts]
        self.tensors[name] = Tensor(name, self.shape(onnx_out))
        self.nodes.append(Node(name, op, tuple(operands) + tuple(const_names), (name,), attrs or {}))
        self.names[onnx_out] = name
        fmt = dict(self.net.formats).get(onnx_out)
        if fmt is not None:
            self.formats[name] = fmt
        return name


class _Skip(Exception):
    """A node that cannot become an IR node: why."""


def _f32(value: float) -> float:
    """A float32 attribute as the shortest decimal that reads back to it (1e-06, not 9.999999974752427e-07)."""
    return float(str(np.float32(value)))


def _last_axis(b: _Builder, node: ONode, axis: int) -> None:
    rank = len(b.net.shape(node.inputs[0]))
    if axis not in (-1, rank - 1):
        raise _Skip(f"axis must be the last ({rank - 1} or -1), not {axis}")


def _ir_linear(b: _Builder, node: ONode) -> None:
    x, w = node.inputs[0], node.inputs[1]
    consts = [("weight", w, None)] + ([("bias", node.inputs[2], None)] if len(node.inputs) > 2 else [])
    b.add("Linear", node.outputs[0], [b.act(x)], consts)


def _ir_relu(b: _Builder, node: ONode) -> None:
    b.add("ReLU", node.outputs[0], [b.act(node.inputs[0])], [])


def _ir_clip(b: _Builder, node: ONode) -> None:
    bounds = []
    for index in (1, 2):
        name = node.inputs[index] if len(node.inputs) > index else ""
        value = _scalar(b.net, name) if name else None
        if name and value is None:
            raise _Skip(f"bound {name!r} must be a scalar constant")
        bounds.append(value)
    lo, hi = bounds
    if lo == 0.0 and hi is None:
        _ir_relu(b, node)
    elif lo is not None and hi is not None:
        b.add("Clip", node.outputs[0], [b.act(node.inputs[0])], [], {"min": _f32(lo), "max": _f32(hi)})
    else:
        raise _Skip(f"Clip must have both bounds (or be Clip(0, —), a ReLU), not Clip({lo}, {hi})")


def _ir_layernorm(b: _Builder, node: ONode) -> None:
    _last_axis(b, node, node.attr("axis", -1))
    x = node.inputs[0]
    dim = b.net.shape(x)[-1]
    gamma = b.net.const(node.inputs[1])
    beta = b.net.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.zeros(dim)
    if gamma is None or beta is None:
        raise _Skip("scale and bias must be constants")
    b.add("LayerNorm", node.outputs[0], [b.act(x)],
          [("gamma", node.inputs[1], np.broadcast_to(gamma, (dim,))), ("beta", node.inputs[2] if len(node.inputs) > 2 else "",
                                                                       np.broadcast_to(beta, (dim,)))],
          {"eps": _f32(node.attr("epsilon", 1e-5))})


def _ir_gelu(b: _Builder, node: ONode) -> None:
    approximate = node.attr("approximate", "none")
    b.add("GELU", node.outputs[0], [b.act(node.inputs[0])], [], {"approximate": "tanh" if approximate == "tanh" else "erf"})


def _ir_softmax(b: _Builder, node: ONode) -> None:
    _last_axis(b, node, node.attr("axis", -1))
    b.add("Softmax", node.outputs[0], [b.act(node.inputs[0])], [])


def _ir_add(b: _Builder, node: ONode) -> None:
    a, c = node.inputs
    if b.net.const(a) is not None and b.net.const(c) is not None:
        raise _Skip("Add of two constants must have been folded")
    if b.net.const(a) is not None or b.net.const(c) is not None:
        x, value = (c, a) if b.net.const(a) is not None else (a, c)
        shape = b.net.shape(x)
        constant = np.asarray(b.net.const(value), np.float64)
        try:
            full = np.broadcast_to(constant, shape)
        except ValueError:
            raise _Skip(f"constant must broadcast to the input's shape {shape}, not {constant.shape}") from None
        if np.broadcast_shapes(constant.shape, shape) != shape:
            raise _Skip(f"constant must not widen the input's shape {shape}, not {constant.shape}")
        b.add("AddConstant", node.outputs[0], [b.act(x)], [("value", value, full[0])])
        return
    if b.net.shape(a) != b.net.shape(c):
        raise _Skip(f"inputs must have the same shape (no broadcasting), not {b.net.shape(a)} and {b.net.shape(c)}")
    b.add("Add", node.outputs[0], [b.act(a), b.act(c)], [])


def _ir_matmul(b: _Builder, node: ONode) -> None:
    a, c = node.inputs
    if b.net.const(a) is not None:
        raise _Skip("the first operand must be an activation, not a constant")
    sa, sc = b.shape(a), b.shape(c)
    if len(sa) != 2 or len(sc) != 2:
        raise _Skip(f"activation × activation MatMul must be of two matrices (T, K) · (K, N) without batch,"
                    f" not {sa} · {sc}; multi-head attention is fused only in timm's form")
    b.add("MatMul", node.outputs[0], [b.act(a), b.act(c)], [])


def _ir_conv(b: _Builder, node: ONode) -> None:
    weight = b.net.const(node.inputs[1])
    if weight is None or weight.ndim != 4:
        raise _Skip("weight must be a constant 4-D kernel (2-D convolution)")
    if any(d != 1 for d in node.attr("dilations", (1, 1))):
        raise _Skip(f"dilations must be 1, not {node.attr('dilations')}")
    if node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _Skip(f"auto_pad must be NOTSET or VALID, not {node.attr('auto_pad')}; export with explicit pads")
    pads = tuple(node.attr("pads", (0, 0, 0, 0)))
    if pads[:2] != pads[2:]:
        raise _Skip(f"pads must be symmetric (top = bottom, left = right), not {pads}")
    consts = [("weight", node.inputs[1], None)]
    if len(node.inputs) > 2 and node.inputs[2]:
        consts.append(("bias", node.inputs[2], None))
    attrs = {"stride": tuple(int(s) for s in node.attr("strides", (1, 1))), "padding": tuple(int(p) for p in pads[:2]),
             "groups": int(node.attr("group", 1))}
    b.add("Conv2d", node.outputs[0], [b.act(node.inputs[0])], consts, attrs)


def _ir_quant(b: _Builder, node: ONode) -> None:
    fmt, notes = quant_format(b.net, node)
    b.notes.extend(notes)
    x = node.inputs[0]
    source = b.act(x)
    producer = next((n for n in b.nodes if source in n.outputs), None)
    sole = len(b.net.consumers(x)) == 1 and x not in b.net.outputs
    if sole and producer is not None and producer.op == "ReLU":
        # Quant(ReLU(v)) = ReLU(Quant(v)) for every rounding mode (monotone, 0 ↦ 0, the lower bound ≤ 0):
        # the format goes on the wide op's output before the ReLU, so the value is rounded once, as QONNX does.
        inner_name = producer.inputs[0]
        inner = next((n for n in b.nodes if inner_name in n.outputs), None)
        onnx_inner = [k for k, v in b.names.items() if v == inner_name]
        if (inner is not None and inner.op in ("Linear", "MatMul", "Add") and inner_name not in b.formats
                and len(onnx_inner) == 1 and len(b.net.consumers(onnx_inner[0])) == 1
                and onnx_inner[0] not in b.net.outputs):
            b.formats[inner_name] = fmt
            b.names[node.outputs[0]] = source
            return
    if sole and (producer is None or producer.op in ("Linear", "MatMul", "Add")) and source not in b.formats:
        # The producer's output (an input, or the Requantize the quantizer puts after a wide op) takes the format.
        b.formats[source] = fmt
        b.names[node.outputs[0]] = source
        return
    b.add("Requantize", node.outputs[0], [source], [])
    b.formats[b.names[node.outputs[0]]] = fmt


def _ir_attention(b: _Builder, node: ONode) -> None:
    b.add("Attention", node.outputs[0], [b.act(n) for n in node.inputs], [], {"heads": int(node.attr("heads"))})


def _ir_pool(b: _Builder, node: ONode) -> None:
    x = node.inputs[0]
    if len(b.net.shape(x)) != 4:
        raise _Skip(f"input must be a 4-D [1, C, H, W] feature map, not shape {b.net.shape(x)}")
    if node.attr("ceil_mode", 0) or any(d != 1 for d in node.attr("dilations", (1, 1))):
        raise _Skip("ceil_mode must be 0 and dilations 1")
    if node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _Skip(f"auto_pad must be NOTSET or VALID, not {node.attr('auto_pad')}; export with explicit pads")
    pads = tuple(node.attr("pads", (0, 0, 0, 0)))
    if pads[:2] != pads[2:]:
        raise _Skip(f"pads must be symmetric, not {pads}")
    if node.op == "AveragePool" and any(pads) and not node.attr("count_include_pad", 0):
        raise _Skip("padded AveragePool must count the padding (count_include_pad = 1)")
    attrs = {"kernel": tuple(int(k) for k in node.attr("kernel_shape")),
             "stride": tuple(int(v) for v in node.attr("strides", (1, 1))), "padding": tuple(int(v) for v in pads[:2])}
    b.add("MaxPool2d" if node.op == "MaxPool" else "AvgPool2d", node.outputs[0], [b.act(x)], [], attrs)


def _ir_global_pool(b: _Builder, node: ONode) -> None:
    x = node.inputs[0]
    if len(b.net.shape(x)) != 4:
        raise _Skip(f"input must be a 4-D [1, C, H, W] feature map, not shape {b.net.shape(x)}")
    if node.op == "ReduceMean":
        axes = node.attr("axes") if len(node.inputs) < 2 else tuple(b.net.const(node.inputs[1]).ravel())
        if axes is None or sorted(int(a) % 4 for a in axes) != [2, 3] or not node.attr("keepdims", 1):
            raise _Skip("ReduceMean must be over axes 2 and 3 with keepdims (a global average pool)"
                        " or part of a LayerNorm pattern")
    b.add("GlobalAvgPool", node.outputs[0], [b.act(x)], [])


def _ir_flatten(b: _Builder, node: ONode) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape, out_shape = b.net.shape(x), b.net.shape(out)
    if node.op == "Flatten" and node.attr("axis", 1) != 1:
        raise _Skip(f"axis must be 1 (keep the batch), not {node.attr('axis')}")
    if len(out_shape) != 2 or out_shape[0] != 1 or len(shape) < 3:
        raise _Skip(f"{node.op} is supported as a flatten of a feature map to [1, N] or inside a recognised pattern"
                    f" (attention, patch embedding), not {shape} → {out_shape}")
    b.add("Flatten", out, [b.act(x)], [])


def _ir_tokens(b: _Builder, node: ONode) -> None:
    b.add("Tokens", node.outputs[0], [b.act(node.inputs[0])], [])


def _ir_concat(b: _Builder, node: ONode) -> None:
    if len(node.inputs) != 2 or b.net.const(node.inputs[0]) is None or b.net.const(node.inputs[1]) is not None:
        raise _Skip("only the class-token Concat (a constant [1, 1, D] first, then the tokens) is supported")
    token, x = node.inputs
    shape = b.net.shape(x)
    if node.attr("axis") not in (1, -2) or len(shape) != 3 or b.net.shape(token) != (1, 1, shape[2]):
        raise _Skip(f"class-token Concat must join [1, 1, D] and [1, T, D] on axis 1, not {b.net.shape(token)} and {shape}")
    b.add("ClassToken", node.outputs[0], [b.act(x)], [("token", token, np.asarray(b.net.const(token))[0])])


def _ir_gather(b: _Builder, node: ONode) -> None:
    x, index = node.inputs
    value = b.net.const(index)
    shape = b.net.shape(x)
    if value is None or value.ndim != 0 or node.attr("axis", 0) != 1 or len(shape) != 3:
        raise _Skip("only Gather of one token (a scalar index on axis 1 of [1, T, D]) is supported")
    b.add("SelectRow", node.outputs[0], [b.act(x)], [], {"index": int(value) % shape[1]})


#: ONNX op (after fusion) → how it becomes IR nodes.
_TO_IR: dict[str, Callable[[_Builder, ONode], None]] = {
    "hwgen.Linear": _ir_linear,
    "hwgen.Attention": _ir_attention,
    "Relu": _ir_relu,
    "Clip": _ir_clip,
    "LayerNormalization": _ir_layernorm,
    "Gelu": _ir_gelu,
    "Softmax": _ir_softmax,
    "Add": _ir_add,
    "MatMul": _ir_matmul,
    "Conv": _ir_conv,
    "Quant": _ir_quant,
    "IntQuant": _ir_quant,
    "MaxPool": _ir_pool,
    "AveragePool": _ir_pool,
    "GlobalAveragePool": _ir_global_pool,
    "ReduceMean": _ir_global_pool,
    "Flatten": _ir_flatten,
    "Reshape": _ir_flatten,
    "hwgen.Tokens": _ir_tokens,
    "Concat": _ir_concat,
    "Gather": _ir_gather,
}

_WHY = {
    "Erf": "not part of a recognised GELU pattern (Div(√2) → Erf → Add(1) → Mul(x) → Mul(0.5))",
    "Tanh": "not part of a recognised tanh-GELU pattern",
    "Gemm": "Gemm must have a constant B, transA = 0 and a constant C",
    "BatchNormalization": "BatchNormalization must follow a Conv with constant weights (it is folded into it)",
    **{op: "shape-only op not absorbed by a recognised pattern (timm attention: its scale must be d^-½ in total"
          " and its Reshape/Transpose/Split must select q, k, v from one packed Linear)"
       for op in ("Transpose", "Split", "Squeeze", "Unsqueeze", "Slice")},
    "Mul": "Mul of activations or by a constant is not supported outside the GELU, LayerNorm and attention patterns",
    "Div": "Div is not supported outside the GELU, LayerNorm and attention patterns",
    "BipolarQuant": "BipolarQuant (binary weights) is not supported yet",
    "FloatQuant": "FloatQuant (minifloat) has no fixed-point form",
    "Trunc": "Trunc is supported only after AveragePool, and pooling is not supported yet",
    "QuantizeLinear": "QCDQ graphs are not supported; export with brevitas.export.export_qonnx(…, dynamo=False)",
    "DequantizeLinear": "QCDQ graphs are not supported; export with brevitas.export.export_qonnx(…, dynamo=False)",
}


def to_graph(net: Net) -> tuple[Graph, tuple[tuple[str, QFmt], ...], tuple[str, ...]]:
    """Map every remaining node to IR nodes; every node that cannot be is named in one error."""
    b = _Builder(net)
    x = net.inputs[0]
    name = b.ir_name(x)
    b.tensors[name] = Tensor(name, b.shape(x))
    b.names[x] = name
    fmt = dict(net.formats).get(x)
    if fmt is not None:
        b.formats[name] = fmt
    for node in net.nodes:
        convert = _TO_IR.get(node.op) if node.domain in ("", "ai.onnx") + QONNX_DOMAINS else None
        try:
            if convert is None:
                raise _Skip(_WHY.get(node.op, "op is not supported"))
            convert(b, node)
        except _Skip as why:
            b.problems.append(f"node {node.name!r} ({node.op}): {why}")
            for out in node.outputs:  # a stand-in, so that later nodes are still checked (and reported)
                if out not in b.names and out in net.shapes:
                    b.names[out] = b.ir_name(out)
                    b.tensors[b.names[out]] = Tensor(b.names[out], net.shapes[out])
    if b.problems:
        shown = b.problems[:20]
        more = f"; and {len(b.problems) - 20} more" if len(b.problems) > 20 else ""
        raise OnnxImportError(f"{net.where}: {len(b.problems)} node{'s' if len(b.problems) > 1 else ''} cannot be"
                              f" imported: " + "; ".join(shown) + more)
    outputs = []
    for out in net.outputs:
        if out not in b.names:
            net.fail(f"output {out!r} must be computed from the input, not be a constant")
        outputs.append(b.names[out])
    graph = Graph(
        name=_SANITIZE.sub("-", Path(net.where).stem).strip("-") or "onnx-model",
        inputs=(name,),
        outputs=tuple(outputs),
        tensors=tuple(b.tensors.values()),
        nodes=tuple(b.nodes),
        input_distributions=(InputDistribution(name),),
        description=f"imported from {net.where} (ONNX opset {net.opset})",
    )
    try:
        verify(graph)
    except ValueError as exc:
        net.fail(f"the imported graph is not valid: {exc}")
    return graph, tuple(sorted(b.formats.items())), net.notes + tuple(b.notes)


# ---------------------------------------------------------------------------------------- driver

#: The import, in order: each pass Net → Net.
PASSES: list[tuple[str, Callable[[Net], Net]]] = [
    # Shapes first: folding reads them for Shape nodes.
    ("infer_shapes", infer_shapes),
    # Constant/Shape/Gather/Unsqueeze/Concat/Reshape of constants become constants.
    ("fold_constants", fold_constants),
    # Shapes again: folding made Reshape targets constant.
    ("infer_shapes_again", infer_shapes),
    # Identity, Dropout and shape-keeping reshapes disappear so patterns see through them.
    ("drop_aliases", drop_aliases),
    # Weight quantizers become quantized constants with formats before any pattern reads weights.
    ("fold_weight_quant", fold_weight_quant),
    # Again: what read a weight Quant (a Transpose of the weight) is constant now.
    ("fold_constants_again", fold_constants),
    ("fuse_layernorm", fuse_layernorm),
    ("fuse_gelu_erf", fuse_gelu_erf),
    ("fuse_gelu_tanh", fuse_gelu_tanh),
    ("fuse_batchnorm", fuse_batchnorm),
    ("fuse_linear", fuse_linear),
    # After Linear: attention starts at the packed qkv Linear.
    ("fuse_attention", fuse_attention),
    ("fuse_tokens", fuse_tokens),
]


def load_onnx(path: str | Path, *, round_scales: bool = False) -> Model:
    """Import an ONNX/QONNX file into a verified float graph plus the exact formats of its Quant nodes."""
    net = read_net(path, round_scales=round_scales)
    try:
        for name, step in PASSES:
            net = step(net)
            log.info("onnx pass %s: %d nodes", name, len(net.nodes))
        graph, formats, notes = to_graph(net)
    except OnnxImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnx's own checks raise many types; keep the one-line contract
        raise OnnxImportError(f"{net.where}: cannot be imported: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    return Model(graph, formats, str(path), notes=notes)


# ---------------------------------------------------------------------------------- spec writer

_SPEC_KEYS = {"LayerNorm": ("eps",), "Softmax": ("axis",), "GELU": ("approximate",),
              "Conv2d": ("stride", "padding", "groups"), "Attention": ("heads",), "SelectRow": ("index",),
              "Clip": ("min", "max"),
              "MaxPool2d": ("kernel", "stride", "padding"), "AvgPool2d": ("kernel", "stride", "padding")}


def to_spec(model: Model, weights_file: str = "model.npz") -> tuple[dict, dict[str, np.ndarray]]:
    """The YAML spec document and the ``.npz`` arrays that ``load_spec`` reads back to the same graph."""
    graph = model.graph
    layers = []
    arrays: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        acts = [n for n in node.inputs if not graph.tensor(n).is_constant]
        consts = [graph.tensor(n) for n in node.inputs if graph.tensor(n).is_constant]
        layer: dict[str, Any] = {"name": node.name, "op": node.op}
        layer.update({"input": acts[0]} if len(acts) == 1 else {"inputs": acts})
        for tensor in consts:
            arrays[tensor.name] = np.asarray(tensor.value, np.float64)
        if node.op == "Linear":
            layer["features"] = graph.tensor(node.outputs[0]).shape[-1]
            layer["bias"] = len(consts) > 1
        elif node.op == "Conv2d":
            weight = consts[0].shape
            layer["channels"], layer["kernel"], layer["bias"] = weight[0], [weight[2], weight[3]], len(consts) > 1
        for key in _SPEC_KEYS.get(node.op, ()):
            value = node.attr(key)
            if value is not None:
                layer[key] = list(value) if isinstance(value, tuple) else value
        layers.append(layer)
    x = graph.inputs[0]
    document = {
        "name": graph.name,
        "description": graph.description,
        "weights": weights_file,
        "inputs": {x: {"shape": list(graph.tensor(x).shape)}},
        "layers": layers,
        "outputs": list(graph.outputs),
    }
    if model.formats:
        document["formats"] = {name: str(fmt) for name, fmt in model.formats}
    return document, arrays


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` of float64 arrays, sorted by name, byte-identical for the same arrays."""
    return npz_bytes({name: np.asarray(arrays[name], dtype="<f8") for name in sorted(arrays)})


def spec_files(model: Model, source: str) -> dict[str, bytes]:
    """``model.yaml`` and ``model.npz`` of an imported model, checked to read back (``load_spec``) first."""
    import tempfile

    import yaml

    from hwgen.frontend.spec import load_spec

    document, arrays = to_spec(model)
    notes = "".join(f"# {note}\n" for note in model.notes)
    text = (f"# Written by hwgen import from {source}: what hwgen understood, to read and edit.\n"
            f"# Build it (from this folder) with: hwgen build --model model.yaml --board BOARD\n{notes}"
            + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120))
    files = {"model.yaml": text.encode("utf-8"), "model.npz": _npz_bytes(arrays)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        try:
            load_spec(Path(tmp) / "model.yaml")
        except ValueError as exc:
            raise OnnxImportError(f"{source}: the imported model cannot be written as a spec: {exc}") from None
    return files


def onnxruntime_outputs(path: str | Path, graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | str:
    """onnxruntime's float32 outputs of the file ``path`` on ``inputs`` (``graph``'s input names, no batch axis),
    keyed by ``graph``'s output names; or why they could not be computed (one line).

    onnxruntime is a development dependency: without it, or for a QONNX file (onnxruntime has no ``Quant``),
    the reason is returned instead and nothing fails. One thread, so the same file gives the same numbers.
    """
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed"
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    if any(node.domain in QONNX_DOMAINS for node in proto.graph.node):
        return "onnxruntime cannot run QONNX's quantizer nodes"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (name,) = [i.name for i in session.get_inputs()]
        (value,) = [np.asarray(inputs[n], dtype=np.float32)[None] for n in graph.inputs]
        got = session.run(None, {name: value})
    except Exception as error:  # noqa: BLE001 - the report says why, the build goes on
        return f"onnxruntime failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    if len(got) != len(graph.outputs):
        return f"onnxruntime gave {len(got)} outputs, the imported graph has {len(graph.outputs)}"
    return {out: np.asarray(value, dtype=np.float64)[0] for out, value in zip(graph.outputs, got)}
