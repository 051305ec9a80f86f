# SPDX-License-Identifier: Apache-2.0
"""The row unit: LAYERNORM and SOFTMAX descriptors (docs/isa.md §3.6); LayerNorm a beat per cycle.

Read data arrives as tagged AXI beats on :attr:`RowUnit.fill`:

- ``ROW_PARAM``: LAYERNORM's γ then β, each one read command (its ``last`` beat ends it), kept
  for the whole descriptor in two ``ROW_MAX``-element buffers and replayed, a beat at a time, to
  LayerNorm's ``affine`` stream for every row;
- ``ROW``: one row of ``x`` per read command, into an input FIFO of two whole rows. The row
  engine (``rtl/row_engine.py``) issues a row only when the FIFO has room for it
  (``beat_released`` returns a beat of credit), so fill beats always find room.

Every row starts on an AXI word (docs/isa.md §2), so a beat of the FIFO holds ``hw.row_lanes``
elements of one row, all of them but in the row's last beat, where a lane mask stops at column
``N − 1``. The :class:`~hwgen.rtl.layernorm.LayerNorm` unit (``lanes = hw.row_lanes``, config from
``hw.unit_formats()``, ``d_offset`` from the descriptor at run time) takes a whole beat per cycle
and gives one back: its sums are exact, so the lanes change no bit of the result. The
:class:`~hwgen.rtl.softmax.Softmax` unit takes one element per cycle (``lanes=1``) behind a
:class:`BeatSerializer` and a :class:`BeatGatherer`: its running sum is rounded every time the
running max grows, so its result depends on the order of the updates, and an update of several
elements per cycle that keeps every bit of the golden's element order costs a multiplier per
element in the loop (docs/isa.md §3.6). Output beats carry byte strobes that stop at column
``N``; the row engine issues one write command per row.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX, row_units_problem

from ._errors import refuse
from .descriptor import OPCODE_LAYERNORM, ROW_DESCRIPTOR_LAYOUT, Tag
from .engine import fill_layout, out_layout
from .layernorm import LayerNorm
from .softmax import Softmax

__all__ = ["RowGeometry", "RowUnit", "BeatSerializer", "BeatGatherer"]

AFFINE_FIFO_DEPTH = 8  # γ/β beats read ahead of LayerNorm's affine stream: covers the read-to-FIFO-output latency


class RowGeometry:
    """Element and beat counts of the row unit for :class:`HwParams` ``hw``."""

    def __init__(self, hw: HwParams):
        self.hw = hw
        #: Elements per AXI beat: LayerNorm's lanes.
        self.elements = hw.row_lanes
        #: Beats of the longest row.
        self.row_beats = -(-ROW_MAX * hw.act_bytes // hw.axi_bytes)
        #: Input FIFO depth in beats: two of the longest rows, so one row is read while the previous one is consumed.
        self.input_beats = 2 * self.row_beats

    @staticmethod
    def problem(hw: HwParams) -> str | None:
        """Why the row unit cannot be built for ``hw``, or ``None`` (the core then refuses its opcodes)."""
        return row_units_problem(hw)


def _check_lanes(component, lanes, width):
    for name, value in (("lanes", lanes), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            refuse(component, f"{name} must be a positive integer, not {value!r}")


def beat_layout(lanes: int, width: int) -> data.StructLayout:
    """A beat of ``lanes`` elements of ``width`` bits, its lane ``mask`` and whether it ends a row."""
    return data.StructLayout({"data": unsigned(lanes * width), "mask": lanes, "last": 1})


def element_layout(width: int) -> data.StructLayout:
    """One element of ``width`` bits and whether it ends a row."""
    return data.StructLayout({"data": unsigned(width), "last": 1})


class BeatSerializer(wiring.Component):
    """The elements of each beat, one per cycle, lane 0 first.

    Parameters
    ----------
    lanes, width : int
        Elements per beat and their bits.

    Ports
    -----
    i : In(stream.Signature(beat_layout(lanes, width)))
        Beats; ``mask`` is a prefix (lanes 0 … k − 1, k ≥ 1) and only a row's last beat may be partial.
    o : Out(stream.Signature(element_layout(width)))
        The masked elements in order; ``last`` on the last element of a beat that ends a row.
    """

    def __init__(self, lanes: int, width: int):
        _check_lanes(self, lanes, width)
        self.lanes, self.width = lanes, width
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes, width))),
            "o": Out(stream.Signature(element_layout(width))),
        })

    def elaborate(self, platform):
        m = Module()
        beat, lanes = self.i.payload, self.lanes
        slot = Signal(range(lanes))
        final = Signal()  # this element is the beat's last
        m.d.comb += final.eq((slot == lanes - 1) | ~(beat.mask >> (slot + 1))[0])
        m.d.comb += [
            self.o.payload.data.eq(beat.data.word_select(slot, self.width)),
            self.o.payload.last.eq(beat.last & final),
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready & final),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += slot.eq(Mux(final, 0, slot + 1))
        return m


class BeatGatherer(wiring.Component):
    """Elements back into beats of ``lanes``: a beat leaves when full or at a row's last element.

    Parameters
    ----------
    lanes, width : int
        Elements per beat and their bits.

    Ports
    -----
    i : In(stream.Signature(element_layout(width)))
        Elements in order; ``last`` ends a row.
    o : Out(stream.Signature(beat_layout(lanes, width)))
        Beats, lane 0 first; ``mask`` the lanes filled (the others hold stale elements), ``last`` on a row's end.
    """

    def __init__(self, lanes: int, width: int):
        _check_lanes(self, lanes, width)
        self.lanes, self.width = lanes, width
        super().__init__({
            "i": In(stream.Signature(element_layout(width))),
            "o": Out(stream.Signature(beat_layout(lanes, width))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, width, out = self.lanes, self.width, self.o
        slot = Signal(range(lanes))
        gathered = Signal(lanes * width)
        completes = self.i.payload.last | (slot == lanes - 1)
        # An element that completes a beat waits while the previous beat is still unsent.
        accept = Signal()
        m.d.comb += [accept.eq(self.i.valid & ~(completes & out.valid & ~out.ready)), self.i.ready.eq(accept)]
        merged = Cat(*(Mux(slot == j, self.i.payload.data, gathered.word_select(j, width)) for j in range(lanes)))
        with m.If(out.valid & out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(accept):
            m.d.sync += gathered.eq(merged)
            with m.If(completes):
                m.d.sync += [
                    slot.eq(0),
                    out.valid.eq(1),
                    out.payload.data.eq(merged),
                    out.payload.mask.eq((Const(1, lanes + 1) << (slot + 1)) - 1),
                    out.payload.last.eq(self.i.payload.last),
                ]
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
        return m


class RowUnit(wiring.Component):
    """LayerNorm and softmax units behind the input FIFO and the γ/β buffers, running one row descriptor.

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
        act_bits, act_bytes, lanes = hw.act_bits, hw.act_bytes, geo.elements
        slot_shift = lanes.bit_length() - 1
        is_layernorm = desc.opcode == OPCODE_LAYERNORM
        # A row's last beat and the lanes it holds (every other beat is full).
        last_beat = Signal(16)
        tail = Signal(range(lanes))
        m.d.comb += [last_beat.eq((desc.n - 1) >> slot_shift), tail.eq(desc.n - 1)]
        tail_mask = Cat(*(Const(k) <= tail for k in range(lanes)))
        full_mask = Const((1 << lanes) - 1, lanes)

        m.submodules.layernorm = layernorm = LayerNorm(self.layernorm_config, lanes, runtime_d_offset=True)
        m.submodules.softmax = softmax = Softmax(self.softmax_config, 1)
        m.submodules.serializer = serializer = BeatSerializer(lanes, act_bits)
        m.submodules.gatherer = gatherer = BeatGatherer(lanes, act_bits)
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

        # ------------------------------------------------------------------ row beats (LayerNorm whole)
        col = Signal(16)  # beat of the row at the FIFO's head
        row_end = col == last_beat
        mask = Mux(row_end, tail_mask, full_mask)
        for k in range(lanes):
            m.d.comb += layernorm.i.payload.x[k].eq(rows_in.r_data.word_select(k, act_bits))
        m.d.comb += [
            layernorm.i.payload.mask.eq(mask),
            layernorm.i.payload.last.eq(row_end),
            serializer.i.payload.data.eq(rows_in.r_data),
            serializer.i.payload.mask.eq(mask),
            serializer.i.payload.last.eq(row_end),
            layernorm.i.valid.eq(rows_in.r_rdy & is_layernorm),
            serializer.i.valid.eq(rows_in.r_rdy & ~is_layernorm),
        ]
        taken = rows_in.r_rdy & Mux(is_layernorm, layernorm.i.ready, serializer.i.ready)
        m.d.comb += [rows_in.r_en.eq(taken), self.beat_released.eq(taken)]
        with m.If(taken):
            m.d.sync += col.eq(Mux(row_end, 0, col + 1))
        m.d.comb += [
            softmax.i.payload.x[0].eq(serializer.o.payload.data),
            softmax.i.payload.last.eq(serializer.o.payload.last),
            softmax.i.valid.eq(serializer.o.valid),
            serializer.o.ready.eq(softmax.i.ready),
            gatherer.i.payload.data.eq(softmax.o.payload.p[0]),
            gatherer.i.payload.last.eq(softmax.o.payload.last),
            gatherer.i.valid.eq(softmax.o.valid),
            softmax.o.ready.eq(gatherer.i.ready),
        ]

        # ------------------------------------------------------------------ γ/β replay, row after row
        # γ and β are act_bits containers like x: a buffer word is a beat of the affine stream.
        assert len(layernorm.affine.payload.as_value()) == 2 * hw.axi_data_width
        m.submodules.affine = affine = fifo.SyncFIFOBuffered(width=2 * hw.axi_data_width, depth=AFFINE_FIFO_DEPTH)
        gamma_r = gamma_mem.read_port(transparent_for=())
        beta_r = beta_mem.read_port(transparent_for=())
        replay_col = Signal(16)
        replay_row = Signal(32)
        replay_running = Signal()
        pending = Signal()          # a read issued last cycle: its word is on the ports now
        issue = Signal()
        # One entry of margin: the FIFO's output register refills a cycle after it empties.
        m.d.comb += issue.eq(replay_running & params_loaded & (affine.level + pending < AFFINE_FIFO_DEPTH - 1))
        for port in (gamma_r, beta_r):
            m.d.comb += [port.addr.eq(replay_col), port.en.eq(1)]
        m.d.sync += pending.eq(issue)
        with m.If(issue):
            with m.If(replay_col == last_beat):
                m.d.sync += [replay_col.eq(0), replay_row.eq(replay_row + 1)]
                with m.If(replay_row == desc.m - 1):
                    m.d.sync += replay_running.eq(0)
            with m.Else():
                m.d.sync += replay_col.eq(replay_col + 1)
        m.d.comb += [
            affine.w_data.eq(Cat(gamma_r.data, beta_r.data)),
            affine.w_en.eq(pending),
            layernorm.affine.payload.eq(affine.r_data),
            layernorm.affine.valid.eq(affine.r_rdy),
            affine.r_en.eq(layernorm.affine.ready),
        ]

        # ------------------------------------------------------------------ results into write beats
        out = self.out
        result_last = Mux(is_layernorm, layernorm.o.payload.last, gatherer.o.payload.last)
        tail_bytes = (tail + 1) * act_bytes
        m.d.comb += [
            out.payload.data.eq(Mux(is_layernorm, layernorm.o.payload.y.as_value(), gatherer.o.payload.data)),
            # Bytes beyond column N are not written.
            out.payload.strb.eq(Mux(result_last, (Const(1, hw.axi_bytes + 1) << tail_bytes) - 1,
                                    (1 << hw.axi_bytes) - 1)),
            out.valid.eq(Mux(is_layernorm, layernorm.o.valid, gatherer.o.valid)),
            layernorm.o.ready.eq(out.ready & is_layernorm),
            gatherer.o.ready.eq(out.ready & ~is_layernorm),
        ]
        rows_out = Signal(32)
        with m.If(out.valid & out.ready & result_last):
            m.d.sync += rows_out.eq(rows_out + 1)

        # ------------------------------------------------------------------ start / done
        finishing = Signal()
        with m.If(self.start):
            m.d.sync += [
                param_word.eq(0), on_beta.eq(0), params_loaded.eq(~is_layernorm), col.eq(0),
                replay_col.eq(0), replay_row.eq(0), replay_running.eq(is_layernorm),
                rows_out.eq(0), finishing.eq(1),
            ]
        with m.Elif(finishing & (rows_out == desc.m)):
            m.d.comb += self.done.eq(1)
            m.d.sync += finishing.eq(0)
        return m
