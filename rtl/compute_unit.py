# SPDX-License-Identifier: Apache-2.0
"""The compute unit of LINEAR descriptors (docs/isa.md §3.3–3.4): the weight banks, the activation
buffer, the MAC array and the post-processing lanes, and the sequencer that drives them.

Data arrives as tagged AXI beats on :attr:`ComputeUnit.fill` and lands in the weight banks
(``rtl/weight_banks.py``: weight or activation-operand tiles and bias entries, two banks) and the
activation buffer (``rtl/activation_buffer.py``: the ring of rows of ``x`` and the residual FIFO).
Those blocks, the :class:`~hwgen.rtl.mac_array.MacArray` and the
:class:`~hwgen.rtl.post_lanes.PostLanes` know nothing of LINEAR's order; the sequencer here does:

- **issue**: it walks chunks, rows, output tiles and k-tiles in the order of docs/isa.md §3.4,
  issuing one ``lanes_in × lanes_out`` tile step per cycle whenever its row and chunk are loaded and
  the tile FIFO has room (BYPASS multiplies ``x`` by a shifted identity tile instead of a weight tile);
- **output**: finished tiles queue in the tile FIFO; it walks them an AXI word at a time, with the
  word's bias address, residual word and byte strobes (stopping at column ``N``), into the lanes.

The LINEAR engine (``rtl/linear_engine.py``) issues the reads in the same order and paces them with
the credit pulses this unit returns (``row_released``, ``chunk_released``, ``residual_released``),
so fill beats always find room and the read channel never stalls on this unit.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.hwparams import HwParams

from ._errors import refuse
from .activation_buffer import ActivationBuffer
from .descriptor import DESCRIPTOR_LAYOUT
from .engine import array_engine_signature, fill_layout, out_layout
from .geometry import PIECE_BEATS, ChunkWalker, Geometry, extend, wrap
from .mac_array import MacArray
from .post_lanes import PostLanes
from .weight_banks import WeightBanks

__all__ = ["PIECE_BEATS", "Geometry", "ChunkWalker", "ComputeUnit", "compute_unit_signature", "ArrayEngine",
           "WINDOW_LAYOUT"]

#: A CONV's window mode (docs/isa.md §8.2): the ring holds a grid row's kernel-row strips of the feature map and the
#: array reads each window's words out of them. Sizes are in AXI words.
WINDOW_LAYOUT = data.StructLayout({
    "on": 1,            # the window mode: rows of x are read out of strips (a ring half per grid row)
    "seg_beats": 16,    # AXI words of one kernel-row segment (K / kh elements)
    "pitch": 16,        # AXI words from one strip's start to the next's (≡ seg_beats modulo act_slots)
    "step": 16,         # AXI words from one window to the next along the strip (x_stride)
    "grid_w": 16,       # windows per grid row
})


def compute_unit_signature(hw: HwParams) -> wiring.Signature:
    """The members of :class:`ComputeUnit`, seen from the unit (the engines that drive it hold it flipped)."""
    geo = Geometry(hw)
    return wiring.Signature({
        "desc": In(DESCRIPTOR_LAYOUT),
        "start": In(1),
        "done": Out(1),
        "fill": In(stream.Signature(fill_layout(geo.axi_bits))),
        "out": Out(stream.Signature(out_layout(geo.axi_bits))),
        "row_released": Out(1),
        "chunk_released": Out(1),
        "residual_released": Out(1),
        "issuing": Out(1),
        "scale": In(16),
        "head_cols": In(32),
        "window": In(WINDOW_LAYOUT),
    })


class ArrayEngine(wiring.Component):
    """Base of the engines that run on this unit (LINEAR, attention): their members are
    :func:`~hwgen.rtl.engine.array_engine_signature`'s (the handshake and ``unit``, the compute unit the
    controller lends the running engine); a subclass states ``problem(hw)`` and elaborates its streams."""

    def __init__(self, hw: HwParams):
        problem = self.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        self.geometry = Geometry(hw)
        super().__init__(array_engine_signature(hw, compute_unit_signature(hw)))


class ComputeUnit(wiring.Component):
    """MAC array, its buffers and the post-processing lanes, running one LINEAR descriptor.

    Ports
    -----
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor; held stable from ``start`` to ``done``.
    start : In(1)
        One-cycle pulse: reset the buffers' pointers and run ``desc``.
    done : Out(1)
        One-cycle pulse: every output word of the descriptor has left on ``out``.
    fill : In(stream)
        Read data from DDR: ``data`` (one AXI word), ``tag`` (:class:`Tag`), ``last`` (final word
        of its read command). Always ready: the LINEAR engine only reads into free space.
    out : Out(stream)
        Output words for the write engine: ``data`` and byte strobes ``strb``.
    row_released : Out(1)
        Pulse: the array finished a row; its ``k_tiles`` ring words are free.
    chunk_released : Out(1)
        Pulse: a chunk is fully processed; its weight and bias bank is free.
    residual_released : Out(1)
        Pulse: one residual word left the residual FIFO.
    issuing : Out(1)
        The array issues a tile this cycle (``lanes_in × lanes_out`` MACs of work).
    scale : In(16)
        RQ1 reads ``acc · scale`` (the attention engine's Q·Kᵀ; LINEAR drives 1). Used only on hardware
        with the attention engine (``hw.has_attention``).
    head_cols : In(32)
        Not 0: every chunk has this many output columns (the attention engine runs one head per chunk).
    window : In(WINDOW_LAYOUT)
        A CONV's window mode (``on``) and its strip sizes: the array reads row ``(gy, gx)``'s words out of the
        kernel-row strips of grid row ``gy`` (ring half ``gy mod 2``) instead of a gathered row; 0 otherwise.
    """

    def __init__(self, hw: HwParams):
        problem = Geometry.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        self.geometry = geo = Geometry(hw)
        self.fill_layout = fill_layout(geo.axi_bits)
        self.out_layout = out_layout(geo.axi_bits)
        super().__init__(compute_unit_signature(hw))

    def elaborate(self, platform):
        m = Module()
        hw, geo, desc = self.hw, self.geometry, self.desc
        flags = desc.flags
        lanes_in, lanes_out, acc_bits, act_bits = hw.lanes_in, hw.lanes_out, hw.acc_bits, hw.act_bits

        m.submodules.banks = banks = WeightBanks(geo)
        m.submodules.acts = acts = ActivationBuffer(geo)
        m.submodules.mac = mac = MacArray(lanes_in=lanes_in, lanes_out=lanes_out, operand_bits=act_bits + 1,
                                          acc_bits=acc_bits)
        m.submodules.lanes = lanes = PostLanes(geo)
        m.submodules.tiles = tiles = fifo.SyncFIFO(width=lanes_out * acc_bits, depth=geo.tile_fifo_depth)

        # ------------------------------------------------------------------ fill: every beat to both buffers
        m.d.comb += self.fill.ready.eq(1)
        for buffer in (banks, acts):
            m.d.comb += [buffer.fill.payload.eq(self.fill.payload), buffer.fill.valid.eq(self.fill.valid),
                         buffer.start.eq(self.start)]
        m.d.comb += [
            banks.b_rowmajor.eq(flags.b_rowmajor), banks.b_transposed.eq(flags.b_transposed),
            banks.w_unsigned.eq(flags.w_unsigned), banks.k_tiles.eq(desc.k_tiles),
            acts.row_words.eq(Mux(self.window.on, geo.ring_words // 2, desc.k_tiles)),
        ]

        # ------------------------------------------------------------------ issue
        issue_chunk = ChunkWalker(m, desc, geo, "issue")
        issue_running = Signal()
        bank = Signal()
        row = Signal(32)
        tile = Signal(16)
        ktile = Signal(16)
        row_base = Signal(range(geo.ring_words))
        weight_addr = Signal(16)  # tile of the chunk the array reads (bank row, and slot for weight tiles)
        rows_ready = Signal(18)  # rows of x in the ring (window mode: two grid rows of up to 2^16 - 1 windows)
        tiles_owed = Signal(range(geo.tile_fifo_depth + 1))  # issued tiles not yet out of the tile FIFO
        bypass = flags.bypass
        k_last = Signal(16)
        m.d.comb += k_last.eq(Mux(bypass, geo.bypass_words_per_tile - 1, desc.k_tiles - 1))
        # BYPASS walks the row's activation words: word bypass_word holds output tile t's columns at
        # lane offset bypass_sel·lanes_out (lanes_in = r·lanes_out), or its ktile-th lanes_in columns
        # (lanes_out = r·lanes_in); the array multiplies by the matching shifted identity tile.
        per_word = geo.bypass_tiles_per_word
        bypass_word = Signal(16)
        bypass_sel = Signal(range(max(per_word, geo.bypass_words_per_tile)))

        first = ktile == 0
        last = ktile == k_last
        tile_last = tile == issue_chunk.tiles - 1
        issue = Signal()
        m.d.comb += issue.eq(issue_running & (bypass | banks.loaded.bit_select(bank, 1)) & (rows_ready != 0)
                             & (~first | (tiles_owed < geo.tile_fifo_depth)))
        m.d.comb += self.issuing.eq(issue)
        # Window mode: the AXI words the array reads walk the window's segments through the strips of its grid row
        # (ring half ``win_half``): lane word p of a k-tile is row word i = act_slots·ktile + p, segment i div seg_beats
        # at word i mod seg_beats of its strip. ``a0``/``o0`` follow lane word 0 (its ring AXI word, its word within
        # its segment); lane word p is a0 + p + c·(pitch − seg_beats), c the segment ends between them. The pitch
        # keeps a0 + p modulo act_slots, so the lane words sit in distinct slot memories, rotated by a0 mod act_slots.
        win = self.window
        slots = geo.act_slots
        ring_axi = geo.ring_words * slots
        half_axi = ring_axi // 2
        a0 = Signal(range(ring_axi))        # ring AXI word of lane word 0 of this k-tile
        o0 = Signal(16)                     # its word within its segment
        win_a = Signal(range(ring_axi))     # the window's first AXI word (its first strip)
        win_gx = Signal(16)                 # the window within its grid row
        win_half = Signal()                 # the ring half of the current grid row
        # t·seg_beats and t·(pitch − seg_beats) for t ≤ act_slots, registered at start (the window fields hold).
        seg_ends = [Signal(20, name=f"seg_end{t}") for t in range(slots + 1)]
        jumps = [Signal(range(ring_axi), name=f"jump{t}") for t in range(slots + 1)]
        # Ring addresses wrap by truncation (powers of two; a core without them never runs the window mode).
        slot_bits, ring_bits = geo.window_bits or ((slots - 1).bit_length(), (ring_axi - 1).bit_length())
        seg_sum, jump_sum = Const(0, 20), Const(0, ring_bits)  # t·seg_beats, t·(pitch − seg_beats) of the inputs
        with m.If(self.start):
            for t in range(1, slots + 1):
                seg_sum = (seg_sum + win.seg_beats)[:20]
                jump_sum = (jump_sum + win.pitch - win.seg_beats)[:ring_bits]
                m.d.sync += [seg_ends[t].eq(seg_sum), jumps[t].eq(jump_sum)]

        def crossed(values, offset):
            """values[c], c the segment ends between lane word 0 and the one ``offset`` words on."""
            chosen = values[0]
            for t in range(1, slots + 1):
                chosen = Mux(o0 + offset >= seg_ends[t], values[t], chosen)
            return chosen

        lane_words = [(a0 + p + crossed(jumps, p))[:ring_bits] for p in range(slots)]
        rotate = a0[:slot_bits]
        slot_words = []
        for s_ in range(slots):
            word = lane_words[s_]  # rotation 0: slot s holds lane word s
            for r in range(1, slots):
                word = Mux(rotate == r, lane_words[(s_ - r) % slots], word)
            slot_words.append(word[slot_bits:])
        ring_word = wrap(row_base + Mux(bypass, bypass_word, ktile), geo.ring_words)
        m.d.comb += acts.read_rotate.eq(Mux(win.on, rotate, 0))
        for s_ in range(slots):
            m.d.comb += acts.read_slots[s_].eq(Mux(win.on, slot_words[s_], ring_word))
        m.d.comb += acts.strip_pitch.eq(Mux(win.on, win.pitch, 0))
        m.d.comb += [
            banks.read_bank.eq(bank),
            banks.read_tile.eq(weight_addr),
        ]

        row_done = Signal()
        tile_popped = Signal()
        chunk_issued = Signal()
        with m.If(issue):
            if per_word > 1:
                with m.If(bypass_sel == per_word - 1):
                    m.d.sync += [bypass_sel.eq(0), bypass_word.eq(bypass_word + 1)]
                with m.Else():
                    m.d.sync += bypass_sel.eq(bypass_sel + 1)
            else:
                m.d.sync += bypass_word.eq(bypass_word + 1)
            with m.If(~last):
                m.d.sync += [ktile.eq(ktile + 1), weight_addr.eq(weight_addr + 1)]
                # Window mode: lane word 0 moves act_slots words on, past the segment ends it crosses.
                m.d.sync += [a0.eq((a0 + slots + crossed(jumps, slots))[:ring_bits]),
                             o0.eq(o0 + slots - crossed(seg_ends, slots))]
            with m.Elif(~tile_last):
                m.d.sync += [ktile.eq(0), tile.eq(tile + 1), weight_addr.eq(weight_addr + 1),
                             a0.eq(win_a), o0.eq(0)]
            with m.Else():
                m.d.comb += row_done.eq(1)
                m.d.sync += o0.eq(0)
                with m.If(win_gx == win.grid_w - 1):  # the next grid row's strips, in the other half
                    next_half = Mux(win_half, 0, half_axi)
                    m.d.sync += [win_gx.eq(0), win_half.eq(~win_half), win_a.eq(next_half), a0.eq(next_half)]
                with m.Else():  # the next window along the strips
                    next_window = (win_a + win.step)[:ring_bits]
                    m.d.sync += [win_gx.eq(win_gx + 1), win_a.eq(next_window), a0.eq(next_window)]
                m.d.sync += [ktile.eq(0), tile.eq(0), bypass_word.eq(0), bypass_sel.eq(0),
                             row_base.eq(wrap(row_base + desc.k_tiles, geo.ring_words)),
                             weight_addr.eq(0)]
                with m.If(row == desc.m - 1):
                    m.d.comb += chunk_issued.eq(1)
                    m.d.sync += [row.eq(0), bank.eq(~bank), issue_chunk.advance(),
                                 weight_addr.eq(0)]
                    with m.If(issue_chunk.last):
                        m.d.sync += issue_running.eq(0)
                with m.Else():
                    m.d.sync += row.eq(row + 1)
        m.d.comb += [self.row_released.eq(row_done), banks.release.eq(chunk_issued)]
        # A row's last beat makes it ready; in window mode, a grid row's last strip makes its grid_w windows ready.
        arrived = Mux(acts.row_arrived, Mux(win.on, win.grid_w, 1), 0)
        m.d.sync += rows_ready.eq(rows_ready + arrived - row_done)
        m.d.sync += tiles_owed.eq(tiles_owed + (issue & first) - tile_popped)

        # ------------------------------------------------------------------ MAC array
        # Cycle 1: buffer words out of the memories, with the control of the cycle-0 issue. Lanes of x
        # past K (last k-tile) read as 0, so tile rows an activation operand never filled (k >= K) add nothing.
        valid1, first1, last1 = Signal(), Signal(), Signal()
        m.d.sync += [valid1.eq(issue), first1.eq(first), last1.eq(last)]
        k_rem = Signal(range(lanes_in + 1))
        m.d.comb += k_rem.eq(desc.k - (desc.k_tiles - 1) * lanes_in)
        x_mask1 = Signal(lanes_in)
        m.d.sync += x_mask1.eq(Mux(last & ~bypass, (Const(1, lanes_in + 1) << k_rem) - 1, (1 << lanes_in) - 1))
        # BYPASS identity: one-hot of the lane offset (bypass_sel, or the k-step when lanes_out > lanes_in).
        offsets = max(per_word, geo.bypass_words_per_tile)
        offset1 = Signal(offsets)
        m.d.sync += offset1.eq(1 << (bypass_sel if per_word > 1 else ktile[:max(1, (offsets - 1).bit_length())]))

        def identity(i, o):
            """Element (i, o) of the BYPASS tile: 1 where lane i of the word is output column o."""
            if lanes_in >= lanes_out:
                step, delta = lanes_out, i - o  # i = offset·lanes_out + o
            else:
                step, delta = lanes_in, o - i   # o = offset·lanes_in + i
            if delta < 0 or delta % step or delta // step >= offsets:
                return Const(0)
            return offset1[delta // step]

        # Cycles 2…: the MAC array (products, adder tree, accumulators); finished tiles into the tile FIFO.
        m.d.comb += [mac.valid.eq(valid1), mac.first.eq(first1), mac.last.eq(last1)]
        for i in range(lanes_in):
            x = extend(acts.read_data[i * act_bits:(i + 1) * act_bits], flags.x_unsigned)
            m.d.comb += mac.x[i].eq(Mux(x_mask1[i], x, 0))
            for o in range(lanes_out):
                # BYPASS multiplies x by a shifted identity tile: acc[n] = x[n] exactly.
                m.d.comb += mac.w[i * lanes_out + o].eq(Mux(bypass, identity(i, o), banks.tile[i * lanes_out + o]))
        m.d.comb += [tiles.w_data.eq(mac.acc.as_value()), tiles.w_en.eq(mac.tile_done)]

        # ------------------------------------------------------------------ output words into the lanes
        post_lanes, out_beats_per_tile = geo.post_lanes, geo.tile_out_beats
        post_chunk = ChunkWalker(m, desc, geo, "post", fixed_cols=self.head_cols)
        post_running = Signal()
        post_bank = Signal()
        post_row = Signal(32)
        post_tile = Signal(16)
        post_part = Signal(range(out_beats_per_tile))  # output word within the tile
        post_beat = Signal(32)  # output word within the row segment
        bias_addr = Signal(range(2 * geo.bias_words))

        residual = acts.residual
        advance = lanes.i.ready
        skip = post_beat >= post_chunk.out_beats  # tile padding beyond column N: never written
        need_residual = flags.residual & ~skip
        take = Signal()
        m.d.comb += take.eq(post_running & tiles.r_rdy & advance & (~need_residual | residual.valid))
        part_last = post_part == out_beats_per_tile - 1
        m.d.comb += [
            tiles.r_en.eq(take & part_last),
            tile_popped.eq(take & part_last),
            residual.ready.eq(take & need_residual),
            self.residual_released.eq(take & need_residual),
            banks.bias_addr.eq(bias_addr),
            banks.bias_en.eq(advance),
        ]
        post_bank_base = Mux(post_bank, geo.bias_words, 0)
        with m.If(take):
            with m.If(~part_last):
                m.d.sync += [post_part.eq(post_part + 1), post_beat.eq(post_beat + 1), bias_addr.eq(bias_addr + 1)]
            with m.Elif(post_tile != post_chunk.tiles - 1):
                m.d.sync += [post_part.eq(0), post_tile.eq(post_tile + 1), post_beat.eq(post_beat + 1),
                             bias_addr.eq(bias_addr + 1)]
            with m.Else():
                m.d.sync += [post_part.eq(0), post_tile.eq(0), post_beat.eq(0), bias_addr.eq(post_bank_base)]
                with m.If(post_row == desc.m - 1):
                    m.d.comb += self.chunk_released.eq(1)
                    m.d.sync += [post_row.eq(0), post_bank.eq(~post_bank), post_chunk.advance(),
                                 bias_addr.eq(Mux(post_bank, 0, geo.bias_words))]
                    with m.If(post_chunk.last):
                        m.d.sync += post_running.eq(0)
                with m.Else():
                    m.d.sync += post_row.eq(post_row + 1)

        # The word's accumulators (output word post_part of the head tile), residual word and strobes.
        head = tiles.r_data
        for e in range(post_lanes):
            choices = [head[((j * post_lanes + e) * acc_bits):((j * post_lanes + e + 1) * acc_bits)]
                       for j in range(out_beats_per_tile)]
            lane_value = choices[0]
            for j in range(1, out_beats_per_tile):
                lane_value = Mux(post_part == j, choices[j], lane_value)
            m.d.comb += lanes.i.payload.acc[e].eq(lane_value)
        full_strb = (1 << geo.axi_bytes) - 1
        partial_strb = Signal(geo.axi_bytes)
        m.d.comb += partial_strb.eq((Const(1, geo.axi_bytes + 1) << post_chunk.last_bytes) - 1)
        m.d.comb += [
            lanes.i.valid.eq(take & ~skip),
            lanes.i.payload.residual.eq(residual.payload),
            lanes.i.payload.strb.eq(Mux(post_beat == post_chunk.out_beats - 1, partial_strb, full_strb)),
            lanes.bias.eq(banks.bias),
            lanes.ops.bias.eq(flags.bias), lanes.ops.relu1.eq(flags.relu1), lanes.ops.gelu.eq(flags.gelu),
            lanes.ops.residual.eq(flags.residual), lanes.ops.relu2.eq(flags.relu2),
            lanes.ops.r_unsigned.eq(flags.r_unsigned),
            lanes.ops.rq1.eq(desc.rq1), lanes.ops.rq2.eq(desc.rq2),
            lanes.ops.y_shift.eq(desc.y_shift), lanes.ops.r_shift.eq(desc.r_shift),
            lanes.ops.scale.eq(self.scale),
        ]
        wiring.connect(m, lanes.out, wiring.flipped(self.out))

        # ------------------------------------------------------------------ start / done
        finishing = Signal()
        with m.If(self.start):
            m.d.sync += [
                issue_running.eq(1), bank.eq(0), row.eq(0), tile.eq(0), ktile.eq(0), row_base.eq(0),
                bypass_word.eq(0), bypass_sel.eq(0),
                a0.eq(0), o0.eq(0), win_a.eq(0), win_gx.eq(0), win_half.eq(0),
                weight_addr.eq(0), rows_ready.eq(0), tiles_owed.eq(0), *issue_chunk.reset(),
                post_running.eq(1), post_bank.eq(0), post_row.eq(0), post_tile.eq(0), post_part.eq(0),
                post_beat.eq(0), bias_addr.eq(0), *post_chunk.reset(),
                finishing.eq(1),
            ]
        with m.Elif(finishing & ~post_running & ~lanes.busy):
            m.d.comb += self.done.eq(1)
            m.d.sync += finishing.eq(0)
        return m
