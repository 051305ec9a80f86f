# SPDX-License-Identifier: Apache-2.0
"""What the LINEAR datapath derives from :class:`HwParams`: buffer shapes and beat counts
(:class:`Geometry`), and the walk over a descriptor's weight chunks (:class:`ChunkWalker`) that the
LINEAR engine's streams and the compute unit's sequencer each step through.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Mux, Signal

from hwgen.hwparams import HwParams

__all__ = ["PIECE_BEATS", "Geometry", "ChunkWalker", "wrap", "extend"]

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

    @property
    def window_bits(self) -> tuple[int, int] | None:
        """CONV's window mode (docs/isa.md §8.2) addresses the ring by AXI word: (bits of ``act_slots``, bits of
        the ring's AXI words) when both are powers of two, else ``None`` (no window mode)."""
        slots, ring = self.act_slots, self.ring_words * self.act_slots
        if slots & (slots - 1) or ring & (ring - 1):
            return None
        return slots.bit_length() - 1, ring.bit_length() - 1

    tile_fifo_depth = 8  # finished tiles waiting for the post-processing lanes


class ChunkWalker:
    """Geometry of the current weight chunk of a LINEAR descriptor, stepped chunk by chunk.

    ``tiles`` (output tiles in the chunk), ``cols`` (output columns), ``out_beats`` (AXI words of
    one output row segment), ``last_bytes`` (valid bytes of the segment's last word) and ``last``
    (final chunk) are combinational from the registered chunk start. ``fixed_cols``, when given and
    not 0, is every chunk's column count (the attention engine's heads: each chunk a head of
    ``S`` or ``d_head`` columns).
    """

    def __init__(self, m, desc, geometry: Geometry, name: str, fixed_cols=None):
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
            self.cols.eq(Mux(cols_left < chunk_cols, cols_left, chunk_cols) if fixed_cols is None else
                         Mux(fixed_cols != 0, fixed_cols, Mux(cols_left < chunk_cols, cols_left, chunk_cols))),
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


def wrap(value, modulus):
    """``value mod modulus`` for ``0 ≤ value < 2·modulus``."""
    return Mux(value >= modulus, value - modulus, value)


def extend(bits, is_unsigned):
    """A container's bits as a signed value one bit wider: zero- or sign-extended per the flag."""
    return Cat(bits, Mux(is_unsigned, 0, bits[-1])).as_signed()
