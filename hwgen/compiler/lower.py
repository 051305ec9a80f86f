# SPDX-License-Identifier: Apache-2.0
"""``compile(qgraph, hw)``: a quantized graph to a Program and its memory image.

Three steps, in order: fuse nodes into descriptor-sized groups (a Linear, MatMul or Conv2d with its
requantize, ReLU or GELU and residual Add or AddConstant; a standalone Add / AddConstant / ReLU /
GELU / Requantize on the bypass path; a ClassToken's row 0, a BYPASS copy of the constant token; a
LayerNorm or a Softmax alone; an Attention alone; a MoEGate with its Requantize, Softmax and TopK; an
Expert with its Requantize and a residual Add with its Requantize), place every buffer in the image,
then encode one LINEAR, CONV, LAYERNORM, SOFTMAX, GATE_TOPK or EXPERT_FFN descriptor per group, or the
QK_SOFTMAX_STATS and AV pair of an Attention (its Q, K and V projections are ordinary LINEAR groups
before it). Layers that cannot fit
the hardware (formats wider than the containers or the accumulator, rows or weight columns larger
than the on-chip buffers, fields out of range) are refused with a message naming them.

Ops that only move rows take no descriptor: their tensors are views of another's bytes
(:class:`_Homes`). ``Tokens`` of a feature map is the map itself read as rows; ``Flatten`` of a (C, 1, 1)
map or of one row is that row; ``SelectRow(i)`` is row ``i`` of its input; a ``ClassToken``'s input lives in rows 1…T of its output, so the producer of
the tokens writes them in place and one 1-row BYPASS descriptor writes the class token into row 0 on
every run. A LayerNorm read only by a SelectRow runs on that row alone.

A feature map read by a padded Conv2d lies in DDR with a zero border (:func:`_borders`, docs/isa.md §4):
the CONVs reading it start inside the border, the CONV writing it (and one reading it as its residual)
skips the border after each grid row (``out_skip``, ``res_skip``); grouped kernels are packed dense and
block-diagonal.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from hwgen.compiler.engines import estimate_cycles
from hwgen.compiler.layout import (
    HWC, ROWS, MemoryImage, Region, RegionKind, interior, layout_rows, pack_rows, pack_tiles, pack_vector, rows_of,
    tensor_rows,
)
from hwgen.compiler.maxpool import WEIGHT_FORMAT, MaxStep, maxpool_problem, maxpool_steps, step_descriptor, step_weights
from hwgen.golden import moe as golden_moe
from hwgen.golden.exact import attention_formats, conv_dense_weight, conv_weight_matrix, pair
from hwgen.isa import (
    OPCODE_AV, OPCODE_LAYERNORM, OPCODE_QK_SOFTMAX_STATS, OPCODE_SOFTMAX, STATS_ENTRY_BYTES, AttentionDescriptor,
    ConvDescriptor, ExpertFfnDescriptor, Flag, GateTopkDescriptor, Limits, LinearDescriptor, MoeFlag, Program, Requant,
    RowDescriptor, check_descriptor,
)
from hwgen.hwparams import HwParams
from hwgen.ir import Graph, Node, verify
from hwgen.ir.ops import OPS
from hwgen.qfx import QFmt
from hwgen.quant.rewrite import LOWERED_OPS
from hwgen.units import ROW_MAX, UnitFormats, attention_problem, layernorm_config, moe_problem, row_units_problem

__all__ = ["compile_graph", "hardware_problem", "SUPPORTED_OPS"]

log = logging.getLogger(__name__)

#: Ops the compiler lowers; every other IR op is refused as not supported yet.
SUPPORTED_OPS = frozenset({"Linear", "MatMul", "Add", "ReLU", "Requantize", "GELU", "LayerNorm", "Softmax", "Attention",
                           "Conv2d", "Tokens", "ClassToken", "AddConstant", "SelectRow", "Flatten", "MaxPool2d",
                           "MoEGate", "TopK", "Expert"})
#: The MoE engine's scratch regions (docs/isa.md §3.10), one set every MoE layer reuses: the per-expert token
#: lists, the counts, and the hidden rows of an EXPERT_FFN with HIDDEN_DDR.
MOE_LISTS, MOE_COUNTS, MOE_HIDDEN = "moe.lists", "moe.counts", "moe.hidden"
#: Ops that run only as part of a MoE layer (with a MoEGate): a TopK or an Expert alone has no engine.
_MOE_OPS = ("TopK", "Expert")
#: Ops whose output is a view of their input's bytes: no descriptor (a ClassToken's input is a view of its output).
_VIEW_OPS = ("Tokens", "SelectRow", "Flatten")


@dataclass
class _Group:
    """The nodes one LINEAR descriptor implements and its operands (tensor names)."""

    nodes: list[Node]
    x: str
    flags: Flag
    rq1: Requant
    y: str  # tensor holding the result so far
    weight: str | None = None
    bias: str | None = None
    acc_fmt: QFmt | None = None
    weight_transposed: bool = False  # MatMul transpose_b with a constant b: the weight tensor is (N, K)
    conv: Node | None = None  # a Conv2d: one CONV descriptor gathering x's windows
    #: Whether later nodes may fuse into the descriptor: not for a ClassToken's row-0 copy, whose output's
    #: other rows another descriptor writes.
    fusable: bool = True

    @property
    def weight_key(self) -> str | None:
        """Where the weight tiles are placed: a constant used both ways is packed twice."""
        return f"{self.weight}.T" if self.weight_transposed else self.weight
    residual: str | None = None
    y_shift: int = 0
    r_shift: int = 0
    rq2: Requant | None = None
    descriptor: LinearDescriptor | ConvDescriptor | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return " + ".join(node.name for node in self.nodes)


@dataclass
class _NodeGroup:
    """One node alone: its descriptor(s) read ``x`` and write ``y``."""

    node: Node
    x: str
    y: str

    @property
    def nodes(self) -> list[Node]:
        return [self.node]

    @property
    def label(self) -> str:
        return self.node.name


@dataclass
class _RowGroup(_NodeGroup):
    """One LayerNorm or Softmax node: a LAYERNORM or SOFTMAX descriptor.

    With ``row`` set, a LayerNorm read only by a SelectRow: it runs on row ``row`` of ``x`` alone and
    writes the SelectRow's output ``y`` (the LayerNorm's whole output is never materialized).
    """

    row: int | None = None
    select: Node | None = None

    @property
    def nodes(self) -> list[Node]:
        return [self.node] + ([self.select] if self.select is not None else [])

    @property
    def label(self) -> str:
        return " + ".join(node.name for node in self.nodes)


@dataclass
class _AttentionGroup(_NodeGroup):
    """One Attention node (``x`` is q): a QK_SOFTMAX_STATS and an AV descriptor over all its heads."""

    @property
    def scores(self) -> str:
        return f"{self.node.name}.scores"

    @property
    def stats(self) -> str:
        return f"{self.node.name}.stats"


@dataclass
class _MaxPoolGroup(_NodeGroup):
    """One MaxPool2d: a CONV per pairwise-maximum step (:mod:`hwgen.compiler.maxpool`), through scratch maps."""

    steps: list[MaxStep] = field(default_factory=list)


@dataclass
class _GateGroup(_NodeGroup):
    """A MoEGate with its Requantize, Softmax and TopK: one GATE_TOPK. ``y`` is the scores (``top``)."""

    requantize: Node = None
    softmax: Node = None
    topk: Node = None

    @property
    def nodes(self) -> list[Node]:
        return [self.node, self.requantize, self.softmax, self.topk]

    @property
    def label(self) -> str:
        return " + ".join(node.name for node in self.nodes)

    @property
    def probs(self) -> str:
        return self.softmax.outputs[0]

    @property
    def indices(self) -> str:
        return self.topk.outputs[1]

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every tensor the descriptor writes: the probabilities, the scores and the indices."""
        return (self.probs, self.y, self.indices)


@dataclass
class _ExpertGroup(_NodeGroup):
    """An Expert with its Requantize, and a residual Add with its Requantize when one follows: one EXPERT_FFN."""

    gate: _GateGroup = None
    requantize: Node = None
    add: Node | None = None
    add_requantize: Node | None = None
    residual: str | None = None
    y_shift: int = 0
    r_shift: int = 0
    rq2: Requant | None = None

    @property
    def nodes(self) -> list[Node]:
        return [n for n in (self.node, self.requantize, self.add, self.add_requantize) if n is not None]

    @property
    def label(self) -> str:
        return " + ".join(node.name for node in self.nodes)


