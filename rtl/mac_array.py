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

__all__ = ["MacArray"]


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

    def elaborate(self, platform):
        m = Module()
        lanes_in, lanes_out, acc_bits = self.lanes_in, self.lanes_out, self.acc_bits

        # Products, registered.
        product_shape = signed(2 * self.operand_bits)
        products = [[Signal(product_shape, name=f"p_{i}_{o}") for o in range(lanes_out)] for i in range(lanes_in)]
        for i in range(lanes_in):
            for o in range(lanes_out):
                m.d.sync += products[i][o].eq(self.x[i] * self.w[i * lanes_out + o])
        valid2, first2, last2 = Signal(), Signal(), Signal()
        m.d.sync += [valid2.eq(self.valid), first2.eq(self.first), last2.eq(self.last)]

        # Adder tree over lanes_in, a register every two levels; sums wrap in acc_bits (exact).
        sum_width = min(product_shape.width + (lanes_in - 1).bit_length(), acc_bits)
        ctrl = (valid2, first2, last2)
        partial = [[products[i][o] for i in range(lanes_in)] for o in range(lanes_out)]
        level = 0
        while len(partial[0]) > 1:
            partial = [[(terms[j] + terms[j + 1])[:sum_width].as_signed() if j + 1 < len(terms) else terms[j]
                        for j in range(0, len(terms), 2)] for terms in partial]
            level += 1
            if level % 2 == 0 or len(partial[0]) == 1:
                registered = []
                for o, terms in enumerate(partial):
                    regs = [Signal(signed(sum_width), name=f"sum{level}_{o}_{j}") for j in range(len(terms))]
                    m.d.sync += [reg.eq(term) for reg, term in zip(regs, terms)]
                    registered.append(regs)
                partial = registered
                delayed = tuple(Signal(name=f"{n}_sum{level}") for n in ("valid", "first", "last"))
                m.d.sync += [a.eq(b) for a, b in zip(delayed, ctrl)]
                ctrl = delayed
        tree_out = [partial[o][0] for o in range(lanes_out)]
        valid_t, first_t, last_t = ctrl

        # Accumulate; the tile is done the cycle after its last step.
        for o in range(lanes_out):
            with m.If(valid_t):
                m.d.sync += self.acc[o].eq(Mux(first_t, 0, self.acc[o]) + tree_out[o])
        m.d.sync += self.tile_done.eq(valid_t & last_t)
        return m
