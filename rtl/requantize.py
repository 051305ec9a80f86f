# SPDX-License-Identifier: Apache-2.0
"""Requantizer: converts fixed-point lanes between two QFX formats exactly as ap_fixed assignment does.

The conversion is a hardware transcription of ``ap_fixed_base::operator=`` from the Xilinx headers:
every position the C++ computes from the template arguments (shift amount, rounding bit, the
source bits that fall off the top) is an elaboration-time constant here, so what remains is a
shift, a one-bit round increment, a few all-ones/all-zeros reductions over the dropped top bits,
and the overflow adjustment (saturate, zero, wrap or sign-magnitude wrap).  Reproducing the C++
step by step, rather than an idealised "round then clamp", keeps ap_fixed's corner cases exact —
``SAT_SYM`` turning the most negative code into −max, ``RND_CONV`` looking at the truncated LSB,
``WRAP_SM`` mirroring the magnitude bits.

The work is split into two combinational halves so a pipeline can register between them:
:func:`round_lane` (shift and rounding increment, plus overflow flags from the source bits) and
:func:`saturate_lane` (apply the increment, detect overflow, adjust).  :func:`requantize_lane`
composes them for users that want one combinational block, such as post-processing lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.qfx import QFmt
from hwgen.rtl._errors import refuse

__all__ = [
    "lane_shape",
    "RequantizePlan",
    "round_lane",
    "saturate_lane",
    "requantize_lane",
    "Requantizer",
]


def lane_shape(fmt: QFmt) -> Shape:
    """The Amaranth shape of one raw value of ``fmt``: ``signed(W)`` or ``unsigned(W)``."""
    return signed(fmt.width) if fmt.signed else unsigned(fmt.width)


def _check_format(name: str, fmt: object) -> None:
    if not isinstance(fmt, QFmt):
        raise ValueError(f"{name} must be a QFmt, not {fmt!r}")


@dataclass(frozen=True)
class RequantizePlan:
    """Elaboration-time constants of one ap_fixed conversion ``out_fmt ← in_fmt``.

    Attribute names follow ``ap_fixed_base::operator=`` (``pos1`` is the source bit just above the
    destination's MSB once aligned, ``pos2`` the next one) so the two can be read side by side.
    """

    in_fmt: QFmt
    out_fmt: QFmt

    def __post_init__(self):
        _check_format("in_fmt", self.in_fmt)
        _check_format("out_fmt", self.out_fmt)

    @property
    def shift(self) -> int:
        """Fraction bits gained (> 0: shift left, exact) or lost (< 0: shift right, rounded)."""
        return self.out_fmt.frac_bits - self.in_fmt.frac_bits

    @property
    def rounds(self) -> bool:
        """Whether dropped fraction bits can change the result (ap_fixed's ``QUAN_INC``)."""
        trn_zero_unsigned = self.out_fmt.rounding == "TRN_ZERO" and not self.in_fmt.signed
        return self.shift < 0 and not (self.out_fmt.rounding == "TRN" or trn_zero_unsigned)

    @property
    def checks_overflow(self) -> bool:
        """Whether ap_fixed runs its overflow logic: never for WRAP, else only if range can be lost."""
        if self.out_fmt.overflow == "WRAP" or self.in_fmt == self.out_fmt:
            # Assigning the same type is C++'s plain copy: not even SAT_SYM's -min -> -max applies.
            return False
        src, dst = self.in_fmt, self.out_fmt
        if src.signed and not dst.signed:
            return True
        extra = int(self.rounds or (src.signed and dst.overflow == "SAT_SYM"))
        return dst.int_bits - int(dst.signed) < src.int_bits - int(src.signed) + extra

    @property
    def pos1(self) -> int:
        """Source bit aligned with the bit just above the destination's MSB."""
        return -self.shift + self.out_fmt.width

    @property
    def pos2(self) -> int:
        return self.pos1 + 1

    @property
    def rounded_layout(self) -> data.StructLayout:
        """What :func:`round_lane` hands to :func:`saturate_lane` (the pipeline register's layout)."""
        return data.StructLayout({
            "truncated": unsigned(self.out_fmt.width),  # shifted source, before the round increment
            "increment": 1,       # rounding adds one LSB
            "negative": 1,        # the source value is negative
            "above_msb": 1,       # source bit pos1 (ap_fixed's lD)
            "top_ones": 1,        # source bits pos1.. are all ones (Range1_all_ones)
            "top_zeros": 1,       # source bits pos1.. are all zeros (Range1_all_zeros)
            "upper_ones": 1,      # source bits pos2.. are all ones (Range2_all_ones)
        })


def _fit(value: Value, width: int) -> Value:
    """``value`` as ``width`` unsigned bits of its two's complement (sign-extended if signed)."""
    value = Value.cast(value)
    have = len(value)
    bits = value.as_unsigned()
    if have >= width:
        return bits[:width]
    fill = value[-1] if value.shape().signed and have else Const(0, 1)
    return Cat(bits, fill.replicate(width - have))


def round_lane(value: Value, plan: RequantizePlan) -> data.View:
    """First half of the conversion: shift, rounding increment and the overflow flags of ``value``.

    Returns a view of ``plan.rounded_layout``; purely combinational.
    """
    src, dst = plan.in_fmt, plan.out_fmt
    width, src_width = dst.width, src.width
    value = Value.cast(value)
    bits = value.as_unsigned()
    negative = bits[src_width - 1] if src.signed else Const(0, 1)

    if plan.shift >= 0:
        truncated = (_fit(value, width) << plan.shift)[:width] if plan.shift < width else Const(0, width)
        increment = Const(0, 1)
    else:
        drop = -plan.shift
        if drop < src_width:
            truncated = _fit(value >> drop, width)
        else:
            truncated = negative.replicate(width)
        increment = Const(0, 1)
        if plan.rounds:
            # qb: the first dropped bit; rest: whether any lower dropped bit is set.
            half = negative if drop > src_width else bits[drop - 1]
            rest = bits[: min(drop - 2, src_width - 1) + 1].any() if drop > 1 else Const(0, 1)
            increment = {
                "RND": half,
                "RND_ZERO": half & (negative | rest),
                "RND_MIN_INF": half & rest,
                "RND_INF": half & (~negative | rest),
                "RND_CONV": half & (truncated[0] | rest),
                "TRN_ZERO": negative & (half | rest),
            }[dst.rounding]

    pos1, pos2 = plan.pos1, plan.pos2
    above_msb = bits[pos1] if 0 <= pos1 < src_width else Const(0, 1)
    top_ones, top_zeros, upper_ones = Const(1, 1), Const(1, 1), Const(1, 1)
    if pos1 < src_width:
        if 0 <= pos2 < src_width:
            upper_ones = bits[pos2:].all()
        elif pos2 < 0:
            upper_ones = Const(0, 1)
        if pos1 >= 0 and pos2 < src_width:
            top_ones, top_zeros = bits[pos1:].all(), ~bits[pos1:].any()
        elif pos2 == src_width:
            top_ones, top_zeros = above_msb, ~above_msb
        elif pos1 < 0:
            top_ones, top_zeros = Const(0, 1), ~bits.any()

    return plan.rounded_layout(Cat(truncated, increment, negative, above_msb, top_ones, top_zeros, upper_ones))


def saturate_lane(rounded: data.View, plan: RequantizePlan) -> Value:
    """Second half: add the round increment, detect overflow and adjust; returns the raw output."""
    src, dst = plan.in_fmt, plan.out_fmt
    width = dst.width
    summed = (rounded.truncated + rounded.increment)[:width]
    result = summed.as_signed() if dst.signed else summed
    if not plan.checks_overflow:
        return result

    msb = summed[width - 1]
    # The truncated value wrapped from all ones to zero: the increment carries into dropped bits.
    carry = (rounded.truncated[width - 1] & ~msb) if plan.rounds else Const(0, 1)
    negative = rounded.negative
    if plan.pos1 < src.width:
        deleted_zeros = Mux(carry, rounded.top_ones, rounded.top_zeros)
        if not src.signed:
            deleted_zeros &= ~carry
        below_top = Const(1, 1) if plan.pos1 < 0 else ~rounded.above_msb
        deleted_ones = Mux(carry, rounded.upper_ones & below_top, rounded.top_ones)
        negative_source = negative & ~(carry & rounded.top_ones)
    else:
        deleted_zeros = Const(1, 1) if src.signed else ~carry
        deleted_ones = Const(1, 1)
        negative_source = negative & msb
    negative_result = msb if dst.signed else Const(0, 1)
    overflow = (negative_result | ~deleted_zeros) & ~negative
    underflow = (~negative_result | ~deleted_ones) & negative_source
    if dst.overflow == "SAT_SYM" and src.signed and dst.signed:
        # ap_fixed maps the most negative code to -max even when it is in range.
        low_zero = ~summed[: width - 1].any() if width > 1 else Const(1, 1)
        underflow |= negative_source & low_zero

    if dst.overflow == "SAT_ZERO":
        adjusted = Const(0, width)
    elif dst.overflow == "WRAP_SM":
        # Sign-magnitude wrap (QFmt allows it for signed formats only): the sign comes from the
        # dropped bit above the MSB; the magnitude bits are mirrored when it differs from the MSB.
        adjusted = Mux(rounded.above_msb != msb, Cat(~summed[: width - 1], rounded.above_msb), summed)
    elif dst.signed:
        maximum = (1 << (width - 1)) - 1
        minimum = (1 << (width - 1)) | int(dst.overflow == "SAT_SYM" and width > 1)
        adjusted = Mux(overflow, maximum, Mux(underflow, minimum, summed))
    else:
        adjusted = Mux(overflow, (1 << width) - 1, Mux(underflow, 0, summed))
    adjusted = _fit(adjusted, width)
    out = Mux(overflow | underflow, adjusted, summed)
    return out.as_signed() if dst.signed else out


def requantize_lane(value: Value, in_fmt: QFmt, out_fmt: QFmt) -> Value:
    """Combinational conversion of one raw ``in_fmt`` value to a raw ``out_fmt`` value."""
    plan = RequantizePlan(in_fmt, out_fmt)
    return saturate_lane(round_lane(value, plan), plan)


class Requantizer(wiring.Component):
    """A stream of ``lanes`` values in ``in_fmt`` converted to ``out_fmt``, one beat per cycle.

    Two register stages (:attr:`latency` = 2): after the shift/round half and after the
    saturate half.  A stage takes a new beat whenever it is empty or its beat moves on, so the
    pipeline runs at full rate without backpressure and stalls without losing or repeating beats.

    Parameters
    ----------
    in_fmt, out_fmt : QFmt
        Source and destination formats; any relation between them is allowed.
    lanes : int
        Values per beat.

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(lane_shape(in_fmt), lanes)))
        Values to convert.
    o : Out(stream.Signature(ArrayLayout(lane_shape(out_fmt), lanes)))
        Converted values, in order.
    """

    latency = 2

    def __init__(self, in_fmt: QFmt, out_fmt: QFmt, lanes: int):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            refuse(self, f"lanes must be a positive integer, not {lanes!r}")
        try:
            self.plan = RequantizePlan(in_fmt, out_fmt)
        except ValueError as error:
            refuse(self, str(error))
        self.in_fmt, self.out_fmt, self.lanes = in_fmt, out_fmt, lanes
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(lane_shape(in_fmt), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(lane_shape(out_fmt), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        rounded = Signal(data.ArrayLayout(plan.rounded_layout, self.lanes))
        rounded_valid = Signal()

        output_free = ~self.o.valid | self.o.ready
        rounded_free = ~rounded_valid | output_free
        m.d.comb += self.i.ready.eq(rounded_free)

        with m.If(rounded_free):
            m.d.sync += rounded_valid.eq(self.i.valid)
            for lane in range(self.lanes):
                m.d.sync += rounded[lane].eq(round_lane(self.i.payload[lane], plan))
        with m.If(output_free):
            m.d.sync += self.o.valid.eq(rounded_valid)
            for lane in range(self.lanes):
                m.d.sync += self.o.payload[lane].eq(saturate_lane(rounded[lane], plan))
        return m
