# SPDX-License-Identifier: Apache-2.0
"""Float references of the nonlinear units, for error bounds and reports (not bit-exact specs).

"Correctly rounded" means the exact function value assigned to the output format — rounded and
overflow-handled by that format's own modes, as ``ap_fixed`` assignment of the true value would
be (:func:`correctly_rounded`).  The references are evaluated in float64, whose error (≈2^-52
relative) is far below any format compared here.
"""

from __future__ import annotations

import math

import numpy as np

from hwgen.qfx import QFmt

__all__ = ["exp", "reciprocal", "rsqrt", "softmax", "gelu", "layernorm", "correctly_rounded"]

_erf = np.frompyfunc(math.erf, 1, 1)


def correctly_rounded(out_fmt: QFmt, values) -> np.ndarray:
    """Raw ``out_fmt`` codes of float ``values``: the exact function assigned to the format."""
    return out_fmt.quantize(np.asarray(values, dtype=np.float64))


def exp(x) -> np.ndarray:
    """exp(min(x, 0)): the exp unit takes positive inputs as 0."""
    return np.exp(np.minimum(np.asarray(x, dtype=np.float64), 0.0))


def reciprocal(x) -> np.ndarray:
    """1/x; ±inf at 0 (the unit gives its format's largest code there)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 1.0 / x


def rsqrt(x) -> np.ndarray:
    """1/√x; +inf for x ≤ 0 (the unit gives its format's largest code there)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, 1.0 / np.sqrt(np.maximum(x, 0.0)), np.inf)


def softmax(x) -> np.ndarray:
    """Softmax along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def gelu(x) -> np.ndarray:
    """Exact (erf) GELU: x·Φ(x)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + _erf(x * math.sqrt(0.5)).astype(np.float64))


def layernorm(x, gamma, beta, eps: float) -> np.ndarray:
    """(x − μ)/√(var + ε)·γ + β along the last axis (population variance); 0·γ + β where var + ε = 0."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    scale = np.sqrt(var + eps)
    normalized = np.where(scale > 0, (x - mean) / np.where(scale > 0, scale, 1.0), 0.0)
    return normalized * np.asarray(gamma, dtype=np.float64) + np.asarray(beta, dtype=np.float64)
