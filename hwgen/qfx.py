# SPDX-License-Identifier: Apache-2.0
"""QFX fixed point: Xilinx ``ap_fixed<W,I,Q,O>`` / ``ap_ufixed`` semantics on NumPy int64 arrays.

A number is an int64 *raw code* plus a :class:`QFmt`; its value is ``raw * 2**(int_bits - width)``.
:meth:`QFmt.quantize` (double → fixed), :meth:`QFmt.cast` (fixed → fixed) and the exact
:func:`mul` / :func:`add` / :func:`sub` reproduce what the Xilinx headers compute, bit for bit;
``tests/test_qfx_ap_fixed.py`` proves it against the real headers with g++.

Conversion is: cut the source at the destination's LSB (floor), add the rounding increment the
mode asks for, then handle overflow if the rounded integer lies outside the destination's range.
Three behaviours of the headers are not what the mode names suggest, and are reproduced:

- ``SAT_SYM`` (signed destination, signed source) also maps an in-range result equal to the most
  negative code to ``-max``; and for ``width == 1`` its "symmetric" minimum is the minimum itself.
- ``WRAP_SM`` wraps, and when the source bit just above the destination's sign bit (read before
  rounding, and taken as 0 when the source has no such bit) differs from the wrapped sign bit, it
  inverts every bit. ``ap_ufixed`` rejects ``WRAP_SM``, so unsigned formats cannot use it.
- Assigning an ap_fixed to one of the *same* type is C++'s plain copy, so ``cast`` to the
  source's own format is the identity even under ``SAT_SYM``.

One case has no C++ counterpart: a rounding cast from a source whose every bit lies below the
destination's rounding bit (``src.frac_bits - dst.frac_bits > src.width``) trips an assertion in
``ap_private.h``. There ``cast`` uses the value the headers themselves give that bit (the source's
sign), which is the mathematical definition: the source is smaller than half a destination LSB.
Subnormal doubles are read as the headers read them (hidden bit set), which changes no result for
formats with fewer than ~1000 fraction bits.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ROUNDING_MODES",
    "OVERFLOW_MODES",
    "MAX_WIDTH",
    "MAX_INT_BITS",
    "QFmt",
    "mul",
    "add",
    "sub",
    "result_fmt_mul",
    "result_fmt_add",
    "result_fmt_sub",
]

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM", "WRAP_SM")
MAX_WIDTH = 62
# Keeps every representable value and LSB a normal double, so to_float never under/overflows.
MAX_INT_BITS = 512

_DEFAULT_ROUNDING = "TRN"
_DEFAULT_OVERFLOW = "WRAP"
_UNSIGNED_OVERFLOW_MODES = tuple(m for m in OVERFLOW_MODES if m != "WRAP_SM")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class QFmt:
    """A fixed-point format with exactly the semantics of ``ap_fixed<W,I,Q,O>`` / ``ap_ufixed``."""

    width: int
    int_bits: int
    signed: bool = True
    rounding: str = _DEFAULT_ROUNDING
    overflow: str = _DEFAULT_OVERFLOW

    def __post_init__(self) -> None:
        if not _is_int(self.width) or self.width < 1:
            raise ValueError(f"width must be a positive integer, not {self.width!r}")
        if self.width > MAX_WIDTH:
            raise ValueError(f"width must be at most {MAX_WIDTH}, not {self.width!r}")
        if not _is_int(self.int_bits) or not -MAX_INT_BITS <= self.int_bits <= MAX_INT_BITS:
            raise ValueError(
                f"int_bits must be an integer from {-MAX_INT_BITS} to {MAX_INT_BITS}, not {self.int_bits!r}"
            )
        if not isinstance(self.signed, (bool, np.bool_)):
            raise ValueError(f"signed must be a bool, not {self.signed!r}")
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {self.rounding!r}")
        if self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_MODES)}, not {self.overflow!r}")
        if not self.signed and self.overflow not in _UNSIGNED_OVERFLOW_MODES:
            raise ValueError(
                f"overflow of an unsigned format must be one of {', '.join(_UNSIGNED_OVERFLOW_MODES)}, "
                f"not {self.overflow!r}"
            )
        # NumPy scalars would hash and compare like ints but print differently: store plain types.
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "int_bits", int(self.int_bits))
        object.__setattr__(self, "signed", bool(self.signed))

    # ---------------------------------------------------------------------------- derived values

    @property
    def frac_bits(self) -> int:
        """Bits below the binary point (negative when the LSB weighs more than 1)."""
        return self.width - self.int_bits

    @property
    def lsb(self) -> float:
        """Value of one raw step."""
        return 2.0**-self.frac_bits

    @property
    def min_raw(self) -> int:
        """Smallest raw code."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        """Largest raw code."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def with_(self, **changes) -> QFmt:
        """A copy with some fields changed, validated like a new format."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in names:
                raise ValueError(f"a QFmt field must be one of {', '.join(names)}, not {key!r}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------- notation

    _NOTATION = re.compile(
        r"^(?P<kind>(?:ap_)?u?fixed|(?:ap_)?u?int)<(?P<args>[^<>]*)>$", re.IGNORECASE
    )

    @classmethod
    def parse(cls, text: str) -> QFmt:
        """Read ``fixed<W,I[,Q[,O]]>``, ``ufixed<…>``, ``ap_fixed<…>``, ``ap_ufixed<…>``, ``int<N>``, ``uint<N>``."""
        problem = (
            "format must look like fixed<W,I[,Q[,O]]>, ufixed<…>, int<N> or uint<N>, not {!r}".format(text)
        )
        if not isinstance(text, str):
            raise ValueError(problem)
        match = cls._NOTATION.match("".join(text.split()))
        if match is None:
            raise ValueError(problem)
        kind = match["kind"].lower().removeprefix("ap_")
        args = match["args"].split(",")
        signed = not kind.startswith("u")
        is_int = kind.endswith("int")
        if is_int:
            if len(args) != 1 or not re.fullmatch(r"\d+", args[0]):
                raise ValueError(problem)
            width = int(args[0])
            return cls(width, width, signed)
        if not 2 <= len(args) <= 4 or not all(re.fullmatch(r"[+-]?\d+", a) for a in args[:2]):
            raise ValueError(problem)
        modes = [a.upper().removeprefix("AP_") for a in args[2:]]
        rounding = modes[0] if len(modes) > 0 else _DEFAULT_ROUNDING
        overflow = modes[1] if len(modes) > 1 else _DEFAULT_OVERFLOW
        return cls(int(args[0]), int(args[1]), signed, rounding, overflow)

    def __str__(self) -> str:
        parts = [str(self.width), str(self.int_bits), self.rounding, self.overflow]
        if self.overflow == _DEFAULT_OVERFLOW:
            parts.pop()
            if self.rounding == _DEFAULT_ROUNDING:
                parts.pop()
        return f"{'' if self.signed else 'u'}fixed<{','.join(parts)}>"

    def cpp_type(self) -> str:
        """The C++ type, always with both modes: ``ap_fixed<16, 6, AP_RND, AP_SAT>``."""
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width}, {self.int_bits}, AP_{self.rounding}, AP_{self.overflow}>"

    # ---------------------------------------------------------------------------- conversions

    def check_raw(self, raw, what: str = "raw") -> np.ndarray:
        """``raw`` as an int64 array, or ValueError if it is not integer or outside this format's codes."""
        arr = np.asarray(raw)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{what} of {self} must be an integer array, not {arr.dtype}")
        if arr.size:
            bad = (arr < self.min_raw) | (arr > self.max_raw)
            if bad.any():
                first = arr[bad].flat[0]
                raise ValueError(
                    f"{what} of {self} must lie in {self.min_raw}..{self.max_raw}, not {int(first)}"
                )
        return arr.astype(np.int64, copy=False)

    def to_float(self, raw) -> np.ndarray:
        """Values of raw codes as float64: exact up to 53-bit widths, nearest double beyond."""
        return np.ldexp(self.check_raw(raw).astype(np.float64), -self.frac_bits)

    def quantize(self, x) -> np.ndarray:
        """Raw codes of float values, exactly as assigning a ``double`` to this ap_fixed gives."""
        values = np.asarray(x, dtype=np.float64)
        if not np.isfinite(values).all():
            first = values[~np.isfinite(values)].flat[0]
            raise ValueError(f"values to quantize into {self} must be finite, not {first}")
        # The headers decompose the IEEE bits: a 54-bit signed mantissa m with the hidden bit set
        # and value m * 2**(exponent_field - 1075).
        bits = values.view(np.uint64)
        exponent_field = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).view(np.int64)
        mantissa = ((bits & np.uint64((1 << 52) - 1)) | np.uint64(1 << 52)).view(np.int64)
        mantissa = np.where(values < 0, -mantissa, np.where(values == 0, 0, mantissa))
        shift = (1075 - self.frac_bits) - exponent_field
        return _convert(mantissa, 54, True, shift, self)

    def cast(self, raw, src: QFmt) -> np.ndarray:
        """Raw codes in this format of ``raw`` in ``src``, as assigning ap_fixed<src> to this type gives."""
        if not isinstance(src, QFmt):
            raise ValueError(f"src must be a QFmt, not {src!r}")
        codes = src.check_raw(raw)
        if src == self:
            return codes.copy()
        return _convert(codes, src.width, src.signed, src.frac_bits - self.frac_bits, self)


