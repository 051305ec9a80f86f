# SPDX-License-Identifier: Apache-2.0
"""The row unit: LAYERNORM and SOFTMAX descriptors (docs/isa.md §3.6), one element per cycle.

Read data arrives as tagged AXI beats on :attr:`RowUnit.fill`:

- ``ROW_PARAM``: LAYERNORM's γ then β, each one read command (its ``last`` beat ends it), kept
  for the whole descriptor in two ``ROW_MAX``-element buffers and replayed to LayerNorm's
  ``affine`` stream for every row;
- ``ROW``: one row of ``x`` per read command, into an input FIFO of two whole rows. The row
  engine (``rtl/row_engine.py``) issues a row only when the FIFO has room for it
  (``beat_released`` returns a beat of credit), so fill beats always find room.

An unpacker takes ``axi_bytes / act_bytes`` elements out of each beat, one per cycle, marks
``last`` at column ``N − 1`` (the rest of the row's last beat is padding) and feeds the
:class:`~hwgen.rtl.layernorm.LayerNorm` or :class:`~hwgen.rtl.softmax.Softmax` unit (``lanes=1``,
configs from ``hw.unit_formats()``; LayerNorm takes the descriptor's ``d_offset`` at run time).
A packer puts the results back into write beats, one beat per row segment of ``axi_bytes``,
with byte strobes that stop at column ``N``; the row engine issues one write command per row.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX, row_units_problem

from ._errors import refuse
from .descriptor import OPCODE_LAYERNORM, ROW_DESCRIPTOR_LAYOUT, Tag
from .engine import fill_layout, out_layout
from .layernorm import LayerNorm
from .softmax import Softmax

__all__ = ["RowGeometry", "RowUnit"]

AFFINE_FIFO_DEPTH = 8  # γ/β pairs read ahead of LayerNorm's affine stream: covers the read-to-FIFO-output latency


class RowGeometry:
    """Element and beat counts of the row unit for :class:`HwParams` ``hw``."""

    def __init__(self, hw: HwParams):
        self.hw = hw
        #: Elements per AXI beat.
        self.elements = hw.axi_bytes // hw.act_bytes
        #: Beats of the longest row.
        self.row_beats = -(-ROW_MAX * hw.act_bytes // hw.axi_bytes)
        #: Input FIFO depth in beats: two of the longest rows, so one row is read while the previous one is consumed.
        self.input_beats = 2 * self.row_beats

    @staticmethod
    def problem(hw: HwParams) -> str | None:
        """Why the row unit cannot be built for ``hw``, or ``None`` (the core then refuses its opcodes)."""
        return row_units_problem(hw)


class RowUnit(wiring.Component):
    """LayerNorm and softmax units behind an AXI-beat unpacker and packer, running one row descriptor.

    Ports
    -----
    desc : In(ROW_DESCRIPTOR_LAYOUT)
        The descriptor; held stable from ``start`` to ``done``.
    start : In(1)
        One-cycle pulse: reset the counters and run ``desc``.
    done : Out(1)
        One-cycle pulse: every output beat of the descriptor has left on ``out``.
    fill : In(stream)
        Read data: ``data`` (one AXI word), ``tag`` (``Tag.ROW_PARAM`` or ``Tag.ROW``), ``last``.
    out : Out(stream)
        Output words for the write engine: ``data`` and byte strobes ``strb``.
    beat_released : Out(1)
        Pulse: one beat left the input FIFO (a beat of read credit).
    """

    def __init__(self, hw: HwParams):
        if not isinstance(hw, HwParams):
            refuse(self, f"hardware parameters must be an HwParams, not {hw!r}")
        problem = RowGeometry.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        self.geometry = RowGeometry(hw)
        units = hw.unit_formats()
        self.layernorm_config = units.layernorm_config()
        self.softmax_config = units.softmax_config()
        self.fill_layout = fill_layout(hw.axi_data_width)
        self.out_layout = out_layout(hw.axi_data_width)
        super().__init__({
            "desc": In(ROW_DESCRIPTOR_LAYOUT),
            "start": In(1),
            "done": Out(1),
            "fill": In(stream.Signature(self.fill_layout)),
            "out": Out(stream.Signature(self.out_layout)),
            "beat_released": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, geo, desc = self.hw, self.geometry, self.desc
        act_bits, act_bytes, elements = hw.act_bits, hw.act_bytes, geo.elements
        slot_shift = elements.bit_length() - 1
        is_layernorm = desc.opcode == OPCODE_LAYERNORM
        last_col = Signal(16)
        m.d.comb += last_col.eq(desc.n - 1)

        m.submodules.layernorm = layernorm = LayerNorm(self.layernorm_config, 1, runtime_d_offset=True)
        m.submodules.softmax = softmax = Softmax(self.softmax_config, 1)
        m.d.comb += layernorm.d_offset.eq(desc.d_offset)

        # ------------------------------------------------------------------ fill: γ, β and rows
        beat = self.fill.payload
        m.submodules.gamma = gamma_mem = Memory(shape=unsigned(hw.axi_data_width), depth=geo.row_beats, init=[])
        m.submodules.beta = beta_mem = Memory(shape=unsigned(hw.axi_data_width), depth=geo.row_beats, init=[])
        param_word = Signal(range(geo.row_beats))
        on_beta = Signal()
        params_loaded = Signal()
        is_param = self.fill.valid & (beat.tag == Tag.ROW_PARAM)
        for mem, selected in ((gamma_mem, ~on_beta), (beta_mem, on_beta)):
            port = mem.write_port()
            m.d.comb += [port.addr.eq(param_word), port.data.eq(beat.data), port.en.eq(is_param & selected)]
        with m.If(is_param):
            with m.If(beat.last):
                m.d.sync += [param_word.eq(0), on_beta.eq(1)]
                with m.If(on_beta):
                    m.d.sync += params_loaded.eq(1)
            with m.Else():
                m.d.sync += param_word.eq(param_word + 1)

        m.submodules.rows_in = rows_in = fifo.SyncFIFOBuffered(width=hw.axi_data_width, depth=geo.input_beats)
        is_row = beat.tag == Tag.ROW
        m.d.comb += [
            rows_in.w_data.eq(beat.data),
            rows_in.w_en.eq(self.fill.valid & is_row),
            self.fill.ready.eq(~is_row | rows_in.w_rdy),
        ]

        # ------------------------------------------------------------------ unpack: one element per cycle
        slot = Signal(range(elements))
        col = Signal(16)
        element = Signal(act_bits)
        m.d.comb += element.eq(rows_in.r_data.word_select(slot, act_bits))
        row_end = col == last_col
        unit_ready = Mux(is_layernorm, layernorm.i.ready, softmax.i.ready)
        for unit in (layernorm, softmax):
            m.d.comb += [unit.i.payload.x[0].eq(element.as_signed()), unit.i.payload.last.eq(row_end)]
        m.d.comb += [
            layernorm.i.valid.eq(rows_in.r_rdy & is_layernorm),
            softmax.i.valid.eq(rows_in.r_rdy & ~is_layernorm),
        ]
        taken = rows_in.r_rdy & unit_ready
        pop = taken & (row_end | (slot == elements - 1))
        m.d.comb += [rows_in.r_en.eq(pop), self.beat_released.eq(pop)]
        with m.If(taken):
            m.d.sync += [slot.eq(Mux(pop, 0, slot + 1)), col.eq(Mux(row_end, 0, col + 1))]

        # ------------------------------------------------------------------ γ/β replay, row after row
        m.submodules.affine = affine = fifo.SyncFIFOBuffered(width=2 * act_bits, depth=AFFINE_FIFO_DEPTH)
        gamma_r = gamma_mem.read_port(transparent_for=())
        beta_r = beta_mem.read_port(transparent_for=())
        replay_col = Signal(16)
        replay_row = Signal(32)
        replay_running = Signal()
        pending = Signal()          # a read issued last cycle: its word is on the ports now
        pending_slot = Signal(range(elements))
        issue = Signal()
        # One entry of margin: the FIFO's output register refills a cycle after it empties.
        m.d.comb += issue.eq(replay_running & params_loaded & (affine.level + pending < AFFINE_FIFO_DEPTH - 1))
        for port in (gamma_r, beta_r):
            m.d.comb += [port.addr.eq(replay_col >> slot_shift), port.en.eq(1)]
        m.d.sync += [pending.eq(issue), pending_slot.eq(replay_col[:slot_shift] if slot_shift else 0)]
        with m.If(issue):
            with m.If(replay_col == last_col):
                m.d.sync += [replay_col.eq(0), replay_row.eq(replay_row + 1)]
                with m.If(replay_row == desc.m - 1):
                    m.d.sync += replay_running.eq(0)
            with m.Else():
                m.d.sync += replay_col.eq(replay_col + 1)
        m.d.comb += [
            affine.w_data.eq(Cat(gamma_r.data.word_select(pending_slot, act_bits),
                                 beta_r.data.word_select(pending_slot, act_bits))),
            affine.w_en.eq(pending),
            layernorm.affine.payload.gamma[0].eq(affine.r_data[:act_bits].as_signed()),
            layernorm.affine.payload.beta[0].eq(affine.r_data[act_bits:].as_signed()),
            layernorm.affine.valid.eq(affine.r_rdy),
            affine.r_en.eq(layernorm.affine.ready),
        ]

        # ------------------------------------------------------------------ pack results into write beats
        result = Signal(act_bits)
        result_last = Signal()
        result_valid = Signal()
        m.d.comb += [
            result.eq(Mux(is_layernorm, layernorm.o.payload.y[0], softmax.o.payload.p[0])),
            result_last.eq(Mux(is_layernorm, layernorm.o.payload.last, softmax.o.payload.last)),
            result_valid.eq(Mux(is_layernorm, layernorm.o.valid, softmax.o.valid)),
        ]
        out = self.out
        out_slot = Signal(range(elements))
        gathered = Signal(hw.axi_data_width)
        completes = result_last | (out_slot == elements - 1)
        accept = Signal()
        m.d.comb += accept.eq(result_valid & ~(completes & out.valid & ~out.ready))
        m.d.comb += [layernorm.o.ready.eq(accept & is_layernorm), softmax.o.ready.eq(accept & ~is_layernorm)]
        merged = Cat(*(Mux(out_slot == j, result, gathered.word_select(j, act_bits)) for j in range(elements)))
        rows_out = Signal(32)
        with m.If(out.valid & out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(accept):
            m.d.sync += gathered.eq(merged)
            with m.If(completes):
                used_bytes = (out_slot + 1) * act_bytes
                m.d.sync += [
                    out_slot.eq(0),
                    out.valid.eq(1),
                    out.payload.data.eq(merged),
                    out.payload.strb.eq((Const(1, hw.axi_bytes + 1) << used_bytes) - 1),
                ]
                with m.If(result_last):
                    m.d.sync += rows_out.eq(rows_out + 1)
            with m.Else():
                m.d.sync += out_slot.eq(out_slot + 1)

        # ------------------------------------------------------------------ start / done
        finishing = Signal()
        with m.If(self.start):
            m.d.sync += [
                param_word.eq(0), on_beta.eq(0), params_loaded.eq(~is_layernorm),
                slot.eq(0), col.eq(0),
                replay_col.eq(0), replay_row.eq(0), replay_running.eq(is_layernorm),
                out_slot.eq(0), rows_out.eq(0), finishing.eq(1),
            ]
        with m.Elif(finishing & (rows_out == desc.m) & ~out.valid):
            m.d.comb += self.done.eq(1)
            m.d.sync += finishing.eq(0)
        return m
