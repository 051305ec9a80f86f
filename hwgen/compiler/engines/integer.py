# SPDX-License-Identifier: Apache-2.0
"""Integer steps every engine shares: wrapping to a register width, and docs/isa.md §3.5's requantization."""

from __future__ import annotations

import numpy as np

from hwgen.isa import Requant

__all__ = ["requantize_int", "wrap"]


def wrap(values: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """The low ``width`` bits of integers (object or int64 arrays), sign-extended if ``signed``."""
    modulus = 1 << width
    low = values % modulus
    if signed:
        low = np.where(low >= modulus >> 1, low - modulus, low)
    return low


def requantize_int(v: np.ndarray, rq: Requant) -> np.ndarray:
    """docs/isa.md §3.5 step by step: cut, round, overflow. ``v`` holds int64 two's-complement values."""
    v = np.asarray(v, dtype=np.int64)
    negative = v < 0
    if rq.shift > 0:
        s = rq.shift
        q = v >> min(s, 63)
        half = ((v >> min(s - 1, 63)) & 1).astype(bool)
        sticky = (v & ((1 << min(s - 1, 62)) - 1)) != 0
    else:
        left = -rq.shift
        # Exact left shift: int64 while it cannot overflow, Python integers otherwise.
        if int(np.abs(v).max(initial=0)) < 2 ** (62 - left):
            q = v << left
        else:
            q = v.astype(object) * (1 << left)
        half = sticky = np.zeros(v.shape, dtype=bool)

    mode = rq.rounding
    if mode == "TRN":
        inc = np.zeros(v.shape, dtype=bool)
    elif mode == "TRN_ZERO":
        inc = negative & (half | sticky)
    elif mode == "RND":
        inc = half
    elif mode == "RND_ZERO":
        inc = half & (negative | sticky)
    elif mode == "RND_INF":
        inc = half & (~negative | sticky)
    elif mode == "RND_MIN_INF":
        inc = half & sticky
    else:  # RND_CONV
        inc = half & ((np.asarray(q % 2) == 1) | sticky)
    q = q + inc.astype(np.int64)

    w = rq.width
    lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if rq.signed else (0, (1 << w) - 1)
    wrapped = wrap(q, w, rq.signed)
    out_of_range = (q < lo) | (q > hi)
    overflow = rq.overflow
    if overflow == "WRAP":
        result = wrapped
    elif overflow == "SAT":
        result = np.where(q > hi, hi, np.where(q < lo, lo, q))
    elif overflow == "SAT_ZERO":
        result = np.where(out_of_range, 0, q)
    elif overflow == "SAT_SYM":
        low = -hi if rq.signed and w > 1 else lo
        result = np.where(q > hi, hi, np.where(q < low, low, q))
    else:  # WRAP_SM
        position = rq.shift + w
        if 0 <= position < rq.src_width:
            above = (v >> position) & 1
        else:
            above = np.zeros(v.shape, dtype=np.int64)
        invert = out_of_range & (above != (np.asarray(wrapped) < 0))
        result = np.where(invert, ~wrapped.astype(np.int64), wrapped)
    return np.asarray(result).astype(np.int64)