def _descriptor_count(group) -> int:
    if isinstance(group, _MaxPoolGroup):
        return len(group.steps)
    return 2 if isinstance(group, _AttentionGroup) else 1


class _Fuser:
    """Greedy fusion in graph order; a tensor is materialized in DDR exactly when a group ends on it."""

    def __init__(self, graph: Graph, hw: HwParams) -> None:
        self.graph = graph
        self.hw = hw
        self.units: UnitFormats = hw.unit_formats()
        self.materialized: list[str] = list(graph.inputs)
        self.grouped: set[str] = set()
        self.gates: list[_GateGroup] = []  # the MoE gates so far: an Expert reads one's scores and indices

    def fmt(self, name: str) -> QFmt:
        return self.graph.tensor(name).fmt

    def sole_consumer(self, name: str) -> Node | None:
        """The one node reading ``name``, if it is read once and is not a graph output."""
        consumers = self.graph.consumers(name)
        if len(consumers) != 1 or name in self.graph.outputs:
            return None
        return consumers[0]

    def take(self, group: _Group, node: Node) -> None:
        group.nodes.append(node)
        self.grouped.add(node.name)

    def groups(self) -> list[_Group]:
        groups = []
        for node in self.graph.nodes:
            if node.name in self.grouped:
                continue
            if node.op in _VIEW_OPS:
                self.grouped.add(node.name)
                self.materialized.append(node.outputs[0])
                continue
            group = self.start(node)
            if isinstance(group, _GateGroup):
                self.gates.append(group)
            self.extend(group)
            self.materialized += list(getattr(group, "outputs", (group.y,)))
            groups.append(group)
        return groups

    def need_fmt(self, name: str, fmt: QFmt, node: Node, role: str, field_name: str) -> None:
        if self.fmt(name) != fmt:
            raise ValueError(
                f"{role} {name!r} of {node.op} {node.name!r} must have the hardware's format {fmt}"
                f" (HwParams.{field_name}), not {self.fmt(name)}"
            )

    def start(self, node: Node) -> _Group | _RowGroup | _AttentionGroup | _MaxPoolGroup | _GateGroup | _ExpertGroup:
        x = node.inputs[0]
        if node.op == "MaxPool2d":
            problem = maxpool_problem(self.graph, node)
            if problem is not None:
                raise ValueError(problem)
            if self.fmt(x).width >= 32:
                raise ValueError(f"MaxPool2d {node.name!r} must read a format under 32 bits (b − a needs one more), "
                                 f"not {self.fmt(x)}")
            self.grouped.add(node.name)
            return _MaxPoolGroup(node, x, node.outputs[0], maxpool_steps(self.graph, node))
        if node.op == "MoEGate":
            return self.start_gate(node)
        if node.op == "Expert":
            return self.start_expert(node)
        if node.op == "TopK":  # not taken by a MoEGate's chain
            raise ValueError(f"TopK {node.name!r} must read the probabilities of a MoEGate's Softmax (one GATE_TOPK), "
                             f"not {x!r}")
        if node.op == "Attention":
            problem = attention_problem(self.hw)
            if problem is not None:
                raise ValueError(f"Attention {node.name!r} needs the attention engine: {problem}")
            for key, fmt in (("score_format", self.units.softmax_in), ("prob_format", self.units.softmax_out)):
                if node.attr(key) != str(fmt):
                    raise ValueError(f"{key} of Attention {node.name!r} must be the softmax unit's {fmt}, "
                                     f"not {node.attr(key)!r}")
            self.grouped.add(node.name)
            return _AttentionGroup(node, x, node.outputs[0])
        if node.op in ("LayerNorm", "Softmax"):
            problem = row_units_problem(self.hw)
            if problem is not None:
                raise ValueError(f"{node.op} {node.name!r} needs the {node.op} unit, which this hardware does not have: {problem}")
            units = self.units
            if node.op == "LayerNorm":
                self.need_fmt(x, units.layernorm_in, node, "input", "layernorm_int_bits")
                for name in node.inputs[1:]:
                    self.need_fmt(name, units.layernorm_param, node, "parameter", "layernorm_param_int_bits")
                self.need_fmt(node.outputs[0], units.layernorm_out, node, "output", "layernorm_out_int_bits")
            else:
                self.need_fmt(x, units.softmax_in, node, "input", "softmax_int_bits")
                self.need_fmt(node.outputs[0], units.softmax_out, node, "output", "act_bits")
            self.grouped.add(node.name)
            select = self.sole_consumer(node.outputs[0])
            if node.op == "LayerNorm" and select is not None and select.op == "SelectRow":
                # Only one row of the output is read: normalize that row alone.
                self.grouped.add(select.name)
                return _RowGroup(node, x, select.outputs[0], row=select.attr("index", 0), select=select)
            return _RowGroup(node, x, node.outputs[0])
        if node.op == "ClassToken":
            token = node.inputs[1]
            self.grouped.add(node.name)
            return _Group([node], token, Flag.BYPASS, Requant.between(self.fmt(token), self.fmt(node.outputs[0])),
                          node.outputs[0], fusable=False)
        if node.op in ("Linear", "MatMul", "Conv2d"):
            acc = node.outputs[0]
            requantize = self.sole_consumer(acc)
            if requantize is None or requantize.op != "Requantize":
                raise ValueError(f"exact output {acc!r} of {node.op} {node.name!r} must feed one Requantize and nothing else")
            b = self.graph.tensor(node.inputs[1])
            group = _Group([], x, Flag(0), Requant.between(self.fmt(acc), self.fmt(requantize.outputs[0])),
                           requantize.outputs[0], weight=b.name, acc_fmt=self.fmt(acc))
            transposed = node.attr("transpose_b", False)
            if not b.is_constant:
                group.flags |= Flag.B_TRANSPOSED if transposed else Flag.B_ROWMAJOR
            group.weight_transposed = transposed and b.is_constant
            if len(node.inputs) > 2:
                group.bias = node.inputs[2]
                group.flags |= Flag.BIAS
            if node.op == "Conv2d":
                group.conv = node
            self.take(group, node)
            self.take(group, requantize)
            return group
        group = _Group([], x, Flag.BYPASS, Requant.identity(self.fmt(x)), x)
        self.take(group, node)
        if node.op == "Requantize":
            group.rq1 = Requant.between(self.fmt(x), self.fmt(node.outputs[0]))
            group.y = node.outputs[0]
        elif node.op == "ReLU":
            group.flags |= Flag.RELU1
            group.y = node.outputs[0]
        elif node.op == "GELU":
            self.add_gelu(group, node)
        elif node.op == "Add":
            self.add_residual(group, node, other=node.inputs[1])
        elif node.op == "AddConstant":
            # The constant is the residual r of a BYPASS descriptor (docs/isa.md §4: a params region in x's layout).
            self.add_residual(group, node, other=node.inputs[1])
        return group

    def extend(self, group: _Group | _RowGroup | _AttentionGroup | _MaxPoolGroup | _GateGroup | _ExpertGroup) -> None:
        if not isinstance(group, _Group) or not group.fusable:
            return
        if group.flags & Flag.RESIDUAL:
            self.maybe_relu(group, Flag.RELU2)
            return
        if not group.flags & (Flag.RELU1 | Flag.GELU):
            self.maybe_relu(group, Flag.RELU1)
        nxt = self.sole_consumer(group.y)
        if not group.flags & (Flag.RELU1 | Flag.GELU) and nxt is not None and nxt.op == "GELU":
            self.take(group, nxt)
            self.add_gelu(group, nxt)
        nxt = self.sole_consumer(group.y)
        if nxt is not None and nxt.op in ("Add", "AddConstant"):
            # A constant is always in DDR: an AddConstant fuses into its producer as the residual r.
            other = nxt.inputs[1] if nxt.inputs[0] == group.y else nxt.inputs[0]
            ready = other in self.materialized or nxt.op == "AddConstant"
            wide = self.sole_consumer(nxt.outputs[0])
            if ready and other != group.y and wide is not None and wide.op == "Requantize":
                self.take(group, nxt)
                self.add_residual(group, nxt, other)
                self.maybe_relu(group, Flag.RELU2)

    def need_moe(self, node: Node) -> None:
        problem = moe_problem(self.hw)
        if problem is not None:
            raise ValueError(f"{node.op} {node.name!r} needs the MoE engine: {problem}")

    def chain(self, node: Node, op: str, what: str) -> Node:
        """The one node of op ``op`` reading ``node``'s output, or a one-line refusal naming ``what``."""
        nxt = self.sole_consumer(node.outputs[0])
        if nxt is None or nxt.op != op:
            raise ValueError(f"{what}: output {node.outputs[0]!r} of {node.op} {node.name!r} must feed one {op} "
                             f"and nothing else")
        self.grouped.add(nxt.name)
        return nxt

    def start_gate(self, node: Node) -> _GateGroup:
        """A MoEGate → Requantize → Softmax → TopK chain: one GATE_TOPK (docs/isa.md §3.10)."""
        self.need_moe(node)
        what = f"MoEGate {node.name!r} (one GATE_TOPK)"
        self.grouped.add(node.name)
        requantize = self.chain(node, "Requantize", what)
        softmax = self.chain(requantize, "Softmax", what)
        consumers = self.graph.consumers(softmax.outputs[0])
        topk = next((c for c in consumers if c.op == "TopK"), None)
        if topk is None:
            raise ValueError(f"{what}: the probabilities {softmax.outputs[0]!r} must feed a TopK")
        self.grouped.update({topk.name})
        units = self.units
        self.need_fmt(requantize.outputs[0], units.softmax_in, softmax, "input", "softmax_int_bits")
        self.need_fmt(softmax.outputs[0], units.softmax_out, softmax, "output", "act_bits")
        self.need_fmt(topk.outputs[0], units.softmax_out, topk, "scores", "act_bits")
        index = self.fmt(topk.outputs[1])
        if index.signed or index.frac_bits or index.width > self.hw.act_bits:
            raise ValueError(f"indices {topk.outputs[1]!r} of TopK {topk.name!r} must be unsigned integers of at most "
                             f"{self.hw.act_bits} bits, not {index}")
        x = node.inputs[0]
        if not self.fmt(x).signed:
            raise ValueError(f"input {x!r} of MoEGate {node.name!r} must be signed, not {self.fmt(x)}")
        return _GateGroup(node, x, topk.outputs[0], requantize=requantize, softmax=softmax, topk=topk)

    def start_expert(self, node: Node) -> _ExpertGroup:
        """An Expert → Requantize (→ Add → Requantize): one EXPERT_FFN (docs/isa.md §3.10)."""
        self.need_moe(node)
        x, top, indices = node.inputs[:3]
        gate = next((g for g in self.gates if g.y == top and g.indices == indices), None)
        if gate is None:
            raise ValueError(f"Expert {node.name!r} must read the scores and indices of one MoEGate's TopK, "
                             f"not {top!r} and {indices!r}")
        self.grouped.add(node.name)
        requantize = self.chain(node, "Requantize", f"Expert {node.name!r} (one EXPERT_FFN)")
        group = _ExpertGroup(node, x, requantize.outputs[0], gate=gate, requantize=requantize)
        add = self.sole_consumer(group.y)
        if add is not None and add.op == "Add":
            other = add.inputs[1] if add.inputs[0] == group.y else add.inputs[0]
            wide = self.sole_consumer(add.outputs[0])
            if other in self.materialized and other != group.y and wide is not None and wide.op == "Requantize":
                y_fmt, r_fmt, sum_fmt = self.fmt(group.y), self.fmt(other), self.fmt(add.outputs[0])
                if sum_fmt.width > self.hw.acc_bits:
                    raise ValueError(f"residual add {add.name!r} needs a {sum_fmt.width}-bit sum, more than "
                                     f"acc_bits={self.hw.acc_bits}")
                self.grouped.update({add.name, wide.name})
                group.add, group.add_requantize, group.residual = add, wide, other
                group.y_shift, group.r_shift = sum_fmt.frac_bits - y_fmt.frac_bits, sum_fmt.frac_bits - r_fmt.frac_bits
                group.rq2 = Requant.between(sum_fmt, self.fmt(wide.outputs[0]))
                group.y = wide.outputs[0]
        return group

    def add_gelu(self, group: _Group, gelu: Node) -> None:
        """Apply ``gelu`` (reading ``group.y``) in the post-processing lanes."""
        self.need_fmt(group.y, self.units.gelu, gelu, "input", "gelu_int_bits")
        self.need_fmt(gelu.outputs[0], self.units.gelu, gelu, "output", "gelu_int_bits")
        group.flags |= Flag.GELU
        group.y = gelu.outputs[0]

    def maybe_relu(self, group: _Group, flag: Flag) -> None:
        nxt = self.sole_consumer(group.y)
        if nxt is not None and nxt.op == "ReLU":
            self.take(group, nxt)
            group.flags |= flag
            group.y = nxt.outputs[0]

    def add_residual(self, group: _Group, add: Node, other: str) -> None:
        """Fuse ``add`` (reading ``group.y`` and ``other``) and the Requantize of its exact sum."""
        total = add.outputs[0]
        requantize = self.sole_consumer(total)
        if requantize is None or requantize.op != "Requantize":
            raise ValueError(f"exact sum {total!r} of Add {add.name!r} must feed one Requantize and nothing else")
        y_fmt, r_fmt, sum_fmt = self.fmt(group.y), self.fmt(other), self.fmt(total)
        if sum_fmt.width > self.hw.acc_bits:
            raise ValueError(
                f"residual add {add.name!r} needs a {sum_fmt.width}-bit sum, more than acc_bits={self.hw.acc_bits}"
            )
        group.flags |= Flag.RESIDUAL
        group.residual = other
        group.y_shift = sum_fmt.frac_bits - y_fmt.frac_bits
        group.r_shift = sum_fmt.frac_bits - r_fmt.frac_bits
        group.rq2 = Requant.between(sum_fmt, self.fmt(requantize.outputs[0]))
        group.y = requantize.outputs[0]
        self.take(group, requantize)


