# SPDX-License-Identifier: Apache-2.0
"""Requantization whose formats arrive at run time, in a descriptor's 32-bit ``RQ`` word.

:mod:`hwgen.rtl.requantize` converts between two formats fixed at elaboration, so every shift and
mode is wiring. The accelerator's post-processing lanes serve every layer of every Program, so the
shift, destination width, signedness, rounding and overflow mode are signals here; the steps are
exactly docs/isa.md §3.5 (cut, round, overflow), which equals ``QFmt.cast`` — and the tests check
this function against ``QFmt.cast`` directly, not only through the ISA.

Two combinational halves, so a pipeline registers between them: :func:`requantize_cut` (one
barrel shift that covers both directions, the round bit and the sticky bit from a trailing-zero
count) and :func:`requantize_fit` (round increment, range check against run-time bounds, overflow
mode).
"""

from amaranth import Cat, Const, Mux, Signal, signed, unsigned
from amaranth.lib import data

from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES

from .descriptor import RQ_LAYOUT

__all__ = [
    "RQ_LAYOUT",
    "ROUNDING_CODES",
    "OVERFLOW_CODES",
    "RESULT_SHAPE",
    "cut_layout",
    "requantize_cut",
    "requantize_fit",
]

ROUNDING_CODES = {mode: code for code, mode in enumerate(ROUNDING_MODES)}
OVERFLOW_CODES = {mode: code for code, mode in enumerate(OVERFLOW_MODES)}

#: Any destination (≤ 32 bits, signed or unsigned) fits a signed 33-bit value.
RESULT_SHAPE = signed(33)

# A left shift by more than this gives the same low 32 bits (zero) and the same overflow verdict
# (out of range unless the value is zero) as a left shift by exactly this much.
_MAX_LEFT = 33


def cut_layout(value_width):
    """What :func:`requantize_cut` hands to :func:`requantize_fit` for a ``value_width``-bit source."""
    return data.StructLayout({
        "q": signed(value_width + _MAX_LEFT),  # the shifted value, before rounding
        "half": unsigned(1),                    # the first dropped bit
        "sticky": unsigned(1),                  # any dropped bit below it
        "negative": unsigned(1),                # the source is negative
        "above": unsigned(1),                   # WRAP_SM's bit shift + W of the source
    })


def requantize_cut(m, value, rq, *, name="rq"):
    """Step 1 (cut) of docs/isa.md §3.5 for a signed ``value`` and a ``RQ_LAYOUT`` view ``rq``.

    Returns a :func:`cut_layout` view (combinational).
    """
    width = len(value)
    value = value.as_signed()
    # q = value >> shift (floor) or value << -shift, as one right shift of value << (_MAX_LEFT + 1):
    # the extra low bit of the shifted result is the rounding bit.
    total = Signal(range(width + 2 * _MAX_LEFT + 3), name=f"{name}_total")
    raw_total = Signal(signed(10), name=f"{name}_raw_total")
    m.d.comb += raw_total.eq(rq.shift + _MAX_LEFT)
    with m.If(raw_total < 0):
        m.d.comb += total.eq(0)
    with m.Elif(raw_total > width + _MAX_LEFT + 1):  # shifting further changes nothing
        m.d.comb += total.eq(width + _MAX_LEFT + 1)
    with m.Else():
        m.d.comb += total.eq(raw_total)
    widened = Cat(Const(0, _MAX_LEFT + 1), value).as_signed()
    shifted = Signal(signed(width + _MAX_LEFT + 1), name=f"{name}_shifted")
    m.d.comb += shifted.eq(widened >> total)

    # sticky: a set bit of value strictly below bit shift-1, i.e. trailing zeros < shift - 1.
    trailing = Signal(range(width + 1), name=f"{name}_trailing_zeros")
    m.d.comb += trailing.eq(width)
    for bit in reversed(range(width)):
        with m.If(value[bit]):
            m.d.comb += trailing.eq(bit)
    sticky = Signal(name=f"{name}_sticky")
    m.d.comb += sticky.eq((value != 0) & (rq.shift >= 2) & (trailing + 1 < rq.shift))

    # WRAP_SM's extra sign: bit shift + W of the source when inside its src_width bits, else 0.
    position = Signal(signed(10), name=f"{name}_above_position")
    m.d.comb += position.eq(rq.shift + rq.width)
    sign_extended = Cat(value, value[-1].replicate(64 - width)) if width < 64 else value
    above = Signal(name=f"{name}_above")
    m.d.comb += above.eq((position >= 0) & (position < rq.src_width) & sign_extended.bit_select(position[:6], 1))

    cut = Signal(cut_layout(width), name=f"{name}_cut")
    m.d.comb += [
        cut.q.eq(shifted[1:]),
        cut.half.eq(shifted[0]),
        cut.sticky.eq(sticky),
        cut.negative.eq(value[-1]),
        cut.above.eq(above),
    ]
    return cut


