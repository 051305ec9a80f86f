# SPDX-License-Identifier: Apache-2.0
"""Input vectors shared by the nonlinear-unit tests: exhaustive for ≤ 16 bits, else random + edges."""

from __future__ import annotations

import numpy as np

from hwgen.qfx import QFmt

EXHAUSTIVE_MAX_WIDTH = 16
RANDOM_COUNT = 100_000


def edge_codes(fmt: QFmt) -> np.ndarray:
    """min, max, 0, ±1 LSB, every ± power of two, and their neighbours, inside the format."""
    codes = {fmt.min_raw, fmt.max_raw, 0, 1, -1, fmt.min_raw + 1, fmt.max_raw - 1}
    for bit in range(fmt.width):
        for base in (1 << bit, -(1 << bit)):
            codes.update({base - 1, base, base + 1})
    return np.array(sorted(c for c in codes if fmt.min_raw <= c <= fmt.max_raw), dtype=np.int64)


def unary_inputs(fmt: QFmt, seed: int, *, count: int = RANDOM_COUNT, focus: tuple[float, float] | None = None) -> np.ndarray:
    """Every code of ``fmt`` if it has at most 16 bits; else ``count`` random codes (half of them
    in the value range ``focus`` when given), plus every edge code."""
    if fmt.width <= EXHAUSTIVE_MAX_WIDTH:
        return np.arange(fmt.min_raw, fmt.max_raw + 1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts = [edge_codes(fmt), rng.integers(fmt.min_raw, fmt.max_raw, count // 2, endpoint=True)]
    if focus is not None:
        low, high = (int(np.clip(np.round(v / fmt.lsb), fmt.min_raw, fmt.max_raw)) for v in focus)
        parts.append(rng.integers(low, high, count - count // 2, endpoint=True))
    else:
        # Log-uniform magnitudes reach the small values a uniform draw never hits.
        bits = rng.integers(0, fmt.width - 1, count - count // 2)
        magnitude = rng.integers(0, 1 << 62, count - count // 2) >> (62 - bits)
        sign = rng.integers(0, 2, count - count // 2) if fmt.signed else 0
        parts.append(np.where(sign == 1, -magnitude, magnitude))
    return np.concatenate(parts).astype(np.int64)