def _check_containers(graph: Graph, groups: list[_Group], hw: HwParams) -> None:
    activations = list(graph.inputs) + [g.y for g in groups]
    # Constants a descriptor reads as activations: an AddConstant's value (r), a ClassToken's token (x).
    activations += [name for g in groups if isinstance(g, _Group) for name in (g.x, g.residual)
                    if name is not None and graph.tensor(name).is_constant]
    for name in activations:
        fmt = graph.tensor(name).fmt
        if fmt.width > hw.act_bits:
            raise ValueError(f"format of {name!r} must fit the {hw.act_bits}-bit activation container, not {fmt}")
    activations += [name for g in groups if isinstance(g, _GateGroup) for name in g.outputs]
    for group in groups:
        if isinstance(group, _GateGroup):
            acc = graph.tensor(group.node.outputs[0]).fmt
            if acc.width > hw.acc_bits:
                raise ValueError(f"accumulator of MoEGate {group.node.name!r} needs {acc.width} bits, more than the "
                                 f"hardware's acc_bits={hw.acc_bits}")
            continue
        if isinstance(group, _ExpertGroup):
            _expert_problem(graph, group, hw)
            continue
        if isinstance(group, _AttentionGroup):
            f = _attention_formats(graph, group.node)
            if f.acc_bits > hw.acc_bits:
                raise ValueError(f"accumulators of Attention {group.node.name!r} need {f.acc_bits} bits, more than the "
                                 f"hardware's acc_bits={hw.acc_bits}")
            continue
        if isinstance(group, _MaxPoolGroup):
            continue
        if isinstance(group, _RowGroup):
            n = graph.tensor(group.x).shape[-1]
            if n > ROW_MAX:
                raise ValueError(f"rows of {group.node.op} {group.node.name!r} must have at most {ROW_MAX} elements, not {n}")
            continue
        if group.weight is not None and graph.tensor(group.weight).is_constant:
            fmt = graph.tensor(group.weight).fmt
            if fmt.width > hw.weight_bits:
                raise ValueError(f"format of {group.weight!r} must fit the {hw.weight_bits}-bit weight container, not {fmt}")
        if group.acc_fmt is not None and group.acc_fmt.width > hw.acc_bits:
            raise ValueError(
                f"accumulator of {group.nodes[0].name!r} needs {group.acc_fmt.width} bits, more than the hardware's"
                f" acc_bits={hw.acc_bits}"
            )


