# SPDX-License-Identifier: Apache-2.0
"""The attention engine: QK_SOFTMAX_STATS and AV (docs/isa.md §3.8), every head of a layer per
descriptor, on the shared compute unit (``rtl/compute_unit.py``: the weight banks, activation
buffer, MAC array and post lanes LINEAR uses).

The unit runs the descriptor as a LINEAR whose chunks are the heads: chunk ``h`` is head ``h``'s
product, its second operand the head's K (``B_TRANSPOSED``: key ``j`` is output column ``j``) or V
(``B_ROWMAJOR``), loaded into the free weight bank while the previous head computes; the unit's
``head_cols`` makes every chunk ``S`` (QK) or ``d_head`` (AV) columns wide, and QK's RQ1 reads
``acc·scale`` (``scale``). This engine issues the reads and writes in the unit's order:

- **operand stream**: per head, the ``S`` rows of the head's K or V columns (``d_head·act_bytes``
  each), tagged ``WEIGHT`` (the last ``WEIGHT_END``), as soon as a weight bank is free;
- **row stream**: per head and query row, QK's segment of Q (``ACT``), or AV's statistics word
  (``STATS``, one AXI word holding the row's 8-byte entry) then its score row (``SCORE``), as soon as
  the activation ring has room. Score beats turn into probabilities on the way into the ring
  (:class:`~hwgen.rtl.softmax.SoftmaxNormalize`, one lane per element of the beat, with the row's
  max and 1/sum latched from its statistics word), so A·V reads each score once and no pass over
  the scores is added; every other beat waits the normalization's latency beside them, so the
  unit sees the read order;
- **writes**: AV's output rows (the head's columns of each row) straight from the post lanes. QK's
  score rows go to DDR and, in the same pass, into the statistics units
  (:class:`~hwgen.rtl.softmax.SoftmaxStats`, one element per cycle, the softmax unit's running max
  and rescaled running sum, then 1/sum): score rows are dealt round-robin to ``stats_units(hw)``
  units, each with a row FIFO, so together they keep up with the array; their (max, 1/sum) entries
  are written, in row order, between score rows.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered

from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX, attention_problem

from .compute_unit import ArrayEngine
from .descriptor import (
    ATTENTION_DESCRIPTOR_LAYOUT, DESCRIPTOR_LAYOUT, OPCODE_AV, OPCODE_LINEAR, OPCODE_QK_SOFTMAX_STATS,
    STATS_ENTRY_BYTES, Tag,
)
from .engine import BEATS_WIDTH, Checks, hold, issue, misaligned
from .geometry import Geometry
from .linear_engine import _requant_ok
from .softmax import SoftmaxNormalize, SoftmaxStats

__all__ = ["AttentionEngine", "stats_units"]

#: Most statistics units (the QK score rows they share); 4 keep 16×16 lanes with d_head = 64 at the array's rate.
MAX_STATS_UNITS = 4


def stats_units(hw: HwParams) -> int:
    """Statistics units for ``hw``: a score row of ``S`` takes one unit ``S`` cycles and the array
    ``k_tiles·ceil(S/lanes_out)`` cycles, so ``ceil(lanes_out/k_tiles)`` units keep up at DeiT's
    ``d_head = 64`` (at most :data:`MAX_STATS_UNITS`)."""
    k_tiles = -(-64 // hw.lanes_in)
    return max(1, min(MAX_STATS_UNITS, -(-hw.lanes_out // k_tiles)))


def _ceil_div(value, divisor: int):
    return (value + divisor - 1) // divisor


class AttentionEngine(ArrayEngine):
    """QK_SOFTMAX_STATS and AV descriptors on the shared compute unit.

    Its members are :func:`~hwgen.rtl.engine.array_engine_signature`'s.
    """

    OPCODES = (OPCODE_QK_SOFTMAX_STATS, OPCODE_AV)
    TAGS = (Tag.WEIGHT, Tag.WEIGHT_END, Tag.ACT, Tag.SCORE, Tag.STATS)

    @staticmethod
    def problem(hw: HwParams) -> str | None:
        """Why the engine cannot be built for ``hw``, or ``None`` (the core then refuses opcodes 3 and 4)."""
        problem = Geometry.problem(hw) or attention_problem(hw)
        if problem is None and hw.axi_bytes < STATS_ENTRY_BYTES:
            problem = f"the RTL attention engine needs AXI words of at least {8 * STATS_ENTRY_BYTES} bits"
        return problem

    @staticmethod
    def checks(hw: HwParams, words) -> Checks:
        """docs/isa.md §3.8's checks for a QK_SOFTMAX_STATS or AV descriptor in the 512 bits ``words``."""
        geo = Geometry(hw)
        d = data.View(ATTENTION_DESCRIPTOR_LAYOUT, words)
        qk = d.opcode == OPCODE_QK_SOFTMAX_STATS
        li, lo, ab = hw.lanes_in, hw.lanes_out, hw.act_bytes
        unused = Mux(qk, (d.v_addr | d.out_addr | d.v_stride | d.out_stride) != 0,
                     (d.q_addr | d.k_addr | d.q_stride | d.k_stride | d.scale) != 0)
        bad = ((d.reserved0 != 0) | (d.reserved2 != 0) | (d.reserved15 != 0)
               | (d.m == 0) | (d.heads == 0) | (d.d_head == 0) | (d.s == 0) | (d.s > ROW_MAX)
               | unused | (qk & (d.scale == 0)) | ~_requant_ok(d.rq)
               | (qk & ((d.rq.width != hw.act_bits) | ~d.rq.is_signed)))
        k_tiles = _ceil_div(Mux(qk, d.d_head, d.s), li)
        n_tiles = _ceil_div(Mux(qk, d.s, d.d_head), lo)
        too_big = ((k_tiles > geo.max_k_tiles) | (n_tiles > geo.max_chunk_tiles)
                   | (k_tiles * n_tiles * hw.tile_stride(ab) > hw.weight_buffer_bytes))
        axi = hw.axi_bytes
        unaligned = (misaligned(axi, d.scores_addr, d.scores_stride, d.stats_addr, d.d_head * ab)
                     | Mux(qk, misaligned(axi, d.q_addr, d.q_stride, d.k_addr, d.k_stride),
                           misaligned(axi, d.v_addr, d.v_stride, d.out_addr, d.out_stride)))
        rows = d.heads * d.m
        width_bytes = d.heads * d.d_head * ab
        terms = [
            (1, d.scores_addr, rows - 1, d.scores_stride, d.s * ab),
            (1, d.stats_addr, rows - 1, STATS_ENTRY_BYTES, STATS_ENTRY_BYTES),
            (1, Mux(qk, d.q_addr, d.v_addr), Mux(qk, d.m, d.s) - 1, Mux(qk, d.q_stride, d.v_stride), width_bytes),
            (1, Mux(qk, d.k_addr, d.out_addr), Mux(qk, d.s, d.m) - 1, Mux(qk, d.k_stride, d.out_stride),
             width_bytes),
        ]
        return Checks(bad, too_big, unaligned, terms)

    def __init__(self, hw: HwParams):
        super().__init__(hw)
        self.units = stats_units(hw)

    def elaborate(self, platform):
        m = Module()
        hw, geo = self.hw, self.geometry
        desc = data.View(ATTENTION_DESCRIPTOR_LAYOUT, self.desc.as_value())
        cfg = hw.unit_formats().softmax_config()
        axi_bits, axi_bytes, act_bits, ab = geo.axi_bits, geo.axi_bytes, hw.act_bits, hw.act_bytes
        li, lo = hw.lanes_in, hw.lanes_out
        shift = axi_bytes.bit_length() - 1
        elements = geo.post_lanes  # elements per AXI word
        per_word = axi_bytes // STATS_ENTRY_BYTES  # statistics entries per AXI word
        base = self.base
        unit = self.unit

        # ------------------------------------------------------------------ the descriptor, as the unit runs it
        qk = Signal()
        k_tiles = Signal(16)
        head_tiles = Signal(16)       # output tiles of one head (a chunk)
        head_cols = Signal(16)        # S (QK) or d_head (AV)
        head_bytes = Signal(32)       # d_head·act_bytes: one head's columns of a row
        head_beats = Signal(BEATS_WIDTH)   # the same in AXI words (an operand row, a Q segment, an output row)
        score_beats = Signal(BEATS_WIDTH)  # AXI words of a score row
        unit_start = Signal()
        with m.If(self.start):
            is_qk = desc.opcode == OPCODE_QK_SOFTMAX_STATS
            m.d.sync += [
                qk.eq(is_qk),
                k_tiles.eq(_ceil_div(Mux(is_qk, desc.d_head, desc.s), li)),
                head_tiles.eq(_ceil_div(Mux(is_qk, desc.s, desc.d_head), lo)),
                head_cols.eq(Mux(is_qk, desc.s, desc.d_head)),
                head_bytes.eq(desc.d_head * ab),
                head_beats.eq((desc.d_head * ab) >> shift),
                score_beats.eq((desc.s * ab + axi_bytes - 1) >> shift),
            ]
        m.d.sync += unit_start.eq(self.start)  # the unit starts once the fields above are registered
        linear = data.View(DESCRIPTOR_LAYOUT, unit.desc.as_value())
        m.d.comb += [
            linear.opcode.eq(OPCODE_LINEAR),
            linear.m.eq(desc.m),
            linear.k.eq(Mux(qk, desc.d_head, desc.s)),
            linear.n.eq(desc.heads * head_tiles * lo),
            linear.k_tiles.eq(k_tiles),
            linear.n_tiles.eq(desc.heads * head_tiles),
            linear.chunk_tiles.eq(head_tiles),
            linear.flags.b_transposed.eq(qk),
            linear.flags.b_rowmajor.eq(~qk),
            linear.flags.x_unsigned.eq(~qk),  # probabilities are unsigned
            linear.rq1.eq(desc.rq),
            unit.start.eq(unit_start),
            unit.scale.eq(Mux(qk, desc.scale, 1)),
            unit.head_cols.eq(head_cols),
            self.status.eq(0),
            self.issuing.eq(unit.issuing),
        ]

        # ------------------------------------------------------------------ read data into the unit
        # AV's statistics words set the row's (max, 1/sum); score beats become probability beats. Every
        # beat takes the normalization's latency, so the unit sees them in read order.
        m.d.comb += self.read_data.ready.eq(1)
        beat = self.read_data.payload
        arriving = self.read_data.valid
        m.submodules.normalize = normalize = SoftmaxNormalize(cfg, lanes=elements)
        row_max = Signal(act_bits)
        row_inv = Signal(cfg.inv_fmt.width)
        entry_sel = Signal(range(max(2, per_word)))
        with m.If(arriving & (beat.tag == Tag.STATS)):
            entry = beat.data.word_select(entry_sel, 8 * STATS_ENTRY_BYTES) if per_word > 1 else beat.data[:64]
            m.d.sync += [row_max.eq(entry[:act_bits]), row_inv.eq(entry[32:32 + cfg.inv_fmt.width])]
            if per_word > 1:
                m.d.sync += entry_sel.eq(Mux(entry_sel == per_word - 1, 0, entry_sel + 1))
        for lane in range(elements):
            m.d.comb += [
                normalize.i.payload.x[lane].eq(beat.data[lane * act_bits:(lane + 1) * act_bits]),
                normalize.i.payload.max[lane].eq(row_max),
                normalize.i.payload.inv_sum[lane].eq(row_inv),
            ]
        m.d.comb += [normalize.i.valid.eq(1), normalize.o.ready.eq(1)]
        delayed = (arriving, beat.tag, beat.last, beat.data)
        for stage in range(normalize.latency):
            registers = tuple(Signal(len(v), name=f"{name}_d{stage}") for v, name in
                              zip(delayed, ("valid", "tag", "last", "data")))
            m.d.sync += [r.eq(v) for r, v in zip(registers, delayed)]
            delayed = registers
        d_valid, d_tag, d_last, d_data = delayed
        p_width = len(normalize.o.payload.p[0])
        probabilities = Cat(*(Cat(normalize.o.payload.p[lane], Const(0, act_bits - p_width))
                              for lane in range(elements)))
        is_score = d_tag == Tag.SCORE
        m.d.comb += [
            unit.fill.valid.eq(d_valid & (d_tag != Tag.STATS)),
            unit.fill.payload.tag.eq(Mux(is_score, Tag.ACT, d_tag)),
            unit.fill.payload.last.eq(d_last),
            unit.fill.payload.data.eq(Mux(is_score, probabilities, d_data)),
        ]

        # ------------------------------------------------------------------ read commands
        read_free = hold(m, self.read_cmd)
        ring_free = Signal(range(geo.ring_words + 1))
        banks_free = Signal(range(3))
        # Operand stream: head w_head's S rows of K or V.
        w_active = Signal()
        w_loading = Signal()           # a bank is taken for the head being loaded
        w_head = Signal(8)
        w_row = Signal(16)
        w_addr = Signal(32)
        w_head_addr = Signal(32)       # the head's first row
        w_wants = w_active & w_loading
        operand_stride = Mux(qk, desc.k_stride, desc.v_stride)
        # Row stream: per head and query row, Q's segment (QK) or the statistics word and the score row (AV).
        a_active = Signal()
        a_on_scores = Signal()
        a_head = Signal(8)
        a_row = Signal(16)
        a_q_addr = Signal(32)
        a_q_head_addr = Signal(32)
        a_index = Signal(32)           # score row h·M + i
        a_score_addr = Signal(32)
        a_wants = a_active & (a_on_scores | (ring_free >= k_tiles))
        urgent = w_head <= a_head
        pick_w = Signal()
        pick_a = Signal()
        m.d.comb += [pick_w.eq(read_free & w_wants & (urgent | ~a_wants)), pick_a.eq(read_free & a_wants & ~pick_w)]
        take_bank = Signal()
        take_ring = pick_a & ~a_on_scores
        m.d.sync += [
            ring_free.eq(ring_free + Mux(unit.row_released, k_tiles, 0) - Mux(take_ring, k_tiles, 0)),
            banks_free.eq(banks_free + unit.chunk_released - take_bank),
        ]
        with m.If(w_active & ~w_loading & (banks_free != 0)):
            m.d.comb += take_bank.eq(1)
            m.d.sync += w_loading.eq(1)
        last_operand_row = w_row == desc.s - 1
        with m.If(pick_w):
            m.d.sync += issue(self.read_cmd, addr=w_addr, beats=head_beats,
                              tag=Mux(last_operand_row, Tag.WEIGHT_END, Tag.WEIGHT))
            with m.If(last_operand_row):
                m.d.sync += [w_loading.eq(0), w_row.eq(0), w_head.eq(w_head + 1),
                             w_head_addr.eq(w_head_addr + head_bytes), w_addr.eq(w_head_addr + head_bytes)]
                with m.If(w_head == desc.heads - 1):
                    m.d.sync += w_active.eq(0)
            with m.Else():
                m.d.sync += [w_row.eq(w_row + 1), w_addr.eq(w_addr + operand_stride)]
        with m.If(pick_a):
            with m.If(~qk & ~a_on_scores):
                stats_word = (a_index * STATS_ENTRY_BYTES) & ~(axi_bytes - 1)
                m.d.sync += [*issue(self.read_cmd, addr=base + desc.stats_addr + stats_word, beats=1, tag=Tag.STATS),
                             a_on_scores.eq(1)]
            with m.Else():
                m.d.sync += [
                    *issue(self.read_cmd, addr=Mux(qk, a_q_addr, a_score_addr), beats=Mux(qk, head_beats, score_beats),
                           tag=Mux(qk, Tag.ACT, Tag.SCORE)),
                    a_on_scores.eq(0), a_index.eq(a_index + 1), a_score_addr.eq(a_score_addr + desc.scores_stride),
                ]
                with m.If(a_row == desc.m - 1):
                    m.d.sync += [a_row.eq(0), a_head.eq(a_head + 1), a_q_head_addr.eq(a_q_head_addr + head_bytes),
                                 a_q_addr.eq(a_q_head_addr + head_bytes)]
                    with m.If(a_head == desc.heads - 1):
                        m.d.sync += a_active.eq(0)
                with m.Else():
                    m.d.sync += [a_row.eq(a_row + 1), a_q_addr.eq(a_q_addr + desc.q_stride)]

        # ------------------------------------------------------------------ QK: statistics units
        units = self.units
        row_beats_max = -(-ROW_MAX * ab // axi_bytes)
        fork = Signal()                # a score beat leaves for DDR and its statistics unit this cycle
        fork_unit = Signal(range(max(2, units)))
        fork_ready = Const(0)
        entries = SyncFIFOBuffered(width=8 * STATS_ENTRY_BYTES, depth=2 * units + 4)
        m.submodules.entries = entries
        collect = Signal(range(max(2, units)))
        stats_outputs = []
        for u in range(units):
            rows = SyncFIFOBuffered(width=axi_bits, depth=row_beats_max)
            stats = SoftmaxStats(cfg, 1)
            m.submodules[f"score_rows{u}"] = rows
            m.submodules[f"stats{u}"] = stats
            fork_ready = Mux(fork_unit == u, rows.w_rdy, fork_ready)
            m.d.comb += [rows.w_data.eq(unit.out.payload.data), rows.w_en.eq(fork & (fork_unit == u))]
            # One element per cycle out of the row's beats; the row ends at column S − 1.
            element = Signal(range(elements))
            column = Signal(range(ROW_MAX))
            last = column == desc.s - 1
            m.d.comb += [
                stats.i.payload.x[0].eq(rows.r_data.word_select(element, act_bits)),
                stats.i.payload.last.eq(last),
                stats.i.valid.eq(rows.r_rdy),
            ]
            taken = rows.r_rdy & stats.i.ready
            m.d.comb += rows.r_en.eq(taken & (last | (element == elements - 1)))
            with m.If(taken):
                m.d.sync += [element.eq(Mux(last | (element == elements - 1), 0, element + 1)),
                             column.eq(Mux(last, 0, column + 1))]
            with m.If(self.start):
                m.d.sync += [element.eq(0), column.eq(0)]
            m.d.comb += stats.o.ready.eq((collect == u) & entries.w_rdy)
            stats_outputs.append(stats.o)
        # Entries in row order: the max sign-extended into word 0, 1/sum zero-extended into word 1.
        top = Const(0, act_bits)
        inv = Const(0, cfg.inv_fmt.width)
        collected = Const(0)
        for u, out in enumerate(stats_outputs):
            top = Mux(collect == u, out.payload.max[0], top)
            inv = Mux(collect == u, out.payload.inv_sum[0], inv)
            collected = collected | ((collect == u) & out.valid)
        m.d.comb += [
            entries.w_data.eq(Cat(top[:act_bits], top[act_bits - 1].replicate(32 - act_bits), inv[:cfg.inv_fmt.width],
                                  Const(0, 32 - cfg.inv_fmt.width))),
            entries.w_en.eq(collected & entries.w_rdy),
        ]
        with m.If(collected & entries.w_rdy):
            m.d.sync += collect.eq(Mux(collect == units - 1, 0, collect + 1))

        # ------------------------------------------------------------------ writes
        write_free = hold(m, self.write_cmd)
        out = unit.out
        # QK: score rows and statistics entries, interleaved (an entry whenever one is ready between rows).
        w_mode = Signal(2)             # 0: between commands, 1: a score row, 2: a statistics entry
        o_beats_left = Signal(BEATS_WIDTH)
        o_rows_left = Signal(32)       # QK: score rows to write; AV: output rows
        o_entries_left = Signal(32)
        o_entry = Signal(32)
        o_score_addr = Signal(32)
        # AV: the head's columns of each output row, head by head.
        o_head = Signal(8)
        o_row = Signal(16)
        o_addr = Signal(32)
        o_head_addr = Signal(32)
        entry_lane = o_entry[:max(1, per_word.bit_length() - 1)] if per_word > 1 else Const(0)
        with m.If(qk):
            with m.If(w_mode == 0):
                with m.If(write_free & entries.r_rdy):
                    stats_word = (o_entry * STATS_ENTRY_BYTES) & ~(axi_bytes - 1)
                    m.d.sync += [*issue(self.write_cmd, addr=base + desc.stats_addr + stats_word, beats=1),
                                 w_mode.eq(2)]
                with m.Elif(write_free & (o_rows_left != 0) & out.valid):
                    m.d.sync += [*issue(self.write_cmd, addr=o_score_addr, beats=score_beats), w_mode.eq(1),
                                 o_beats_left.eq(score_beats), o_rows_left.eq(o_rows_left - 1),
                                 o_score_addr.eq(o_score_addr + desc.scores_stride)]
            with m.Elif(w_mode == 1):
                m.d.comb += [
                    self.write_data.payload.eq(out.payload),
                    self.write_data.valid.eq(out.valid & fork_ready),
                    out.ready.eq(self.write_data.ready & fork_ready),
                    fork.eq(out.valid & self.write_data.ready & fork_ready),
                ]
                with m.If(fork):
                    m.d.sync += o_beats_left.eq(o_beats_left - 1)
                    with m.If(o_beats_left == 1):
                        m.d.sync += [w_mode.eq(0),
                                     fork_unit.eq(Mux(fork_unit == units - 1, 0, fork_unit + 1))]
            with m.Else():
                m.d.comb += [
                    self.write_data.payload.data.eq(Cat(*([entries.r_data] * per_word))),
                    self.write_data.payload.strb.eq(Const((1 << STATS_ENTRY_BYTES) - 1, axi_bytes)
                                                    << (entry_lane * STATS_ENTRY_BYTES)),
                    self.write_data.valid.eq(1),
                ]
                with m.If(self.write_data.ready):
                    m.d.comb += entries.r_en.eq(1)
                    m.d.sync += [w_mode.eq(0), o_entry.eq(o_entry + 1), o_entries_left.eq(o_entries_left - 1)]
        with m.Else():
            wiring.connect(m, wiring.flipped(out), wiring.flipped(self.write_data))
            with m.If((o_rows_left != 0) & write_free):
                m.d.sync += [*issue(self.write_cmd, addr=o_addr, beats=head_beats), o_rows_left.eq(o_rows_left - 1)]
                with m.If(o_row == desc.m - 1):
                    m.d.sync += [o_row.eq(0), o_head.eq(o_head + 1), o_head_addr.eq(o_head_addr + head_bytes),
                                 o_addr.eq(o_head_addr + head_bytes)]
                with m.Else():
                    m.d.sync += [o_row.eq(o_row + 1), o_addr.eq(o_addr + desc.out_stride)]

        # ------------------------------------------------------------------ start / done
        unit_done = Signal()
        finishing = Signal()
        with m.If(unit.done):
            m.d.sync += unit_done.eq(1)
        qk_finished = unit_done & (o_rows_left == 0) & (o_entries_left == 0) & (w_mode == 0)
        with m.If(self.start):
            is_qk = desc.opcode == OPCODE_QK_SOFTMAX_STATS
            m.d.sync += [
                ring_free.eq(geo.ring_words), banks_free.eq(2),
                w_active.eq(1), w_loading.eq(0), w_head.eq(0), w_row.eq(0),
                w_addr.eq(base + Mux(is_qk, desc.k_addr, desc.v_addr)),
                w_head_addr.eq(base + Mux(is_qk, desc.k_addr, desc.v_addr)),
                a_active.eq(1), a_on_scores.eq(0), a_head.eq(0), a_row.eq(0), a_index.eq(0),
                a_q_addr.eq(base + desc.q_addr), a_q_head_addr.eq(base + desc.q_addr),
                a_score_addr.eq(base + desc.scores_addr),
                entry_sel.eq(0), collect.eq(0), fork_unit.eq(0),
                w_mode.eq(0), o_rows_left.eq(desc.heads * desc.m), o_entries_left.eq(Mux(is_qk, desc.heads * desc.m, 0)),
                o_entry.eq(0), o_score_addr.eq(base + desc.scores_addr),
                o_head.eq(0), o_row.eq(0), o_addr.eq(base + desc.out_addr), o_head_addr.eq(base + desc.out_addr),
                unit_done.eq(0), finishing.eq(1),
            ]
        with m.Elif(finishing & Mux(qk, qk_finished, unit.done)):
            m.d.comb += self.done.eq(1)
            m.d.sync += finishing.eq(0)
        return m
