# SPDX-License-Identifier: Apache-2.0
"""The MAC array (rtl/mac_array.py) against NumPy, and its columns as one module for Yosys."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hwgen import toolchain
from hwgen.rtl.mac_array import MacArray


def _wrap(values: np.ndarray, bits: int) -> np.ndarray:
    low = values % (1 << bits)
    return np.where(low >= 1 << (bits - 1), low - (1 << bits), low)


@pytest.mark.parametrize("lanes_in, lanes_out, acc_bits", [(1, 1, 20), (3, 2, 24), (8, 4, 22), (16, 3, 32)])
def test_mac_array_accumulates_tiles_exactly(lanes_in, lanes_out, acc_bits):
    """Random tiles of random lengths, with idle cycles between steps: acc at every tile_done equals Σ x·w (wrapped)."""
    rng = np.random.default_rng(lanes_in * 100 + lanes_out)
    array = MacArray(lanes_in=lanes_in, lanes_out=lanes_out, operand_bits=8, acc_bits=acc_bits)
    tiles = []
    for _ in range(12):
        steps = int(rng.integers(1, 6))
        x = rng.integers(-128, 128, size=(steps, lanes_in))
        w = rng.integers(-128, 128, size=(steps, lanes_in, lanes_out))
        tiles.append((x, w))
    expected = [_wrap(np.einsum("si,sio->o", x, w), acc_bits).tolist() for x, w in tiles]
    got = []

    async def drive(ctx):
        for x, w in tiles:
            for s in range(len(x)):
                while rng.random() < 0.3:  # idle cycles between steps
                    ctx.set(array.valid, 0)
                    await ctx.tick()
                ctx.set(array.valid, 1)
                ctx.set(array.first, s == 0)
                ctx.set(array.last, s == len(x) - 1)
                for i in range(lanes_in):
                    ctx.set(array.x[i], int(x[s, i]))
                    for o in range(lanes_out):
                        ctx.set(array.w[i * lanes_out + o], int(w[s, i, o]))
                await ctx.tick()
        ctx.set(array.valid, 0)

    async def watch(ctx):
        while True:
            await ctx.tick()
            if ctx.get(array.tile_done):
                got.append([ctx.get(array.acc[o]) for o in range(lanes_out)])

    sim = Simulator(array)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run_until(1e-8 * (40 * 12 * 6 + 20))
    assert got == expected


def test_mac_columns_are_one_module_for_yosys():
    """The lanes_out columns are equal modules: the Yosys input holds one, and counts every instance."""
    array = MacArray(lanes_in=4, lanes_out=6, operand_bits=8, acc_bits=24)
    text = verilog.convert(array, name="mac_array", emit_src=False)
    deduped, merged = toolchain.dedup_modules(text, "mac_array")
    assert merged == 5
    assert deduped.count("\nmodule ") + deduped.startswith("module ") == 2
