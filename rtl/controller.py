# SPDX-License-Identifier: Apache-2.0
"""The controller: fetches the Program from DDR, checks it, and runs its descriptors in order.

For each LINEAR descriptor it starts the compute unit and generates every memory transfer the
descriptor needs, in the order the compute unit consumes them (docs/isa.md §3.4):

- a **weight stream**: for each chunk, its bias entries then its weight tiles, in pieces of at
  most ``PIECE_BEATS`` words, the last piece tagged ``WEIGHT_END``; a chunk starts loading as
  soon as a weight bank is free (two banks: the next chunk loads while the current one computes);
- an **activation stream**: for each chunk and row, the row of ``x`` and (with ``RESIDUAL``) the
  row's segment of ``r``, each as soon as the activation ring / residual FIFO has room;
- a **write stream**: for each chunk and row, the output segment's write command.

The two read streams share the one read engine. Weights win when the activation stream is already
waiting on that chunk (nothing else can run); otherwise rows of ``x`` win and the next chunk's
weights fill the gaps, so its load hides behind the current chunk's compute. Credits (ring words,
residual words, weight banks) are taken when a read is issued and returned by the compute unit's
release pulses, so read data always finds room and the read channel never stalls.

For a LAYERNORM or SOFTMAX descriptor it starts the row unit and reads, in order, LAYERNORM's γ
and β (one command each), then one command per row of ``x``, each as soon as the row unit's
input FIFO has room for the whole row (credits returned beat by beat); it issues one write
command per output row.

A Program whose header has the wrong magic, version or hardware fingerprint, or a descriptor this
core cannot run, sets a STATUS bit and stops the run before anything is computed or written.
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX

from ._errors import refuse
from .checker import BoundsChecker
from .compute_unit import PIECE_BEATS, ChunkWalker, Geometry
from .descriptor import (
    DESCRIPTOR_BYTES, DESCRIPTOR_LAYOUT, HEADER_BYTES, HEADER_LAYOUT, MAGIC, OPCODE_LAYERNORM, OPCODE_LINEAR,
    OPCODE_SOFTMAX, ROW_DESCRIPTOR_LAYOUT, TAG_WIDTH, VERSION, Status, Tag,
)
from .row_unit import RowGeometry

__all__ = ["Controller"]

BEATS_WIDTH = 20

#: Operand extents the bounds checker walks per descriptor (LINEAR: x, out, r, B or weight tiles, bias).
CHECK_SLOTS = 5
#: Cycles the checks add to every descriptor: the bounds checker's walk (docs/isa.md §5 ``fetch``).
CHECK_CYCLES = CHECK_SLOTS + 1


class Controller(wiring.Component):
    """Program fetch, checks and the per-descriptor memory traffic of the accelerator.

    Ports
    -----
    start : In(1)
        Pulse: run the Program at ``program_addr``.
    program_addr : In(32)
        Byte address of the Program header.
    image_base : In(32)
        Byte address every descriptor address is relative to.
    done : Out(1)
        Pulse: the run ended (all descriptors done, or stopped by an error in ``status``).
    status : Out(32)
        Status code (:class:`Status`: 0, or why the run stopped; the first error wins), cleared by ``start``.
    descriptors_done : Out(32)
        Descriptors completed in this run.
    read_cmd : Out(stream)
        Commands for the read engine: ``addr``, ``beats``, ``tag``.
    desc_data : In(stream)
        Read data tagged ``DESC`` (header and descriptor words).
    write_cmd : Out(stream)
        Commands for the write engine: ``addr``, ``beats``.
    writer_busy : In(1)
        The write engine has writes not yet acknowledged.
    read_error : In(1)
        Sticky read-response error from the read engine.
    write_error : In(1)
        Sticky write-response error from the write engine.
    desc : Out(DESCRIPTOR_LAYOUT)
        The current descriptor, for the compute unit.
    unit_start : Out(1)
        Pulse: the compute unit starts ``desc``.
    unit_done : In(1)
        Pulse: the compute unit has produced every output word.
    row_released : In(1)
        Credit: the compute unit freed one row of ``k_tiles`` activation-ring words.
    chunk_released : In(1)
        Credit: the compute unit freed a weight bank.
    residual_released : In(1)
        Credit: the compute unit freed one residual FIFO word.
    row_start : Out(1)
        Pulse: the row unit starts ``desc`` (a LAYERNORM or SOFTMAX descriptor).
    row_done : In(1)
        Pulse: the row unit has produced every output word.
    row_beat_released : In(1)
        Credit: the row unit freed one input FIFO word.
    """

    def __init__(self, hw: HwParams):
        problem = Geometry.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        self.geometry = geo = Geometry(hw)
        self.has_rows = RowGeometry.problem(hw) is None
        self.read_cmd_layout = data.StructLayout({
            "addr": unsigned(32), "beats": unsigned(BEATS_WIDTH), "tag": unsigned(TAG_WIDTH)})
        self.write_cmd_layout = data.StructLayout({"addr": unsigned(32), "beats": unsigned(BEATS_WIDTH)})
        super().__init__({
            "start": In(1),
            "program_addr": In(32),
            "image_base": In(32),
            "done": Out(1),
            "status": Out(32),
            "descriptors_done": Out(32),
            "read_cmd": Out(stream.Signature(self.read_cmd_layout)),
            "desc_data": In(stream.Signature(geo.axi_bits)),
            "write_cmd": Out(stream.Signature(self.write_cmd_layout)),
            "writer_busy": In(1),
            "read_error": In(1),
            "write_error": In(1),
            "desc": Out(DESCRIPTOR_LAYOUT),
            "unit_start": Out(1),
            "unit_done": In(1),
            "row_released": In(1),
            "chunk_released": In(1),
            "residual_released": In(1),
            "row_start": Out(1),
            "row_done": In(1),
            "row_beat_released": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, geo = self.hw, self.geometry
        desc = self.desc
        flags = desc.flags
        axi_bytes = geo.axi_bytes
        shift = axi_bytes.bit_length() - 1

        # ------------------------------------------------------------------ command registers
        # A command waits in its register until the engine takes it, so its payload never changes
        # while valid; arbitration picks the next command only when the register is free.
        read_free = ~self.read_cmd.valid | self.read_cmd.ready
        with m.If(self.read_cmd.valid & self.read_cmd.ready):
            m.d.sync += self.read_cmd.valid.eq(0)
        write_free = ~self.write_cmd.valid | self.write_cmd.ready
        with m.If(self.write_cmd.valid & self.write_cmd.ready):
            m.d.sync += self.write_cmd.valid.eq(0)

        def read(addr, beats, tag):
            return [self.read_cmd.valid.eq(1), self.read_cmd.payload.addr.eq(addr),
                    self.read_cmd.payload.beats.eq(beats), self.read_cmd.payload.tag.eq(tag)]

        # ------------------------------------------------------------------ 64-byte fetches
        words = Signal(8 * DESCRIPTOR_BYTES)
        beats_seen = Signal(range(DESCRIPTOR_BYTES // axi_bytes + 1))
        m.d.comb += self.desc_data.ready.eq(1)
        with m.If(self.desc_data.valid):
            m.d.sync += [words.eq(Cat(words[geo.axi_bits:], self.desc_data.payload)), beats_seen.eq(beats_seen + 1)]
        fetched = beats_seen == DESCRIPTOR_BYTES // axi_bytes
        header = data.View(HEADER_LAYOUT, words)
        fetched_desc = data.View(DESCRIPTOR_LAYOUT, words)

        # ------------------------------------------------------------------ checks (docs/isa.md §8.3)
        # One status code per run; the first failing check (in the order below) wins.
        status = self.status
        count = Signal(32)
        index = Signal(32)
        desc_addr = Signal(32)
        image_bytes = Signal(32)

        def misaligned(*values):
            return Cat(*(v[:shift] for v in values)).any() if shift else Const(0)

        def fail(code):
            """Set STATUS to ``code`` unless an earlier error already set it."""
            return status.eq(Mux(status != 0, status, code))

        # Header: magic, version, fingerprint, then its size fields against the image.
        program_offset = Signal(32)
        m.d.comb += program_offset.eq(self.program_addr - self.image_base)
        header_code = Signal(8)
        with m.If(header.magic != MAGIC):
            m.d.comb += header_code.eq(Status.BAD_MAGIC)
        with m.Elif(header.version != VERSION):
            m.d.comb += header_code.eq(Status.BAD_VERSION)
        with m.Elif(header.fingerprint != hw.fingerprint()):
            m.d.comb += header_code.eq(Status.BAD_FINGERPRINT)
        with m.Elif((header.descriptor_bytes != DESCRIPTOR_BYTES)
                    | (program_offset + ((header.count + 1) << 6) > header.image_bytes)):
            m.d.comb += header_code.eq(Status.BAD_HEADER)

        # LINEAR descriptors.
        d = fetched_desc
        f = d.flags
        li, lo, ab = hw.lanes_in, hw.lanes_out, hw.act_bytes
        b_operand = f.b_rowmajor | f.b_transposed

        def requant_ok(rq):
            raw = rq.as_value()
            return ((rq.width >= 1) & (rq.width <= 32) & (rq.round <= 6) & (rq.overflow <= 4)
                    & ~raw[15] & ~raw[19] & ~raw[23] & (raw[30:32] == 0))

        k_tiles_ok = (d.k_tiles * li >= d.k) & (d.k_tiles * li < d.k + li)
        n_tiles_ok = (d.n_tiles * lo >= d.n) & (d.n_tiles * lo < d.n + lo)
        linear_bad = ((f.reserved != 0) | (f.b_rowmajor & f.b_transposed)
                      | (f.bypass & (f.bias | b_operand | f.w_unsigned))
                      | (d.m == 0) | (d.k == 0) | (d.n == 0) | ~k_tiles_ok | ~n_tiles_ok
                      | (d.chunk_tiles == 0) | (d.chunk_tiles > d.n_tiles)
                      | (f.bypass & ((d.k != d.n) | (d.chunk_tiles != d.n_tiles)))
                      | ~requant_ok(d.rq1) | (f.residual & ~requant_ok(d.rq2)))
        # Capacities (hwgen.isa.rules.Limits): a row of x in one activation bank, a chunk's tiles and
        # bias entries in one weight bank (tiles of act_bytes elements for an activation operand).
        max_k_tiles = geo.max_k_tiles
        max_chunk_tiles = geo.max_chunk_tiles
        small_chunk = d.chunk_tiles[:max(1, max_chunk_tiles.bit_length())]
        small_k = d.k_tiles[:max(1, max_k_tiles.bit_length())]
        column_bytes = (small_k * Mux(b_operand, hw.tile_stride(hw.act_bytes), hw.tile_stride(hw.weight_bytes))
                        + Mux(f.bias, lo * hw.bias_bytes, 0))
        linear_too_big = ((d.k_tiles > max_k_tiles) | (d.chunk_tiles > max_chunk_tiles)
                          | (~f.bypass & (small_chunk * column_bytes > hw.weight_buffer_bytes)))
        linear_misaligned = (misaligned(d.x_addr, d.x_stride, d.out_addr, d.out_stride)
                             | (~f.bypass & misaligned(d.w_addr)) | (b_operand & misaligned(d.w_stride))
                             | (f.bias & misaligned(d.bias_addr)) | (f.residual & misaligned(d.res_addr, d.res_stride)))

        # Row descriptors (docs/isa.md §3.6): sizes, reserved fields, SOFTMAX without γ/β/d_offset,
        # LAYERNORM's d_offset = N²·eps_raw for an ε < 1 (so D fits the unit).
        r = data.View(ROW_DESCRIPTOR_LAYOUT, words)
        # Without a row unit (RowGeometry.problem) its opcodes are refused as reserved ones.
        row_opcode = ((r.opcode == OPCODE_LAYERNORM) | (r.opcode == OPCODE_SOFTMAX)) if self.has_rows else Const(0)
        is_layernorm = r.opcode == OPCODE_LAYERNORM
        twice_frac = 2 * hw.unit_formats().layernorm_in.frac_bits
        row_bad = Signal()
        m.d.comb += row_bad.eq(
            (r.m == 0) | (r.n == 0) | (r.n > ROW_MAX)
            | (r.reserved0 != 0) | (r.reserved2 != 0) | (r.reserved3 != 0) | (r.reserved7 != 0) | (r.reserved10 != 0)
            | (~is_layernorm & ((r.gamma_addr != 0) | (r.beta_addr != 0) | (r.d_offset != 0)))
            | (is_layernorm & (r.d_offset >= ((r.n * r.n) << twice_frac))))
        row_misaligned = (misaligned(r.x_addr, r.x_stride, r.out_addr, r.out_stride)
                          | (is_layernorm & misaligned(r.gamma_addr, r.beta_addr)))

        is_linear = d.opcode == OPCODE_LINEAR
        static_code = Signal(8)
        with m.If(~is_linear & ~row_opcode):
            m.d.comb += static_code.eq(Status.BAD_OPCODE)
        with m.Elif(Mux(is_linear, linear_bad, row_bad)):
            m.d.comb += static_code.eq(Status.BAD_DESCRIPTOR)
        with m.Elif(is_linear & linear_too_big):
            m.d.comb += static_code.eq(Status.DOES_NOT_FIT)
        with m.Elif(Mux(is_linear, linear_misaligned, row_misaligned)):
            m.d.comb += static_code.eq(Status.MISALIGNED)

        # Operand extents, through the sequential bounds checker (one multiplier for all of them).
        m.submodules.checker = checker = BoundsChecker(CHECK_SLOTS)
        m.d.comb += checker.image_bytes.eq(image_bytes)

        def term(slot, enable, addr, rows, stride, tail):
            t = checker.terms[slot]
            return [t.enable.eq(enable), t.addr.eq(addr), t.rows.eq(rows), t.stride.eq(stride), t.tail.eq(tail)]

        with m.If(is_linear):
            tiles = ~f.bypass & ~b_operand
            m.d.comb += [
                *term(0, 1, d.x_addr, d.m - 1, d.x_stride, d.k * ab),
                *term(1, 1, d.out_addr, d.m - 1, d.out_stride, d.n * ab),
                *term(2, f.residual, d.res_addr, d.m - 1, d.res_stride, d.n * ab),
                *term(3, ~f.bypass, d.w_addr,
                      Mux(tiles, d.n_tiles, Mux(f.b_rowmajor, d.k - 1, d.n - 1)),
                      Mux(tiles, d.k_tiles * hw.tile_stride(hw.weight_bytes), d.w_stride),
                      Mux(tiles, 0, Mux(f.b_rowmajor, d.n, d.k) * ab)),
                *term(4, f.bias, d.bias_addr, d.n_tiles, lo * hw.bias_bytes, 0),
            ]
        with m.Else():
            m.d.comb += [
                *term(0, 1, r.x_addr, r.m - 1, r.x_stride, r.n * ab),
                *term(1, 1, r.out_addr, r.m - 1, r.out_stride, r.n * ab),
                *term(2, is_layernorm, r.gamma_addr, 0, 0, r.n * ab),
                *term(3, is_layernorm, r.beta_addr, 0, 0, r.n * ab),
            ]
        desc_code = Signal(8)
        m.d.comb += desc_code.eq(Mux(static_code != 0, static_code,
                                     Mux(checker.out_of_bounds, Status.OUT_OF_BOUNDS, Status.OK)))

        # ------------------------------------------------------------------ descriptor streams
        base = self.image_base
        chunk_tiles_k = Signal(32)       # chunk_tiles · k_tiles: tiles of a full chunk
        x_row_beats = Signal(BEATS_WIDTH)
        chunk_bytes = Signal(32)         # bytes of output columns per full chunk (same for r)

        # Weight stream: bias pieces then weight pieces, per chunk. An activation operand (B_ROWMAJOR,
        # B_TRANSPOSED) comes instead of the tiles as one read command per row of B in the chunk: the
        # chunk's column segment of each of the K rows, or each of the chunk's rows of K elements.
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

        # Activation stream: x row then r segment, per chunk and row.
        a_chunk = ChunkWalker(m, desc, geo, "aload")
        a_active = Signal()
        a_on_residual = Signal()
        a_row = Signal(32)
        a_x_addr = Signal(32)
        a_r_addr = Signal(32)
        a_r_row_addr = Signal(32)        # r segment start of row 0 in the current chunk
        ring_free = Signal(range(geo.ring_words + 1))
        residual_free = Signal(range(geo.residual_beats + 1))
        a_wants_x = a_active & ~a_on_residual & (ring_free >= desc.k_tiles)
        a_wants_r = a_active & a_on_residual & (residual_free >= a_chunk.out_beats)
        a_wants = a_wants_x | a_wants_r

        # Write stream: one command per chunk and row.
        o_chunk = ChunkWalker(m, desc, geo, "store")
        o_active = Signal()
        o_row = Signal(32)
        o_addr = Signal(32)
        o_row_addr = Signal(32)

        # Arbitration of the read port during a descriptor.
        running = Signal()
        weights_urgent = w_chunk.index <= a_chunk.index
        pick_weights = Signal()
        pick_act = Signal()
        m.d.comb += [
            pick_weights.eq(running & read_free & w_wants & (weights_urgent | ~a_wants)),
            pick_act.eq(running & read_free & a_wants & ~pick_weights),
        ]

        # Credits.
        take_ring = pick_act & ~a_on_residual
        take_residual = pick_act & a_on_residual
        take_bank = Signal()
        with m.If(~running):
            m.d.sync += [ring_free.eq(geo.ring_words), residual_free.eq(geo.residual_beats), banks_free.eq(2)]
        with m.Else():
            m.d.sync += [
                ring_free.eq(ring_free + Mux(self.row_released, desc.k_tiles, 0) - Mux(take_ring, desc.k_tiles, 0)),
                residual_free.eq(residual_free + self.residual_released
                                 - Mux(take_residual, a_chunk.out_beats, 0)),
                banks_free.eq(banks_free + self.chunk_released - take_bank),
            ]

        with m.If(pick_weights):
            m.d.sync += w_left.eq(w_left - Mux(b_phase, 1, piece))
            with m.If(w_phase == 1):
                m.d.sync += [*read(w_bias_addr, piece, Tag.BIAS), w_bias_addr.eq(w_bias_addr + (piece << shift))]
            with m.Else():
                m.d.sync += [*read(w_weight_addr, piece, Mux(last_piece, Tag.WEIGHT_END, Tag.WEIGHT)),
                             w_weight_addr.eq(w_weight_addr + Mux(b_operand, desc.w_stride, piece << shift))]
        # Phase changes of the weight stream (a phase ends when its last piece is issued).
        with m.If(running & w_active):
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

        with m.If(pick_act):
            with m.If(~a_on_residual):
                m.d.sync += read(a_x_addr, x_row_beats, Tag.ACT)
                with m.If(flags.residual):
                    m.d.sync += a_on_residual.eq(1)
            with m.Else():
                m.d.sync += [*read(a_r_addr, a_chunk.out_beats, Tag.RES), a_on_residual.eq(0)]
            row_end = ~flags.residual | a_on_residual
            with m.If(row_end):
                with m.If(a_row == desc.m - 1):
                    m.d.sync += [a_row.eq(0), a_chunk.advance(), a_x_addr.eq(base + desc.x_addr),
                                 a_r_addr.eq(a_r_row_addr + chunk_bytes), a_r_row_addr.eq(a_r_row_addr + chunk_bytes)]
                    with m.If(a_chunk.last):
                        m.d.sync += a_active.eq(0)
                with m.Else():
                    m.d.sync += [a_row.eq(a_row + 1), a_x_addr.eq(a_x_addr + desc.x_stride),
                                 a_r_addr.eq(a_r_addr + desc.res_stride)]

        with m.If(running & o_active & write_free):
            m.d.sync += [self.write_cmd.valid.eq(1), self.write_cmd.payload.addr.eq(o_addr),
                         self.write_cmd.payload.beats.eq(o_chunk.out_beats)]
            with m.If(o_row == desc.m - 1):
                m.d.sync += [o_row.eq(0), o_chunk.advance(), o_addr.eq(o_row_addr + chunk_bytes),
                             o_row_addr.eq(o_row_addr + chunk_bytes)]
                with m.If(o_chunk.last):
                    m.d.sync += o_active.eq(0)
            with m.Else():
                m.d.sync += [o_row.eq(o_row + 1), o_addr.eq(o_addr + desc.out_stride)]

        # ------------------------------------------------------------------ row descriptor streams
        rows = RowGeometry(hw)
        row_desc = data.View(ROW_DESCRIPTOR_LAYOUT, desc.as_value())
        row_running = Signal()
        row_beats = Signal(BEATS_WIDTH)
        row_param = Signal(2)            # 1: γ next, 2: β next, 0: both issued (or SOFTMAX)
        row_reads_left = Signal(32)
        row_read_addr = Signal(32)
        row_writes_left = Signal(32)
        row_write_addr = Signal(32)
        row_credit = Signal(range(rows.input_beats + 1))
        pick_param = row_running & read_free & (row_param != 0)
        pick_row = row_running & read_free & (row_param == 0) & (row_reads_left != 0) & (row_credit >= row_beats)
        with m.If(~row_running):
            m.d.sync += row_credit.eq(rows.input_beats)
        with m.Else():
            m.d.sync += row_credit.eq(row_credit + self.row_beat_released - Mux(pick_row, row_beats, 0))
        with m.If(pick_param):
            with m.If(row_param == 1):
                m.d.sync += [*read(base + row_desc.gamma_addr, row_beats, Tag.ROW_PARAM), row_param.eq(2)]
            with m.Else():
                m.d.sync += [*read(base + row_desc.beta_addr, row_beats, Tag.ROW_PARAM), row_param.eq(0)]
        with m.If(pick_row):
            m.d.sync += [*read(row_read_addr, row_beats, Tag.ROW), row_read_addr.eq(row_read_addr + row_desc.x_stride),
                         row_reads_left.eq(row_reads_left - 1)]
        with m.If(row_running & (row_writes_left != 0) & write_free):
            m.d.sync += [self.write_cmd.valid.eq(1), self.write_cmd.payload.addr.eq(row_write_addr),
                         self.write_cmd.payload.beats.eq(row_beats),
                         row_write_addr.eq(row_write_addr + row_desc.out_stride),
                         row_writes_left.eq(row_writes_left - 1)]

        # ------------------------------------------------------------------ sequencing
        m.d.comb += [self.unit_start.eq(0), self.row_start.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [status.eq(0), self.descriptors_done.eq(0), beats_seen.eq(0)]
                    with m.If(misaligned(self.program_addr)):
                        m.d.sync += status.eq(Status.MISALIGNED)  # nothing is read
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += read(self.program_addr, HEADER_BYTES // axi_bytes, Tag.DESC)
                        m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(fetched):
                    m.d.sync += [
                        count.eq(header.count), index.eq(0), image_bytes.eq(header.image_bytes),
                        desc_addr.eq(self.program_addr + HEADER_BYTES),
                    ]
                    with m.If(header_code != 0):
                        m.d.sync += fail(header_code)
                    m.next = "CHECK_HEADER"
            with m.State("CHECK_HEADER"):
                with m.If((status != 0) | (count == 0)):
                    m.next = "FINISH"
                with m.Elif(read_free):
                    m.d.sync += [beats_seen.eq(0), *read(desc_addr, DESCRIPTOR_BYTES // axi_bytes, Tag.DESC)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(fetched):
                    m.d.comb += checker.start.eq(1)
                    m.next = "CHECK"
            with m.State("CHECK"):
                # The words stay put (no descriptor read is in flight) while the checker walks the terms.
                with m.If(checker.done):
                    with m.If(desc_code != 0):
                        m.d.sync += fail(desc_code)
                        m.next = "FINISH"
                    with m.Elif(is_linear):
                        m.d.sync += desc.eq(d)
                        m.next = "SETUP"
                    with m.Else():
                        m.d.sync += desc.eq(d)
                        m.next = "ROW_SETUP"
            with m.State("SETUP"):
                m.d.comb += self.unit_start.eq(1)
                m.d.sync += [
                    chunk_tiles_k.eq(desc.chunk_tiles * desc.k_tiles),
                    x_row_beats.eq((desc.k * hw.act_bytes + axi_bytes - 1) >> shift),
                    chunk_bytes.eq(desc.chunk_tiles * (hw.lanes_out * hw.act_bytes)),
                    running.eq(1),
                    w_active.eq(~flags.bypass), w_phase.eq(0), w_left.eq(0), *w_chunk.reset(),
                    w_bias_addr.eq(base + desc.bias_addr), w_weight_addr.eq(base + desc.w_addr),
                    w_b_chunk_addr.eq(base + desc.w_addr),
                    a_active.eq(1), a_on_residual.eq(0), a_row.eq(0), *a_chunk.reset(),
                    a_x_addr.eq(base + desc.x_addr), a_r_addr.eq(base + desc.res_addr),
                    a_r_row_addr.eq(base + desc.res_addr),
                    o_active.eq(1), o_row.eq(0), *o_chunk.reset(),
                    o_addr.eq(base + desc.out_addr), o_row_addr.eq(base + desc.out_addr),
                ]
                m.next = "RUN"
            with m.State("ROW_SETUP"):
                m.d.comb += self.row_start.eq(1)
                m.d.sync += [
                    row_running.eq(1),
                    row_beats.eq((row_desc.n * hw.act_bytes + axi_bytes - 1) >> shift),
                    row_param.eq(Mux(row_desc.opcode == OPCODE_LAYERNORM, 1, 0)),
                    row_reads_left.eq(row_desc.m), row_read_addr.eq(base + row_desc.x_addr),
                    row_writes_left.eq(row_desc.m), row_write_addr.eq(base + row_desc.out_addr),
                ]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.unit_done | self.row_done):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                # All output words are with the write engine; wait for their B responses.
                with m.If(~o_active & (row_writes_left == 0) & ~self.write_cmd.valid & ~self.writer_busy):
                    m.d.sync += [running.eq(0), row_running.eq(0), index.eq(index + 1),
                                 desc_addr.eq(desc_addr + DESCRIPTOR_BYTES),
                                 self.descriptors_done.eq(self.descriptors_done + 1)]
                    m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(index == count):
                    m.next = "FINISH"
                with m.Elif(read_free):
                    m.d.sync += [beats_seen.eq(0), *read(desc_addr, DESCRIPTOR_BYTES // axi_bytes, Tag.DESC)]
                    m.next = "FETCH"
            with m.State("FINISH"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # Response errors: the first error of the run wins (READ_ERROR before WRITE_ERROR in one cycle).
        with m.If(self.read_error):
            m.d.sync += fail(Status.READ_ERROR)
        with m.Elif(self.write_error):
            m.d.sync += fail(Status.WRITE_ERROR)
        return m
