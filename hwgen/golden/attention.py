# SPDX-License-Identifier: Apache-2.0
"""The bit-exact definition of quantized multi-head attention, as the attention engine computes it.

For every head ``h`` (columns ``h·d … h·d + d − 1`` of ``q``, ``k``, ``v`` and the output, ``d =
d_head``), query row ``i`` and key ``j``, with every rounding step named (docs/isa.md §3.8):

1. ``acc[h,i,j] = Σ_c q[i, h·d+c] · k[j, h·d+c]``, exact (fraction bits ``F_q + F_k``; the
   quantizer makes it fit ``acc_bits``).
2. ``s[h,i,j] = score.cast(acc · scale_mul, scaled)``: the scale ``1/√d`` is ``scale_mul ·
   2^-scale_frac`` (:func:`score_scale`; exactly ``2^-log2(√d)`` when ``d`` is a power of 4), folded
   into one requantization into the score format (the softmax unit's input format).
3. Single-pass statistics of every score row in key order (:func:`hwgen.golden.nonlinear.softmax_stats`,
   the softmax unit's own definition): running max, running sum rescaled when the max grows, then
   ``max[h,i]`` and ``inv[h,i] = 1/sum`` (the reciprocal unit).
4. ``p[h,i,j] = prob.cast(e2(s − max) · inv)`` (:func:`hwgen.golden.nonlinear.softmax_normalize`):
   exactly what the softmax unit would output for the row, computed on the fly from the raw score.
5. ``out[i, h·d+c] = out_fmt.cast(Σ_j p[h,i,j] · v[j, h·d+c], av_acc)``: the product summed exactly,
   one requantization at the end.

So attention's probabilities are the softmax unit's, within one LSB of float on rows up to
``ROW_MAX`` long, and the only other roundings are the score and output requantizations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hwgen.golden import nonlinear as nl
from hwgen.golden.products import exact_fmt, exact_matmul, magnitude
from hwgen.golden.unit_configs import ROW_MAX, softmax_config
from hwgen.qfx import QFmt

__all__ = ["AttentionFormats", "score_scale", "split_heads", "merge_heads", "qk_scores", "row_stats",
           "probabilities", "av", "attention", "attention_parts", "SCALE_BITS"]

#: Bits of the score-scale multiplier when ``1/√d_head`` is not a power of two.
SCALE_BITS = 12


def score_scale(d_head: int) -> tuple[int, int]:
    """``(scale_mul, scale_frac)`` with ``scale_mul · 2^-scale_frac ≈ 1/√d_head``.

    A power-of-4 ``d_head`` (16, 64, 256…) gives ``(1, log2 √d_head)``: an exact shift. Otherwise
    ``scale_mul`` is ``1/√d_head`` rounded to a :data:`SCALE_BITS`-bit mantissa.
    """
    if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head < 1:
        raise ValueError(f"d_head must be a positive integer, not {d_head!r}")
    exponent = d_head.bit_length() - 1
    if d_head == 1 << exponent and exponent % 2 == 0:
        return 1, exponent // 2
    top = math.ceil(math.log2(math.sqrt(d_head)))
    frac = SCALE_BITS - 1 + top
    return round(2.0**frac / math.sqrt(d_head)), frac


@dataclass(frozen=True)
class AttentionFormats:
    """Every format and constant of one quantized attention layer.

    ``q``, ``k``, ``v``, ``out`` are the layer's tensor formats; ``score`` and ``prob`` the formats of
    the scores and probabilities (the softmax unit's input and output formats); ``keys`` the number
    of key rows (the length of a score row).
    """

    q: QFmt
    k: QFmt
    v: QFmt
    out: QFmt
    score: QFmt
    prob: QFmt
    heads: int
    d_head: int
    keys: int

    def __post_init__(self):
        if self.keys > ROW_MAX:
            raise ValueError(f"attention must have at most {ROW_MAX} keys (a score row), not {self.keys}")
        if not self.score.signed or self.prob.signed:
            raise ValueError(f"scores must be signed and probabilities unsigned, not {self.score} and {self.prob}")

    @property
    def scale(self) -> tuple[int, int]:
        return score_scale(self.d_head)

    @property
    def qk_acc(self) -> QFmt:
        """The exact Q·Kᵀ accumulator: ``d_head`` products of the largest codes."""
        return exact_fmt(self.d_head * magnitude(self.q) * magnitude(self.k), self.q.frac_bits + self.k.frac_bits)

    @property
    def scaled(self) -> QFmt:
        """``acc · scale_mul``, exact, with ``scale_frac`` more fraction bits: what the score requantization reads."""
        mul, frac = self.scale
        acc = self.qk_acc
        return exact_fmt(magnitude(acc) * mul, acc.frac_bits + frac)

    @property
    def av_acc(self) -> QFmt:
        """The exact A·V accumulator: ``keys`` products of the largest probability and value codes."""
        return exact_fmt(self.keys * magnitude(self.prob) * magnitude(self.v), self.prob.frac_bits + self.v.frac_bits)

    @cached_property
    def softmax(self) -> nl.SoftmaxConfig:
        """The softmax unit's config for the score and probability formats (statistics and normalization)."""
        return softmax_config(self.score, self.prob)

    @property
    def acc_bits(self) -> int:
        """Accumulator bits the two products need."""
        return max(self.qk_acc.width, self.av_acc.width)


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(rows, heads·d) → (heads, rows, d)."""
    rows, width = x.shape
    return x.reshape(rows, heads, width // heads).transpose(1, 0, 2)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(heads, rows, d) → (rows, heads·d)."""
    heads, rows, d = x.shape
    return x.transpose(1, 0, 2).reshape(rows, heads * d)


def qk_scores(f: AttentionFormats, q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Raw scores (heads, queries, keys) in ``f.score``: steps 1 and 2."""
    acc = exact_matmul(split_heads(q, f.heads), split_heads(k, f.heads).transpose(0, 2, 1))
    acc = f.qk_acc.check_raw(acc, "Q·Kᵀ accumulator")
    mul, _ = f.scale
    return f.score.cast(acc * mul, f.scaled)


def row_stats(f: AttentionFormats, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: per (head, query) the row max (raw ``f.score``) and 1/sum (raw ``f.softmax.inv_fmt``)."""
    return nl.softmax_stats(f.softmax, scores)


def probabilities(f: AttentionFormats, scores: np.ndarray, top: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """Step 4: raw ``f.prob`` probabilities from raw scores and their rows' statistics."""
    return nl.softmax_normalize(f.softmax, scores, top[..., None], inv[..., None])


def av(f: AttentionFormats, p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Step 5: the output (queries, heads·d) in ``f.out`` from probabilities (heads, queries, keys)."""
    acc = f.av_acc.check_raw(exact_matmul(p, split_heads(v, f.heads)), "A·V accumulator")
    return merge_heads(f.out.cast(acc, f.av_acc))


def attention_parts(f: AttentionFormats, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Every intermediate: ``scores``, ``max``, ``inv``, ``p`` (per head) and ``out``."""
    scores = qk_scores(f, q, k)
    top, inv = row_stats(f, scores)
    p = probabilities(f, scores, top, inv)
    return {"scores": scores, "max": top, "inv": inv, "p": p, "out": av(f, p, v)}


def attention(f: AttentionFormats, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The layer's output, raw ``f.out``."""
    return attention_parts(f, q, k, v)["out"]
