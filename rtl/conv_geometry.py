# SPDX-License-Identifier: Apache-2.0
"""A CONV descriptor's derived sizes (docs/isa.md §3.9), computed a bit per cycle.

CONV needs, once per descriptor, ``K / kh`` (the elements of one kernel-row segment) and ``K mod kh``
(its validity), the row count ``grid_h·grid_w``, the extent of the windows' rows of ``x``, the
byte step from one grid row of windows to the next, and the extents of a grid row of the output and of
the residual (``(grid_w − 1)·out_stride``, ``(grid_w − 1)·res_stride``: the bounds checks of rows that
skip bytes after each grid row). A combinational divider would be the longest path
of the core (one subtraction per quotient bit, chained), and the products would take DSPs the MAC
array needs; here one restoring-division step and a shift-and-add step per product run each cycle, so
every result is there 17 cycles after the descriptor's fields change. The controller's checks and the
LINEAR engine each hold one and wait for it only on CONV descriptors.

It has no start pulse: it restarts by itself whenever its inputs differ from those of its results,
and ``ready`` says that the results belong to the inputs of this cycle.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .descriptor import CONV_DESCRIPTOR_LAYOUT

__all__ = ["ConvGeometry"]

#: The CONV fields the results depend on.
INPUTS = ("k", "kh", "grid_h", "grid_w", "stride_y", "x_stride", "seg_stride", "out_stride", "res_stride")
#: Steps of one computation: a bit of the widest multiplier or quotient (16-bit fields; stride_y and kh have 8).
STEPS = 16


class ConvGeometry(wiring.Component):
    """``K / kh``, ``K mod kh`` and the grid's products of a CONV descriptor, ``STEPS + 1`` cycles after it changes.

    Ports
    -----
    desc : In(CONV_DESCRIPTOR_LAYOUT)
        The descriptor (only the fields of :data:`INPUTS` are read); a change of those restarts the computation.
    seg : Out(16)
        ``K // kh``: elements of one segment (``kh = 0``: meaningless, the checks refuse it).
    seg_rem : Out(8)
        ``K mod kh``.
    rows : Out(32)
        ``grid_h·grid_w``: rows of ``x`` and of the output.
    x_rows : Out(25)
        ``(grid_h − 1)·stride_y + kh − 1``: feature-map rows from the first window's first kernel row to the
        last window's last one.
    x_across : Out(32)
        ``(grid_w − 1)·x_stride``: bytes from a grid row's first window to its last.
    grid_step : Out(32)
        ``stride_y·seg_stride`` modulo 2³²: bytes from one grid row of windows to the next.
    out_across : Out(32)
        ``(grid_w − 1)·out_stride``: bytes from a grid row's first output row to its last.
    res_across : Out(32)
        ``(grid_w − 1)·res_stride``: the same for the residual rows.
    ready : Out(1)
        The results are those of this cycle's ``desc``.
    """

    def __init__(self):
        super().__init__({
            "desc": In(CONV_DESCRIPTOR_LAYOUT),
            "seg": Out(16),
            "seg_rem": Out(8),
            "rows": Out(32),
            "x_rows": Out(25),
            "x_across": Out(32),
            "grid_step": Out(32),
            "out_across": Out(32),
            "res_across": Out(32),
            "ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        desc = self.desc
        held = {name: Signal.like(getattr(desc, name), name=f"held_{name}") for name in INPUTS}
        changed = Signal()
        m.d.comb += changed.eq(Cat(getattr(desc, name) != held[name] for name in INPUTS).any())
        left = Signal(range(STEPS + 1))  # steps still to run
        bit = (left - 1)[:4]             # the multipliers' bit of this step, most significant first

        # K / kh by restoring division: K's bits shift out of the top of `shifter` as the quotient's
        # shift in at the bottom; `partial` is the running remainder (< kh).
        shifter = Signal(16)
        partial = Signal(8)
        trial = Cat(shifter[-1], partial)  # 2·partial + K's next bit
        fits = trial >= held["kh"]
        # Products, shift and add, the multiplier's bits most significant first.
        rows = Signal(32)        # grid_h·grid_w
        down = Signal(24)        # (grid_h − 1)·stride_y
        across = Signal(32)      # (grid_w − 1)·x_stride
        step = Signal(32)        # stride_y·seg_stride
        out_across = Signal(32)  # (grid_w − 1)·out_stride
        res_across = Signal(32)  # (grid_w − 1)·res_stride
        h_less, w_less = (held["grid_h"] - 1)[:16], (held["grid_w"] - 1)[:16]
        stride_y = Cat(held["stride_y"], Const(0, STEPS - 8))  # 16 bits: its high steps add nothing

        def mac(acc, multiplier, multiplicand):
            """acc·2 + (multiplier's current bit)·multiplicand."""
            return acc.eq((acc << 1) + Mux(multiplier.bit_select(bit, 1), multiplicand, 0))

        with m.If(changed):
            m.d.sync += [*(held[name].eq(getattr(desc, name)) for name in INPUTS),
                         shifter.eq(desc.k), partial.eq(0), rows.eq(0), down.eq(0), across.eq(0), step.eq(0),
                         out_across.eq(0), res_across.eq(0), left.eq(STEPS)]
        with m.Elif(left != 0):
            m.d.sync += [
                partial.eq(Mux(fits, trial - held["kh"], trial)), shifter.eq(Cat(fits, shifter[:-1])),
                mac(rows, held["grid_w"], held["grid_h"]),
                mac(down, stride_y, h_less),
                mac(across, w_less, held["x_stride"]),
                mac(step, stride_y, held["seg_stride"]),
                mac(out_across, w_less, held["out_stride"]),
                mac(res_across, w_less, held["res_stride"]),
                left.eq(left - 1),
            ]
        m.d.comb += [
            self.seg.eq(shifter), self.seg_rem.eq(partial), self.rows.eq(rows),
            self.x_rows.eq(down + held["kh"] - 1), self.x_across.eq(across), self.grid_step.eq(step),
            self.out_across.eq(out_across), self.res_across.eq(res_across),
            self.ready.eq(~changed & (left == 0)),
        ]
        return m