def _expert_formats(graph: Graph, group: _ExpertGroup) -> golden_moe.ExpertFormats:
    node = group.node
    return golden_moe.expert_formats(node, [graph.tensor(n).fmt for n in node.inputs], group.gate.topk.attr("k"))


def _expert_problem(graph: Graph, group: _ExpertGroup, hw: HwParams) -> None:
    """Refuse, in one line naming the limit, an Expert the EXPERT_FFN of ``hw`` cannot run."""
    node, name = group.node, f"Expert {group.node.name!r}"
    f = _expert_formats(graph, group)
    m, d = graph.tensor(group.x).shape
    h = graph.tensor(node.inputs[3]).shape[2]
    for what, fmt in (("x", f.x), ("w1", f.w1), ("w2", f.w2), ("hidden", f.hidden), ("expert output", f.expert)):
        if not fmt.signed:
            raise ValueError(f"{what} of {name} must be signed, not {fmt}")
    if group.residual is not None and not graph.tensor(group.residual).fmt.signed:
        raise ValueError(f"residual {group.residual!r} of {name} must be signed, not {graph.tensor(group.residual).fmt}")
    for what, fmt in (("w1", f.w1), ("w2", f.w2)):
        if fmt.width > hw.weight_bits:
            raise ValueError(f"format of {what} of {name} must fit the {hw.weight_bits}-bit weight container, not {fmt}")
    for what, fmt in (("hidden", f.hidden), ("expert output", f.expert)):
        if fmt.width > hw.act_bits:
            raise ValueError(f"format of the {what} of {name} must fit the {hw.act_bits}-bit activation container, "
                             f"not {fmt}")
    for what, fmt in (("FC1", f.hidden_acc), ("FC2", f.expert_acc)):
        if fmt.width > hw.acc_bits:
            raise ValueError(f"{what} accumulator of {name} needs {fmt.width} bits, more than the hardware's "
                             f"acc_bits={hw.acc_bits}")
    if f.activation == "gelu" and f.hidden != hw.unit_formats().gelu:
        raise ValueError(f"hidden format of {name} must be the GELU lanes' {hw.unit_formats().gelu} "
                         f"(HwParams.gelu_int_bits), not {f.hidden}")
    if f.sum.width > hw.moe_acc_bits:
        raise ValueError(f"{name} needs {f.sum.width}-bit weighted sums, more than the MoE accumulator's "
                         f"moe_acc_bits={hw.moe_acc_bits}")
    if m * d > hw.moe_acc_entries:
        raise ValueError(f"{name} needs M·D = {m}·{d} = {m * d} weighted sums on chip, more than the MoE "
                         f"accumulator's moe_acc_entries={hw.moe_acc_entries}")
    limits = Limits(hw)
    (k1, n1), (k2, n2) = limits.expert_tiles(d, h)
    for what, k_tiles, n_tiles in (("FC1", k1, n1), ("FC2", k2, n2)):
        if k_tiles > limits.max_k_tiles:
            raise ValueError(f"one {what} input row of {name} needs {k_tiles * hw.lanes_in * hw.act_bytes} bytes of "
                             f"activation buffer, more than act_buffer_bytes={hw.act_buffer_bytes}")
        if limits.moe_largest_chunk(k_tiles, n_tiles) == 0:
            raise ValueError(f"one column of {what} weight tiles of {name} needs {limits.moe_chunk_bytes(k_tiles, 1)} "
                             f"bytes, more than weight_buffer_bytes={hw.weight_buffer_bytes}")


def _feature_maps(graph: Graph, groups: list) -> set[str]:
    """The (C, H, W) tensors stored channels-last (docs/isa.md §4): what a Conv2d or a Tokens reads, what a
    Conv2d's descriptor writes, and what a descriptor reads or writes row for row with one of them (the
    residual and output of a CONV, the input, residual and output of a BYPASS descriptor)."""
    maps = {node.inputs[0] for node in graph.nodes if node.op in ("Conv2d", "Tokens", "MaxPool2d")}
    maps |= {g.y for g in groups if isinstance(g, _Group) and g.conv is not None or isinstance(g, _MaxPoolGroup)}
    linked = [[name for name in (g.y, g.residual, g.x if g.flags & Flag.BYPASS else None)
               if name is not None and len(graph.tensor(name).shape) == 3]
              for g in groups if isinstance(g, _Group)]
    changed = True
    while changed:
        changed = False
        for names in linked:
            if any(n in maps for n in names) and not all(n in maps for n in names):
                maps.update(names)
                changed = True
    for g in groups:
        if isinstance(g, _MaxPoolGroup):  # its CONVs read the map's windows
            continue
        x = g.x if not isinstance(g, _Group) or not (g.flags & Flag.BYPASS or g.conv) else None
        if x in maps:
            raise ValueError(f"{g.nodes[0].op} {g.nodes[0].name!r} must read rows, not the feature map {x!r} of shape "
                             f"{graph.tensor(x).shape} (make tokens of it with a Tokens layer)")
    return maps


def _borders(graph: Graph, groups: list) -> dict[str, tuple[int, int]]:
    """The zero border ``(py, px)`` of each feature map (docs/isa.md §4): the largest padding, per axis, of the
    Conv2d and MaxPool2d layers reading it. Only CONV descriptors read (their windows, their residual) or write
    (their output) a bordered map; anything reading or writing it row by row is refused in one line."""
    borders: dict[str, tuple[int, int]] = {}
    readers: dict[str, Node] = {}
    for node in graph.nodes:
        if node.op in ("Conv2d", "MaxPool2d"):
            py, px = pair(node.attr("padding", 0))
            if py or px:
                x = node.inputs[0]
                old = borders.get(x, (0, 0))
                borders[x] = (max(old[0], py), max(old[1], px))
                readers.setdefault(x, node)
    for node in graph.nodes:
        if node.op in _VIEW_OPS and node.inputs[0] in borders:
            x = node.inputs[0]
            raise ValueError(f"{node.op} {node.name!r} must read a feature map without a zero border, not {x!r} "
                             f"(bordered for the padding of {readers[x].op} {readers[x].name!r})")
    for g in groups:
        if not isinstance(g, _Group) or g.conv is not None:
            continue
        for name in (g.x, g.y, g.residual):
            if name in borders:
                raise ValueError(f"{g.nodes[0].op} {g.nodes[0].name!r} must not read or write the bordered feature map "
                                 f"{name!r} row by row (only a Conv2d with what fuses into it can; {name!r} is bordered "
                                 f"for the padding of {readers[name].op} {readers[name].name!r})")
    return borders


class _Homes:
    """Which tensors are views of another's bytes: ``name`` lives ``row`` rows into ``of`` (same row stride).

    ``Tokens`` (the feature map read as rows) and ``SelectRow`` (one row) view their input; a
    ``ClassToken``'s input is moved into rows 1…T of its output, so its producer writes it in place.
    """

    def __init__(self, graph: Graph, groups: list) -> None:
        self.parent: dict[str, tuple[str, int]] = {}
        fused = {g.select.name for g in groups if isinstance(g, _RowGroup) and g.select is not None}
        class_outputs = set()
        for node in graph.nodes:
            if node.op in ("Tokens", "Flatten"):
                self.parent[node.outputs[0]] = (node.inputs[0], 0)
            elif node.op == "SelectRow" and node.name not in fused:
                self.parent[node.outputs[0]] = (node.inputs[0], node.attr("index", 0))
            elif node.op == "ClassToken":
                x, out = node.inputs[0], node.outputs[0]
                root, row = self.root(x)
                if root in class_outputs or row > 1:
                    raise ValueError(f"ClassToken {node.name!r}: its tokens {x!r} must have a buffer of their own to "
                                     f"move into rows 1… of {out!r}, not live inside {root!r} already")
                self.parent[root] = (out, 1 - row)
                class_outputs.add(out)

    def root(self, name: str) -> tuple[str, int]:
        """The tensor whose region holds ``name``, and the row ``name`` starts at in it."""
        row = 0
        while name in self.parent:
            name, step = self.parent[name]
            row += step
        return name, row


