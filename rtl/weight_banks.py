# SPDX-License-Identifier: Apache-2.0
"""The weight and bias buffers: two banks each (ping-pong), filled from tagged read beats, read a tile per cycle.

A chunk (docs/isa.md §3.4) loads into one bank while the other is read. A bank row is one tile of
``act_bytes`` containers (``tile_words`` AXI words side by side, read in one cycle); a weight tile,
``slots_per_row`` times smaller, takes one byte slot of every container. An activation operand
(``B_ROWMAJOR`` K×N rows, ``B_TRANSPOSED`` N×K rows) fills whole containers, a row or a column of
tiles at a time. The bias buffer holds the loaded chunks' bias entries, two banks like the weights.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .bank import Bank
from .descriptor import Tag
from .engine import fill_layout
from .geometry import Geometry, extend

__all__ = ["WeightBanks"]


class WeightBanks(wiring.Component):
    """Weight tiles (or an activation operand's tiles) and bias entries of two chunks.

    Ports
    -----
    start : In(1)
        Pulse: a new descriptor; both banks are empty and filling restarts at bank 0.
    b_rowmajor : In(1)
        The chunks are an activation operand ``B`` of K rows (each fill command one row's chunk segment).
    b_transposed : In(1)
        The chunks are an activation operand ``Bᵀ`` of N rows (each fill command one row of K elements).
    w_unsigned : In(1)
        Tile elements are unsigned.
    k_tiles : In(16)
        k-tiles per output tile: bank rows between an activation operand's tile rows.
    fill : In(stream)
        Read beats (always taken); this buffer stores ``BIAS``, ``WEIGHT`` and ``WEIGHT_END`` beats.
    loaded : Out(2)
        Bit ``b``: bank ``b`` holds a complete chunk not yet released.
    release : In(1)
        Pulse: the reader is done with the chunk of bank ``read_bank``.
    read_bank : In(1)
        The bank ``read_tile`` reads from.
    read_tile : In(16)
        Tile to read next cycle: a weight tile's index in its chunk, or an activation operand's bank row.
    tile : Out(ArrayLayout(signed(act_bits + 1), lanes_in · lanes_out))
        The tile addressed the cycle before, extended per ``w_unsigned``, element ``(i, o)`` at ``i·lanes_out + o``.
    bias_addr : In(range(2 · bias_words))
        Bias word to read (bank 1 starts at ``bias_words``).
    bias_en : In(1)
        Read enable of the bias port (``bias`` holds while low).
    bias : Out(post_lanes · bias_bits)
        The bias word addressed at the last enabled cycle.
    """

    def __init__(self, geometry: Geometry):
        self.geometry = geo = geometry
        hw = geo.hw
        super().__init__({
            "start": In(1),
            "b_rowmajor": In(1),
            "b_transposed": In(1),
            "w_unsigned": In(1),
            "k_tiles": In(16),
            "fill": In(stream.Signature(fill_layout(geo.axi_bits), always_ready=True)),
            "loaded": Out(2),
            "release": In(1),
            "read_bank": In(1),
            "read_tile": In(16),
            "tile": Out(data.ArrayLayout(signed(hw.act_bits + 1), hw.lanes_in * hw.lanes_out)),
            "bias_addr": In(range(2 * geo.bias_words)),
            "bias_en": In(1),
            "bias": Out(geo.post_lanes * geo.bias_bits),
        })

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        hw = geo.hw
        lanes_in, lanes_out, act_bits, weight_bits = hw.lanes_in, hw.lanes_out, hw.act_bits, hw.weight_bits
        slots, rows_per_bank = geo.slots_per_row, geo.bank_rows
        slot_shift = slots.bit_length() - 1

        weight_banks, bias_banks = [], []
        for i in range(geo.tile_words):
            m.submodules[f"weights{i}"] = bank = Bank(width=geo.axi_bits, depth=2 * rows_per_bank, granularity=weight_bits)
            weight_banks.append(bank)
        for i in range(geo.bias_slots):
            m.submodules[f"bias{i}"] = bank = Bank(width=geo.axi_bits, depth=2 * geo.bias_words)
            bias_banks.append(bank)
        weight_w = [bank.write for bank in weight_banks]
        bias_w = [bank.write for bank in bias_banks]
        weight_r = [bank.read for bank in weight_banks]
        bias_r = [bank.read for bank in bias_banks]

        # ------------------------------------------------------------------ fill
        beat = self.fill.payload
        arriving = self.fill.valid
        fill_bank = Signal()
        bias_slot = Signal(range(geo.bias_slots))
        bias_word = Signal(range(2 * geo.bias_words))
        is_weight = arriving & ((beat.tag == Tag.WEIGHT) | (beat.tag == Tag.WEIGHT_END))
        is_bias = arriving & (beat.tag == Tag.BIAS)
        b_rowmajor, b_transposed = self.b_rowmajor, self.b_transposed
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
            element = beat.data[(i_row % per_word) * act_bits:][:act_bits]
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
                m.d.sync += [b_col.eq(0), b_tile_row.eq(b_tile_row + self.k_tiles)]
            with m.Else():
                m.d.sync += b_col.eq(b_col + 1)
        with m.Elif(is_weight & b_transposed):
            with m.If(beat.last):
                m.d.sync += [c_kt.eq(0), c_block.eq(0)]
                with m.If(c_o == lanes_out - 1):
                    m.d.sync += [c_o.eq(0), c_tile_row.eq(c_tile_row + self.k_tiles)]
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

        for b in range(2):
            with m.If(chunk_loaded & (fill_bank == b)):
                m.d.sync += self.loaded[b].eq(1)
            with m.Elif(self.release & (self.read_bank == b)):
                m.d.sync += self.loaded[b].eq(0)
        with m.If(self.start):
            m.d.sync += [fill_bank.eq(0), self.loaded.eq(0), *fill_reset, bias_slot.eq(0), bias_word.eq(0)]

        # ------------------------------------------------------------------ read: a tile per cycle
        for port in weight_r:
            m.d.comb += port.addr.eq(Mux(self.read_bank, rows_per_bank, 0)
                                     + Mux(b_operand, self.read_tile, self.read_tile >> slot_shift))
        # Slot of the weight tile in its bank row, with the data it selects.
        slot1 = Signal(max(1, slot_shift))
        if slot_shift:
            m.d.sync += slot1.eq(self.read_tile[:slot_shift])
        tile_word = Cat(*(port.data for port in weight_r))
        w_unsigned = self.w_unsigned
        for i in range(lanes_in):
            for o in range(lanes_out):
                container = tile_word[(i * lanes_out + o) * act_bits:][:act_bits]
                if slots == 1:
                    w = extend(container, w_unsigned)
                else:
                    w_slot = container[:weight_bits]
                    for s_ in range(1, slots):
                        w_slot = Mux(slot1 == s_, container[s_ * weight_bits:][:weight_bits], w_slot)
                    w = Mux(b_operand, extend(container, w_unsigned), extend(w_slot, w_unsigned))
                m.d.comb += self.tile[i * lanes_out + o].eq(w)

        for port in bias_r:
            m.d.comb += [port.addr.eq(self.bias_addr), port.en.eq(self.bias_en)]
        m.d.comb += self.bias.eq(Cat(*(port.data for port in bias_r)))
        return m
