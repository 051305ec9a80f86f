# SPDX-License-Identifier: Apache-2.0
"""Golden models of the nonlinear units: exp, reciprocal, rsqrt, softmax, GELU and LayerNorm.

These functions *are* the definition of what the hardware computes.  Each unit has a small frozen
config dataclass (formats, table sizes, Newton steps, internal precisions) and a pure, vectorized
function on int64 raw arrays.  All arithmetic is on integers — shifts, exact products and sums,
table look-ups, leading-one detection — written so that the Amaranth RTL (``hwgen.rtl``) and the
HLS templates (``hwgen.hls_templates``) can do exactly the same operations; the only rounding
into a user format is an ap_fixed assignment (:meth:`QFmt.cast`).  Internal intermediates that
can exceed 62 bits (wide sums in LayerNorm, the softmax running sum) are carried as Python
integers in object arrays, which is still exact integer arithmetic.

Tables are generated here, deterministically from the config, and the RTL and HLS emitters take
them from the same functions (:func:`exp_table`, :func:`reciprocal_seed_table`,
:func:`rsqrt_seed_table`, :func:`gelu_table`, :func:`gelu_poly_coefficients`).

Every ``*Config`` has a ``for_formats`` constructor that derives internal precisions meeting the
accuracy target (within one output LSB of the correctly rounded function), and an explicit
constructor for experiments with other table sizes or step counts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hwgen import qfx
from hwgen.qfx import QFmt

__all__ = [
    "ExpConfig",
    "ReciprocalConfig",
    "RsqrtConfig",
    "SoftmaxConfig",
    "GeluTableConfig",
    "GeluPolyConfig",
    "LayerNormConfig",
    "exp",
    "reciprocal",
    "rsqrt",
    "softmax",
    "softmax_stats",
    "softmax_normalize",
    "gelu",
    "layernorm",
    "exp_table",
    "reciprocal_seed_table",
    "rsqrt_seed_table",
    "gelu_table",
    "gelu_poly_coefficients",
    "bit_length",
    "config_to_dict",
    "config_from_dict",
]

# log2(e) and 1/ln(2) to 100 digits: the constant is rounded exactly from this, not from a double.
_LOG2_E = Fraction("1.442695040888963407359924681001892137426645954152985934135449406931109219181185079885526622893506344")
_INT64_BITS = 62  # magnitudes below 2**62 keep every sum of two in int64


# ------------------------------------------------------------------------------------ integer helpers


def _ints(values, bits: int) -> np.ndarray:
    """``values`` as int64 if every magnitude needs at most ``bits`` bits, else as Python ints."""
    arr = np.asarray(values)
    if bits <= _INT64_BITS:
        return arr.astype(np.int64)
    return arr.astype(object)


def _big(values) -> np.ndarray:
    """``values`` as an object array of Python ints: exact at any width.

    Both operands of a shift or product must be converted: a Python int meeting an np.int64
    is computed in (wrapping) int64.
    """
    return np.asarray(values).astype(object)


def _int64(values) -> np.ndarray:
    return np.asarray(values).astype(np.int64)


def _shift(value, amount: int):
    """``value * 2**amount``, flooring when ``amount`` is negative (an arithmetic right shift)."""
    return value << amount if amount >= 0 else value >> -amount


def _round_shift(value, amount: int):
    """``value * 2**-amount`` rounded to nearest, ties up (add half, then floor); exact if amount ≤ 0."""
    if amount <= 0:
        return value << -amount
    return (value + (1 << (amount - 1))) >> amount


def _variable_shift_right(value, amount, limit: int):
    """``floor(value / 2**amount)`` for a per-element ``amount`` ≥ 0, clamped to ``limit``.

    ``limit`` must be at least the bit length of every ``value`` (a larger shift gives the same
    result); clamping keeps int64 shifts below 64, where NumPy's ``>>`` is undefined.
    """
    amount = np.minimum(np.asarray(amount), limit)
    return value >> amount


def bit_length(values, width: int) -> np.ndarray:
    """Bit length of non-negative integers below ``2**width`` (0 for 0), exactly, vectorized.

    A binary search for the leading one, as a priority encoder does it.
    """
    arr = np.asarray(values)
    wide = arr.dtype == object
    position = np.zeros(arr.shape, dtype=np.int64)
    step = 1 << ((width - 1).bit_length() - 1) if width > 1 else 0
    while step:
        trial = position + step
        shifted = arr >> (_big(trial) if wide else np.minimum(trial, 63))
        position = np.where(shifted > 0, trial, position)
        step >>= 1
    return position + (arr > 0).astype(np.int64)


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, not {value!r}")


def _check_fmt(name: str, fmt) -> None:
    if not isinstance(fmt, QFmt):
        raise ValueError(f"{name} must be a QFmt, not {fmt!r}")


def _ufixed(width: int, int_bits: int, rounding: str = "TRN", overflow: str = "WRAP") -> QFmt:
    return QFmt(width, int_bits, False, rounding, overflow)


def _ceil_log2(value: int) -> int:
    return max(0, (int(value) - 1).bit_length())


# ============================================================================================== exp


@dataclass(frozen=True)
class ExpConfig:
    """exp(x) for x ≤ 0 as 2^(x·log2 e) = 2^n · 2^f: a shift times a table of 2^f.

    ``y = x·log2 e`` is rounded to ``table_bits + interp_bits`` fraction bits, its integer part
    ``n ≤ 0`` becomes a right shift and its fraction ``f`` indexes ``2**table_bits`` segments of
    a table of 2^f (``table_frac_bits`` fraction bits), with linear interpolation on the next
    ``interp_bits`` bits when ``interpolate``.  The shifted value is truncated to
    ``out_fmt.frac_bits + guard_bits`` fraction bits, then assigned to ``out_fmt``.  Inputs
    above 0 are taken as 0 (result 1); inputs far below the underflow point are clamped to
    ``-clamp`` (which changes no result: both give 0 before the final assignment).
    """

    in_fmt: QFmt
    out_fmt: QFmt
    table_bits: int
    interpolate: bool
    table_frac_bits: int
    interp_bits: int
    log2e_frac_bits: int
    guard_bits: int

    def __post_init__(self):
        _check_fmt("in_fmt", self.in_fmt)
        _check_fmt("out_fmt", self.out_fmt)
        _check_positive_int("table_bits", self.table_bits, 0)
        _check_positive_int("table_frac_bits", self.table_frac_bits)
        _check_positive_int("interp_bits", self.interp_bits, 0)
        _check_positive_int("log2e_frac_bits", self.log2e_frac_bits)
        _check_positive_int("guard_bits", self.guard_bits, 0)
        if not isinstance(self.interpolate, bool):
            raise ValueError(f"interpolate must be a bool, not {self.interpolate!r}")
        if not self.interpolate and self.interp_bits:
            raise ValueError(f"interp_bits must be 0 without interpolation, not {self.interp_bits}")
        if self.table_bits > 16:
            raise ValueError(f"table_bits must be at most 16, not {self.table_bits}")
        if self.product_bits > 124:
            raise ValueError(f"the x·log2(e) product must fit 124 bits, not {self.product_bits}")

    @classmethod
    def for_formats(cls, in_fmt: QFmt, out_fmt: QFmt, *, precision: int | None = None,
                    table_bits: int | None = None, interpolate: bool = True, guard_bits: int = 3) -> ExpConfig:
        """Internal precisions for results within one LSB of ``out_fmt``.

        ``precision`` is the relative accuracy wanted, in fraction bits of values near 1 (default
        ``out_fmt.frac_bits``); the softmax asks for a wide ``out_fmt`` but a smaller precision.
        """
        _check_fmt("in_fmt", in_fmt)
        _check_fmt("out_fmt", out_fmt)
        precision = out_fmt.frac_bits if precision is None else precision
        working = precision + guard_bits
        if table_bits is None:
            # Chord error of 2^f over a segment h: ≤ h²·ln²2/8·2 ≈ 0.12·h², about half an LSB.
            table_bits = max(1, math.ceil((precision - 2) / 2)) if interpolate else precision + 1
        interp_bits = max(0, working + 1 - table_bits) if interpolate else 0
        wide_frac = out_fmt.frac_bits + guard_bits
        clamp_log2 = _ceil_log2(wide_frac + 2)
        return cls(
            in_fmt=in_fmt,
            out_fmt=out_fmt,
            table_bits=table_bits,
            interpolate=interpolate,
            table_frac_bits=working,
            interp_bits=interp_bits,
            log2e_frac_bits=working + clamp_log2 + 2,
            guard_bits=guard_bits,
        )

    # ------------------------------------------------------------------------- derived constants
    @property
    def wide_fmt(self) -> QFmt:
        """Format of the shifted value before the final assignment (values in [0, 1])."""
        return _ufixed(self.out_fmt.frac_bits + self.guard_bits + 1, 1)

    @property
    def y_frac_bits(self) -> int:
        return self.table_bits + self.interp_bits

    @property
    def log2e_raw(self) -> int:
        """log2(e) rounded to ``log2e_frac_bits`` fraction bits (ties up)."""
        return math.floor(_LOG2_E * (1 << self.log2e_frac_bits) + Fraction(1, 2))

    @property
    def clamp_raw(self) -> int:
        """Most negative input that is processed; below it every result is 0 (raw, ≤ 0)."""
        clamp = 1 << _ceil_log2(self.wide_fmt.frac_bits + 2)
        return max(self.in_fmt.min_raw, _shift(-clamp, self.in_fmt.frac_bits)) if self.in_fmt.frac_bits >= 0 \
            else max(self.in_fmt.min_raw, -(clamp >> -self.in_fmt.frac_bits) - 1)

    @property
    def clamped_bits(self) -> int:
        """Bits of the clamped input, a two's complement value in [clamp_raw, 0]."""
        return max(1, (-self.clamp_raw).bit_length()) + 1

    @property
    def product_bits(self) -> int:
        return self.clamped_bits + self.log2e_raw.bit_length() + 1

    @property
    def y_shift(self) -> int:
        """Right shift (rounding) from the product's fraction bits to y's."""
        return self.in_fmt.frac_bits + self.log2e_frac_bits - self.y_frac_bits

    @property
    def segments(self) -> int:
        return 1 << self.table_bits


