# SPDX-License-Identifier: Apache-2.0
"""Exact integer matrix products of int64 raw codes: the one definition every engine and op uses."""

from __future__ import annotations

import numpy as np

from hwgen.qfx import QFmt

__all__ = ["matmul", "exact_matmul", "magnitude", "exact_fmt"]

#: Largest magnitude every integer below which a float64 holds exactly.
_FLOAT_EXACT = 2**53


def _max_abs(raw: np.ndarray) -> int:
    return int(np.abs(raw).max(initial=0))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (b 2-D, or batched like a) without BLAS.

    NumPy's einsum loops run in the calling thread: on a loaded machine multithreaded BLAS is
    10x slower for these small products, and its summation order varies with the thread count.
    """
    if b.ndim == 2:
        return np.einsum("...k,kn->...n", a, b)
    return np.einsum("...mk,...kn->...mn", a, b)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` of int64 arrays (the sum of the ``qfx.mul`` products along K).

    When ``K · max|a| · max|b| < 2**53`` every product and every partial sum, in any order, is an
    integer a float64 holds exactly, so the float64 product *is* the integer product (and
    faster); otherwise the product is summed in int64, which is exact below 2**63.
    """
    k = a.shape[-1]
    bound = k * _max_abs(a) * _max_abs(b)
    if bound < _FLOAT_EXACT:
        return matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    if bound < 2**63:
        return matmul(a.astype(np.int64), b.astype(np.int64))
    raise ValueError(f"matrix product must stay below 2**63 in magnitude, not reach {bound}")


def magnitude(fmt: QFmt) -> int:
    """Largest |raw| of a format."""
    return max(-fmt.min_raw, fmt.max_raw)


def exact_fmt(bound: int, frac_bits: int) -> QFmt:
    """The signed format holding every integer of magnitude ≤ ``bound`` with ``frac_bits`` fraction bits:
    the format of an exact sum whose largest magnitude is ``bound``."""
    width = max(bound.bit_length() + 1, 2)
    return QFmt(width, width - frac_bits, True)
