# SPDX-License-Identifier: Apache-2.0
"""The activation buffer: the ring of activation rows the MAC array reads, and the residual FIFO.

Rows of ``x`` arrive one read command each (``ACT`` beats; a CONV row as one command per kernel row,
the segments before its last tagged ``ACT_PART`` so that only the last one's final beat ends the
row) and land in a ring of ``lanes_in``-element words as deep as both activation banks together, so several rows are in
flight while one is computed (a 64-cycle memory latency costs more than one row's compute on short
rows). Each ring word is ``act_slots`` AXI words wide, stored as that many side-by-side memories so
one word is read per cycle. ``RES`` beats (rows of the residual operand) queue in a FIFO in arrival order.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .bank import Bank
from .descriptor import Tag
from .engine import fill_layout
from .geometry import Geometry, wrap

__all__ = ["ActivationBuffer"]


class ActivationBuffer(wiring.Component):
    """The activation ring and the residual FIFO, filled from tagged read beats.

    Ports
    -----
    start : In(1)
        Pulse: a new descriptor; the ring fills from word 0 again.
    row_words : In(16)
        Ring words per row (``k_tiles``): a row's last beat moves the fill pointer to the next row's start.
    fill : In(stream)
        Read beats (always taken); this buffer stores ``ACT`` and ``ACT_PART`` beats in the ring and ``RES``
        beats in the FIFO.
    row_arrived : Out(1)
        Pulse: the last beat of a row is in the ring.
    read_addr : In(range(ring_words))
        Ring word to read next cycle.
    read_data : Out(lanes_in · act_bits)
        The ring word addressed the cycle before.
    residual : Out(stream)
        Residual words (one AXI word each) in arrival order; the FIFO holds ``residual_beats``.
    """

    def __init__(self, geometry: Geometry):
        self.geometry = geo = geometry
        super().__init__({
            "start": In(1),
            "row_words": In(16),
            "fill": In(stream.Signature(fill_layout(geo.axi_bits), always_ready=True)),
            "row_arrived": Out(1),
            "read_addr": In(range(geo.ring_words)),
            "read_data": Out(geo.act_slots * geo.axi_bits),
            "residual": Out(stream.Signature(geo.axi_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        act_banks = []
        for i in range(geo.act_slots):
            m.submodules[f"act{i}"] = bank = Bank(width=geo.axi_bits, depth=geo.ring_words)
            act_banks.append(bank)
        act_w = [bank.write for bank in act_banks]
        act_r = [bank.read for bank in act_banks]
        m.submodules.residual = residual = fifo.SyncFIFOBuffered(width=geo.axi_bits, depth=geo.residual_beats)

        beat = self.fill.payload
        arriving = self.fill.valid & ((beat.tag == Tag.ACT) | (beat.tag == Tag.ACT_PART))
        row_ends = beat.last & (beat.tag == Tag.ACT)  # an ACT_PART segment continues the row where it ends
        act_slot = Signal(range(geo.act_slots))
        act_word = Signal(range(geo.ring_words))
        act_row_base = Signal(range(geo.ring_words))
        for i, port in enumerate(act_w):
            m.d.comb += [port.addr.eq(act_word), port.data.eq(beat.data), port.en.eq(arriving & (act_slot == i))]
        next_row_base = wrap(act_row_base + self.row_words, geo.ring_words)
        with m.If(arriving):
            with m.If(row_ends):
                m.d.comb += self.row_arrived.eq(1)
                m.d.sync += [act_slot.eq(0), act_word.eq(next_row_base), act_row_base.eq(next_row_base)]
            with m.Elif(act_slot == geo.act_slots - 1):
                m.d.sync += [act_slot.eq(0), act_word.eq(wrap(act_word + 1, geo.ring_words))]
            with m.Else():
                m.d.sync += act_slot.eq(act_slot + 1)
        with m.If(self.start):
            m.d.sync += [act_slot.eq(0), act_word.eq(0), act_row_base.eq(0)]

        for port in act_r:
            m.d.comb += port.addr.eq(self.read_addr)
        m.d.comb += self.read_data.eq(Cat(*(port.data for port in act_r)))

        m.d.comb += [
            residual.w_data.eq(beat.data),
            residual.w_en.eq(self.fill.valid & (beat.tag == Tag.RES)),
            self.residual.payload.eq(residual.r_data),
            self.residual.valid.eq(residual.r_rdy),
            residual.r_en.eq(self.residual.ready),
        ]
        return m
