# SPDX-License-Identifier: Apache-2.0
"""The MAC array: ``lanes_in × lanes_out`` multipliers, an adder tree per output lane and its accumulators.

It takes one tile step per cycle — a ``lanes_in``-vector ``x`` and a ``lanes_in × lanes_out`` tile
``w`` of signed operands — and accumulates ``acc[o] += Σ_i x[i]·w[i][o]`` exactly (sums wrap in
``acc_bits``, which the compiler guarantees the true sum fits). Products are registered, the adder
tree registered every two levels. Whoever sequences tile steps (the LINEAR sequencer of
``rtl/compute_unit.py`` today, attention and convolution sequencers later) marks the first and last
step of each output tile; ``tile_done`` pulses when ``acc`` holds the finished tile.
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacArray", "MacColumn"]


class MacArray(wiring.Component):
    """``lanes_in × lanes_out`` MACs with ``operand_bits``-bit signed operands and ``acc_bits`` accumulators.

    Ports
    -----
    valid : In(1)
        ``x`` and ``w`` hold a tile step this cycle.
    first : In(1)
        The step is the first of its output tile: the accumulators restart from 0.
    last : In(1)
        The step is the last of its output tile: ``tile_done`` follows once it is accumulated.
    x : In(ArrayLayout(signed(operand_bits), lanes_in))
        The activation vector of the step.
    w : In(ArrayLayout(signed(operand_bits), lanes_in · lanes_out))
        The tile of the step, element ``(i, o)`` at index ``i·lanes_out + o``.
    acc : Out(ArrayLayout(signed(acc_bits), lanes_out))
        The accumulators.
    tile_done : Out(1)
        Pulse: ``acc`` holds a finished output tile (this cycle only; the next tile's first step overwrites it).
    """

    def __init__(self, *, lanes_in: int, lanes_out: int, operand_bits: int, acc_bits: int):
        for name, value in (("lanes_in", lanes_in), ("lanes_out", lanes_out), ("operand_bits", operand_bits),
                            ("acc_bits", acc_bits)):
            if not isinstance(value, int) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        self.lanes_in, self.lanes_out = lanes_in, lanes_out
        self.operand_bits, self.acc_bits = operand_bits, acc_bits
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "x": In(data.ArrayLayout(signed(operand_bits), lanes_in)),
            "w": In(data.ArrayLayout(signed(operand_bits), lanes_in * lanes_out)),
            "acc": Out(data.ArrayLayout(signed(acc_bits), lanes_out)),
            "tile_done": Out(1),
        })

    def tree_latency(self) -> int:
        """Cycles from a step's operands to its sum leaving the adder tree (products, then a register every two levels)."""
        levels = (self.lanes_in - 1).bit_length()
        return 1 + (levels + 1) // 2

    def elaborate(self, platform):
        m = Module()
        lanes_in, lanes_out = self.lanes_in, self.lanes_out

        # The control bits follow the operands through the products and the adder tree.
        valid_t, first_t, last_t = self.valid, self.first, self.last
        for stage in range(self.tree_latency()):
            delayed = tuple(Signal(name=f"{n}_{stage}") for n in ("valid", "first", "last"))
            m.d.sync += [a.eq(b) for a, b in zip(delayed, (valid_t, first_t, last_t))]
            valid_t, first_t, last_t = delayed

        # One column per output lane: identical modules, so Yosys synthesizes one and counts it lanes_out times.
        for o in range(lanes_out):
            column = MacColumn(lanes_in=lanes_in, operand_bits=self.operand_bits, acc_bits=self.acc_bits)
            m.submodules[f"column{o}"] = column
            m.d.comb += [column.accumulate.eq(valid_t), column.restart.eq(first_t), self.acc[o].eq(column.acc)]
            m.d.comb += [column.x[i].eq(self.x[i]) for i in range(lanes_in)]
            m.d.comb += [column.w[i].eq(self.w[i * lanes_out + o]) for i in range(lanes_in)]
        m.d.sync += self.tile_done.eq(valid_t & last_t)
        return m


class MacColumn(wiring.Component):
    """One output lane of the array: ``lanes_in`` products, their adder tree and the accumulator.

    Ports
    -----
    x : In(ArrayLayout(signed(operand_bits), lanes_in))
        The activation vector of the step.
    w : In(ArrayLayout(signed(operand_bits), lanes_in))
        This lane's column of the tile.
    accumulate : In(1)
        The sum leaving the tree this cycle belongs to a step (``MacArray.tree_latency`` cycles after it).
    restart : In(1)
        With ``accumulate``: that step starts its tile, so the accumulator restarts from 0.
    acc : Out(signed(acc_bits))
        The accumulator.
    """

    def __init__(self, *, lanes_in: int, operand_bits: int, acc_bits: int):
        self.lanes_in, self.operand_bits, self.acc_bits = lanes_in, operand_bits, acc_bits
        super().__init__({
            "x": In(data.ArrayLayout(signed(operand_bits), lanes_in)),
            "w": In(data.ArrayLayout(signed(operand_bits), lanes_in)),
            "accumulate": In(1),
            "restart": In(1),
            "acc": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes_in, acc_bits = self.lanes_in, self.acc_bits
        product_shape = signed(2 * self.operand_bits)
        products = [Signal(product_shape, name=f"p_{i}") for i in range(lanes_in)]
        m.d.sync += [products[i].eq(self.x[i] * self.w[i]) for i in range(lanes_in)]

        # Adder tree over lanes_in, a register every two levels; sums wrap in acc_bits (exact).
        sum_width = min(product_shape.width + (lanes_in - 1).bit_length(), acc_bits)
        terms, level = products, 0
        while len(terms) > 1:
            terms = [(terms[j] + terms[j + 1])[:sum_width].as_signed() if j + 1 < len(terms) else terms[j]
                     for j in range(0, len(terms), 2)]
            level += 1
            if level % 2 == 0 or len(terms) == 1:
                registers = [Signal(signed(sum_width), name=f"sum{level}_{j}") for j in range(len(terms))]
                m.d.sync += [reg.eq(term) for reg, term in zip(registers, terms)]
                terms = registers
        with m.If(self.accumulate):
            m.d.sync += self.acc.eq(Mux(self.restart, 0, self.acc) + terms[0])
        return m