def _row_stride(graph: Graph, name: str, layout: str, hw: HwParams, pad: tuple[int, int] = (0, 0)) -> int:
    """Bytes from one row of ``name`` to the next in DDR (docs/isa.md §4).

    Rows start on AXI words, except the pixels of an input feature map, which are packed when every
    CONV reading it then finds its kernel rows, window steps and image rows on AXI words: a CONV's
    segment is then ``kw·C`` containers, not ``kw`` padded pixels. Otherwise a CONV reads the padded
    pixels as ``row_stride / act_bytes`` channels, the extra ones with zero weights.
    """
    rows, cols = layout_rows(graph.tensor(name).shape, layout)
    if layout == HWC and name in graph.inputs:
        channels, _, width = graph.tensor(name).shape
        pixel = channels * hw.act_bytes
        steps = [(width + 2 * pad[1]) * pixel]  # an image row (of the bordered map)
        for node in graph.consumers(name):
            if node.op in ("Tokens", "MaxPool2d"):
                steps.append(pixel)  # a token row; a pairwise maximum's window and residual steps
            if node.op == "Conv2d":
                kw, stride_x = graph.tensor(node.inputs[1]).shape[3], pair(node.attr("stride", 1))[1]
                start = pad[1] - pair(node.attr("padding", 0))[1]  # the first window's pixel in a bordered row
                steps += [kw * pixel, stride_x * pixel, start * pixel]  # a segment, a window step, the first window
        if all(step % hw.axi_bytes == 0 for step in steps):
            return pixel
    return hw.align(cols * hw.act_bytes)


def hardware_problem(graph: Graph, hw: HwParams) -> str | None:
    """Why hardware ``hw`` lacks an engine a layer of ``graph`` needs (one line naming the layer), or ``None``.

    Float and quantized graphs alike, so a build refuses before quantizing. Layers are taken in graph
    order, so the first layer the hardware cannot run is the one named, whether its op has no
    engine anywhere yet or only not on this core. TopK and Expert run only inside a MoE layer.
    """
    moe = any(node.op == "MoEGate" for node in graph.nodes)
    for node in graph.nodes:
        if node.op == "MaxPool2d" and maxpool_problem(graph, node) is not None:
            return maxpool_problem(graph, node)
        if node.op not in SUPPORTED_OPS | LOWERED_OPS or (node.op in _MOE_OPS and not moe):
            return f"op {node.op} is not supported yet"
        if node.op == "Attention" and attention_problem(hw) is not None:
            return f"Attention {node.name!r} needs the attention engine: {attention_problem(hw)}"
        if node.op == "MoEGate" and moe_problem(hw) is not None:
            return f"MoEGate {node.name!r} needs the MoE engine: {moe_problem(hw)}"
    return None


