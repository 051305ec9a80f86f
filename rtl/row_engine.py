# SPDX-License-Identifier: Apache-2.0
"""The row engine: LAYERNORM and SOFTMAX descriptors (docs/isa.md §3.6) on the row unit.

It reads, in order, LAYERNORM's γ and β (one command each), then one command per row of ``x``, each
as soon as the row unit's input FIFO has room for the whole row (credits returned beat by beat),
and issues one write command per output row.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring

from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX

from .descriptor import OPCODE_LAYERNORM, OPCODE_SOFTMAX, ROW_DESCRIPTOR_LAYOUT, Tag
from .engine import BEATS_WIDTH, Checks, engine_signature, hold, issue, misaligned
from .row_unit import RowGeometry, RowUnit

__all__ = ["RowEngine"]


class RowEngine(wiring.Component):
    """LAYERNORM and SOFTMAX descriptors: the row unit behind its parameter, row and write streams.

    Its members are :func:`~hwgen.rtl.engine.engine_signature`'s.
    """

    OPCODES = (OPCODE_LAYERNORM, OPCODE_SOFTMAX)
    TAGS = (Tag.ROW_PARAM, Tag.ROW)

    @staticmethod
    def problem(hw: HwParams) -> str | None:
        """Why the engine cannot be built for ``hw``, or ``None`` (the core then refuses its opcodes)."""
        return RowGeometry.problem(hw)

    @staticmethod
    def checks(hw: HwParams, words) -> Checks:
        """docs/isa.md §8.3 for a row descriptor in the 512 bits ``words``: sizes, reserved fields, SOFTMAX
        without γ/β/d_offset, LAYERNORM's d_offset = N²·eps_raw for an ε < 1 (so D fits the unit)."""
        r = data.View(ROW_DESCRIPTOR_LAYOUT, words)
        is_layernorm = r.opcode == OPCODE_LAYERNORM
        twice_frac = 2 * hw.unit_formats().layernorm_in.frac_bits
        ab = hw.act_bytes
        bad = ((r.m == 0) | (r.n == 0) | (r.n > ROW_MAX)
               | (r.reserved0 != 0) | (r.reserved2 != 0) | (r.reserved3 != 0) | (r.reserved7 != 0)
               | (r.reserved10 != 0)
               | (~is_layernorm & ((r.gamma_addr != 0) | (r.beta_addr != 0) | (r.d_offset != 0)))
               | (is_layernorm & (r.d_offset >= ((r.n * r.n) << twice_frac))))
        unaligned = (misaligned(hw.axi_bytes, r.x_addr, r.x_stride, r.out_addr, r.out_stride)
                     | (is_layernorm & misaligned(hw.axi_bytes, r.gamma_addr, r.beta_addr)))
        terms = [
            (1, r.x_addr, r.m - 1, r.x_stride, r.n * ab),
            (1, r.out_addr, r.m - 1, r.out_stride, r.n * ab),
            (is_layernorm, r.gamma_addr, 0, 0, r.n * ab),
            (is_layernorm, r.beta_addr, 0, 0, r.n * ab),
        ]
        return Checks(bad, 0, unaligned, terms)

    def __init__(self, hw: HwParams):
        self.hw = hw
        self.geometry = RowGeometry(hw)
        super().__init__(engine_signature(hw.axi_data_width))

    def elaborate(self, platform):
        m = Module()
        hw, rows = self.hw, self.geometry
        desc = data.View(ROW_DESCRIPTOR_LAYOUT, self.desc.as_value())
        shift = hw.axi_bytes.bit_length() - 1
        base = self.base

        m.submodules.unit = unit = RowUnit(hw)
        m.d.comb += [unit.desc.eq(desc), unit.start.eq(self.start), self.done.eq(unit.done), self.status.eq(0),
                     self.issuing.eq(0)]  # no MAC array
        wiring.connect(m, wiring.flipped(self.read_data), unit.fill)
        wiring.connect(m, unit.out, wiring.flipped(self.write_data))

        read_free = hold(m, self.read_cmd)
        write_free = hold(m, self.write_cmd)
        row_beats = Signal(BEATS_WIDTH)
        row_param = Signal(2)            # 1: γ next, 2: β next, 0: both issued (or SOFTMAX)
        reads_left = Signal(32)
        read_addr = Signal(32)
        writes_left = Signal(32)
        write_addr = Signal(32)
        credit = Signal(range(rows.input_beats + 1))
        pick_param = read_free & (row_param != 0)
        pick_row = read_free & (row_param == 0) & (reads_left != 0) & (credit >= row_beats)
        m.d.sync += credit.eq(credit + unit.beat_released - Mux(pick_row, row_beats, 0))
        with m.If(pick_param):
            with m.If(row_param == 1):
                m.d.sync += [*issue(self.read_cmd, addr=base + desc.gamma_addr, beats=row_beats, tag=Tag.ROW_PARAM),
                             row_param.eq(2)]
            with m.Else():
                m.d.sync += [*issue(self.read_cmd, addr=base + desc.beta_addr, beats=row_beats, tag=Tag.ROW_PARAM),
                             row_param.eq(0)]
        with m.If(pick_row):
            m.d.sync += [*issue(self.read_cmd, addr=read_addr, beats=row_beats, tag=Tag.ROW),
                         read_addr.eq(read_addr + desc.x_stride), reads_left.eq(reads_left - 1)]
        with m.If((writes_left != 0) & write_free):
            m.d.sync += [*issue(self.write_cmd, addr=write_addr, beats=row_beats),
                         write_addr.eq(write_addr + desc.out_stride), writes_left.eq(writes_left - 1)]

        with m.If(self.start):
            m.d.sync += [
                credit.eq(rows.input_beats),
                row_beats.eq((desc.n * hw.act_bytes + hw.axi_bytes - 1) >> shift),
                row_param.eq(Mux(desc.opcode == OPCODE_LAYERNORM, 1, 0)),
                reads_left.eq(desc.m), read_addr.eq(base + desc.x_addr),
                writes_left.eq(desc.m), write_addr.eq(base + desc.out_addr),
            ]
        return m