@functools.lru_cache(maxsize=64)
def exp_table(cfg: ExpConfig) -> np.ndarray:
    """``2**(k / 2**table_bits)`` for k = 0..2**table_bits, rounded to ``table_frac_bits`` bits (raw).

    Cached (and read-only): a softmax row of S keys calls :func:`exp` for every key.
    """
    fmt = _ufixed(cfg.table_frac_bits + 2, 2, "RND")
    points = [2.0 ** (k / cfg.segments) for k in range(cfg.segments + 1)]
    table = fmt.quantize(np.array(points))
    table[0], table[-1] = 1 << cfg.table_frac_bits, 2 << cfg.table_frac_bits  # exact ends
    table.setflags(write=False)
    return table


def _exp2_parts(cfg: ExpConfig, x_raw):
    """The integer pipeline up to the table value: (n ≤ 0, mantissa v in table_frac_bits)."""
    x = np.minimum(np.maximum(_int64(x_raw), cfg.clamp_raw), 0)
    x = _ints(x, cfg.product_bits)
    y = _round_shift(x * cfg.log2e_raw, cfg.y_shift)  # ≤ 0, y_frac_bits fraction bits
    n = _int64(y >> cfg.y_frac_bits)  # floor: ≤ 0
    f = _int64(y & ((1 << cfg.y_frac_bits) - 1))
    index = f >> cfg.interp_bits
    table = exp_table(cfg)
    base = table[index]
    if cfg.interpolate:
        fraction = f & ((1 << cfg.interp_bits) - 1)
        slope = table[index + 1] - base
        base = base + ((slope * fraction) >> cfg.interp_bits)
    return n, base


def exp(cfg: ExpConfig, x_raw) -> np.ndarray:
    """exp of ``x_raw`` (raw ``cfg.in_fmt``, taken as 0 where positive) as raw ``cfg.out_fmt``."""
    cfg.in_fmt.check_raw(x_raw, "x_raw")
    n, mantissa = _exp2_parts(cfg, x_raw)
    wide_frac = cfg.wide_fmt.frac_bits
    shift = cfg.table_frac_bits - wide_frac - n  # n ≤ 0
    if cfg.table_frac_bits >= wide_frac:
        wide = _variable_shift_right(mantissa, shift, cfg.table_frac_bits + 2)
    else:
        lifted = mantissa << (wide_frac - cfg.table_frac_bits)
        wide = _variable_shift_right(lifted, -n, wide_frac + 2)
    return cfg.out_fmt.cast(_int64(wide), cfg.wide_fmt)