def compile_graph(qgraph: Graph, hw: HwParams) -> tuple[Program, MemoryImage]:
    """The Program and memory image (inputs zero) that compute ``qgraph`` on hardware ``hw``."""
    if not isinstance(hw, HwParams):
        raise ValueError(f"hw must be a HwParams, not {type(hw).__name__}")
    verify(qgraph)
    if not qgraph.is_quantized:
        raise ValueError("graph must be quantized before compiling, not a float graph")
    for node in qgraph.nodes:
        if node.op not in SUPPORTED_OPS:
            raise ValueError(f"op {node.op} is not supported yet")
        if node.op == "MatMul" and len(qgraph.tensor(node.inputs[1]).shape) > 2:
            raise ValueError(f"op MatMul with a batched second operand ({node.name!r}) is not supported yet")
        if node.op == "Flatten":
            shape = qgraph.tensor(node.inputs[0]).shape
            if not (shape[1:] == (1, 1) if len(shape) == 3 else rows_of(shape)[0] == 1):
                raise ValueError(f"Flatten {node.name!r} must read a (C, 1, 1) feature map or a single row (a view of "
                                 f"its bytes), not shape {shape}")

    fuser = _Fuser(qgraph, hw)
    groups = fuser.groups()
    _check_containers(qgraph, groups, hw)
    maps = _feature_maps(qgraph, groups)
    borders = _borders(qgraph, groups)
    homes = _Homes(qgraph, groups)

    def layout(name: str) -> str:
        return HWC if name in maps else ROWS

    def pad(name: str) -> tuple[int, int]:
        return borders.get(name, (0, 0))

    def row_stride(name: str) -> int:
        return _row_stride(qgraph, name, layout(name), hw, pad(name))

    # Layout: program, then constants per group, then activations.
    chunks: list[bytes] = []
    regions: list[Region] = []
    cursor = 0

    def place(region: Region, payload: bytes) -> Region:
        nonlocal cursor
        placed = Region(**{**region.__dict__, "offset": cursor, "size": hw.align(len(payload))})
        chunks.append(payload + bytes(placed.size - len(payload)))
        regions.append(placed)
        cursor += placed.size
        return placed

    def place_rows_constant(name: str) -> None:
        """A constant a descriptor reads as activation rows (x or r), in the layout of what it meets."""
        c = qgraph.tensor(name)
        stride = row_stride(name)
        payload = pack_rows(tensor_rows(c.raw, layout(name)), hw.act_bytes, stride, c.fmt.signed)
        placed[name] = place(Region(name, RegionKind.PARAMS, 0, 0, str(c.fmt), c.shape, stride, hw.act_bits,
                                    layout(name)), payload)

    def place_maxpool(group: _MaxPoolGroup) -> None:
        """Each step's ±1 weight tiles, and the scratch maps between steps (pixels as wide as the input's)."""
        pixel = row_stride(group.x)
        channels, outputs = pixel // hw.act_bytes, qgraph.tensor(group.x).shape[0]
        x_fmt = qgraph.tensor(group.x).fmt
        for i, step in enumerate(group.steps):
            last = i == len(group.steps) - 1
            w_raw = step_weights(step, channels, outputs if last else channels)
            name = f"{group.node.name}.w{i}"
            placed[name] = place(Region(name, RegionKind.WEIGHTS, 0, 0, str(WEIGHT_FORMAT), w_raw.shape, 0,
                                        hw.weight_bits),
                                 pack_tiles(w_raw, hw.lanes_in, hw.lanes_out, hw.weight_bytes,
                                            hw.tile_stride(hw.weight_bytes), True))
            if not last:
                rows_, pitch = step.dst_hw[0], step.pitch
                placed[step.dst] = place(Region(step.dst, RegionKind.SCRATCH, 0, 0, str(x_fmt), (channels, rows_, pitch),
                                                pixel, hw.act_bits, HWC), bytes(rows_ * pitch * pixel))

    program_bytes = 64 + 64 * sum(_descriptor_count(g) for g in groups)
    program_region = place(Region("program", RegionKind.PROGRAM, 0, 0), bytes(program_bytes))
    placed: dict[str, Region] = {}
    scratch = _moe_scratch(qgraph, groups, hw)
    for group in groups:
        if isinstance(group, (_GateGroup, _ExpertGroup)):
            for name, size in scratch.items():  # one set of scratch regions for every MoE layer
                if name not in placed:
                    placed[name] = place(Region(name, RegionKind.SCRATCH, 0, 0, "", (size // 4,), 0, 32), bytes(size))
            key, region, payload = (_gate_weights if isinstance(group, _GateGroup) else _expert_weights)(qgraph, group, hw)
            placed[key] = place(region, payload)
            continue
        if isinstance(group, _AttentionGroup):
            # The scores of every head (heads·M rows of S) and their row statistics: scratch the pair shares.
            heads = group.node.attr("heads")
            m, s = qgraph.tensor(group.x).shape[0], qgraph.tensor(group.node.inputs[1]).shape[0]
            stride = hw.align(s * hw.act_bytes)
            placed[group.scores] = place(Region(group.scores, RegionKind.SCRATCH, 0, 0, group.node.attr("score_format"),
                                                (heads * m, s), stride, hw.act_bits), bytes(heads * m * stride))
            placed[group.stats] = place(Region(group.stats, RegionKind.SCRATCH, 0, 0, "", (heads * m, 2),
                                               STATS_ENTRY_BYTES, 32), bytes(heads * m * STATS_ENTRY_BYTES))
            continue
        if isinstance(group, _MaxPoolGroup):
            place_maxpool(group)
            continue
        if isinstance(group, _RowGroup):
            for name in group.node.inputs[1:]:
                p = qgraph.tensor(name)
                placed[name] = place(
                    Region(name, RegionKind.PARAMS, 0, 0, str(p.fmt), p.shape, 0, hw.act_bits),
                    pack_vector(p.raw, p.shape[-1], hw.act_bytes),
                )
            continue
        for name in (group.x, group.residual):
            if name is not None and qgraph.tensor(name).is_constant and name not in placed:
                place_rows_constant(name)
        if group.flags & (Flag.BYPASS | Flag.B_ROWMAJOR | Flag.B_TRANSPOSED):
            continue
        w = qgraph.tensor(group.weight)
        if group.conv is not None:
            # K ordered (ky, kx, c) over the pixels' containers: zero weights for the padding of padded pixels.
            # A grouped kernel is packed dense: zero weights outside each output's group (block-diagonal).
            channels = row_stride(group.x) // hw.act_bytes
            dense = conv_dense_weight(w.raw, group.conv.attr("groups", 1))
            w_raw = conv_weight_matrix(np.pad(dense, ((0, 0), (0, channels - dense.shape[1]), (0, 0), (0, 0))))
        else:
            w_raw = w.raw.T if group.weight_transposed else w.raw
        if group.weight_key not in placed:
            payload = pack_tiles(w_raw, hw.lanes_in, hw.lanes_out, hw.weight_bytes, hw.tile_stride(hw.weight_bytes), w.fmt.signed)
            placed[group.weight_key] = place(
                Region(group.weight_key, RegionKind.WEIGHTS, 0, 0, str(w.fmt), w_raw.shape, 0, hw.weight_bits), payload
            )
        if group.bias is not None:
            b = qgraph.tensor(group.bias)
            aligned = b.raw << (group.acc_fmt.frac_bits - b.fmt.frac_bits)
            n_tiles = -(-w_raw.shape[1] // hw.lanes_out)
            key = f"{b.name}@{group.acc_fmt.frac_bits}"
            if key not in placed:
                aligned_fmt = QFmt(group.acc_fmt.width, group.acc_fmt.int_bits)
                placed[key] = place(
                    Region(b.name, RegionKind.BIAS, 0, 0, str(aligned_fmt), b.shape, 0, hw.bias_bytes * 8),
                    pack_vector(aligned, n_tiles * hw.lanes_out, hw.bias_bytes),
                )

    def kind(name: str) -> RegionKind:
        return (RegionKind.INPUT if name in qgraph.inputs else RegionKind.OUTPUT if name in qgraph.outputs
                else RegionKind.ACTIVATION)

    def rows(name: str) -> int:
        return layout_rows(qgraph.tensor(name).shape, layout(name), pad(name))[0]

    def region_of(name: str, stride: int) -> Region:
        tensor = qgraph.tensor(name)
        return Region(name, kind(name), 0, 0, str(tensor.fmt), tensor.shape, stride, hw.act_bits, layout(name), pad(name))

    # Tensors with a buffer of their own first, then the views into them (same row stride as their buffer).
    tensors = list(dict.fromkeys(list(qgraph.inputs) + fuser.materialized))
    for name in tensors:
        if homes.root(name)[0] == name:
            stride = row_stride(name)
            placed[name] = place(region_of(name, stride), bytes(rows(name) * stride))
    for name in tensors:
        root, row = homes.root(name)
        if root == name:
            continue
        home = placed[root]
        natural = row_stride(name)
        if row + rows(name) > home.rows:
            raise ValueError(f"tensor {name!r} must fit inside {root!r} it is a view of, not end at row "
                             f"{row + rows(name)} of {home.rows}")
        producer = qgraph.producer(name)
        moved = producer is None or producer.op not in _VIEW_OPS  # a ClassToken's tokens, written in place
        if moved and natural != home.row_stride:
            raise ValueError(f"tensor {name!r} must have the row stride of {root!r} it is written into "
                             f"({home.row_stride} bytes), not {natural}")
        view = region_of(name, home.row_stride)
        regions.append(Region(**{**view.__dict__, "offset": home.offset + row * home.row_stride,
                                 "size": rows(name) * home.row_stride}))
        placed[name] = regions[-1]

    descriptors, owners = [], []
    for group in groups:
        try:
            if isinstance(group, _AttentionGroup):
                made = _attention_descriptors(qgraph, group, placed, hw)
            elif isinstance(group, _MaxPoolGroup):
                made = _maxpool_descriptors(qgraph, group, placed, hw)
            else:
                made = [_descriptor(qgraph, group, placed, hw)]
        except ValueError as exc:
            raise ValueError(f"layer {group.nodes[0].name!r}: {exc}") from None
        descriptors += made
        owners += [group] * len(made)
    program = Program(hw.fingerprint(), cursor, tuple(descriptors))
    # The one validity rule: never emit a descriptor an executor would refuse.
    for group, desc in zip(owners, descriptors):
        refusal = check_descriptor(desc.encode(), hw, cursor)
        if refusal:
            raise ValueError(f"layer {group.nodes[0].name!r}: the {desc.name} descriptor cannot run on {hw}: "
                             f"{refusal.reason} ({refusal.status.name})")
    encoded = program.to_bytes()
    chunks[0] = encoded + bytes(program_region.size - len(encoded))
    image = MemoryImage(b"".join(chunks), tuple(regions), tuple(g.label for g in owners))
    log.info("compiled %s: %d descriptors, %d-byte image", qgraph.name, len(descriptors), len(image.data))
    return program, image


def _moe_scratch(qgraph: Graph, groups: list, hw: HwParams) -> dict[str, int]:
    """Bytes of each MoE scratch region, for the largest layer: the lists (``E·align(8·M)``), the counts
    (``4·E``) and, when an EXPERT_FFN keeps its hidden rows in DDR, those (``M·align(H·act_bytes)``)."""
    limits = Limits(hw)
    sizes: dict[str, int] = {}
    for g in groups:
        if isinstance(g, _GateGroup):
            m, experts = rows_of(qgraph.tensor(g.probs).shape)
            sizes[MOE_LISTS] = max(sizes.get(MOE_LISTS, 0), experts * limits.list_stride(m))
            sizes[MOE_COUNTS] = max(sizes.get(MOE_COUNTS, 0), hw.align(4 * experts))
        if isinstance(g, _ExpertGroup) and _hidden_in_ddr(qgraph, g, hw):
            sizes[MOE_HIDDEN] = max(sizes.get(MOE_HIDDEN, 0), limits.moe_hidden_bytes(*_expert_shape(qgraph, g)[::2]))
    return sizes


def _expert_shape(qgraph: Graph, group: _ExpertGroup) -> tuple[int, int, int]:
    """(M, D, H) of an Expert: tokens, model width, hidden width."""
    m, d = rows_of(qgraph.tensor(group.x).shape)
    return m, d, qgraph.tensor(group.node.inputs[3]).shape[2]


def _hidden_in_ddr(qgraph: Graph, group: _ExpertGroup, hw: HwParams) -> bool:
    """An expert's hidden rows for every token do not fit the on-chip hidden buffer: HIDDEN_DDR."""
    m, _, h = _expert_shape(qgraph, group)
    return Limits(hw).moe_hidden_bytes(m, h) > hw.moe_hidden_bytes


def _gate_weights(qgraph: Graph, group: _GateGroup, hw: HwParams) -> tuple[str, Region, bytes]:
    """Every task's ``(D, E)`` gate as LINEAR weight tiles, task-major (docs/isa.md §3.10)."""
    w = qgraph.tensor(group.node.inputs[1])
    tasks = w.raw if w.raw.ndim == 3 else w.raw[None]
    payload = b"".join(pack_tiles(t, hw.lanes_in, hw.lanes_out, hw.weight_bytes, hw.tile_stride(hw.weight_bytes),
                                  w.fmt.signed) for t in tasks)
    return w.name, Region(w.name, RegionKind.WEIGHTS, 0, 0, str(w.fmt), w.shape, 0, hw.weight_bits), payload


def _experts_key(group: _ExpertGroup) -> str:
    return f"{group.node.name}.experts"


def _expert_weights(qgraph: Graph, group: _ExpertGroup, hw: HwParams) -> tuple[str, Region, bytes]:
    """Every expert's block, ``expert_stride`` apart: W1 tiles, b1, W2 tiles, b2 (biases on their accumulator's
    binary point, as LINEAR's), each part on an AXI word (:meth:`hwgen.isa.rules.Limits.expert_block`)."""
    f = _expert_formats(qgraph, group)
    _, d, h = _expert_shape(qgraph, group)
    w1, b1, w2, b2 = (qgraph.tensor(name) for name in group.node.inputs[3:7])
    limits = Limits(hw)
    block = limits.expert_block(d, h)
    (_, n1), (_, n2) = limits.expert_tiles(d, h)
    tile = hw.tile_stride(hw.weight_bytes)
    experts = w1.shape[0]
    payload = bytearray(experts * block.size)
    for e in range(experts):
        base = e * block.size
        parts = ((block.w1, pack_tiles(w1.raw[e], hw.lanes_in, hw.lanes_out, hw.weight_bytes, tile, w1.fmt.signed)),
                 (block.b1, pack_vector(b1.raw[e] << (f.hidden_acc.frac_bits - f.b1.frac_bits), n1 * hw.lanes_out,
                                        hw.bias_bytes)),
                 (block.w2, pack_tiles(w2.raw[e], hw.lanes_in, hw.lanes_out, hw.weight_bytes, tile, w2.fmt.signed)),
                 (block.b2, pack_vector(b2.raw[e] << (f.expert_acc.frac_bits - f.b2.frac_bits), n2 * hw.lanes_out,
                                        hw.bias_bytes)))
        for offset, data in parts:
            payload[base + offset: base + offset + len(data)] = data
    key = _experts_key(group)
    return key, Region(key, RegionKind.WEIGHTS, 0, 0, str(w1.fmt), (experts, block.size), block.size,
                       hw.weight_bits), bytes(payload)


def _need_rows(region: Region, cols: int, hw: HwParams, what: str) -> None:
    """The MoE descriptors read and write dense rows (``align(cols·act_bytes)`` apart)."""
    if region.row_stride != hw.align(cols * hw.act_bytes):
        raise ValueError(f"{what} {region.name!r} must have rows {hw.align(cols * hw.act_bytes)} bytes apart, "
                         f"not {region.row_stride}")


def _gate_descriptor(qgraph: Graph, group: _GateGroup, placed: dict[str, Region], hw: HwParams) -> GateTopkDescriptor:
    x = placed[group.x]
    m, dim = rows_of(qgraph.tensor(group.x).shape)
    experts, k = qgraph.tensor(group.probs).shape[-1], group.topk.attr("k")
    w = qgraph.tensor(group.node.inputs[1])
    probs, top, idx = (placed[name] for name in group.outputs)
    _need_rows(probs, experts, hw, "probabilities")
    for region in (top, idx):
        _need_rows(region, k, hw, "top-k output")
    k_tiles, n_tiles = -(-dim // hw.lanes_in), -(-experts // hw.lanes_out)
    rq = Requant.between(qgraph.tensor(group.node.outputs[0]).fmt, qgraph.tensor(group.requantize.outputs[0]).fmt)
    return GateTopkDescriptor(m=m, experts=experts, top_k=k, k=dim, tasks=w.shape[0] if len(w.shape) == 3 else 1,
                              k_tiles=k_tiles, n_tiles=n_tiles, x_addr=x.offset, w_addr=placed[w.name].offset,
                              task_stride=Limits(hw).gate_bytes(k_tiles, n_tiles), probs_addr=probs.offset,
                              top_addr=top.offset, x_stride=x.row_stride, lists_addr=placed[MOE_LISTS].offset,
                              counts_addr=placed[MOE_COUNTS].offset, idx_addr=idx.offset, rq=rq)


def _expert_descriptor(qgraph: Graph, group: _ExpertGroup, placed: dict[str, Region],
                       hw: HwParams) -> ExpertFfnDescriptor:
    f = _expert_formats(qgraph, group)
    m, d, h = _expert_shape(qgraph, group)
    node = group.node
    acc = qgraph.tensor(node.outputs[0]).fmt
    if acc != f.sum:
        raise ValueError(f"the weighted sum {node.outputs[0]!r} must have the exact format {f.sum}, not {acc}")
    x, out = placed[group.x], placed[group.y]
    _need_rows(x, d, hw, "input")
    _need_rows(out, d, hw, "output")
    flags = MoeFlag(0)
    res_addr = 0
    if group.residual is not None:
        flags |= MoeFlag.RESIDUAL
        _need_rows(placed[group.residual], d, hw, "residual")
        res_addr = placed[group.residual].offset
    if f.activation == "relu":
        flags |= MoeFlag.RELU
    hidden_addr = 0
    if _hidden_in_ddr(qgraph, group, hw):
        flags |= MoeFlag.HIDDEN_DDR
        hidden_addr = placed[MOE_HIDDEN].offset
    limits = Limits(hw)
    (k1, n1), (k2, n2) = limits.expert_tiles(d, h)
    experts = placed[_experts_key(group)]
    return ExpertFfnDescriptor(
        flags=flags, m=m, experts=qgraph.tensor(node.inputs[3]).shape[0], top_k=f.k, d=d, h=h,
        chunk1=limits.moe_largest_chunk(k1, n1), chunk2=limits.moe_largest_chunk(k2, n2), x_addr=x.offset,
        w_addr=experts.offset, expert_stride=experts.row_stride, lists_addr=placed[MOE_LISTS].offset,
        counts_addr=placed[MOE_COUNTS].offset, res_addr=res_addr, out_addr=out.offset, hidden_addr=hidden_addr,
        rq_hidden=Requant.between(f.hidden_acc, f.hidden), rq_expert=Requant.between(f.expert_acc, f.expert),
        rq_out=Requant.between(acc, qgraph.tensor(group.requantize.outputs[0]).fmt), rq2=group.rq2,
        y_shift=group.y_shift, r_shift=group.r_shift)


def _attention_formats(qgraph: Graph, node: Node):
    q, k, v, out = (qgraph.tensor(name) for name in (*node.inputs, node.outputs[0]))
    return attention_formats(node, [q.fmt, k.fmt, v.fmt], out.fmt, q.shape[1], k.shape[0])


def _attention_descriptors(qgraph: Graph, group: _AttentionGroup, placed: dict[str, Region],
                           hw: HwParams) -> list[AttentionDescriptor]:
    """QK_SOFTMAX_STATS then AV: all heads by strided addressing into Q, K, V, the scores and the output."""
    node = group.node
    f = _attention_formats(qgraph, node)
    for name in node.inputs:
        if not qgraph.tensor(name).fmt.signed:
            raise ValueError(f"operand {name!r} of Attention {node.name!r} must be signed, not {qgraph.tensor(name).fmt}")
    q, k, v, out = (placed[name] for name in (*node.inputs, node.outputs[0]))
    scores, stats = placed[group.scores], placed[group.stats]
    m, s = qgraph.tensor(node.inputs[0]).shape[0], f.keys
    common = dict(m=m, s=s, heads=f.heads, d_head=f.d_head, scores_addr=scores.offset, scores_stride=scores.row_stride,
                  stats_addr=stats.offset)
    mul, _ = f.scale
    return [
        AttentionDescriptor(OPCODE_QK_SOFTMAX_STATS, rq=Requant.between(f.scaled, f.score), q_addr=q.offset,
                            k_addr=k.offset, q_stride=q.row_stride, k_stride=k.row_stride, scale=mul, **common),
        AttentionDescriptor(OPCODE_AV, rq=Requant.between(f.av_acc, f.out), v_addr=v.offset, out_addr=out.offset,
                            v_stride=v.row_stride, out_stride=out.row_stride, **common),
    ]


def _row_descriptor(qgraph: Graph, group: _RowGroup, placed: dict[str, Region]) -> RowDescriptor:
    x, out, node = placed[group.x], placed[group.y], group.node
    m, n = rows_of(qgraph.tensor(group.x).shape)
    x_addr = x.offset
    if group.row is not None:
        m, x_addr = 1, x.offset + group.row * x.row_stride
    if node.op == "Softmax":
        return RowDescriptor(OPCODE_SOFTMAX, m, n, x_addr, out.offset, x.row_stride, out.row_stride)
    gamma, beta = (qgraph.tensor(name) for name in node.inputs[1:])
    eps = node.attr("eps", OPS["LayerNorm"].attr_defaults()["eps"])
    cfg = layernorm_config(qgraph.tensor(group.x).fmt, gamma.fmt, beta.fmt, qgraph.tensor(node.outputs[0]).fmt, eps)
    return RowDescriptor(OPCODE_LAYERNORM, m, n, x_addr, out.offset, x.row_stride, out.row_stride,
                         placed[gamma.name].offset, placed[beta.name].offset, n * n * cfg.eps_raw)


def _maxpool_descriptors(qgraph: Graph, group: _MaxPoolGroup, placed: dict[str, Region],
                         hw: HwParams) -> list[ConvDescriptor]:
    """One CONV per pairwise-maximum step: the first reads the (bordered) input from its padding's corner, the
    last writes the output's interior (:mod:`hwgen.compiler.maxpool`)."""
    x = placed[group.x]
    pixel, fmt = x.row_stride, qgraph.tensor(group.x).fmt
    channels, outputs = pixel // hw.act_bytes, qgraph.tensor(group.x).shape[0]
    pad_y, pad_x = pair(group.node.attr("padding", 0))
    width = x.shape[2] + 2 * x.pad[1]  # pixels of a (bordered) image row
    src = (x.offset + ((x.pad[0] - pad_y) * width + x.pad[1] - pad_x) * pixel, pixel, width * pixel)
    made = []
    for i, step in enumerate(group.steps):
        last = i == len(group.steps) - 1
        if last:
            out = placed[step.dst]
            addr, skip = interior(out.offset, out.shape, out.row_stride, out.pad)
            dst = (addr, out.row_stride, skip)
        else:
            dst = (placed[step.dst].offset, pixel, (step.pitch - step.dst_hw[1]) * pixel)
        largest = step_descriptor(step, fmt, src, dst, placed[f"{group.node.name}.w{i}"].offset, channels,
                                  outputs if last else channels, hw)
        largest.encode()  # a field out of its range is refused here, per layer
        chunk = Limits(hw).largest_chunk(largest.flags, largest.k_tiles, largest.n_tiles)
        if chunk == 0:
            raise ValueError(f"one column of weight tiles of step {i} (K={largest.k}) does not fit "
                             f"weight_buffer_bytes={hw.weight_buffer_bytes}")
        made.append(_fastest_chunking(dataclasses.replace(largest, chunk_tiles=chunk), hw))
        src = (dst[0], pixel, step.pitch * pixel)
    return made


def _descriptor(qgraph: Graph, group: _Group | _RowGroup, placed: dict[str, Region],
                hw: HwParams) -> LinearDescriptor | ConvDescriptor | RowDescriptor:
    if isinstance(group, _RowGroup):
        return _row_descriptor(qgraph, group, placed)
    if isinstance(group, _GateGroup):
        return _gate_descriptor(qgraph, group, placed, hw)
    if isinstance(group, _ExpertGroup):
        return _expert_descriptor(qgraph, group, placed, hw)
    x = placed[group.x]
    out = placed[group.y]
    m, k = layout_rows(qgraph.tensor(group.x).shape, x.layout)
    n = layout_rows(qgraph.tensor(group.y).shape, out.layout)[1]
    if group.conv is not None:
        # A row of x is one window: kh·kw pixels, each row_stride / act_bytes containers (C, or C padded).
        kh, kw = qgraph.tensor(group.weight).shape[2:]
        k = kh * kw * (x.row_stride // hw.act_bytes)
    k_tiles, n_tiles = -(-k // hw.lanes_in), -(-n // hw.lanes_out)
    flags = group.flags
    if not qgraph.tensor(group.x).fmt.signed:
        flags |= Flag.X_UNSIGNED
    row_bytes = k_tiles * hw.lanes_in * hw.act_bytes
    if row_bytes > hw.act_buffer_bytes:
        raise ValueError(
            f"one input row needs {row_bytes} bytes of activation buffer (K={k}), more than act_buffer_bytes={hw.act_buffer_bytes}"
        )
    w_addr = w_stride = bias_addr = 0
    chunk_tiles = n_tiles
    if not flags & Flag.BYPASS:
        w_tensor = qgraph.tensor(group.weight)
        if not w_tensor.fmt.signed:
            flags |= Flag.W_UNSIGNED
        limits = Limits(hw)
        column = limits.chunk_bytes(flags, k_tiles, 1)
        chunk_tiles = limits.largest_chunk(flags, k_tiles, n_tiles)
        if chunk_tiles == 0:
            raise ValueError(
                f"one column of weight tiles needs {column} bytes (K={k}, {hw.lanes_in}x{hw.lanes_out} lanes),"
                f" more than weight_buffer_bytes={hw.weight_buffer_bytes}"
            )
        w_region = placed[group.weight_key]
        w_addr = w_region.offset
        if flags & (Flag.B_ROWMAJOR | Flag.B_TRANSPOSED):
            w_stride = w_region.row_stride
        if flags & Flag.BIAS:
            bias_addr = placed[f"{group.bias}@{group.acc_fmt.frac_bits}"].offset
    res_addr = res_stride = 0
    if flags & Flag.RESIDUAL:
        residual = placed[group.residual]
        res_addr, res_stride = residual.offset, residual.row_stride
        if not qgraph.tensor(group.residual).fmt.signed:
            flags |= Flag.R_UNSIGNED
    common = dict(
        flags=flags, k=k, n=n, k_tiles=k_tiles, n_tiles=n_tiles, x_addr=x.offset, w_addr=w_addr, bias_addr=bias_addr,
        res_addr=res_addr, out_addr=out.offset, res_stride=res_stride, out_stride=out.row_stride, rq1=group.rq1,
        rq2=group.rq2, chunk_tiles=chunk_tiles, y_shift=group.y_shift, r_shift=group.r_shift,
    )
    if group.conv is not None:
        # Into the interior of a bordered output map, from that of a bordered residual (docs/isa.md §3.9, §4).
        common["out_addr"], common["out_skip"] = interior(out.offset, out.shape, out.row_stride, out.pad)
        if flags & Flag.RESIDUAL:
            r = placed[group.residual]
            common["res_addr"], common["res_skip"] = interior(r.offset, r.shape, r.row_stride, r.pad)
        largest = _conv_descriptor(qgraph, group, x, common, hw)
    else:
        largest = LinearDescriptor(m=m, x_stride=x.row_stride, w_stride=w_stride, **common)
    largest.encode()  # a field out of its range (a CONV's 8-bit kh, 16-bit x_stride, ...) is refused here, per layer
    return _fastest_chunking(largest, hw)


def _conv_descriptor(qgraph: Graph, group: _Group, x: Region, common: dict, hw: HwParams) -> ConvDescriptor:
    """A Conv2d's CONV: its windows gathered from the channels-last input, one kernel row per segment (§3.9)."""
    node = group.conv
    width = qgraph.tensor(group.x).shape[2] + 2 * x.pad[1]  # pixels of a (bordered) image row
    _, grid_h, grid_w = qgraph.tensor(node.outputs[0]).shape
    kh = qgraph.tensor(group.weight).shape[2]
    stride_y, stride_x = pair(node.attr("stride", OPS["Conv2d"].attr_defaults()["stride"]))
    pad_y, pad_x = pair(node.attr("padding", OPS["Conv2d"].attr_defaults()["padding"]))
    pixel = x.row_stride  # the pixels lie back to back: an image row is width·pixel bytes
    # The first window starts (border − padding) pixels into the bordered map, on each axis.
    first = ((x.pad[0] - pad_y) * width + x.pad[1] - pad_x) * pixel
    return ConvDescriptor(grid_h=grid_h, grid_w=grid_w, kh=kh, stride_y=stride_y, x_stride=stride_x * pixel,
                          seg_stride=width * pixel, **{**common, "x_addr": x.offset + first})


def _fastest_chunking(largest: LinearDescriptor | ConvDescriptor, hw: HwParams) -> LinearDescriptor | ConvDescriptor:
    """``largest`` with the ``chunk_tiles`` (at most its own) of the lowest cycle estimate; ties go to the larger chunk.

    A single chunk cannot hide its weight load behind compute; smaller chunks hide all but the
    first, at the price of reading every row of ``x`` once per chunk (docs/isa.md §3.4).
    """
    if largest.flags & Flag.BYPASS:
        return largest
    candidates = [dataclasses.replace(largest, chunk_tiles=tiles) for tiles in range(largest.chunk_tiles, 0, -1)]
    return min(candidates, key=lambda desc: estimate_cycles(desc, hw).cycles)
