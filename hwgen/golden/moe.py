# SPDX-License-Identifier: Apache-2.0
"""The bit-exact definition of M³ViT's mixture-of-experts layer, as Edge-MoE runs it.

In a model spec the layer is four nodes (docs/model-spec.md, docs/moe.md): ``MoEGate`` (logits
``x·W_g``, a Linear without bias, one ``W_g`` per task), ``Softmax`` over all ``E`` logits (the
softmax unit, exactly as the row unit's Softmax), ``TopK`` of the probabilities and ``Expert``.
Every rounding step, in order (``T`` tokens, ``k`` experts per token):

1. **Gate.** ``logits_acc = x · W_g[task]`` exact (the task's matrix, :func:`task_weight`), then
   one requantization into the softmax unit's input format (a Requantize node).
2. **Softmax** of each token's ``E`` logits on the softmax unit (``unit_formats().softmax_config()``,
   :func:`hwgen.golden.nonlinear.softmax`): raw probabilities in ``ufixed<act_bits, 1>``.
3. **Top-k** of the raw probabilities (:func:`topk`): the ``k`` largest codes in descending order;
   equal codes: the lower expert index first. The scores are these probabilities as they are (M³ViT's
   gate: not renormalized), so no rounding happens here.
4. **Dispatch** (:func:`dispatch`, Edge-MoE's patch reordering): per expert, the list of ``(token,
   slot)`` pairs that chose it, in token order; experts without tokens are skipped.
5. **Expert FFN** of expert ``e`` on its tokens (:func:`expert_ffn`), every expert in the same formats
   (one format per tensor across the experts, so one descriptor serves whichever expert runs):
   ``h_acc = x·W1[e] + b1[e]`` exact (``b1`` on the products' binary point), ``h = hidden.cast(h_acc)``,
   ``g = gelu(h)`` (the GELU lanes, ``gelu_config(hidden, hidden)``; or ``max(h, 0)``),
   ``y_acc = g·W2[e] + b2[e]`` exact, ``y = expert.cast(y_acc)``.
6. **Weighted sum** (:func:`moe`): ``acc[t] = Σ_j score[t,j] · y_{idx[t,j]}[t]``, each product exact
   (``score.frac + expert.frac`` fraction bits) and the sum exact in a wide integer
   (:attr:`ExpertFormats.sum`), so any expert order gives the same integers.
7. **Output**: one requantization of ``acc`` into the layer's output format (the Requantize node
   after the Expert node, ``<name>.acc`` → ``<name>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hwgen.golden import nonlinear as nl
from hwgen.golden.products import exact_fmt, exact_matmul, magnitude
from hwgen.golden.unit_configs import gelu_config
from hwgen.ir import Graph, Node
from hwgen.qfx import QFmt

__all__ = ["graph_tasks", "check_task", "task_weight", "topk", "dispatch", "index_format", "ExpertFormats",
           "expert_formats", "expert_ffn", "moe", "EXPERT_FORMAT_ATTRS"]

#: The Expert attributes the quantizer sets: the formats inside every expert's FFN (step 5).
EXPERT_FORMAT_ATTRS = ("hidden_acc_format", "hidden_format", "expert_acc_format", "expert_format")


def graph_tasks(graph: Graph) -> int:
    """Tasks of a model: the ``tasks`` of its MoE gates (verify makes them agree), 1 without any."""
    return max((node.attr("tasks", 1) for node in graph.nodes if node.op == "MoEGate"), default=1)


def check_task(graph: Graph, task) -> int:
    """``task`` if it names one of the graph's tasks, else a one-line error."""
    tasks = graph_tasks(graph)
    if isinstance(task, bool) or not isinstance(task, (int, np.integer)) or not 0 <= task < tasks:
        raise ValueError(f"task must be an integer in 0..{tasks - 1}, not {task!r}")
    return int(task)


def task_weight(node: Node, args: list[np.ndarray], task: int) -> list[np.ndarray]:
    """``args`` of ``node`` with a multi-task gate's weight ``(tasks, D, E)`` replaced by the task's ``(D, E)``.

    The one place the task enters a run: float and exact executors alike call it for every node.
    """
    if node.op == "MoEGate" and args[1].ndim == 3:
        return [args[0], args[1][task]]
    return args