# -------------------------------------------------------------------------------- the conversion


def _convert(source: np.ndarray, src_width: int, src_signed: bool, shift, dst: QFmt) -> np.ndarray:
    """Re-scale integers ``source`` (``src_width`` bits) by ``2**-shift`` into ``dst``, ap_fixed style.

    ``shift`` (source fraction bits minus destination fraction bits) is an int or, for doubles, an
    int64 array broadcast against ``source``. Works on int64 only: the exact result is kept as its
    low ``dst.width`` bits (``low``) and the integer above them (``high``, clamped to ±2 when huge).
    """
    width = dst.width
    mask = np.int64((1 << width) - 1)
    scalar = np.ndim(shift) == 0

    # 1. Cut at the destination LSB (floor).
    low, high = _cut(source, shift, width)
    if dst.overflow == "WRAP_SM":
        # The source bit just above the destination's sign bit, before rounding; the headers take
        # it as 0 where the source has no such bit.
        above_msb = (high & 1).astype(bool) & (shift + width < src_width)

    # 2. Round: add 0 or 1 LSB from the first dropped bit and whether any lower bit is set.
    negative = source < 0
    rounds = dst.rounding != "TRN" and not (dst.rounding == "TRN_ZERO" and not src_signed)
    if rounds and (not scalar or shift > 0):
        half = ((source >> np.minimum(shift - 1, 63)) & 1).astype(bool)
        below_half = (source & ((np.int64(1) << np.clip(shift - 1, 0, 62)) - 1)) != 0
        increment = _round_increment(dst.rounding, half, below_half, negative, low)
        if not scalar:
            increment &= shift > 0
        low = low + increment
        high = high + (low >> width)
        low &= mask

    # 3. Overflow: the rounded integer is high * 2**width + low.
    sign_weight = np.int64(1 << (width - 1))
    if dst.signed:
        wrapped = np.where(low >= sign_weight, low - 2 * sign_weight, low)
        too_big = (high > 0) | ((high == 0) & (low >= sign_weight))
        too_small = (high < -1) | ((high == -1) & (low < sign_weight))
    else:
        wrapped = low
        too_big = high > 0
        too_small = high < 0
    mode = dst.overflow
    if mode == "WRAP":
        result = wrapped
    elif mode == "SAT_ZERO":
        result = np.where(too_big | too_small, 0, wrapped)
    elif mode == "WRAP_SM":
        invert = (too_big | too_small) & (above_msb != (wrapped < 0))
        result = np.where(invert, ~wrapped, wrapped)
    else:
        lowest = dst.min_raw
        if mode == "SAT_SYM" and dst.signed:
            lowest = dst.min_raw + (width > 1)
            too_small = too_small | (wrapped == dst.min_raw)
        result = np.where(too_big, dst.max_raw, np.where(too_small, lowest, wrapped))
    return np.asarray(result, dtype=np.int64)


