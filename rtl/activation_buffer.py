# SPDX-License-Identifier: Apache-2.0
"""The activation buffer: the ring of activation rows the MAC array reads, and the residual FIFO.

Rows of ``x`` arrive one read command each (``ACT`` beats; a CONV row as one command per kernel row,
the segments before its last tagged ``ACT_PART`` so that only the last one's final beat ends the
row) and land in a ring of ``lanes_in``-element words as deep as both activation banks together, so several rows are in
flight while one is computed (a 64-cycle memory latency costs more than one row's compute on short
rows). Each ring word is ``act_slots`` AXI words wide, stored as that many side-by-side memories so
one word is read per cycle. ``RES`` beats (rows of the residual operand) queue in a FIFO in arrival order.

A CONV in window mode (docs/isa.md §8.2) fills a ring half per grid row with its ``kh`` strips, each
``strip_pitch`` AXI words after the one before (a strip's last ``ACT_PART`` beat moves the fill pointer there),
and reads a ring word as ``act_slots`` AXI words at their own addresses (``read_slots``), rotated by
``read_rotate`` slots: the AXI words of a window's row, which the strip pitch puts in distinct memories.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
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
    strip_pitch : In(16)
        Window mode (not 0): AXI words from one strip's first word to the next's; an ``ACT_PART`` command's
        last beat moves the fill pointer there.
    read_slots : In(array of act_slots × range(ring_words))
        The word each slot memory reads next cycle (all equal: one ring word).
    read_rotate : In(range(act_slots))
        AXI word ``p`` of ``read_data`` is slot ``(p + read_rotate) mod act_slots``'s (0: the ring word as stored).
    read_data : Out(lanes_in · act_bits)
        The words addressed the cycle before, rotated.
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
            "strip_pitch": In(16),
            "read_slots": In(data.ArrayLayout(range(geo.ring_words), geo.act_slots)),
            "read_rotate": In(range(geo.act_slots)),
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
        slots = geo.act_slots
        # Window mode (a core whose ring addresses are powers of two, geo.window_bits): the next strip.
        strip_ends = (beat.last & (beat.tag == Tag.ACT_PART) & (self.strip_pitch != 0)) if geo.window_bits else 0
        slot_bits = (slots - 1).bit_length()
        act_slot = Signal(range(slots))
        act_word = Signal(range(geo.ring_words))
        act_row_base = Signal(range(geo.ring_words))
        strip_base = Signal(range(geo.ring_words * slots))  # window mode: AXI word of the current strip's start
        for i, port in enumerate(act_w):
            m.d.comb += [port.addr.eq(act_word), port.data.eq(beat.data), port.en.eq(arriving & (act_slot == i))]
        next_row_base = wrap(act_row_base + self.row_words, geo.ring_words)
        next_strip = Signal(range(geo.ring_words * slots))  # truncated: the ring's AXI words are a power of two
        m.d.comb += next_strip.eq(strip_base + self.strip_pitch)
        with m.If(arriving):
            with m.If(row_ends):
                m.d.comb += self.row_arrived.eq(1)
                m.d.sync += [act_slot.eq(0), act_word.eq(next_row_base), act_row_base.eq(next_row_base),
                             strip_base.eq(next_row_base << slot_bits)]
            with m.Elif(strip_ends):
                m.d.sync += [act_slot.eq(next_strip[:slot_bits]), act_word.eq(next_strip[slot_bits:]),
                             strip_base.eq(next_strip)]
            with m.Elif(act_slot == geo.act_slots - 1):
                m.d.sync += [act_slot.eq(0), act_word.eq(wrap(act_word + 1, geo.ring_words))]
            with m.Else():
                m.d.sync += act_slot.eq(act_slot + 1)
        with m.If(self.start):
            m.d.sync += [act_slot.eq(0), act_word.eq(0), act_row_base.eq(0), strip_base.eq(0)]

        for i, port in enumerate(act_r):
            m.d.comb += port.addr.eq(self.read_slots[i])
        rotate = Signal.like(self.read_rotate)  # the rotation of the words on read_data
        m.d.sync += rotate.eq(self.read_rotate)
        words = [port.data for port in act_r]
        for p in range(slots):
            word = words[p]
            for r in range(1, slots):
                word = Mux(rotate == r, words[(p + r) % slots], word)
            m.d.comb += self.read_data[p * geo.axi_bits:(p + 1) * geo.axi_bits].eq(word)

        m.d.comb += [
            residual.w_data.eq(beat.data),
            residual.w_en.eq(self.fill.valid & (beat.tag == Tag.RES)),
            self.residual.payload.eq(residual.r_data),
            self.residual.valid.eq(residual.r_rdy),
            residual.r_en.eq(self.residual.ready),
        ]
        return m