def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of the last axis in descending order and their indices (int64).

    Equal values: the lower index first (a stable sort of the negated values, which is also what a
    k-long insertion with strict ``>`` in index order gives, Edge-MoE's ``top_k``). Raw codes and
    floats alike.
    """
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, order, axis=-1), order.astype(np.int64)


def dispatch(indices: np.ndarray, experts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per expert, its ``(tokens, slots)``: the tokens ``t`` (ascending) and slots ``j`` with ``indices[t, j] = e``.

    This is Edge-MoE's patch reordering: the token lists the gate writes; an expert whose list is
    empty is skipped. TopK gives a token ``k`` distinct experts, so it appears at most once per list.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= experts):
        raise ValueError(f"expert indices must be in 0..{experts - 1}, not {int(idx.min())}..{int(idx.max())}")
    # np.nonzero walks (token, slot, expert) in row-major order: each expert's pairs come in token order.
    tokens, slots, chosen = np.nonzero(idx[..., None] == np.arange(experts))
    return [(tokens[chosen == e], slots[chosen == e]) for e in range(experts)]


def index_format(width: int) -> QFmt:
    """The format of TopK's indices: unsigned integers in ``width``-bit containers (raw = the index)."""
    return QFmt(width, width, False)


@dataclass(frozen=True)
class ExpertFormats:
    """Every format of one quantized Expert node: its operands', the FFN's (the node's attributes), ``k``."""

    x: QFmt
    score: QFmt
    w1: QFmt
    b1: QFmt
    w2: QFmt
    b2: QFmt
    hidden_acc: QFmt
    hidden: QFmt
    expert_acc: QFmt
    expert: QFmt
    k: int
    activation: str = "gelu"

    def __post_init__(self):
        if self.score.signed:
            raise ValueError(f"scores must be unsigned (softmax probabilities), not {self.score}")
        for name, acc, a, w, b in (("hidden_acc", self.hidden_acc, self.x, self.w1, self.b1),
                                   ("expert_acc", self.expert_acc, self.hidden, self.w2, self.b2)):
            if acc.frac_bits != a.frac_bits + w.frac_bits or not acc.signed:
                raise ValueError(f"{name} must be signed with the products' {a.frac_bits + w.frac_bits} fraction bits,"
                                 f" not {acc}")
            if b.frac_bits > acc.frac_bits:
                raise ValueError(f"the bias of {name} must have at most {acc.frac_bits} fraction bits, not {b}")

    @property
    def sum(self) -> QFmt:
        """The exact weighted sum of step 6: ``k`` products of the largest score and expert-output codes."""
        return exact_fmt(self.k * magnitude(self.score) * magnitude(self.expert),
                         self.score.frac_bits + self.expert.frac_bits)

    @property
    def product_bits(self) -> int:
        """Bits of one ``score · y`` product (signed): what a partial row entry holds."""
        return (magnitude(self.score) * magnitude(self.expert)).bit_length() + 1

    @cached_property
    def gelu(self):
        """The GELU lanes' config for the hidden format."""
        return gelu_config(self.hidden, self.hidden)


def expert_formats(node: Node, fmts: Sequence[QFmt], k: int) -> ExpertFormats:
    """The formats of a quantized Expert ``node`` whose operands have formats ``fmts`` and whose tokens choose ``k``."""
    named = {key: node.attr(key, "") for key in EXPERT_FORMAT_ATTRS}
    missing = [key for key, value in named.items() if not value]
    if missing:
        raise ValueError(f"Expert {node.name!r} must have {', '.join(missing)} (set by the quantizer)")
    x, score, _, w1, b1, w2, b2 = fmts
    parsed = {key: QFmt.parse(value) for key, value in named.items()}
    return ExpertFormats(x, score, w1, b1, w2, b2, parsed["hidden_acc_format"], parsed["hidden_format"],
                         parsed["expert_acc_format"], parsed["expert_format"], k, node.attr("activation", "gelu"))


def _aligned(bias: np.ndarray, bias_fmt: QFmt, acc: QFmt) -> np.ndarray:
    """A bias on the accumulator's binary point (the quantizer guarantees no more fraction bits)."""
    return bias << (acc.frac_bits - bias_fmt.frac_bits)


def expert_ffn(f: ExpertFormats, x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
               b2: np.ndarray) -> np.ndarray:
    """Step 5 for one expert: its raw outputs ``y`` (rows of ``x``, raw ``f.expert``) from raw rows ``x``
    and that expert's raw weights ``w1`` (D, H), ``b1`` (H), ``w2`` (H, D), ``b2`` (D)."""
    acc = f.hidden_acc.check_raw(exact_matmul(x, w1) + _aligned(b1, f.b1, f.hidden_acc), "expert FC1 accumulator")
    h = f.hidden.cast(acc, f.hidden_acc)
    g = nl.gelu(f.gelu, h) if f.activation == "gelu" else np.maximum(h, 0)
    acc = f.expert_acc.check_raw(exact_matmul(g, w2) + _aligned(b2, f.b2, f.expert_acc), "expert FC2 accumulator")
    return f.expert.cast(acc, f.expert_acc)


def moe(f: ExpertFormats, x: np.ndarray, scores: np.ndarray, indices: np.ndarray, w1: np.ndarray, b1: np.ndarray,
        w2: np.ndarray, b2: np.ndarray, order: Sequence[int] | None = None) -> np.ndarray:
    """Steps 4 to 6: the exact weighted sum (raw ``f.sum``, shape of ``x``) of every token's ``k`` experts.

    ``order`` is the order the experts run in (default: index order); the result does not depend on
    it, since each product is exact and the sum is an exact integer sum.
    """
    experts = w1.shape[0]
    lists = dispatch(indices, experts)
    order = range(experts) if order is None else order
    if sorted(order) != list(range(experts)):
        raise ValueError(f"order must be a permutation of 0..{experts - 1}, not {list(order)}")
    acc = np.zeros(x.shape, dtype=np.int64)
    for e in order:
        tokens, slots = lists[e]
        if not len(tokens):
            continue  # no token chose this expert: its weights are never loaded
        y = expert_ffn(f, x[tokens], w1[e], b1[e], w2[e], b2[e])
        np.add.at(acc, tokens, scores[tokens, slots][:, None] * y)  # exact: int64, any order
    return f.sum.check_raw(acc, "weighted sum of the experts")