def _cut(source: np.ndarray, shift, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``floor(source * 2**-shift)`` as (its low ``width`` bits, the integer above them)."""
    if np.ndim(shift) == 0:
        return _cut_right(source, shift, width) if shift > 0 else _cut_left(source, -shift, width)
    source, shift = np.broadcast_arrays(source, shift)
    low, high = _cut_right(source, np.maximum(shift, 0), width)
    left = shift <= 0  # doubles at or above the destination LSB: usually few, so done apart
    if left.any():
        low[left], high[left] = _cut_left(source[left], -shift[left], width)
    return low, high


def _cut_right(source: np.ndarray, shift, width: int) -> tuple[np.ndarray, np.ndarray]:
    kept = source >> np.minimum(shift, 63)  # |source| < 2**62: shifting by 63 leaves the sign
    return kept & np.int64((1 << width) - 1), kept >> width


def _cut_left(source: np.ndarray, shift, width: int) -> tuple[np.ndarray, np.ndarray]:
    bits = source.astype(np.uint64) << np.minimum(shift, 63).astype(np.uint64)
    low = np.where(shift < width, (bits & np.uint64((1 << width) - 1)).astype(np.int64), 0)
    # source * 2**(shift - width) is even when shift > width: never 0 or -1 unless source is 0.
    high = np.where(shift <= width, source >> np.clip(width - shift, 0, 63), np.sign(source) * 2)
    return low, high


def _round_increment(mode: str, half, below_half, negative, low) -> np.ndarray:
    """1 where ``mode`` rounds the floor up by one LSB: ``half`` is the first dropped bit."""
    if mode == "RND":
        return half
    if mode == "RND_ZERO":
        return half & (negative | below_half)
    if mode == "RND_MIN_INF":
        return half & below_half
    if mode == "RND_INF":
        return half & (~negative | below_half)
    if mode == "RND_CONV":
        return half & ((low & 1).astype(bool) | below_half)
    if mode == "TRN_ZERO":
        return negative & (half | below_half)
    raise AssertionError(mode)


# ------------------------------------------------------------------------------------- arithmetic


def _checked_fmt(what: str, a: QFmt, b: QFmt, width: int, int_bits: int, signed: bool) -> QFmt:
    if width > MAX_WIDTH:
        raise ValueError(f"{what} of {a} and {b} needs {width} bits, more than the {MAX_WIDTH} supported")
    return QFmt(width, int_bits, signed)


def _plus_int_bits(a: QFmt, b: QFmt) -> int:
    # A signed operand added to an unsigned one needs one more integer bit on the unsigned side.
    return max(a.int_bits + (b.signed and not a.signed), b.int_bits + (a.signed and not b.signed)) + 1


def result_fmt_mul(a: QFmt, b: QFmt) -> QFmt:
    """Format of ap_fixed ``a * b`` (RType::mult): every product is exact in it."""
    return _checked_fmt("product", a, b, a.width + b.width, a.int_bits + b.int_bits, a.signed or b.signed)


def result_fmt_add(a: QFmt, b: QFmt) -> QFmt:
    """Format of ap_fixed ``a + b`` (RType::plus): every sum is exact in it."""
    int_bits = _plus_int_bits(a, b)
    width = int_bits + max(a.frac_bits, b.frac_bits)
    return _checked_fmt("sum", a, b, width, int_bits, a.signed or b.signed)


def result_fmt_sub(a: QFmt, b: QFmt) -> QFmt:
    """Format of ap_fixed ``a - b`` (RType::minus, always signed): every difference is exact in it."""
    int_bits = _plus_int_bits(a, b)
    width = int_bits + max(a.frac_bits, b.frac_bits)
    return _checked_fmt("difference", a, b, width, int_bits, True)


def _aligned(a_raw, a_fmt: QFmt, b_raw, b_fmt: QFmt, out: QFmt):
    a = a_fmt.check_raw(a_raw, "a_raw")
    b = b_fmt.check_raw(b_raw, "b_raw")
    return a << (out.frac_bits - a_fmt.frac_bits), b << (out.frac_bits - b_fmt.frac_bits)


def mul(a_raw, a_fmt: QFmt, b_raw, b_fmt: QFmt) -> tuple[np.ndarray, QFmt]:
    """Exact product of two fixed-point arrays (broadcast) and its ap_fixed result format."""
    out = result_fmt_mul(a_fmt, b_fmt)
    return np.asarray(a_fmt.check_raw(a_raw, "a_raw") * b_fmt.check_raw(b_raw, "b_raw")), out


def add(a_raw, a_fmt: QFmt, b_raw, b_fmt: QFmt) -> tuple[np.ndarray, QFmt]:
    """Exact sum of two fixed-point arrays (broadcast) and its ap_fixed result format."""
    out = result_fmt_add(a_fmt, b_fmt)
    a, b = _aligned(a_raw, a_fmt, b_raw, b_fmt, out)
    return np.asarray(a + b), out


def sub(a_raw, a_fmt: QFmt, b_raw, b_fmt: QFmt) -> tuple[np.ndarray, QFmt]:
    """Exact difference of two fixed-point arrays (broadcast) and its ap_fixed result format."""
    out = result_fmt_sub(a_fmt, b_fmt)
    a, b = _aligned(a_raw, a_fmt, b_raw, b_fmt, out)
    return np.asarray(a - b), out