def requantize_fit(m, cut, rq, *, name="rq"):
    """Steps 2 and 3 (round, overflow) of docs/isa.md §3.5; returns a ``RESULT_SHAPE`` signal."""
    half, sticky, negative = cut.half, cut.sticky, cut.negative
    inc = Signal(name=f"{name}_inc")
    with m.Switch(rq.round):
        with m.Case(ROUNDING_CODES["TRN_ZERO"]):
            m.d.comb += inc.eq(negative & (half | sticky))
        with m.Case(ROUNDING_CODES["RND"]):
            m.d.comb += inc.eq(half)
        with m.Case(ROUNDING_CODES["RND_ZERO"]):
            m.d.comb += inc.eq(half & (negative | sticky))
        with m.Case(ROUNDING_CODES["RND_INF"]):
            m.d.comb += inc.eq(half & (~negative | sticky))
        with m.Case(ROUNDING_CODES["RND_MIN_INF"]):
            m.d.comb += inc.eq(half & sticky)
        with m.Case(ROUNDING_CODES["RND_CONV"]):
            m.d.comb += inc.eq(half & (cut.q[0] | sticky))
    rounded = Signal(signed(len(cut.q) + 1), name=f"{name}_rounded")
    m.d.comb += rounded.eq(cut.q + inc)

    width, is_signed = rq.width, rq.is_signed
    top = Signal(unsigned(34), name=f"{name}_top")  # 2^W
    m.d.comb += top.eq(Const(1, 34) << width)
    mask = Signal(unsigned(32), name=f"{name}_mask")
    m.d.comb += mask.eq(top - 1)
    hi = Signal(signed(35), name=f"{name}_hi")
    lo = Signal(signed(35), name=f"{name}_lo")
    m.d.comb += [
        hi.eq(Mux(is_signed, (top >> 1) - 1, top - 1)),
        lo.eq(Mux(is_signed, -(top >> 1), 0)),
    ]
    over = Signal(name=f"{name}_over")
    under = Signal(name=f"{name}_under")
    m.d.comb += [over.eq(rounded > hi), under.eq(rounded < lo)]

    low = Signal(unsigned(32), name=f"{name}_low")
    m.d.comb += low.eq(rounded[:32] & mask)
    msb = Signal(name=f"{name}_msb")
    m.d.comb += msb.eq(low.bit_select((width - 1)[:5], 1))
    wrap = Signal(RESULT_SHAPE, name=f"{name}_wrap")
    m.d.comb += wrap.eq(Mux(is_signed & msb, Cat(low | ~mask, Const(1, 1)), Cat(low, Const(0, 1))))

    result = Signal(RESULT_SHAPE, name=f"{name}_result")
    m.d.comb += result.eq(wrap)
    with m.Switch(rq.overflow):
        with m.Case(OVERFLOW_CODES["SAT"]):
            with m.If(over):
                m.d.comb += result.eq(hi)
            with m.Elif(under):
                m.d.comb += result.eq(lo)
        with m.Case(OVERFLOW_CODES["SAT_ZERO"]):
            with m.If(over | under):
                m.d.comb += result.eq(0)
        with m.Case(OVERFLOW_CODES["SAT_SYM"]):
            # Signed: the most negative code itself becomes -max (except for W = 1).
            symmetric_low = Mux(is_signed & (width != 1), -hi, lo)
            with m.If(over):
                m.d.comb += result.eq(hi)
            with m.Elif(rounded < symmetric_low):
                m.d.comb += result.eq(symmetric_low)
        with m.Case(OVERFLOW_CODES["WRAP_SM"]):
            with m.If((over | under) & (cut.above != msb)):
                m.d.comb += result.eq(~wrap)
    return result
