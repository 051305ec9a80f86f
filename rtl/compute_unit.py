# SPDX-License-Identifier: Apache-2.0
"""The unified compute unit: a ``lanes_in × lanes_out`` MAC array fed from on-chip buffers,
followed by the post-processing lanes, executing one LINEAR descriptor (docs/isa.md §3.3–3.4).

Data arrives as tagged AXI beats on :attr:`ComputeUnit.fill` and lands in four buffers:

- the **weight buffer**: two banks (ping-pong) of whole weight tiles; one bank is computed from
  while the next chunk loads into the other. A tile is ``tile_beats`` AXI words wide, stored as
  that many side-by-side memories so one tile is read per cycle;
- the **bias buffer**: the loaded chunks' bias entries, two banks like the weights;
- the **activation ring**: rows of ``x``, each ``k_tiles`` words of ``lanes_in`` elements, in a
  ring as deep as both activation banks together, so several rows are in flight while one is
  computed (a 64-cycle memory latency costs more than one row's compute on short rows);
- the **residual FIFO**: the chunk-rows of ``r`` in output order.

The array walks chunks, rows, output tiles and k-tiles in the order of docs/isa.md §3.4, issuing
one ``lanes_in × lanes_out`` tile per cycle whenever its row and chunk are loaded and an output
slot is free, and accumulates exactly (products and partial sums wrap in ``acc_bits``, which the
compiler guarantees the true sum fits). Finished tiles queue for the post-processing lanes, which
run one AXI word of outputs per cycle — the rate the write port drains them — through bias,
requantize (RQ1), ReLU, the residual add, requantize (RQ2) and ReLU, and leave as write beats with
byte strobes that stop at column ``N``.

The controller (``rtl/controller.py``) issues the reads in the same order and paces them with the
credit pulses this unit returns (``row_released``, ``chunk_released``, ``residual_released``), so
fill beats always find room and the read channel never stalls on this unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.hwparams import HwParams

from ._errors import refuse
from .descriptor import DESCRIPTOR_LAYOUT, TAG_WIDTH, Tag
from .gelu import GeluTable, gelu_lane, gelu_latency
from .mac_array import MacArray
from .pipeline import Pipeline
from .runtime_requantize import RESULT_SHAPE, cut_layout, requantize_cut, requantize_fit

__all__ = ["Geometry", "ChunkWalker", "ComputeUnit"]

#: Largest weight or bias read command: weights load in pieces this long so rows of x can be
#: interleaved with them on the one read port.
PIECE_BEATS = 64


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class Geometry:
    """Buffer shapes and beat counts the RTL derives from :class:`HwParams`.

    The RTL moves whole AXI words between DDR and its buffers, so it needs an activation word
    (``lanes_in`` elements) and an output tile (``lanes_out`` elements) to be whole AXI words;
    other parameter sets are refused with the reason.
    """

    hw: HwParams

    def __post_init__(self):
        problem = self.problem(self.hw)
        if problem:
            raise ValueError(problem)

    @staticmethod
    def problem(hw: HwParams) -> str | None:
        """Why the RTL core cannot be built for ``hw``, or ``None``."""
        if not isinstance(hw, HwParams):
            return f"hardware parameters must be an HwParams, not {hw!r}"
        axi = hw.axi_data_width
        if hw.lanes_in * hw.act_bits % axi:
            return (f"lanes_in × act_bits must be a multiple of the AXI data width ({axi}) for the RTL core, "
                    f"not {hw.lanes_in * hw.act_bits}")
        if hw.lanes_out * hw.act_bits % axi:
            return (f"lanes_out × act_bits must be a multiple of the AXI data width ({axi}) for the RTL core, "
                    f"not {hw.lanes_out * hw.act_bits}")
        if max(hw.lanes_in, hw.lanes_out) % min(hw.lanes_in, hw.lanes_out):
            return (f"lanes_in and lanes_out must be multiples of one another for the RTL core (BYPASS maps output "
                    f"tiles onto activation words), not {hw.lanes_in} and {hw.lanes_out}")
        if hw.weight_bits > hw.act_bits:
            return (f"weight_bits must not exceed act_bits for the RTL core (activation operands share the weight "
                    f"banks), not {hw.weight_bits} > {hw.act_bits}")
        if hw.lanes_in * hw.lanes_out * hw.weight_bytes % hw.axi_bytes:
            return (f"a weight tile (lanes_in × lanes_out × weight_bits = {hw.lanes_in * hw.lanes_out * hw.weight_bits}"
                    f" bits) must be whole AXI words ({axi} bits) for the RTL core")
        need = hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes
        if hw.weight_buffer_bytes < need:
            return f"weight_buffer_bytes must hold one tile and its bias ({need} bytes), not {hw.weight_buffer_bytes}"
        return None

    # Elements and words.
    @property
    def axi_bits(self) -> int:
        return self.hw.axi_data_width

    @property
    def axi_bytes(self) -> int:
        return self.hw.axi_bytes

    @property
    def bias_bits(self) -> int:
        return 8 * self.hw.bias_bytes

    @property
    def act_slots(self) -> int:
        """AXI words per activation-ring word (``lanes_in`` elements)."""
        return self.hw.lanes_in * self.hw.act_bytes // self.axi_bytes

    @property
    def tile_beats(self) -> int:
        """AXI words per weight tile (``tile_stride`` bytes)."""
        return self.hw.tile_stride(self.hw.weight_bytes) // self.axi_bytes

    @property
    def post_lanes(self) -> int:
        """Outputs per AXI word: the post-processing lanes handle one output word per cycle."""
        return self.axi_bytes // self.hw.act_bytes

    @property
    def tile_out_beats(self) -> int:
        """AXI words per output tile (``lanes_out`` outputs)."""
        return self.hw.lanes_out // self.post_lanes

    @property
    def bias_slots(self) -> int:
        """AXI words per bias word (the bias entries of one output word)."""
        return self.post_lanes * self.hw.bias_bytes // self.axi_bytes

    # BYPASS (acc = x): output tile t, column o is activation column t·lanes_out + o.
    @property
    def bypass_tiles_per_word(self) -> int:
        """Output tiles per activation word with BYPASS (lanes_in = r·lanes_out: r, else 1)."""
        return max(1, self.hw.lanes_in // self.hw.lanes_out)

    @property
    def bypass_words_per_tile(self) -> int:
        """Activation words (array steps) per output tile with BYPASS (lanes_out = r·lanes_in: r, else 1)."""
        return max(1, self.hw.lanes_out // self.hw.lanes_in)

    # Buffer depths.
    @property
    def bank_tiles(self) -> int:
        """Weight tiles one bank holds."""
        return self.hw.weight_buffer_bytes // self.hw.tile_stride(self.hw.weight_bytes)

    # The weight banks hold weight tiles and tiles of an activation operand (B_ROWMAJOR/B_TRANSPOSED).
    # A bank row is one tile of act_bytes containers (``tile_words`` AXI words side by side, read in
    # one cycle); a weight tile, ``slots_per_row`` times smaller, takes one byte slot of every container.
    @property
    def slots_per_row(self) -> int:
        """Weight tiles per bank row (act_bytes / weight_bytes)."""
        return self.hw.act_bytes // self.hw.weight_bytes

    @property
    def tile_words(self) -> int:
        """AXI words per bank row: one tile of act_bytes elements (the weight memories side by side)."""
        return self.hw.lanes_in * self.hw.lanes_out * self.hw.act_bytes // self.axi_bytes

    @property
    def bank_rows(self) -> int:
        """Rows of one bank: room for ``bank_tiles`` weight tiles, hence for every activation-operand chunk
        the capacity rule admits (``weight_buffer_bytes // tile_stride(act_bytes)`` tiles)."""
        return -(-self.bank_tiles // self.slots_per_row)

    @property
    def max_chunk_tiles(self) -> int:
        """Most output tiles a chunk can have: its tiles and bias share one bank's budget."""
        return self.hw.weight_buffer_bytes // (self.hw.tile_stride(self.hw.weight_bytes)
                                               + self.hw.lanes_out * self.hw.bias_bytes)

    @property
    def bias_words(self) -> int:
        """Bias words one bank holds."""
        return self.max_chunk_tiles * self.tile_out_beats

    @property
    def max_k_tiles(self) -> int:
        """Most k-tiles a row of ``x`` may have: one activation bank (docs/isa.md, DOES_NOT_FIT)."""
        return self.hw.act_buffer_bytes // (self.hw.lanes_in * self.hw.act_bytes)

    @property
    def ring_words(self) -> int:
        """Activation-ring words (both activation banks as one ring)."""
        return 2 * self.hw.act_buffer_bytes // (self.hw.lanes_in * self.hw.act_bytes)

    @property
    def residual_beats(self) -> int:
        """Residual FIFO depth in AXI words: two of the longest chunk-rows."""
        return _next_pow2(2 * self.max_chunk_tiles * self.tile_out_beats)

    tile_fifo_depth = 8  # finished tiles waiting for the post-processing lanes


class ChunkWalker:
    """Geometry of the current weight chunk of a LINEAR descriptor, stepped chunk by chunk.

    ``tiles`` (output tiles in the chunk), ``cols`` (output columns), ``out_beats`` (AXI words of
    one output row segment), ``last_bytes`` (valid bytes of the segment's last word) and ``last``
    (final chunk) are combinational from the registered chunk start.
    """

    def __init__(self, m, desc, geometry: Geometry, name: str):
        hw = geometry.hw
        self.index = Signal(16, name=f"{name}_chunk")
        self.tile_start = Signal(17, name=f"{name}_tile_start")
        self.col_start = Signal(32, name=f"{name}_col_start")
        self.tiles = Signal(16, name=f"{name}_tiles")
        self.cols = Signal(32, name=f"{name}_cols")
        self.out_beats = Signal(32, name=f"{name}_out_beats")
        self.last_bytes = Signal(range(geometry.axi_bytes + 1), name=f"{name}_last_bytes")
        self.last = Signal(name=f"{name}_last")
        self._desc, self._hw = desc, hw
        tiles_left = desc.n_tiles - self.tile_start
        cols_left = desc.n - self.col_start
        chunk_cols = desc.chunk_tiles * hw.lanes_out
        bytes_ = Signal(34, name=f"{name}_bytes")
        shift = geometry.axi_bytes.bit_length() - 1
        m.d.comb += [
            self.tiles.eq(Mux(tiles_left < desc.chunk_tiles, tiles_left, desc.chunk_tiles)),
            self.cols.eq(Mux(cols_left < chunk_cols, cols_left, chunk_cols)),
            bytes_.eq(self.cols * hw.act_bytes),
            self.out_beats.eq((bytes_ + geometry.axi_bytes - 1) >> shift),
            self.last_bytes.eq(bytes_ - ((self.out_beats - 1) << shift)),
            self.last.eq(self.tile_start + desc.chunk_tiles >= desc.n_tiles),
        ]

    def reset(self):
        return [self.index.eq(0), self.tile_start.eq(0), self.col_start.eq(0)]

    def advance(self):
        return [
            self.index.eq(self.index + 1),
            self.tile_start.eq(self.tile_start + self._desc.chunk_tiles),
            self.col_start.eq(self.col_start + self._desc.chunk_tiles * self._hw.lanes_out),
        ]


def _wrap(value, modulus):
    """``value mod modulus`` for ``0 ≤ value < 2·modulus``."""
    return Mux(value >= modulus, value - modulus, value)


def _extend(bits, is_unsigned):
    """A container's bits as a signed value one bit wider: zero- or sign-extended per the flag."""
    return Cat(bits, Mux(is_unsigned, 0, bits[-1])).as_signed()


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
        of its read command). Always ready: the controller only reads into free space.
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
    """

    def __init__(self, hw: HwParams):
        problem = Geometry.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        self.geometry = geo = Geometry(hw)
        self.fill_layout = data.StructLayout({
            "data": unsigned(geo.axi_bits), "tag": unsigned(TAG_WIDTH), "last": unsigned(1)})
        self.out_layout = data.StructLayout({
            "data": unsigned(geo.axi_bits), "strb": unsigned(geo.axi_bytes)})
        super().__init__({
            "desc": In(DESCRIPTOR_LAYOUT),
            "start": In(1),
            "done": Out(1),
            "fill": In(stream.Signature(self.fill_layout)),
            "out": Out(stream.Signature(self.out_layout)),
            "row_released": Out(1),
            "chunk_released": Out(1),
            "residual_released": Out(1),
            "issuing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw, geo, desc = self.hw, self.geometry, self.desc
        flags = desc.flags
        axi_bits = geo.axi_bits
        lanes_in, lanes_out, acc_bits = hw.lanes_in, hw.lanes_out, hw.acc_bits
        act_bits, weight_bits = hw.act_bits, hw.weight_bits

        # ------------------------------------------------------------------ buffers
        def memories(prefix, count, depth):
            mems = []
            for i in range(count):
                mem = Memory(shape=unsigned(axi_bits), depth=depth, init=[])
                m.submodules[f"{prefix}{i}"] = mem
                mems.append(mem)
            return mems

        slots, rows_per_bank = geo.slots_per_row, geo.bank_rows
        slot_shift = slots.bit_length() - 1
        weight_mems = memories("weights", geo.tile_words, 2 * rows_per_bank)
        bias_mems = memories("bias", geo.bias_slots, 2 * geo.bias_words)
        act_mems = memories("act", geo.act_slots, geo.ring_words)
        weight_w = [mem.write_port(granularity=weight_bits) for mem in weight_mems]
        bias_w = [mem.write_port() for mem in bias_mems]
        act_w = [mem.write_port() for mem in act_mems]
        weight_r = [mem.read_port() for mem in weight_mems]
        act_r = [mem.read_port() for mem in act_mems]
        bias_r = [mem.read_port() for mem in bias_mems]
        m.submodules.residual = residual = fifo.SyncFIFOBuffered(width=axi_bits, depth=geo.residual_beats)
        m.submodules.tiles = tiles = fifo.SyncFIFO(width=lanes_out * acc_bits, depth=geo.tile_fifo_depth)

        # ------------------------------------------------------------------ fill
        beat = self.fill.payload
        arriving = self.fill.valid
        m.d.comb += self.fill.ready.eq(1)

        act_slot = Signal(range(geo.act_slots))
        act_word = Signal(range(geo.ring_words))
        act_row_base = Signal(range(geo.ring_words))
        row_arrived = Signal()
        for i, port in enumerate(act_w):
            m.d.comb += [port.addr.eq(act_word), port.data.eq(beat.data),
                         port.en.eq(arriving & (beat.tag == Tag.ACT) & (act_slot == i))]
        next_row_base = _wrap(act_row_base + desc.k_tiles, geo.ring_words)
        with m.If(arriving & (beat.tag == Tag.ACT)):
            with m.If(beat.last):
                m.d.comb += row_arrived.eq(1)
                m.d.sync += [act_slot.eq(0), act_word.eq(next_row_base), act_row_base.eq(next_row_base)]
            with m.Elif(act_slot == geo.act_slots - 1):
                m.d.sync += [act_slot.eq(0), act_word.eq(_wrap(act_word + 1, geo.ring_words))]
            with m.Else():
                m.d.sync += act_slot.eq(act_slot + 1)

        fill_bank = Signal()
        loaded = Signal(2)  # a bank holds a complete chunk the array has not finished with
        bias_slot = Signal(range(geo.bias_slots))
        bias_word = Signal(range(2 * geo.bias_words))
        is_weight = arriving & ((beat.tag == Tag.WEIGHT) | (beat.tag == Tag.WEIGHT_END))
        is_bias = arriving & (beat.tag == Tag.BIAS)
        b_rowmajor, b_transposed = flags.b_rowmajor, flags.b_transposed
        b_operand = b_rowmajor | b_transposed
        # Weight tiles: beat w_beat of tile w_tile (slot w_tile mod slots of bank row w_tile / slots).
        w_beat = Signal(range(geo.tile_beats))
        w_tile = Signal(16)
        # B_ROWMAJOR: beat b_col of row k = b_kt·lanes_in + b_i's chunk segment: tile row b_i of the tiles
        # (b_tile_row / k_tiles, b_kt); each segment is one read command (its last beat ends it).
        b_i = Signal(range(lanes_in))
        b_kt = Signal(16)
        b_col = Signal(range(geo.tile_out_beats))
        b_tile_row = Signal(32)
        # B_TRANSPOSED: beat (c_kt, c_block) of row n = tile column c_o of the tiles (c_tile_row / k_tiles, ·):
        # its act elements are tile rows c_block·P … of column c_o.
        c_o = Signal(range(lanes_out))
        c_kt = Signal(16)
        c_block = Signal(range(geo.act_slots))
        c_tile_row = Signal(32)
        per_word = geo.axi_bytes // hw.act_bytes  # act containers per AXI word (P)
        lanes_w = geo.axi_bytes // hw.weight_bytes  # weight-sized byte lanes per AXI word (write enables)
        fill_row = Signal(range(2 * rows_per_bank))
        m.d.comb += fill_row.eq(Mux(fill_bank, rows_per_bank, 0) + Mux(
            b_rowmajor, b_tile_row + b_kt, Mux(b_transposed, c_tile_row + c_kt, w_tile >> slot_shift)))
        tile_slot = w_tile[:slot_shift] if slot_shift else Const(0)
        row_mem = b_i * geo.tile_out_beats + b_col  # the one memory a B_ROWMAJOR beat fills
        col_onehot = Signal(lanes_out)
        m.d.comb += col_onehot.eq(1 << c_o)
        elem_bits = act_bits
        for mi, port in enumerate(weight_w):
            # Weight tiles: beat j fills memories j·slots … j·slots + slots − 1, its lanes spread to one slot
            # of every container (the other slots keep their tiles).
            r_part, j = mi % slots, mi // slots
            spread = Cat(*(beat.data[(r_part * (lanes_w // slots) + lane // slots) * weight_bits:][:weight_bits]
                           for lane in range(lanes_w)))
            tile_en = Cat(*((w_beat == j) & (tile_slot == lane % slots) for lane in range(lanes_w)))
            # B_ROWMAJOR: the beat is one word of a tile row, as is.
            row_en = Mux(row_mem == mi, (1 << lanes_w) - 1, 0)
            # B_TRANSPOSED: memory mi holds tile row i = mi / tile_out_beats, columns (mi mod tile_out_beats)·P …;
            # the beat's element i mod P lands in container c_o mod P when c_o is one of those columns.
            i_row, word_in_row = divmod(mi, geo.tile_out_beats)
            element = beat.data[(i_row % per_word) * elem_bits:][:elem_bits]
            replicated = Cat(*([element] * per_word))
            col_en = Cat(*(col_onehot[word_in_row * per_word + lane // slots] & (c_block == i_row // per_word)
                           for lane in range(lanes_w)))
            m.d.comb += [
                port.addr.eq(fill_row),
                port.data.eq(Mux(b_rowmajor, beat.data, Mux(b_transposed, replicated, spread))),
                port.en.eq(Mux(is_weight, Mux(b_rowmajor, row_en, Mux(b_transposed, col_en, tile_en)), 0)),
            ]
        for i, port in enumerate(bias_w):
            m.d.comb += [port.addr.eq(bias_word), port.data.eq(beat.data),
                         port.en.eq(is_bias & (bias_slot == i))]
        chunk_loaded = Signal()
        m.d.comb += chunk_loaded.eq(is_weight & (beat.tag == Tag.WEIGHT_END) & beat.last)
        fill_reset = [w_beat.eq(0), w_tile.eq(0), b_i.eq(0), b_kt.eq(0), b_col.eq(0), b_tile_row.eq(0),
                      c_o.eq(0), c_kt.eq(0), c_block.eq(0), c_tile_row.eq(0)]
        with m.If(chunk_loaded):
            m.d.sync += [
                fill_bank.eq(~fill_bank),
                *fill_reset,
                bias_slot.eq(0),
                bias_word.eq(Mux(fill_bank, 0, geo.bias_words)),
            ]
        with m.Elif(is_weight & b_rowmajor):
            with m.If(beat.last):
                m.d.sync += [b_col.eq(0), b_tile_row.eq(0)]
                with m.If(b_i == lanes_in - 1):
                    m.d.sync += [b_i.eq(0), b_kt.eq(b_kt + 1)]
                with m.Else():
                    m.d.sync += b_i.eq(b_i + 1)
            with m.Elif(b_col == geo.tile_out_beats - 1):
                m.d.sync += [b_col.eq(0), b_tile_row.eq(b_tile_row + desc.k_tiles)]
            with m.Else():
                m.d.sync += b_col.eq(b_col + 1)
        with m.Elif(is_weight & b_transposed):
            with m.If(beat.last):
                m.d.sync += [c_kt.eq(0), c_block.eq(0)]
                with m.If(c_o == lanes_out - 1):
                    m.d.sync += [c_o.eq(0), c_tile_row.eq(c_tile_row + desc.k_tiles)]
                with m.Else():
                    m.d.sync += c_o.eq(c_o + 1)
            with m.Elif(c_block == geo.act_slots - 1):
                m.d.sync += [c_block.eq(0), c_kt.eq(c_kt + 1)]
            with m.Else():
                m.d.sync += c_block.eq(c_block + 1)
        with m.Elif(is_weight):
            with m.If(w_beat == geo.tile_beats - 1):
                m.d.sync += [w_beat.eq(0), w_tile.eq(w_tile + 1)]
            with m.Else():
                m.d.sync += w_beat.eq(w_beat + 1)
        with m.If(is_bias):
            with m.If(bias_slot == geo.bias_slots - 1):
                m.d.sync += [bias_slot.eq(0), bias_word.eq(bias_word + 1)]
            with m.Else():
                m.d.sync += bias_slot.eq(bias_slot + 1)

        m.d.comb += [residual.w_data.eq(beat.data), residual.w_en.eq(arriving & (beat.tag == Tag.RES))]

        # ------------------------------------------------------------------ array issue
        issue_chunk = ChunkWalker(m, desc, geo, "issue")
        issue_running = Signal()
        bank = Signal()
        row = Signal(32)
        tile = Signal(16)
        ktile = Signal(16)
        row_base = Signal(range(geo.ring_words))
        weight_addr = Signal(16)  # tile of the chunk the array reads (bank row, and slot for weight tiles)
        rows_ready = Signal(range(geo.ring_words + 1))
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
        m.d.comb += issue.eq(issue_running & (bypass | loaded.bit_select(bank, 1)) & (rows_ready != 0)
                             & (~first | (tiles_owed < geo.tile_fifo_depth)))
        m.d.comb += self.issuing.eq(issue)

        act_index = Mux(bypass, bypass_word, ktile)
        for port in act_r:
            m.d.comb += port.addr.eq(_wrap(row_base + act_index, geo.ring_words))
        for port in weight_r:
            m.d.comb += port.addr.eq(Mux(bank, rows_per_bank, 0)
                                     + Mux(b_operand, weight_addr, weight_addr >> slot_shift))

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
            with m.Elif(~tile_last):
                m.d.sync += [ktile.eq(0), tile.eq(tile + 1), weight_addr.eq(weight_addr + 1)]
            with m.Else():
                m.d.comb += row_done.eq(1)
                m.d.sync += [ktile.eq(0), tile.eq(0), bypass_word.eq(0), bypass_sel.eq(0),
                             row_base.eq(_wrap(row_base + desc.k_tiles, geo.ring_words)),
                             weight_addr.eq(0)]
                with m.If(row == desc.m - 1):
                    m.d.comb += chunk_issued.eq(1)
                    m.d.sync += [row.eq(0), bank.eq(~bank), issue_chunk.advance(),
                                 weight_addr.eq(0)]
                    with m.If(issue_chunk.last):
                        m.d.sync += issue_running.eq(0)
                with m.Else():
                    m.d.sync += row.eq(row + 1)
        m.d.comb += self.row_released.eq(row_done)
        m.d.sync += rows_ready.eq(rows_ready + row_arrived - row_done)
        m.d.sync += tiles_owed.eq(tiles_owed + (issue & first) - tile_popped)
        for b in range(2):
            with m.If(chunk_loaded & (fill_bank == b)):
                m.d.sync += loaded[b].eq(1)
            with m.Elif(chunk_issued & (bank == b)):
                m.d.sync += loaded[b].eq(0)

        # ------------------------------------------------------------------ MAC array
        # Cycle 1: buffer words out of the memories, with the control of the cycle-0 issue.
        valid1, first1, last1 = Signal(), Signal(), Signal()
        m.d.sync += [valid1.eq(issue), first1.eq(first), last1.eq(last)]
        # Slot of the weight tile in its bank row; lanes of x past K (last k-tile) read as 0, so tile rows
        # an activation operand never filled (k >= K) add nothing.
        slot1 = Signal(max(1, slot_shift))
        if slot_shift:
            m.d.sync += slot1.eq(weight_addr[:slot_shift])
        k_rem = Signal(range(lanes_in + 1))
        m.d.comb += k_rem.eq(desc.k - (desc.k_tiles - 1) * lanes_in)
        x_mask1 = Signal(lanes_in)
        m.d.sync += x_mask1.eq(Mux(last & ~bypass, (Const(1, lanes_in + 1) << k_rem) - 1, (1 << lanes_in) - 1))
        # BYPASS identity: one-hot of the lane offset (bypass_sel, or the k-step when lanes_out > lanes_in).
        offsets = max(per_word, geo.bypass_words_per_tile)
        offset1 = Signal(offsets)
        m.d.sync += offset1.eq(1 << (bypass_sel if per_word > 1 else ktile[:max(1, (offsets - 1).bit_length())]))
        act_word_out = Cat(*(port.data for port in act_r))
        tile_word = Cat(*(port.data for port in weight_r))
        x = [Mux(x_mask1[i], _extend(act_word_out[i * act_bits:(i + 1) * act_bits], flags.x_unsigned), 0)
             for i in range(lanes_in)]

        def identity(i, o):
            """Element (i, o) of the BYPASS tile: 1 where lane i of the word is output column o."""
            if lanes_in >= lanes_out:
                step, delta = lanes_out, i - o  # i = offset·lanes_out + o
            else:
                step, delta = lanes_in, o - i   # o = offset·lanes_in + i
            if delta < 0 or delta % step or delta // step >= offsets:
                return Const(0)
            return offset1[delta // step]

        def weight(i, o):
            container = tile_word[(i * lanes_out + o) * act_bits:][:act_bits]
            if slots == 1:
                w = _extend(container, flags.w_unsigned)
            else:
                w_slot = container[:weight_bits]
                for s_ in range(1, slots):
                    w_slot = Mux(slot1 == s_, container[s_ * weight_bits:][:weight_bits], w_slot)
                w = Mux(b_operand, _extend(container, flags.w_unsigned), _extend(w_slot, flags.w_unsigned))
            # BYPASS multiplies x by a shifted identity tile: acc[n] = x[n] exactly.
            return Mux(bypass, identity(i, o), w)

        # Cycles 2…: the MAC array (products, adder tree, accumulators).
        m.submodules.mac = mac = MacArray(lanes_in=lanes_in, lanes_out=lanes_out, operand_bits=act_bits + 1,
                                          acc_bits=acc_bits)
        m.d.comb += [mac.valid.eq(valid1), mac.first.eq(first1), mac.last.eq(last1)]
        for i in range(lanes_in):
            m.d.comb += mac.x[i].eq(x[i])
            for o in range(lanes_out):
                m.d.comb += mac.w[i * lanes_out + o].eq(weight(i, o))
        m.d.comb += [tiles.w_data.eq(mac.acc.as_value()), tiles.w_en.eq(mac.tile_done)]

        # ------------------------------------------------------------------ post-processing lanes
        post_lanes, out_beats_per_tile = geo.post_lanes, geo.tile_out_beats
        post_chunk = ChunkWalker(m, desc, geo, "post")
        post_running = Signal()
        post_bank = Signal()
        post_row = Signal(32)
        post_tile = Signal(16)
        post_part = Signal(range(out_beats_per_tile))  # output word within the tile
        post_beat = Signal(32)  # output word within the row segment
        bias_addr = Signal(range(2 * geo.bias_words))

        out_stage = self.out
        advance = ~out_stage.valid | out_stage.ready
        skip = post_beat >= post_chunk.out_beats  # tile padding beyond column N: never written
        need_residual = flags.residual & ~skip
        take = Signal()
        m.d.comb += take.eq(post_running & tiles.r_rdy & advance & (~need_residual | residual.r_rdy))
        enter = take & ~skip  # a word enters the post-processing pipeline
        part_last = post_part == out_beats_per_tile - 1
        m.d.comb += [
            tiles.r_en.eq(take & part_last),
            tile_popped.eq(take & part_last),
            residual.r_en.eq(take & need_residual),
            self.residual_released.eq(take & need_residual),
        ]
        for port in bias_r:
            m.d.comb += [port.addr.eq(bias_addr), port.en.eq(advance)]
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

        # Stage 1: the word's accumulators, residual word and strobes (bias arrives from memory).
        head = tiles.r_data
        lane_acc = [Signal(signed(acc_bits), name=f"post_acc_{e}") for e in range(post_lanes)]
        res1 = Signal(axi_bits)
        strb1 = Signal(geo.axi_bytes)
        gelu_cfg = hw.unit_formats().gelu_config()
        gelu_stages = gelu_latency(gelu_cfg)
        valid_p = [Signal(name=f"post_valid{s}") for s in range(1, 7 + gelu_stages)]
        full_strb = (1 << geo.axi_bytes) - 1
        partial_strb = Signal(geo.axi_bytes)
        m.d.comb += partial_strb.eq((Const(1, geo.axi_bytes + 1) << post_chunk.last_bytes) - 1)
        with m.If(advance):
            m.d.sync += valid_p[0].eq(enter)
            for e in range(post_lanes):
                choices = [head[((j * post_lanes + e) * acc_bits):((j * post_lanes + e + 1) * acc_bits)]
                           for j in range(out_beats_per_tile)]
                lane_value = choices[0]
                for j in range(1, out_beats_per_tile):
                    lane_value = Mux(post_part == j, choices[j], lane_value)
                m.d.sync += lane_acc[e].eq(lane_value)
            m.d.sync += [
                res1.eq(residual.r_data),
                strb1.eq(Mux(post_beat == post_chunk.out_beats - 1, partial_strb, full_strb)),
            ]

        def stage(name, shape, value):
            """A post-processing pipeline register: moves only when the pipeline advances."""
            reg = Signal(shape, name=name)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        def carry(reg, index):
            return stage(f"{reg.name}_s{index}", reg.shape(), reg)

        bias_word_out = Cat(*(port.data for port in bias_r))
        # Stage 2: + bias (exact: the compiler sized acc_bits for the biased sum).
        biased = []
        for e in range(post_lanes):
            bias_value = bias_word_out[e * geo.bias_bits:(e + 1) * geo.bias_bits].as_signed()
            total = (lane_acc[e] + Mux(flags.bias, bias_value, 0))[:acc_bits].as_signed()
            biased.append(stage(f"biased_{e}", signed(acc_bits), total))
        with m.If(advance):
            m.d.sync += [valid_p[i + 1].eq(valid_p[i]) for i in range(len(valid_p) - 1)]
        res2, strb2 = carry(res1, 2), carry(strb1, 2)

        # Stages 3-4: RQ1, ReLU1.
        cut1 = [stage(f"cut1_{e}", cut_layout(acc_bits), requantize_cut(m, biased[e], desc.rq1, name=f"rq1_{e}"))
                for e in range(post_lanes)]
        res3, strb3 = carry(res2, 3), carry(strb2, 3)
        y1 = []
        for e in range(post_lanes):
            fitted = requantize_fit(m, cut1[e], desc.rq1, name=f"rq1_{e}")
            y1.append(stage(f"y1_{e}", RESULT_SHAPE, Mux(flags.relu1 & fitted[-1], 0, fitted)))
        res4, strb4 = carry(res3, 4), carry(strb3, 4)

        # Stages 4a-4d: GELU of the low act_bits of y1, sign-extended (docs/isa.md §3.3, flag GELU).
        # Every word goes through these stages, so the pipeline's latency does not depend on the flag.
        gelu_pipe = Pipeline(m, "gelu")
        m.d.comb += gelu_pipe.advance.eq(advance)
        gelu_table = GeluTable(gelu_cfg)
        gelu_out = []
        for e in range(post_lanes):
            m.submodules[f"gelu_table{e}"] = rom = gelu_table.memory()  # one ROM per lane: one read port each
            gelu_out.append(gelu_lane(gelu_pipe, gelu_cfg, gelu_table, rom.read_port(domain="sync"),
                                      y1[e][:act_bits].as_signed()))
        y1 = [gelu_pipe.wire(RESULT_SHAPE, Mux(flags.gelu, g, gelu_pipe.delay(v, gelu_stages, name=f"y1_{e}_g")),
                             name=f"y1g_{e}")
              for e, (g, v) in enumerate(zip(gelu_out, y1))]
        res4 = gelu_pipe.delay(res4, gelu_stages, name="res4_g")
        strb4 = gelu_pipe.delay(strb4, gelu_stages, name="strb4_g")

        # Stage 5: residual sum s = (y1 << y_shift) + (r << r_shift), exact in acc_bits.
        y_shift = Mux(desc.y_shift > 63, 63, desc.y_shift)[:6]
        r_shift = Mux(desc.r_shift > 63, 63, desc.r_shift)[:6]
        sums = []
        for e in range(post_lanes):
            r = _extend(res4[e * act_bits:(e + 1) * act_bits], flags.r_unsigned)
            total = ((y1[e] << y_shift)[:acc_bits] + (r << r_shift)[:acc_bits])[:acc_bits].as_signed()
            sums.append(stage(f"sum_{e}", signed(acc_bits), total))
        y1_5 = [carry(v, 5) for v in y1]
        strb5 = carry(strb4, 5)

        # Stages 6-7: RQ2, ReLU2, choose, pack the output word.
        cut2 = [stage(f"cut2_{e}", cut_layout(acc_bits), requantize_cut(m, sums[e], desc.rq2, name=f"rq2_{e}"))
                for e in range(post_lanes)]
        y1_6 = [carry(v, 6) for v in y1_5]
        strb6 = carry(strb5, 6)
        outputs = []
        for e in range(post_lanes):
            fitted = requantize_fit(m, cut2[e], desc.rq2, name=f"rq2_{e}")
            y2 = Mux(flags.relu2 & fitted[-1], 0, fitted)
            outputs.append(Mux(flags.residual, y2, y1_6[e])[:act_bits])
        with m.If(advance):
            m.d.sync += [
                out_stage.valid.eq(valid_p[-1]),
                out_stage.payload.data.eq(Cat(*outputs)),
                out_stage.payload.strb.eq(strb6),
            ]

        # ------------------------------------------------------------------ start / done
        finishing = Signal()
        pipeline_empty = ~(Cat(*valid_p).any() | out_stage.valid)
        with m.If(self.start):
            m.d.sync += [
                act_slot.eq(0), act_word.eq(0), act_row_base.eq(0),
                fill_bank.eq(0), loaded.eq(0), *fill_reset,
                bias_slot.eq(0), bias_word.eq(0),
                issue_running.eq(1), bank.eq(0), row.eq(0), tile.eq(0), ktile.eq(0), row_base.eq(0),
                bypass_word.eq(0), bypass_sel.eq(0),
                weight_addr.eq(0), rows_ready.eq(0), tiles_owed.eq(0), *issue_chunk.reset(),
                post_running.eq(1), post_bank.eq(0), post_row.eq(0), post_tile.eq(0), post_part.eq(0),
                post_beat.eq(0), bias_addr.eq(0), *post_chunk.reset(),
                finishing.eq(1),
            ]
        with m.Elif(finishing & ~post_running & pipeline_empty):
            m.d.comb += self.done.eq(1)
            m.d.sync += finishing.eq(0)
        return m