# ====================================================================== reciprocal and reciprocal sqrt


@dataclass(frozen=True)
class _NewtonConfig:
    """Shared fields of :class:`ReciprocalConfig` and :class:`RsqrtConfig`."""

    in_fmt: QFmt
    out_fmt: QFmt
    table_bits: int
    seed_frac_bits: int
    newton_steps: int
    work_bits: int
    guard_bits: int

    def __post_init__(self):
        _check_fmt("in_fmt", self.in_fmt)
        _check_fmt("out_fmt", self.out_fmt)
        _check_positive_int("table_bits", self.table_bits, self._min_table_bits)
        _check_positive_int("seed_frac_bits", self.seed_frac_bits)
        _check_positive_int("newton_steps", self.newton_steps, 0)
        _check_positive_int("work_bits", self.work_bits)
        _check_positive_int("guard_bits", self.guard_bits, 0)
        if self.table_bits > 14:
            raise ValueError(f"table_bits must be at most 14, not {self.table_bits}")
        if self.work_bits < self.table_bits or self.work_bits < self.seed_frac_bits:
            raise ValueError(
                f"work_bits must be at least table_bits and seed_frac_bits, not {self.work_bits}"
            )

    _min_table_bits = 0

    @classmethod
    def for_formats(cls, in_fmt: QFmt, out_fmt: QFmt, *, precision: int | None = None,
                    newton_steps: int = 2, guard_bits: int = 3, table_bits: int | None = None):
        """Precisions for results within one LSB of ``out_fmt``.

        ``precision`` is the relative accuracy wanted in bits (default: ``out_fmt.width``, enough
        for every representable result).
        """
        _check_fmt("in_fmt", in_fmt)
        _check_fmt("out_fmt", out_fmt)
        precision = out_fmt.width if precision is None else precision
        work = precision + guard_bits
        if table_bits is None:
            # A midpoint seed is good to about 2^-(T+1); each Newton step squares the error.
            need = work + 2
            table_bits = max(cls._min_table_bits, 3)
            while (table_bits + 1 - cls._seed_loss) * (1 << newton_steps) < need:
                table_bits += 1
        return cls(in_fmt, out_fmt, table_bits, table_bits + 3, newton_steps, work, guard_bits)

    _seed_loss = 0

    @property
    def wide_fmt(self) -> QFmt:
        """Format of the result before the final assignment: one more integer bit than out_fmt."""
        frac = self.out_fmt.frac_bits + self.guard_bits
        return QFmt(self.out_fmt.int_bits + 1 + frac, self.out_fmt.int_bits + 1, self.out_fmt.signed)

    @property
    def magnitude_bits(self) -> int:
        """Bits of |x| (a signed format's most negative code has magnitude 2^(W-1))."""
        return self.in_fmt.width


def _normalize(magnitude, width: int, work_bits: int):
    """Leading-one position p and mantissa m with m/2^work_bits ∈ [1, 2) (truncated), for
    magnitudes in [1, 2^width); all Python ints."""
    magnitude = _big(magnitude)
    p = bit_length(magnitude, width) - 1
    # Shift the leading one to bit work_bits: left by (work_bits − p) or right by (p − work_bits).
    up = _big(np.maximum(work_bits - p, 0))
    down = _big(np.maximum(p - work_bits, 0))
    return p, (magnitude << up) >> down


def _finish(cfg: _NewtonConfig, y, shift, negative, zero) -> np.ndarray:
    """Scale the mantissa result ``y`` (work_bits fraction bits) by 2^shift (flooring) into
    wide_fmt, saturating the magnitude; restore the sign; assign to out_fmt.  ``zero`` inputs give
    out_fmt's largest code."""
    wide = cfg.wide_fmt
    limit = (1 << (wide.width - 1)) - 1 if wide.signed else (1 << wide.width) - 1
    shift = _big(shift)
    y = _big(y)
    scaled = np.where(shift >= 0, y << np.maximum(shift, 0), y >> np.maximum(-shift, 0))
    scaled = _int64(np.minimum(scaled, limit))
    scaled = np.where(negative, -scaled, scaled)
    out = cfg.out_fmt.cast(scaled, wide)
    return np.where(zero, cfg.out_fmt.max_raw, out)


@dataclass(frozen=True)
class ReciprocalConfig(_NewtonConfig):
    """1/x: normalize |x| by its leading one, seed 1/m from a table on the top ``table_bits`` bits
    of the mantissa (midpoint values, ``seed_frac_bits`` bits), refine with ``newton_steps`` steps
    y ← y·(2 − m·y) in ``work_bits``-bit fixed point (truncating), scale back by the exponent,
    truncate to ``out_fmt.frac_bits + guard_bits`` bits, saturate and assign to ``out_fmt``.
    Negative inputs give −1/|x|; x = 0 gives ``out_fmt``'s largest code.
    """


def reciprocal_seed_table(cfg: ReciprocalConfig) -> np.ndarray:
    """Seeds 1/m at the midpoint of each of the 2^table_bits mantissa segments of [1, 2)."""
    segments = 1 << cfg.table_bits
    fmt = _ufixed(cfg.seed_frac_bits + 1, 1, "RND")
    mids = [1.0 / (1.0 + (k + 0.5) / segments) for k in range(segments)]
    return fmt.quantize(np.array(mids))


def _reciprocal_mantissa(cfg: ReciprocalConfig, mantissa) -> np.ndarray:
    """1/m for mantissas m in [2^P, 2^(P+1)) (P = work_bits fraction bits), by table seed + Newton."""
    P = cfg.work_bits
    index = _int64((mantissa >> (P - cfg.table_bits)) - (1 << cfg.table_bits))
    y = _big(reciprocal_seed_table(cfg)[index]) << (P - cfg.seed_frac_bits)
    two = 2 << P
    for _ in range(cfg.newton_steps):
        error = (mantissa * y) >> P
        y = (y * (two - error)) >> P
    return y


