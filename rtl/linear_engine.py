# SPDX-License-Identifier: Apache-2.0
"""The LINEAR engine: the compute unit and every memory transfer a LINEAR descriptor needs, in the
order the compute unit consumes them (docs/isa.md §3.4):

- a **weight stream**: for each chunk, its bias entries then its weight tiles, in pieces of at
  most ``PIECE_BEATS`` words, the last piece tagged ``WEIGHT_END``; a chunk starts loading as
  soon as a weight bank is free (two banks: the next chunk loads while the current one computes).
  An activation operand (B_ROWMAJOR, B_TRANSPOSED) comes instead of the tiles as one read command
  per row of B in the chunk: the chunk's column segment of each of the K rows, or each of the
  chunk's rows of K elements;
- an **activation stream**: for each chunk and row, the row of ``x`` and (with ``RESIDUAL``) the
  row's segment of ``r``, each as soon as the activation ring / residual FIFO has room;
- a **write stream**: for each chunk and row, the output segment's write command.

The two read streams share the engine's read commands. Weights win when the activation stream is
already waiting on that chunk (nothing else can run); otherwise rows of ``x`` win and the next
chunk's weights fill the gaps, so its load hides behind the current chunk's compute. Credits (ring
words, residual words, weight banks) are taken when a read is issued and returned by the compute
unit's release pulses, so read data always finds room and the read channel never stalls.

CONV (docs/isa.md §3.9) runs here too: it is a LINEAR of ``M = grid_h·grid_w`` rows whose rows of ``x``
are gathered from a channels-last feature map (implicit im2col). The compute unit sees a LINEAR (the
same words, ``m`` replaced by the row count); only the activation stream differs: per row, ``kh`` read
commands of ``seg_bytes`` each, one per kernel row of the window, tagged ``ACT_PART`` but the last
(``ACT``), so the activation buffer concatenates them into one row. The addresses walk the output grid
with counters and adders (window by window ``x_stride``, grid row by grid row ``stride_y·seg_stride``,
kernel row by kernel row ``seg_stride``); the row's ring words are taken once, with its first segment.
The output rows and the residual rows walk the grid too: ``out_stride`` (``res_stride``) from one window to
the next, and ``out_stride + out_skip`` (``res_stride + res_skip``) from a grid row's last window to the next
grid row's first, so a CONV writes (reads) the interior of a feature map stored with a zero border at no cost
in cycles.
``K / kh`` (the segment length) and the grid's products come from :class:`~hwgen.rtl.conv_geometry.ConvGeometry`,
a bit per cycle, so a CONV starts the unit and its streams 17 cycles after ``start``; LINEAR starts at once.

A CONV whose windows overlap or touch and whose grid row of ``kh`` strips fits in one activation bank runs in
the **window mode** (docs/isa.md §8.2), decided ``kh`` cycles later: per chunk and grid row, the activation
stream reads the ``kh`` strips (window 0's first byte to the last window's segment end of each kernel row), one
command each, into a ring half, then the grid row's residual rows (one command for them all when they are dense
and there is one chunk); the compute unit reads each window out of the strips (``unit.window``). A ring half is
taken with a grid row's first strip and returns when the array finishes the grid row's last window.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring

from hwgen.hwparams import HwParams

from .compute_unit import ArrayEngine
from .conv_geometry import ConvGeometry
from .descriptor import CONV_DESCRIPTOR_LAYOUT, DESCRIPTOR_LAYOUT, OPCODE_CONV, OPCODE_LINEAR, Tag
from .engine import BEATS_WIDTH, Checks, hold, issue, misaligned
from .geometry import PIECE_BEATS, ChunkWalker, Geometry

__all__ = ["LinearEngine"]


def _requant_ok(rq):
    raw = rq.as_value()
    return ((rq.width >= 1) & (rq.width <= 32) & (rq.round <= 6) & (rq.overflow <= 4)
            & ~raw[15] & ~raw[19] & ~raw[23] & (raw[30:32] == 0))


class LinearEngine(ArrayEngine):
    """LINEAR and CONV descriptors: the compute unit behind its weight, activation and write streams.

    Its members are :func:`~hwgen.rtl.engine.array_engine_signature`'s: the handshake, and ``unit``,
    the shared compute unit (``rtl/compute_unit.py``) the controller lends the running engine.
    """

    OPCODES = (OPCODE_LINEAR, OPCODE_CONV)
    TAGS = (Tag.BIAS, Tag.WEIGHT, Tag.WEIGHT_END, Tag.ACT, Tag.ACT_PART, Tag.RES)

    @staticmethod
    def problem(hw: HwParams) -> str | None:
        """Why the engine cannot be built for ``hw``, or ``None``."""
        return Geometry.problem(hw)

    @staticmethod
    def checks(hw: HwParams, words) -> Checks:
        """docs/isa.md §8.3 for a LINEAR or CONV descriptor in the 512 bits ``words`` (CONV's fields in the
        same words as LINEAR's are LINEAR's; its shape, ``x`` alignment and ``x`` extent are its own, and its
        output and residual rows form the window grid, ``out_skip`` / ``res_skip`` more bytes after each grid
        row: hwgen.isa.rules.grid_rows_end)."""
        geo = Geometry(hw)
        d = data.View(DESCRIPTOR_LAYOUT, words)
        c = data.View(CONV_DESCRIPTOR_LAYOUT, words)
        conv = d.opcode == OPCODE_CONV
        f = d.flags
        li, lo, ab = hw.lanes_in, hw.lanes_out, hw.act_bytes
        b_operand = f.b_rowmajor | f.b_transposed
        k_tiles_ok = (d.k_tiles * li >= d.k) & (d.k_tiles * li < d.k + li)
        n_tiles_ok = (d.n_tiles * lo >= d.n) & (d.n_tiles * lo < d.n + lo)
        # K / kh (CONV's segment length), K mod kh and the grid's products, a bit per cycle: the controller
        # waits for them on a CONV.
        geometry = ConvGeometry()
        seg_bytes = geometry.seg * ab
        linear_shape = ((f.b_rowmajor & f.b_transposed) | (f.bypass & (f.bias | b_operand | f.w_unsigned))
                        | (d.m == 0) | (f.bypass & ((d.k != d.n) | (d.chunk_tiles != d.n_tiles))))
        conv_shape = (f.bypass | b_operand | (c.grid_h == 0) | (c.grid_w == 0) | (c.kh == 0) | (c.stride_y == 0)
                      | (geometry.seg_rem != 0))
        bad = ((f.reserved != 0) | Mux(conv, conv_shape, linear_shape)
               | (d.k == 0) | (d.n == 0) | ~k_tiles_ok | ~n_tiles_ok
               | (d.chunk_tiles == 0) | (d.chunk_tiles > d.n_tiles)
               | ~_requant_ok(d.rq1) | (f.residual & ~_requant_ok(d.rq2)))
        # Capacities (hwgen.isa.rules.Limits): a row of x in one activation bank, a chunk's tiles and
        # bias entries in one weight bank (tiles of act_bytes elements for an activation operand). A CONV that
        # gets this far has no BYPASS and no activation operand, so LINEAR's terms are its own.
        max_k_tiles, max_chunk_tiles = geo.max_k_tiles, geo.max_chunk_tiles
        small_chunk = d.chunk_tiles[:max(1, max_chunk_tiles.bit_length())]
        small_k = d.k_tiles[:max(1, max_k_tiles.bit_length())]
        column_bytes = (small_k * Mux(b_operand, hw.tile_stride(hw.act_bytes), hw.tile_stride(hw.weight_bytes))
                        + Mux(f.bias, lo * hw.bias_bytes, 0))
        too_big = ((d.k_tiles > max_k_tiles) | (d.chunk_tiles > max_chunk_tiles)
                   | (~f.bypass & (small_chunk * column_bytes > hw.weight_buffer_bytes)))
        axi = hw.axi_bytes
        # CONV's x_stride is the low half of LINEAR's: the same low bits.
        # CONV's out_stride and res_stride are the low halves of LINEAR's words (the same low bits); their
        # skips, the high halves, are checked as well (res_skip with RESIDUAL).
        unaligned = (misaligned(axi, d.x_addr, d.x_stride, d.out_addr, d.out_stride)
                     | (conv & misaligned(axi, c.out_skip))
                     | (~f.bypass & misaligned(axi, d.w_addr)) | (b_operand & misaligned(axi, d.w_stride))
                     | (f.bias & misaligned(axi, d.bias_addr))
                     | (f.residual & misaligned(axi, d.res_addr, d.res_stride))
                     | (conv & f.residual & misaligned(axi, c.res_skip))
                     | (conv & misaligned(axi, c.seg_stride, seg_bytes)))
        tiles = ~f.bypass & ~b_operand
        # CONV's rows of x end at x_addr + ((grid_h − 1)·stride_y + kh − 1)·seg_stride + (grid_w − 1)·x_stride
        # + seg_bytes: the last window's last kernel row.
        x_rows = Mux(conv, geometry.x_rows, d.m - 1)
        x_tail = Mux(conv, geometry.x_across + seg_bytes, d.k * ab)
        # CONV's output and residual rows end at addr + (grid_h − 1)·(grid_w·stride + skip) + (grid_w − 1)·stride
        # + N·act_bytes: grid_h − 1 grid rows of grid_w·stride + skip bytes (below 2³², 16-bit fields), then the
        # last grid row's (grid_w − 1)·stride + N·act_bytes (33 bits). LINEAR's: M − 1 rows of stride, N·act_bytes.
        grid_rows = Mux(conv, c.grid_h - 1, d.m - 1)
        out_pitch = geometry.out_across + c.out_stride + c.out_skip
        res_pitch = geometry.res_across + c.res_stride + c.res_skip
        terms = [
            (1, d.x_addr, x_rows, Mux(conv, c.seg_stride, d.x_stride), x_tail),
            (1, d.out_addr, grid_rows, Mux(conv, out_pitch, d.out_stride),
             Mux(conv, geometry.out_across, 0) + d.n * ab),
            (f.residual, d.res_addr, grid_rows, Mux(conv, res_pitch, d.res_stride),
             Mux(conv, geometry.res_across, 0) + d.n * ab),
            (~f.bypass, d.w_addr,
             Mux(tiles, d.n_tiles, Mux(f.b_rowmajor, d.k - 1, d.n - 1)),
             Mux(tiles, d.k_tiles * hw.tile_stride(hw.weight_bytes), d.w_stride),
             Mux(tiles, 0, Mux(f.b_rowmajor, d.n, d.k) * ab)),
            (f.bias, d.bias_addr, d.n_tiles, lo * hw.bias_bytes, 0),
        ]
        return Checks(bad, too_big, unaligned, terms, ready=~conv | geometry.ready, units={"conv_geometry": geometry},
                      connections=[geometry.desc.eq(c)])

    def elaborate(self, platform):
        m = Module()
        hw, geo = self.hw, self.geometry
        axi_bytes = geo.axi_bytes
        shift = axi_bytes.bit_length() - 1
        base = self.base

        # ------------------------------------------------------------------ CONV: its geometry, then go
        # The LINEAR the unit and the streams run: the descriptor, or a CONV's words with M = grid_h·grid_w
        # (its other LINEAR fields sit where LINEAR's do; w_stride is unused without an activation operand).
        conv_desc = data.View(CONV_DESCRIPTOR_LAYOUT, self.desc.as_value())
        is_conv = conv_desc.opcode == OPCODE_CONV
        # K / kh, grid_h·grid_w and stride_y·seg_stride, a bit per cycle; held while the descriptor runs.
        m.submodules.conv_geometry = geometry = ConvGeometry()
        m.d.comb += geometry.desc.eq(conv_desc)
        desc = Signal(DESCRIPTOR_LAYOUT)
        m.d.comb += desc.eq(self.desc)
        with m.If(is_conv):  # M = grid_h·grid_w; the row strides are the low halves of words 11 and 12
            m.d.comb += [desc.m.eq(geometry.rows), desc.res_stride.eq(conv_desc.res_stride),
                         desc.out_stride.eq(conv_desc.out_stride)]
        flags = desc.flags
        seg_beats = Signal(BEATS_WIDTH)  # CONV: AXI words of one segment (K/kh elements; the checks made it whole)
        m.d.comb += seg_beats.eq((geometry.seg * hw.act_bytes) >> shift)
        grid_step = geometry.grid_step   # CONV: bytes from one grid row of windows to the next
        waiting = Signal()               # CONV: started, its geometry or its window mode not there yet

        # CONV's window mode (docs/isa.md §8.2): when the windows overlap or touch (x_stride ≤ seg_bytes) and the
        # kh strips of a grid row (one kernel row each, window 0's first byte to the last window's segment end),
        # each `pitch` AXI words after the one before, fit in one activation bank (half the ring), each strip is
        # read once per grid row and chunk, one command each, into a ring half, and the array reads every
        # window's words out of them. The pitch is the strip rounded up to ≡ seg_beats modulo act_slots, so the
        # AXI words of a window's ring word sit in distinct slot memories. kh·pitch is summed a strip per cycle
        # (no multiplier) once the geometry is ready: at most kh cycles, fewer when it outgrows the half.
        half_beats = geo.ring_words * geo.act_slots // 2
        seg_bytes = Signal(32)
        m.d.comb += seg_bytes.eq(geometry.seg * hw.act_bytes)
        span_bytes = Signal(33)          # a strip: from window 0's first byte to the last window's segment end
        m.d.comb += span_bytes.eq(geometry.x_across + seg_bytes)
        strip_beats = Signal(BEATS_WIDTH)  # AXI words of one strip (checks: every term whole AXI words)
        m.d.comb += strip_beats.eq(span_bytes >> shift)
        seg_words = Signal(16)            # AXI words of one segment (window mode: at most a strip)
        m.d.comb += seg_words.eq(seg_bytes >> shift)
        pitch = Signal(BEATS_WIDTH + 1)
        m.d.comb += pitch.eq(strip_beats + ((seg_words - strip_beats)[:max(1, geo.act_slots.bit_length() - 1)]
                                            if geo.act_slots > 1 else 0))
        fit_sum = Signal(34)             # pitch summed over the strips counted so far
        fit_count = Signal.like(conv_desc.kh)
        sized = Signal()                 # the window mode is decided
        window = Signal()                # CONV: the window mode
        sizing = waiting & geometry.ready & ~sized
        capable = 1 if geo.window_bits else 0
        with m.If(sizing):
            total = fit_sum + pitch
            m.d.sync += [fit_sum.eq(total), fit_count.eq(fit_count + 1)]
            with m.If((fit_count == conv_desc.kh - 1) | (total > half_beats)):
                m.d.sync += [sized.eq(1),
                             window.eq(capable & (conv_desc.x_stride <= seg_bytes) & (total <= half_beats))]
        with m.If(self.start):
            m.d.sync += [fit_sum.eq(0), fit_count.eq(0), sized.eq(0), window.eq(0)]
        window_mode = is_conv & window

        go = Signal()  # the unit and the streams start: with start (LINEAR), once the geometry and mode are ready (CONV)
        m.d.comb += go.eq((self.start & ~is_conv) | (waiting & geometry.ready & sized))
        with m.If(self.start & is_conv):
            m.d.sync += waiting.eq(1)
        with m.Elif(go):
            m.d.sync += waiting.eq(0)

        unit = self.unit
        m.d.comb += [
            unit.desc.eq(desc), unit.start.eq(go), unit.scale.eq(1), unit.head_cols.eq(0),
            unit.window.on.eq(window_mode), unit.window.seg_beats.eq(seg_words), unit.window.pitch.eq(pitch),
            unit.window.step.eq(conv_desc.x_stride >> shift), unit.window.grid_w.eq(conv_desc.grid_w),
            self.done.eq(unit.done), self.status.eq(0), self.issuing.eq(unit.issuing),
        ]
        wiring.connect(m, wiring.flipped(self.read_data), wiring.flipped(unit.fill))
        wiring.connect(m, wiring.flipped(unit.out), wiring.flipped(self.write_data))

        read_free = hold(m, self.read_cmd)
        write_free = hold(m, self.write_cmd)
        x_row_beats = Signal(BEATS_WIDTH)
        chunk_bytes = Signal(32)         # bytes of output columns per full chunk (same for r)

        # Weight stream: bias pieces then weight pieces (or rows of B), per chunk.
        w_chunk = ChunkWalker(m, desc, geo, "wload")
        w_active = Signal()              # chunks remain to be loaded
        w_phase = Signal(2)              # 0: wait for a bank, 1: bias pieces, 2: weight pieces (or B rows)
        w_bias_addr = Signal(32)
        w_weight_addr = Signal(32)
        w_b_chunk_addr = Signal(32)      # B_ROWMAJOR: the current chunk's column segment in row 0 of B
        w_left = Signal(32)              # words (B: rows) left in the current phase
        w_weight_words = Signal(32)
        banks_free = Signal(range(3))
        w_chunk_tiles_k = Signal(32)
        m.d.comb += w_chunk_tiles_k.eq(w_chunk.tiles * desc.k_tiles)
        bias_words = w_chunk.tiles * (hw.lanes_out * hw.bias_bytes // axi_bytes)
        b_operand = flags.b_rowmajor | flags.b_transposed
        b_rows = Mux(flags.b_rowmajor, desc.k, w_chunk.cols)
        b_row_beats = Signal(BEATS_WIDTH)
        m.d.comb += b_row_beats.eq(Mux(flags.b_rowmajor, w_chunk.out_beats, x_row_beats))
        b_phase = b_operand & (w_phase == 2)
        piece = Mux(b_phase, b_row_beats, Mux(w_left > PIECE_BEATS, PIECE_BEATS, w_left))
        last_piece = Mux(b_phase, w_left == 1, w_left <= PIECE_BEATS)
        w_wants = w_active & (w_phase != 0) & (w_left != 0)

        # Activation stream: x row (CONV: its kh segments) then r segment, per chunk and row.
        a_chunk = ChunkWalker(m, desc, geo, "aload")
        a_active = Signal()
        a_on_residual = Signal()
        a_row = Signal(32)
        a_x_addr = Signal(32)
        a_r_addr = Signal(32)
        a_r_row_addr = Signal(32)        # r segment start of row 0 in the current chunk
        a_seg = Signal.like(conv_desc.kh)      # CONV: kernel row (segment) of the current row of x
        a_gx = Signal.like(conv_desc.grid_w)   # CONV: window of the current row within its grid row
        a_window = Signal(32)            # CONV: first byte of the current window
        a_grid_row = Signal(32)          # CONV: first byte of window 0 of the current grid row
        r_jump = Signal(17)              # CONV: res_stride + res_skip, from a grid row's last residual row to the next's first
        seg_last = ~is_conv | (a_seg == conv_desc.kh - 1)  # LINEAR: a row is one segment
        mid_row = is_conv & (a_seg != 0)  # a CONV row's later segments: the first took the row's ring words
        ring_free = Signal(range(geo.ring_words + 1))
        residual_free = Signal(range(geo.residual_beats + 1))
        a_gy = Signal.like(conv_desc.grid_h)  # CONV window mode: the grid row whose strips are read
        first_strip = a_seg == 0              # window mode: the grid row's first strip takes a ring half
        half_words = geo.ring_words // 2
        a_wants_x = a_active & ~a_on_residual & Mux(window_mode, ~first_strip | (ring_free >= half_words),
                                                    mid_row | (ring_free >= desc.k_tiles))
        # Window mode, one chunk, residual rows exactly res_stride apart and a grid row of them within the FIFO:
        # a grid row's residual rows are one read command (res_stride·grid_w bytes), not grid_w short ones.
        res_row_bytes = Signal(33)       # CONV: grid_w·res_stride, a grid row of residual rows
        m.d.comb += res_row_bytes.eq(geometry.res_across + conv_desc.res_stride)
        res_row_beats = Signal(BEATS_WIDTH)
        m.d.comb += res_row_beats.eq(res_row_bytes >> shift)
        res_merged = Signal()            # set at go
        r_beats = Mux(res_merged, res_row_beats, a_chunk.out_beats)
        a_wants_r = a_active & a_on_residual & (residual_free >= r_beats)
        a_wants = a_wants_x | a_wants_r

        # Write stream: one command per chunk and row.
        o_chunk = ChunkWalker(m, desc, geo, "store")
        o_active = Signal()
        o_row = Signal(32)
        o_addr = Signal(32)
        o_row_addr = Signal(32)
        o_gx = Signal.like(conv_desc.grid_w)  # CONV: window of the current output row within its grid row
        o_jump = Signal(17)              # CONV: out_stride + out_skip, from a grid row's last output row to the next's first

        # Arbitration of the read commands.
        weights_urgent = w_chunk.index <= a_chunk.index
        pick_weights = Signal()
        pick_act = Signal()
        m.d.comb += [
            pick_weights.eq(read_free & w_wants & (weights_urgent | ~a_wants)),
            pick_act.eq(read_free & a_wants & ~pick_weights),
        ]

        # Credits, returned by the compute unit's release pulses.
        take_ring = pick_act & ~a_on_residual & Mux(window_mode, first_strip, ~mid_row)
        take_residual = pick_act & a_on_residual
        take_bank = Signal()
        # Window mode: a ring half returns when the array finishes the last window of its grid row.
        released_gx = Signal.like(conv_desc.grid_w)
        half_released = Signal()
        with m.If(unit.row_released):
            with m.If(released_gx == conv_desc.grid_w - 1):
                m.d.comb += half_released.eq(1)
                m.d.sync += released_gx.eq(0)
            with m.Else():
                m.d.sync += released_gx.eq(released_gx + 1)
        returned = Mux(window_mode, Mux(half_released, half_words, 0), Mux(unit.row_released, desc.k_tiles, 0))
        m.d.sync += [
            ring_free.eq(ring_free + returned - Mux(take_ring, Mux(window_mode, half_words, desc.k_tiles), 0)),
            residual_free.eq(residual_free + unit.residual_released - Mux(take_residual, r_beats, 0)),
            banks_free.eq(banks_free + unit.chunk_released - take_bank),
        ]

        with m.If(pick_weights):
            m.d.sync += w_left.eq(w_left - Mux(b_phase, 1, piece))
            with m.If(w_phase == 1):
                m.d.sync += [*issue(self.read_cmd, addr=w_bias_addr, beats=piece, tag=Tag.BIAS),
                             w_bias_addr.eq(w_bias_addr + (piece << shift))]
            with m.Else():
                m.d.sync += [*issue(self.read_cmd, addr=w_weight_addr, beats=piece,
                                    tag=Mux(last_piece, Tag.WEIGHT_END, Tag.WEIGHT)),
                             w_weight_addr.eq(w_weight_addr + Mux(b_operand, desc.w_stride, piece << shift))]
        # Phase changes of the weight stream (a phase ends when its last piece is issued).
        with m.If(w_active):
            with m.If(w_phase == 0):
                with m.If(banks_free != 0):
                    m.d.comb += take_bank.eq(1)
                    weight_words = Mux(b_operand, b_rows, w_chunk_tiles_k * geo.tile_beats)
                    m.d.sync += [w_weight_words.eq(weight_words)]
                    with m.If(flags.bias):
                        m.d.sync += [w_phase.eq(1), w_left.eq(bias_words)]
                    with m.Else():
                        m.d.sync += [w_phase.eq(2), w_left.eq(weight_words)]
            with m.Elif((w_phase == 1) & pick_weights & last_piece):
                m.d.sync += [w_phase.eq(2), w_left.eq(w_weight_words)]
            with m.Elif((w_phase == 2) & pick_weights & last_piece):
                m.d.sync += [w_phase.eq(0), w_chunk.advance()]
                with m.If(flags.b_rowmajor):  # the next chunk's segments start chunk_bytes further along row 0
                    m.d.sync += [w_weight_addr.eq(w_b_chunk_addr + chunk_bytes),
                                 w_b_chunk_addr.eq(w_b_chunk_addr + chunk_bytes)]
                with m.If(w_chunk.last):
                    m.d.sync += w_active.eq(0)

        def chunk_end():
            """The activation stream's next chunk: x and r from their first rows again."""
            m.d.sync += [a_row.eq(0), a_gy.eq(0), a_chunk.advance(), a_x_addr.eq(base + desc.x_addr),
                         a_r_addr.eq(a_r_row_addr + chunk_bytes), a_r_row_addr.eq(a_r_row_addr + chunk_bytes),
                         a_gx.eq(0), a_window.eq(base + desc.x_addr), a_grid_row.eq(base + desc.x_addr)]
            with m.If(a_chunk.last):
                m.d.sync += a_active.eq(0)

        def grid_row_end():
            """Window mode: the grid row's strips (and residual rows) are issued; the next grid row's strips."""
            with m.If(a_gy == conv_desc.grid_h - 1):
                chunk_end()
            with m.Else():
                next_row = a_grid_row + grid_step
                m.d.sync += [a_gy.eq(a_gy + 1), a_grid_row.eq(next_row), a_x_addr.eq(next_row)]

        # Window mode: per grid row, its kh strips (one command each, ACT_PART but the last: the ring half
        # fills as one row), then with RESIDUAL its grid_w residual rows.
        with m.If(pick_act & window_mode):
            with m.If(~a_on_residual):
                last_strip = a_seg == conv_desc.kh - 1
                m.d.sync += issue(self.read_cmd, addr=a_x_addr, beats=strip_beats,
                                  tag=Mux(last_strip, Tag.ACT, Tag.ACT_PART))
                with m.If(~last_strip):
                    m.d.sync += [a_seg.eq(a_seg + 1), a_x_addr.eq(a_x_addr + conv_desc.seg_stride)]
                with m.Else():
                    m.d.sync += a_seg.eq(0)
                    with m.If(flags.residual):
                        m.d.sync += a_on_residual.eq(1)
                    with m.Else():
                        grid_row_end()
            with m.Else():
                m.d.sync += issue(self.read_cmd, addr=a_r_addr, beats=r_beats, tag=Tag.RES)
                with m.If(res_merged):  # the whole grid row's residual rows at once
                    m.d.sync += [a_on_residual.eq(0), a_r_addr.eq(a_r_addr + res_row_bytes + conv_desc.res_skip)]
                    grid_row_end()
                with m.Elif(a_gx == conv_desc.grid_w - 1):
                    m.d.sync += [a_gx.eq(0), a_on_residual.eq(0), a_r_addr.eq(a_r_addr + r_jump)]
                    grid_row_end()
                with m.Else():
                    m.d.sync += [a_gx.eq(a_gx + 1), a_r_addr.eq(a_r_addr + desc.res_stride)]
        with m.Elif(pick_act):
            with m.If(~a_on_residual):
                m.d.sync += issue(self.read_cmd, addr=a_x_addr, beats=Mux(is_conv, seg_beats, x_row_beats),
                                  tag=Mux(seg_last, Tag.ACT, Tag.ACT_PART))
                with m.If(~seg_last):  # CONV: the window's next kernel row, one feature-map row down
                    m.d.sync += [a_seg.eq(a_seg + 1), a_x_addr.eq(a_x_addr + conv_desc.seg_stride)]
                with m.Else():
                    m.d.sync += a_seg.eq(0)
                    with m.If(flags.residual):
                        m.d.sync += a_on_residual.eq(1)
            with m.Else():
                m.d.sync += [*issue(self.read_cmd, addr=a_r_addr, beats=a_chunk.out_beats, tag=Tag.RES),
                             a_on_residual.eq(0)]
            row_end = a_on_residual | (seg_last & ~flags.residual)
            with m.If(row_end):
                with m.If(a_row == desc.m - 1):
                    chunk_end()
                with m.Else():
                    m.d.sync += a_row.eq(a_row + 1)
                    with m.If(~is_conv):
                        m.d.sync += [a_x_addr.eq(a_x_addr + desc.x_stride), a_r_addr.eq(a_r_addr + desc.res_stride)]
                    with m.Elif(a_gx == conv_desc.grid_w - 1):  # CONV: window 0 of the next grid row (r: past the skip)
                        next_row = a_grid_row + grid_step
                        m.d.sync += [a_gx.eq(0), a_grid_row.eq(next_row), a_window.eq(next_row),
                                     a_x_addr.eq(next_row), a_r_addr.eq(a_r_addr + r_jump)]
                    with m.Else():  # CONV: the next window along the grid row
                        next_window = a_window + conv_desc.x_stride
                        m.d.sync += [a_gx.eq(a_gx + 1), a_window.eq(next_window), a_x_addr.eq(next_window),
                                     a_r_addr.eq(a_r_addr + desc.res_stride)]

        with m.If(o_active & write_free):
            m.d.sync += issue(self.write_cmd, addr=o_addr, beats=o_chunk.out_beats)
            with m.If(o_row == desc.m - 1):
                m.d.sync += [o_row.eq(0), o_chunk.advance(), o_addr.eq(o_row_addr + chunk_bytes),
                             o_row_addr.eq(o_row_addr + chunk_bytes), o_gx.eq(0)]
                with m.If(o_chunk.last):
                    m.d.sync += o_active.eq(0)
            with m.Else():
                m.d.sync += o_row.eq(o_row + 1)
                with m.If(is_conv & (o_gx == conv_desc.grid_w - 1)):  # CONV: the next grid row, past the skip
                    m.d.sync += [o_gx.eq(0), o_addr.eq(o_addr + o_jump)]
                with m.Else():
                    m.d.sync += [o_gx.eq(o_gx + 1), o_addr.eq(o_addr + desc.out_stride)]

        with m.If(go):
            m.d.sync += [
                x_row_beats.eq((desc.k * hw.act_bytes + axi_bytes - 1) >> shift),
                chunk_bytes.eq(desc.chunk_tiles * (hw.lanes_out * hw.act_bytes)),
                ring_free.eq(geo.ring_words), residual_free.eq(geo.residual_beats), banks_free.eq(2),
                res_merged.eq(window_mode & (desc.chunk_tiles == desc.n_tiles)
                              & (conv_desc.res_stride == (((desc.n * hw.act_bytes + axi_bytes - 1) >> shift) << shift))
                              & (res_row_beats <= geo.residual_beats)),
                w_active.eq(~flags.bypass), w_phase.eq(0), w_left.eq(0), *w_chunk.reset(),
                w_bias_addr.eq(base + desc.bias_addr), w_weight_addr.eq(base + desc.w_addr),
                w_b_chunk_addr.eq(base + desc.w_addr),
                a_active.eq(1), a_on_residual.eq(0), a_row.eq(0), *a_chunk.reset(),
                a_x_addr.eq(base + desc.x_addr), a_r_addr.eq(base + desc.res_addr),
                a_seg.eq(0), a_gx.eq(0), a_gy.eq(0), released_gx.eq(0), a_window.eq(base + desc.x_addr), a_grid_row.eq(base + desc.x_addr),
                a_r_row_addr.eq(base + desc.res_addr), r_jump.eq(conv_desc.res_stride + conv_desc.res_skip),
                o_active.eq(1), o_row.eq(0), *o_chunk.reset(), o_gx.eq(0),
                o_jump.eq(conv_desc.out_stride + conv_desc.out_skip),
                o_addr.eq(base + desc.out_addr), o_row_addr.eq(base + desc.out_addr),
            ]
        return m
