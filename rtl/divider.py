# SPDX-License-Identifier: Apache-2.0
"""A small sequential divider: unsigned quotient and remainder, one quotient bit per cycle.

CONV needs ``K / kh`` (the elements of one kernel-row segment) and ``K mod kh`` (its validity) once
per descriptor. A combinational divider would be the longest path of the core (one subtraction per
quotient bit, chained); this one takes ``dividend_bits`` cycles through one subtractor, and the
controller and the LINEAR engine wait for it only on CONV descriptors.

It has no start pulse: it restarts by itself whenever its inputs differ from those of its last
result, and ``ready`` says that ``quotient`` and ``remainder`` belong to the inputs of this cycle.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Divider"]


class Divider(wiring.Component):
    """``dividend // divisor`` and ``dividend % divisor`` (unsigned), ``dividend_bits + 1`` cycles after the inputs change.

    Ports
    -----
    dividend : In(dividend_bits)
        The dividend; a change restarts the division.
    divisor : In(divisor_bits)
        The divisor; a change restarts the division. With 0 the results are meaningless (callers refuse it).
    quotient : Out(dividend_bits)
        ``dividend // divisor`` when ``ready``.
    remainder : Out(divisor_bits)
        ``dividend % divisor`` when ``ready``.
    ready : Out(1)
        ``quotient`` and ``remainder`` are those of this cycle's inputs.
    """

    def __init__(self, dividend_bits: int, divisor_bits: int):
        for name, value in (("dividend_bits", dividend_bits), ("divisor_bits", divisor_bits)):
            if not isinstance(value, int) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        self.dividend_bits, self.divisor_bits = dividend_bits, divisor_bits
        super().__init__({
            "dividend": In(dividend_bits),
            "divisor": In(divisor_bits),
            "quotient": Out(dividend_bits),
            "remainder": Out(divisor_bits),
            "ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n_bits, d_bits = self.dividend_bits, self.divisor_bits
        dividend = Signal(n_bits)       # the inputs of the division under way (or done)
        divisor = Signal(d_bits)
        left = Signal(range(n_bits + 1))  # quotient bits still to find
        # Restoring division: the dividend's bits shift out of the top of `shifter` as the quotient's
        # bits shift in at the bottom; `partial` is the running remainder (< divisor).
        shifter = Signal(n_bits)
        partial = Signal(d_bits)
        changed = (self.dividend != dividend) | (self.divisor != divisor)
        trial = Cat(shifter[-1], partial)  # 2·partial + next dividend bit, d_bits + 1 wide
        fits = trial >= divisor
        with m.If(changed):
            m.d.sync += [dividend.eq(self.dividend), divisor.eq(self.divisor), shifter.eq(self.dividend),
                         partial.eq(0), left.eq(n_bits)]
        with m.Elif(left != 0):
            m.d.sync += [partial.eq(Mux(fits, trial - divisor, trial)), shifter.eq(Cat(fits, shifter[:-1])),
                         left.eq(left - 1)]
        m.d.comb += [
            self.quotient.eq(shifter), self.remainder.eq(partial),
            self.ready.eq(~changed & (left == 0)),
        ]
        return m