def reciprocal(cfg: ReciprocalConfig, x_raw) -> np.ndarray:
    """1/x of raw ``cfg.in_fmt`` values as raw ``cfg.out_fmt``."""
    x = cfg.in_fmt.check_raw(x_raw, "x_raw")
    zero = x == 0
    p, mantissa = _normalize(np.where(zero, 1, np.abs(x)), cfg.magnitude_bits, cfg.work_bits)
    y = _reciprocal_mantissa(cfg, mantissa)
    # x = m·2^(p − F_in)  ⇒  1/x = (1/m)·2^(F_in − p); y has work_bits fraction bits.
    shift = cfg.in_fmt.frac_bits - p + cfg.wide_fmt.frac_bits - cfg.work_bits
    return _finish(cfg, y, shift, x < 0, zero)


@dataclass(frozen=True)
class RsqrtConfig(_NewtonConfig):
    """1/√x: normalize x to m·2^(2e) with m ∈ [1, 4), seed 1/√m from a table indexed by the
    exponent's parity and the top ``table_bits − 1`` mantissa bits, refine with ``newton_steps``
    steps y ← y·(3 − m·y²)/2 in ``work_bits``-bit fixed point (truncating), scale by 2^-e,
    truncate to ``out_fmt.frac_bits + guard_bits`` bits, saturate and assign to ``out_fmt``.
    x ≤ 0 gives ``out_fmt``'s largest code.
    """

    _min_table_bits = 1
    _seed_loss = 1  # one index bit goes to the parity


