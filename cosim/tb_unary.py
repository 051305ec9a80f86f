# SPDX-License-Identifier: Apache-2.0
"""cocotb bench: element-wise nonlinear units (exp, reciprocal, rsqrt, GELU) against their golden models.

The pytest side builds a :class:`~hwgen.cosim.bundle.Bundle` of units, writes a JSON plan and
points ``HWGEN_TB_UNARY`` at it::

    {"seed": 1,
     "units": [{"name": "exp16", "function": "exp", "config": {...config_to_dict...},
                "lanes": 8, "latency": 5, "vectors": "/tmp/.../exp16.npy",
                "idle_prob": 0.3, "backpressure_prob": 0.3, "full_rate": false}, ...]}

``vectors`` is an int64 ``.npy`` of shape (beats, lanes) of raw ``in_fmt`` values.  The expected
output is the golden function of ``hwgen.golden.nonlinear`` on the vectors — the golden model
is the reference model.  A ``full_rate`` unit runs with no idle and no backpressure, and the
bench asserts that its N beats leave N + latency cycles after the first one enters.
``HWGEN_TB_UNARY_CORRUPT=<name>:<beat>`` flips one expected LSB, which must fail the run.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from hwgen.cosim.streams import Scoreboard, StreamDriver, StreamMonitor
from hwgen.golden import nonlinear as nl

FUNCTIONS = {"exp": nl.exp, "reciprocal": nl.reciprocal, "rsqrt": nl.rsqrt, "gelu": nl.gelu}
CYCLES_PER_BEAT_LIMIT = 20
CYCLE_MARGIN = 200
DRAIN_CYCLES = 16


async def start_clock_and_reset(dut, cycles: int = 2) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


class UnaryCheck:
    """Driver, monitor, golden reference and scoreboard of one unit in the bundle."""

    def __init__(self, dut, unit: dict, seed: int):
        self.name = unit["name"]
        cfg = nl.config_from_dict(unit["config"])
        self.vectors = np.load(unit["vectors"])
        self.expected = FUNCTIONS[unit["function"]](cfg, self.vectors)
        corrupt = os.environ.get("HWGEN_TB_UNARY_CORRUPT", "")
        if corrupt.startswith(self.name + ":"):
            self.expected[int(corrupt.split(":")[1]), 0] ^= 1
        self.latency, self.full_rate = unit["latency"], unit["full_rate"]
        lanes = unit["lanes"]
        self.driver = StreamDriver(dut, f"{self.name}__i", dut.clk, unit["idle_prob"],
                                   random.Random(f"{seed}:{self.name}:idle"), lanes=lanes,
                                   signed=cfg.in_fmt.signed)
        self.monitor = StreamMonitor(dut, f"{self.name}__o", dut.clk, unit["backpressure_prob"],
                                     random.Random(f"{seed}:{self.name}:ready"), lanes=lanes,
                                     signed=cfg.out_fmt.signed)
        self.scoreboard = Scoreboard(self.name)

    def start(self) -> None:
        self.driver.send(self.vectors.tolist())
        self.driver.start()
        self.monitor.start()

    async def run(self) -> None:
        beats = len(self.vectors)
        limit = beats * CYCLES_PER_BEAT_LIMIT + CYCLE_MARGIN
        await with_timeout(self.monitor.wait_for(beats), limit * 10, "ns")
        await ClockCycles(self.driver.clk, DRAIN_CYCLES)
        self.driver.stop()
        self.monitor.stop()

    def check(self) -> None:
        self.scoreboard.check(self.expected.tolist(), self.monitor.beats)
        if self.full_rate:
            beats = len(self.vectors)
            first_in, last_out = self.driver.transfer_cycles[0], self.monitor.transfer_cycles[-1]
            assert last_out - first_in + 1 == beats + self.latency, (
                f"{self.name}: {beats} beats took {last_out - first_in + 1} cycles from first input "
                f"to last output, expected {beats} + latency {self.latency}"
            )


@cocotb.test()
async def units_match_golden(dut):
    """Every unit's output equals its golden function of the vectors, beat for beat, under stalls."""
    with open(os.environ["HWGEN_TB_UNARY"]) as f:
        plan = json.load(f)
    await start_clock_and_reset(dut)
    checks = [UnaryCheck(dut, unit, plan["seed"]) for unit in plan["units"]]
    for check in checks:
        check.start()
    for task in [cocotb.start_soon(check.run()) for check in checks]:
        await task
    for check in checks:
        check.check()
