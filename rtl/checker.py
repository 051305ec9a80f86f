# SPDX-License-Identifier: Apache-2.0
"""The bounds checker: does any operand of a descriptor reach past the end of the memory image?

Each operand is a **term** ``addr + rows·stride + tail`` (docs/isa.md §8.3, OUT_OF_BOUNDS): for
a row-major tensor of ``R`` rows, ``rows = R − 1``, ``stride`` its row stride and ``tail`` the
bytes of its last row; the term's end must not exceed ``image_bytes``. The products are 32×32
bits, so instead of one wide multiplier per operand the checker walks the terms through **one**
pipelined multiplier, a term per cycle: ``slots + 1`` cycles from ``start`` to ``done`` whatever
the terms are (disabled terms take their slot too, so the cost per descriptor is fixed).
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TERM_LAYOUT", "BoundsChecker"]

#: One operand extent: ``addr + rows·stride + tail`` bytes, checked when ``enable`` is set.
TERM_LAYOUT = data.StructLayout({
    "enable": unsigned(1),
    "addr": unsigned(32),
    "rows": unsigned(32),
    "stride": unsigned(32),
    "tail": unsigned(33),  # CONV's x tail, (grid_w − 1)·x_stride + seg_bytes, can pass 32 bits
})


class BoundsChecker(wiring.Component):
    """Checks ``slots`` terms against ``image_bytes`` through one shared 32×32 multiplier.

    Ports
    -----
    start : In(1)
        Pulse: check ``terms`` (held stable until ``done``).
    terms : In(ArrayLayout(TERM_LAYOUT, slots))
        The operand extents of the descriptor being checked.
    image_bytes : In(32)
        Size of the memory image: no term may end past it.
    done : Out(1)
        Pulse, ``slots + 1`` cycles after ``start``: ``out_of_bounds`` is valid this cycle.
    out_of_bounds : Out(1)
        Some enabled term ends past ``image_bytes`` (valid with ``done``).
    """

    def __init__(self, slots: int):
        if not isinstance(slots, int) or slots < 1:
            raise TypeError(f"slots must be a positive integer, not {slots!r}")
        self.slots = slots
        super().__init__({
            "start": In(1),
            "terms": In(data.ArrayLayout(TERM_LAYOUT, slots)),
            "image_bytes": In(32),
            "done": Out(1),
            "out_of_bounds": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``start`` to ``done``."""
        return self.slots + 1

    def elaborate(self, platform):
        m = Module()
        slots = self.slots
        index = Signal(range(slots + 1))
        issuing = Signal()
        # Slot 0 issues with the start pulse, slot i on the i-th cycle after it.
        current = Signal(range(slots))
        active = Signal()
        m.d.comb += [
            active.eq(self.start | issuing),
            current.eq(0),
        ]
        with m.If(~self.start):
            m.d.comb += current.eq(index)
        with m.If(self.start):
            m.d.sync += [issuing.eq(slots > 1), index.eq(1)]
        with m.Elif(issuing):
            m.d.sync += index.eq(index + 1)
            with m.If(index == slots - 1):
                m.d.sync += issuing.eq(0)

        term = self.terms[current]
        # Stage 1: the term's operands.
        valid1, last1, enable1 = Signal(), Signal(), Signal()
        rows1, stride1 = Signal(32), Signal(32)
        base1 = Signal(34)
        m.d.sync += [
            valid1.eq(active),
            last1.eq(active & (current == slots - 1)),
            enable1.eq(term.enable),
            rows1.eq(term.rows),
            stride1.eq(term.stride),
            base1.eq(term.addr + term.tail),
        ]
        # Stage 2: the product (the multiplier's output register).
        valid2, last2, enable2 = Signal(), Signal(), Signal()
        product2 = Signal(64)
        base2 = Signal(34)
        m.d.sync += [valid2.eq(valid1), last2.eq(last1), enable2.eq(enable1), product2.eq(rows1 * stride1),
                     base2.eq(base1)]
        # Stage 3: end of the term against the image size, accumulated over the slots.
        over = Signal()
        seen = Signal()
        m.d.comb += over.eq(valid2 & enable2 & (product2 + base2 > self.image_bytes))
        with m.If(self.start):
            m.d.sync += seen.eq(0)
        with m.Elif(over):
            m.d.sync += seen.eq(1)
        m.d.comb += [
            self.done.eq(valid2 & last2),
            self.out_of_bounds.eq(seen | over),
        ]
        return m