def rsqrt_seed_table(cfg: RsqrtConfig) -> np.ndarray:
    """Seeds 1/√m at segment midpoints: entries [0, 2^(T-1)) cover m ∈ [1, 2), the rest [2, 4)."""
    half = 1 << (cfg.table_bits - 1)
    fmt = _ufixed(cfg.seed_frac_bits + 1, 1, "RND")
    mids = [1.0 / math.sqrt((1.0 + (k % half + 0.5) / half) * (1 + k // half)) for k in range(2 * half)]
    return fmt.quantize(np.array(mids))


def _rsqrt_mantissa(cfg: RsqrtConfig, mantissa, odd) -> np.ndarray:
    """1/√(m·2^odd) for m in [2^P, 2^(P+1)) (P = work_bits fraction bits) by table seed + Newton."""
    P = cfg.work_bits
    half_bits = cfg.table_bits - 1
    index = _int64((mantissa >> (P - half_bits)) - (1 << half_bits)) + (odd << half_bits)
    y = _big(rsqrt_seed_table(cfg)[index]) << (P - cfg.seed_frac_bits)
    scaled = mantissa << _big(odd)  # m·2^odd ∈ [1, 4)
    three = 3 << P
    for _ in range(cfg.newton_steps):
        square = (y * y) >> P
        error = (scaled * square) >> P
        y = (y * (three - error)) >> (P + 1)
    return y


def _rsqrt_parts(cfg: RsqrtConfig, magnitude, width: int, frac_bits: int):
    """(y, e): 1/√x ≈ y·2^-(work_bits + e) for x = magnitude·2^-frac_bits, magnitude in [1, 2^width)."""
    p, mantissa = _normalize(magnitude, width, cfg.work_bits)
    exponent = p - frac_bits  # x = (m/2^P)·2^exponent
    odd = exponent & 1
    half_exponent = (exponent - odd) >> 1
    return _rsqrt_mantissa(cfg, mantissa, odd), half_exponent


def rsqrt(cfg: RsqrtConfig, x_raw) -> np.ndarray:
    """1/√x of raw ``cfg.in_fmt`` values as raw ``cfg.out_fmt`` (x ≤ 0 gives the largest code)."""
    x = cfg.in_fmt.check_raw(x_raw, "x_raw")
    zero = x <= 0
    y, half_exponent = _rsqrt_parts(cfg, np.where(zero, 1, x), cfg.magnitude_bits, cfg.in_fmt.frac_bits)
    shift = cfg.wide_fmt.frac_bits - cfg.work_bits - half_exponent
    return _finish(cfg, y, shift, np.zeros(x.shape, bool), zero)


# ============================================================================================ softmax


@dataclass(frozen=True)
class SoftmaxConfig:
    """Single-pass softmax over rows of up to ``max_row`` elements.

    Statistics pass, per element x of a row in stream order (m = running max, l = running sum in
    ``sum_fmt``)::

        first element:  m ← x;  l ← e(0) = 1
        otherwise:      m' = max(m, x);  l ← floor(l · e(m − m')) + e(x − m');  m ← m'

    with e = :func:`exp` under ``stats_exp`` (its out_fmt has ``sum_fmt``'s fraction bits), so
    the sum is rescaled exactly when the max grows and ``l·1 = l`` otherwise.  At the row's end the
    statistics are ``(max, inv_sum = reciprocal(l))`` under ``recip`` — the interface an attention
    datapath uses to fuse the normalization into A·V.  Normalization: ``p = e2(x − max) · inv_sum``
    assigned to ``out_fmt``, with e2 = :func:`exp` under ``norm_exp``.
    """

    in_fmt: QFmt
    out_fmt: QFmt
    max_row: int
    stats_exp: ExpConfig
    norm_exp: ExpConfig
    recip: ReciprocalConfig

    def __post_init__(self):
        _check_fmt("in_fmt", self.in_fmt)
        _check_fmt("out_fmt", self.out_fmt)
        _check_positive_int("max_row", self.max_row)
        if self.stats_exp.in_fmt != self.diff_fmt or self.norm_exp.in_fmt != self.diff_fmt:
            raise ValueError(f"the exps' in_fmt must be {self.diff_fmt}, not {self.stats_exp.in_fmt}")
        if self.recip.in_fmt != self.sum_fmt:
            raise ValueError(f"recip.in_fmt must be {self.sum_fmt}, not {self.recip.in_fmt}")
        e_fmt = self.stats_exp.out_fmt
        if e_fmt.signed or e_fmt.int_bits != 1 or e_fmt.rounding != "TRN" or e_fmt.overflow != "WRAP":
            raise ValueError(f"stats_exp.out_fmt must be ufixed<W,1> (TRN, WRAP), not {e_fmt}")
        qfx.result_fmt_mul(self.norm_exp.out_fmt, self.inv_fmt)  # must fit 62 bits

    @classmethod
    def for_formats(cls, in_fmt: QFmt, out_fmt: QFmt, max_row: int = 1024, *, guard_bits: int = 3,
                    table_bits: int | None = None) -> SoftmaxConfig:
        """Precisions for probabilities within one LSB of ``out_fmt`` on rows up to ``max_row``."""
        _check_fmt("in_fmt", in_fmt)
        _check_fmt("out_fmt", out_fmt)
        _check_positive_int("max_row", max_row)
        row_bits = _ceil_log2(max_row)
        precision = out_fmt.frac_bits + guard_bits  # relative accuracy of every exp and of 1/l
        diff = cls._diff_fmt(in_fmt)
        if table_bits is None:
            # The chord error of 2^f is relative and of one sign: it mostly cancels between a term
            # and the sum, so the standalone exp's table for out_fmt's precision is enough.
            table_bits = max(1, math.ceil((out_fmt.frac_bits - 2) / 2))
        # Each of up to max_row terms is truncated once: keep row_bits more fraction bits in the sum.
        sum_frac = out_fmt.frac_bits + row_bits + guard_bits
        stats_exp = ExpConfig.for_formats(diff, _ufixed(sum_frac + 1, 1), precision=precision,
                                          table_bits=table_bits, guard_bits=0)
        norm_exp = ExpConfig.for_formats(diff, _ufixed(precision + 1, 1), precision=precision,
                                         table_bits=table_bits, guard_bits=0)
        sum_fmt = _ufixed(max_row.bit_length() + sum_frac, max_row.bit_length())
        # 1/l ∈ [1/max_row, 1]: row_bits more fraction bits keep its relative accuracy.
        inv_fmt = _ufixed(1 + precision + row_bits, 1, "RND", "SAT")
        recip = ReciprocalConfig.for_formats(sum_fmt, inv_fmt, precision=precision + 1)
        return cls(in_fmt, out_fmt, max_row, stats_exp, norm_exp, recip)

    @staticmethod
    def _diff_fmt(in_fmt: QFmt) -> QFmt:
        return QFmt(in_fmt.width + 1, in_fmt.int_bits + 1, True)

    @property
    def diff_fmt(self) -> QFmt:
        """Format of x − max (exact; always ≤ 0)."""
        return self._diff_fmt(self.in_fmt)

    @property
    def sum_fmt(self) -> QFmt:
        """Format of the running sum l ∈ [1, max_row]."""
        frac = self.stats_exp.out_fmt.frac_bits
        int_bits = self.max_row.bit_length()
        return _ufixed(int_bits + frac, int_bits)

    @property
    def inv_fmt(self) -> QFmt:
        """Format of the row statistic 1/l."""
        return self.recip.out_fmt

    @property
    def sum_frac_bits(self) -> int:
        return self.stats_exp.out_fmt.frac_bits


def _softmax_rows(x, cfg: SoftmaxConfig):
    x = cfg.in_fmt.check_raw(x, "x_raw")
    if x.ndim == 0 or x.shape[-1] < 1:
        raise ValueError(f"x must have rows of at least one element, not shape {x.shape}")
    if x.shape[-1] > cfg.max_row:
        raise ValueError(f"row length must be at most max_row={cfg.max_row}, not {x.shape[-1]}")
    return x


def softmax_stats(cfg: SoftmaxConfig, x_raw) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (max raw in in_fmt, 1/sum raw in inv_fmt) of rows ``x_raw[..., :]``, one pass in order."""
    x = _softmax_rows(x_raw, cfg)
    frac = cfg.sum_frac_bits
    # The running max after each key is known up front (a cumulative max), so every rescale factor
    # e(m − m') and every term e(s − m') is one vectorized exp; only the sum is a sequential pass.
    maxima = np.maximum.accumulate(x, axis=-1)
    before = np.concatenate([maxima[..., :1], maxima[..., :-1]], axis=-1)
    scales = exp(cfg.stats_exp, before - maxima)
    terms = exp(cfg.stats_exp, x - maxima)  # terms[..., 0] = e(0): the sum's start
    # running_sum ≤ keys·2^frac and e ≤ 2^frac, so ⌊sum·e / 2^frac⌋ = hi·e + ⌊lo·e / 2^frac⌋ with
    # sum = hi·2^frac + lo is exact in int64 when both products fit; otherwise Python ints.
    e_max = 1 << cfg.stats_exp.out_fmt.width
    if (x.shape[-1] + 1) * e_max < 1 << 62 and e_max << frac < 1 << 62:
        low = (1 << frac) - 1
        running_sum = terms[..., 0].copy()
        for k in range(1, x.shape[-1]):
            scale = scales[..., k]
            running_sum = (running_sum >> frac) * scale + (((running_sum & low) * scale) >> frac) + terms[..., k]
    else:
        scales, terms = _big(scales), _big(terms)
        running_sum = terms[..., 0]
        for k in range(1, x.shape[-1]):
            running_sum = ((running_sum * scales[..., k]) >> frac) + terms[..., k]
    inv_sum = reciprocal(cfg.recip, _int64(running_sum))
    return maxima[..., -1].copy(), inv_sum


def softmax_normalize(cfg: SoftmaxConfig, x_raw, max_raw, inv_sum_raw) -> np.ndarray:
    """p = e2(x − max)·inv_sum as raw out_fmt; ``max_raw``/``inv_sum_raw`` broadcast against x."""
    x = cfg.in_fmt.check_raw(x_raw, "x_raw")
    top = cfg.in_fmt.check_raw(max_raw, "max_raw")
    inv = cfg.inv_fmt.check_raw(inv_sum_raw, "inv_sum_raw")
    e2 = exp(cfg.norm_exp, x - top)
    product, fmt = qfx.mul(e2, cfg.norm_exp.out_fmt, inv, cfg.inv_fmt)
    return cfg.out_fmt.cast(product, fmt)


def softmax(cfg: SoftmaxConfig, x_raw) -> np.ndarray:
    """Softmax along the last axis of raw ``in_fmt`` values, as raw ``out_fmt`` probabilities."""
    x = _softmax_rows(x_raw, cfg)
    top, inv = softmax_stats(cfg, x)
    return softmax_normalize(cfg, x, top[..., None], inv[..., None])


# =============================================================================================== GELU

_SQRT_HALF = math.sqrt(0.5)


def _delta(t: float) -> float:
    """δ(t) = t·Φ(−t) = GELU's distance below ReLU at |x| = t (even in x)."""
    return t * 0.5 * math.erfc(t * _SQRT_HALF)


def _check_gelu(cfg, table_name: str, table_fmt: QFmt, *, signed: bool) -> None:
    """The checks both GELU variants share: formats, a signed input, the table's signedness, the range."""
    _check_fmt("in_fmt", cfg.in_fmt)
    _check_fmt("out_fmt", cfg.out_fmt)
    _check_fmt(table_name, table_fmt)
    if not cfg.in_fmt.signed:
        raise ValueError(f"in_fmt must be signed, not {cfg.in_fmt}")
    if table_fmt.signed != signed:
        kind = "signed" if signed else "unsigned (δ ≥ 0)"
        raise ValueError(f"{table_name} must be {kind}, not {table_fmt}")
    if not isinstance(cfg.range, (int, float)) or not 0 < cfg.range <= 64:
        raise ValueError(f"range must be a number in (0, 64], not {cfg.range!r}")
    cfg.result_fmt  # noqa: B018 - validates the width


def _gelu_result_fmt(in_fmt: QFmt, table_fmt: QFmt, frac: int) -> QFmt:
    """Exact signed format of ReLU(x) − δ̂ with ``frac`` fraction bits."""
    int_bits = max(in_fmt.int_bits, table_fmt.int_bits) + 1
    width = int_bits + frac
    if width > qfx.MAX_WIDTH:
        raise ValueError(f"the GELU result needs {width} bits, more than the {qfx.MAX_WIDTH} supported")
    return QFmt(width, int_bits, True)


@dataclass(frozen=True)
class GeluTableConfig:
    """Edge-MoE's GELU: ReLU(x) − δ(|x|), δ tabulated every 2^-step_log2 on [0, range) in
    ``table_fmt`` with linear interpolation; δ = 0 from ``range`` on.  The exact result
    ReLU(x)·2^k − δ̂ is assigned to ``out_fmt`` once.  Edge-MoE: step 1/32, range 5.5,
    ap_ufixed<22,0>.
    """

    in_fmt: QFmt
    out_fmt: QFmt
    step_log2: int = 5
    range: float = 5.5
    table_fmt: QFmt = QFmt(22, 0, False, "RND")

    def __post_init__(self):
        _check_positive_int("step_log2", self.step_log2, 0)
        _check_gelu(self, "table_fmt", self.table_fmt, signed=False)

    @property
    def segments(self) -> int:
        """Number of interpolation segments: entries are segments + 1."""
        return math.ceil(self.range * (1 << self.step_log2))

    @property
    def fraction_bits(self) -> int:
        """Input bits below the table step (interpolation weight), ≥ 0."""
        return max(0, self.in_fmt.frac_bits - self.step_log2)

    @property
    def result_fmt(self) -> QFmt:
        """Exact format of ReLU(x) − δ̂ before the assignment to out_fmt."""
        return _gelu_result_fmt(self.in_fmt, self.table_fmt, self.table_fmt.frac_bits + self.fraction_bits)


def gelu_table(cfg: GeluTableConfig) -> np.ndarray:
    """δ(k·step) for k = 0..segments, quantized to ``table_fmt`` (raw)."""
    step = 1.0 / (1 << cfg.step_log2)
    return cfg.table_fmt.quantize(np.array([_delta(k * step) for k in range(cfg.segments + 1)]))


def _magnitude_split(x, in_fmt: QFmt, step_log2: int):
    """|x| as (segment index, fraction bits below the step, number of fraction bits)."""
    t = np.abs(x)
    frac_bits = in_fmt.frac_bits - step_log2
    if frac_bits >= 0:
        return t >> frac_bits, t & ((1 << frac_bits) - 1), frac_bits
    return t << -frac_bits, np.zeros_like(t), 0


def _gelu_finish(cfg, x, delta, delta_frac: int) -> np.ndarray:
    """Assign ReLU(x) − δ̂ (δ̂ with ``delta_frac`` fraction bits) to out_fmt through result_fmt."""
    result_fmt = cfg.result_fmt
    relu = _shift(np.maximum(x, 0), result_fmt.frac_bits - cfg.in_fmt.frac_bits)
    value = relu - _shift(delta, result_fmt.frac_bits - delta_frac)
    return cfg.out_fmt.cast(value, result_fmt)


def _gelu_table(cfg: GeluTableConfig, x) -> np.ndarray:
    index, fraction, frac_bits = _magnitude_split(x, cfg.in_fmt, cfg.step_log2)
    table = gelu_table(cfg)
    inside = index < cfg.segments
    safe = np.where(inside, index, 0)
    base = table[safe]
    delta = (base << frac_bits) + (table[safe + 1] - base) * fraction
    delta = np.where(inside, delta, 0)
    return _gelu_finish(cfg, x, delta, cfg.table_fmt.frac_bits + frac_bits)


@dataclass(frozen=True)
class GeluPolyConfig:
    """GELU as ReLU(x) − δ(|x|) with δ a piecewise quadratic on segments of 2^-segment_log2 over
    [0, range): δ̂ = (c2·f + c1)·f + c0 in Horner form on integers (f = the bits of |x| below the
    segment step, each product truncated to ``coef_fmt``), coefficients interpolating δ at the
    three Chebyshev nodes of each segment.  Far fewer table entries than :class:`GeluTableConfig`
    for one more multiplier.
    """

    in_fmt: QFmt
    out_fmt: QFmt
    segment_log2: int = 2
    range: float = 5.5
    coef_fmt: QFmt = QFmt(24, 1, True, "RND")

    def __post_init__(self):
        _check_positive_int("segment_log2", self.segment_log2, 0)
        _check_gelu(self, "coef_fmt", self.coef_fmt, signed=True)

    @classmethod
    def for_formats(cls, in_fmt: QFmt, out_fmt: QFmt) -> GeluPolyConfig:
        r"""Segments, range and coefficient format for results within one LSB of ``out_fmt``.

        The three-node Chebyshev quadratic is off by at most max|δ'''|·h³/192 ≈ 0.0041·h³ on a
        segment of width h; h is the largest power of two keeping that below 0.6 output LSB.
        """
        _check_fmt("in_fmt", in_fmt)
        _check_fmt("out_fmt", out_fmt)
        frac = out_fmt.frac_bits
        segment_log2 = max(1, math.ceil((frac - math.log2(0.6 / 0.0041)) / 3))
        # Beyond the range δ must be below a quarter LSB; range is a multiple of the segment.
        step = 1.0 / (1 << segment_log2)
        # |x| reaches 2^(int_bits − 1) (the most negative code): cover it too.
        limit = min(64.0, max(1.0, 2.0 ** (in_fmt.int_bits - 1)) + step)
        end = step
        while end < limit and _delta(end) >= 2.0 ** -(frac + 2):
            end += step
        return cls(in_fmt, out_fmt, segment_log2, end, QFmt(frac + 8, 1, True, "RND"))

    @property
    def segments(self) -> int:
        return math.ceil(self.range * (1 << self.segment_log2))

    @property
    def fraction_bits(self) -> int:
        return max(0, self.in_fmt.frac_bits - self.segment_log2)

    @property
    def result_fmt(self) -> QFmt:
        return _gelu_result_fmt(self.in_fmt, self.coef_fmt, self.coef_fmt.frac_bits)


def gelu_poly_coefficients(cfg: GeluPolyConfig) -> np.ndarray:
    """(segments, 3) raw ``coef_fmt`` coefficients c0, c1, c2 of δ in the segment fraction u ∈ [0, 1)."""
    step = 1.0 / (1 << cfg.segment_log2)
    nodes = [0.5 - 0.5 * math.cos(math.pi * (2 * j + 1) / 6) for j in range(3)]
    rows = []
    for k in range(cfg.segments):
        values = [_delta((k + u) * step) for u in nodes]
        # Quadratic through three points, solved in closed form (Newton divided differences).
        (u0, u1, u2), (d0, d1, d2) = nodes, values
        first = (d1 - d0) / (u1 - u0)
        second = ((d2 - d1) / (u2 - u1) - first) / (u2 - u0)
        c2 = second
        c1 = first - second * (u0 + u1)
        c0 = d0 - first * u0 + second * u0 * u1
        rows.append((c0, c1, c2))
    return cfg.coef_fmt.quantize(np.array(rows))


def _gelu_poly(cfg: GeluPolyConfig, x) -> np.ndarray:
    index, fraction, frac_bits = _magnitude_split(x, cfg.in_fmt, cfg.segment_log2)
    coefficients = gelu_poly_coefficients(cfg)
    inside = index < cfg.segments
    safe = np.where(inside, index, 0)
    c0, c1, c2 = (coefficients[safe, j] for j in range(3))
    # f = fraction / 2^frac_bits: each product is floored back to coef_fmt's fraction bits.
    inner = ((c2 * fraction) >> frac_bits) + c1
    delta = ((inner * fraction) >> frac_bits) + c0
    delta = np.where(inside, np.maximum(delta, 0), 0)
    return _gelu_finish(cfg, x, delta, cfg.coef_fmt.frac_bits)


def gelu(cfg: GeluTableConfig | GeluPolyConfig, x_raw) -> np.ndarray:
    """GELU of raw ``cfg.in_fmt`` values as raw ``cfg.out_fmt`` (table or polynomial variant)."""
    x = cfg.in_fmt.check_raw(x_raw, "x_raw")
    if isinstance(cfg, GeluTableConfig):
        return _gelu_table(cfg, x)
    if isinstance(cfg, GeluPolyConfig):
        return _gelu_poly(cfg, x)
    raise ValueError(f"cfg must be a GeluTableConfig or GeluPolyConfig, not {type(cfg).__name__}")


# ========================================================================================= LayerNorm


@dataclass(frozen=True)
class LayerNormConfig:
    """LayerNorm over rows of n ≤ ``max_channels`` elements, one pass of exact integer sums.

    With x_raw the raw inputs, S1 = Σx_raw and S2 = Σx_raw² (exact, wide), and ε quantized to
    ``eps_raw`` on the 2^-2F grid of x² (F = in_fmt.frac_bits)::

        D = n·S2 − S1² + n²·eps_raw          (= n²·(var + ε)·2^2F, exact)
        U = n·x_raw − S1                     (= n·(x − μ)·2^F, exact)
        (x − μ)·rstd = U / √D

    1/√D comes from the rsqrt scheme of :class:`RsqrtConfig` (``rsqrt``: only its table and
    Newton fields are used) as a mantissa and an exponent; U·rsqrt(D) is rounded once (to
    nearest, ties up) into ``norm_fmt`` (saturating), then ``y = norm·γ + β`` is computed exactly
    and assigned to ``out_fmt`` (ap_fixed ``out = norm * gamma + beta``).  No division by n is
    needed anywhere.  D = 0 (a constant row with ε = 0) gives norm = 0.
    """

    in_fmt: QFmt
    gamma_fmt: QFmt
    beta_fmt: QFmt
    out_fmt: QFmt
    norm_fmt: QFmt
    max_channels: int
    eps: float
    rsqrt: RsqrtConfig

    def __post_init__(self):
        for name in ("in_fmt", "gamma_fmt", "beta_fmt", "out_fmt", "norm_fmt"):
            _check_fmt(name, getattr(self, name))
        _check_positive_int("max_channels", self.max_channels)
        if not isinstance(self.eps, (int, float)) or not 0 <= self.eps < 1:
            raise ValueError(f"eps must be a number in [0, 1), not {self.eps!r}")
        if not self.norm_fmt.signed:
            raise ValueError(f"norm_fmt must be signed, not {self.norm_fmt}")
        if self.rsqrt.work_bits <= self.norm_fmt.frac_bits:
            raise ValueError(
                f"rsqrt.work_bits must exceed norm_fmt's fraction bits ({self.norm_fmt.frac_bits}), "
                f"not {self.rsqrt.work_bits}"
            )
        qfx.result_fmt_add(qfx.result_fmt_mul(self.norm_fmt, self.gamma_fmt), self.beta_fmt)

    @classmethod
    def for_formats(cls, in_fmt: QFmt, gamma_fmt: QFmt, beta_fmt: QFmt, out_fmt: QFmt,
                    max_channels: int = 1024, eps: float = 1e-6, *, guard_bits: int = 3,
                    newton_steps: int = 2) -> LayerNormConfig:
        """Precisions for outputs within one LSB of ``out_fmt`` for any γ in ``gamma_fmt``."""
        _check_positive_int("max_channels", max_channels)
        # |x − μ|/σ ≤ √(n − 1): the normalized value needs ⌈log2 √n⌉ + 1 integer bits and a sign.
        norm_int = (_ceil_log2(max_channels) + 1) // 2 + 2
        # norm·γ must be good to an output LSB: γ can scale errors up by 2^gamma_int.
        norm_frac = out_fmt.frac_bits + max(gamma_fmt.int_bits, 0) + guard_bits
        norm_fmt = QFmt(norm_int + norm_frac, norm_int, True, "RND", "SAT")
        work = norm_frac + norm_int + guard_bits
        rsqrt_cfg = RsqrtConfig.for_formats(
            QFmt(32, 32), QFmt(32, 1, False), precision=work - guard_bits, newton_steps=newton_steps,
            guard_bits=guard_bits,
        )
        return cls(in_fmt, gamma_fmt, beta_fmt, out_fmt, norm_fmt, max_channels, eps, rsqrt_cfg)

    @property
    def eps_raw(self) -> int:
        """ε on the 2^-2F grid of x_raw², rounded to nearest (ties to even)."""
        return round(Fraction(self.eps) * Fraction(2) ** (2 * self.in_fmt.frac_bits))

    @property
    def sum_bits(self) -> int:
        """Bits of the signed sum S1."""
        return self.in_fmt.width + _ceil_log2(self.max_channels) + 1

    @property
    def square_sum_bits(self) -> int:
        """Bits of the unsigned sum S2."""
        return 2 * self.in_fmt.width + _ceil_log2(self.max_channels)

    @property
    def count_bits(self) -> int:
        return self.max_channels.bit_length()

    @property
    def d_bits(self) -> int:
        """Bits of the unsigned D = n·S2 − S1² + n²·eps_raw."""
        n2_eps = (self.max_channels ** 2 * self.eps_raw).bit_length()
        return max(self.count_bits + self.square_sum_bits, n2_eps) + 1

    @property
    def u_bits(self) -> int:
        """Bits of the signed U = n·x_raw − S1."""
        return self.count_bits + self.in_fmt.width + 1


def layernorm(cfg: LayerNormConfig, x_raw, gamma_raw, beta_raw, *, d_offset: int | None = None) -> np.ndarray:
    """LayerNorm along the last axis of raw ``in_fmt`` values with per-channel γ, β; raw out_fmt.

    ``d_offset`` is the n²·eps_raw term of D; by default it comes from ``cfg.eps`` (the
    accelerator's LAYERNORM descriptor carries it, so one unit serves every ε < 1).
    """
    x = cfg.in_fmt.check_raw(x_raw, "x_raw")
    gamma = cfg.gamma_fmt.check_raw(gamma_raw, "gamma_raw")
    beta = cfg.beta_fmt.check_raw(beta_raw, "beta_raw")
    if x.ndim == 0 or not 1 <= x.shape[-1] <= cfg.max_channels:
        raise ValueError(f"rows must have 1..{cfg.max_channels} elements, not shape {x.shape}")
    n = x.shape[-1]
    if gamma.shape[-1:] != (n,) or beta.shape[-1:] != (n,):
        raise ValueError(f"gamma and beta must have {n} channels, not {gamma.shape} and {beta.shape}")
    # Every sum and product is exact: in int64 where the widths allow (D, and U·y with y < 2^(P+2)),
    # e.g. at 16-bit activations, else in Python ints.
    in_int64 = cfg.d_bits <= 62 and cfg.u_bits + cfg.rsqrt.work_bits + 2 <= 62
    exact = _int64 if in_int64 else _big
    wide = exact(x)
    s1 = wide.sum(axis=-1, keepdims=True)
    s2 = (wide * wide).sum(axis=-1, keepdims=True)
    if d_offset is None:
        d_offset = n * n * cfg.eps_raw
    elif not 0 <= d_offset < n * n << (2 * cfg.in_fmt.frac_bits):
        raise ValueError(f"d_offset must be n²·eps_raw for an ε in [0, 1), not {d_offset}")
    d = n * s2 - s1 * s1 + d_offset
    u = n * wide - s1
    zero = d == 0
    y, half_exponent = _rsqrt_parts(cfg.rsqrt, np.where(zero, 1, d), cfg.d_bits, 0)
    # U/√D = U·y·2^-(P + e): round to norm_fmt's fraction bits (ties up), then saturate.
    shift = exact(cfg.rsqrt.work_bits + half_exponent - cfg.norm_fmt.frac_bits)  # ≥ 1 since D ≥ 1
    rounded = (u * exact(y) + (exact(1) << (shift - 1))) >> shift
    rounded = np.where(zero, 0, rounded)
    norm = _int64(np.minimum(np.maximum(rounded, cfg.norm_fmt.min_raw), cfg.norm_fmt.max_raw))
    scaled, scaled_fmt = qfx.mul(norm, cfg.norm_fmt, gamma, cfg.gamma_fmt)
    total, total_fmt = qfx.add(scaled, scaled_fmt, beta, cfg.beta_fmt)
    return cfg.out_fmt.cast(total, total_fmt)


# ================================================================================= (de)serialization

_CONFIG_CLASSES = {
    cls.__name__: cls
    for cls in (ExpConfig, ReciprocalConfig, RsqrtConfig, SoftmaxConfig, GeluTableConfig, GeluPolyConfig,
                LayerNormConfig)
}


def config_to_dict(cfg) -> dict:
    """A JSON-ready dict of a config (formats as their notation, nested configs as dicts)."""
    if type(cfg).__name__ not in _CONFIG_CLASSES:
        raise ValueError(f"cfg must be one of {', '.join(_CONFIG_CLASSES)}, not {type(cfg).__name__}")
    out = {"kind": type(cfg).__name__}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if isinstance(value, QFmt):
            value = {"qfmt": str(value)}
        elif type(value).__name__ in _CONFIG_CLASSES:
            value = config_to_dict(value)
        out[field.name] = value
    return out


def config_from_dict(data: dict):
    """The config that :func:`config_to_dict` wrote."""
    kind = data.get("kind")
    if kind not in _CONFIG_CLASSES:
        raise ValueError(f"kind must be one of {', '.join(_CONFIG_CLASSES)}, not {kind!r}")
    values = {}
    for key, value in data.items():
        if key == "kind":
            continue
        if isinstance(value, dict) and "qfmt" in value:
            value = QFmt.parse(value["qfmt"])
        elif isinstance(value, dict):
            value = config_from_dict(value)
        values[key] = value
    return _CONFIG_CLASSES[kind](**values)
