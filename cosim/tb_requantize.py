# SPDX-License-Identifier: Apache-2.0
"""cocotb bench: Requantizers (alone or in a Bundle) against the ``hwgen.qfx`` golden model.

The pytest side writes a JSON plan and points ``HWGEN_TB_REQUANTIZE`` at it::

    {"seed": 1, "latency": 2,
     "units": [{"name": "rq0", "input": "rq0__i", "output": "rq0__o", "lanes": 4,
                "in_fmt": "fixed<32,12>", "out_fmt": "fixed<16,6,RND_CONV,SAT>",
                "vectors": "/tmp/.../rq0.npy", "idle_prob": 0.3, "backpressure_prob": 0.3,
                "full_rate": false}, ...]}

``vectors`` is an int64 ``.npy`` of shape (beats, lanes) holding raw ``in_fmt`` values.  The
expected output is ``out_fmt.cast(vectors, in_fmt)`` — the golden model is the reference model.
A unit with ``full_rate`` must run without stalls (both probabilities 0): the bench then asserts
that N beats leave in N + latency cycles.  ``HWGEN_TB_REQUANTIZE_CORRUPT=<name>:<beat>`` flips one
expected LSB, which must make the check fail (the test of the test).  With
``HWGEN_TB_REQUANTIZE_REPORT`` set, the bench writes there, as JSON, each unit's beats and the
cycles from its first input to its last output, plus the cycles simulated and the wall time.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from hwgen.cosim.streams import Scoreboard, StreamDriver, StreamMonitor
from hwgen.qfx import QFmt

# Cycles a unit may take per beat before the bench gives up (stalls included), plus a margin.
CYCLES_PER_BEAT_LIMIT = 20
CYCLE_MARGIN = 200
# Cycles to keep watching after the last expected beat, so an extra beat shows up as a failure.
DRAIN_CYCLES = 16


def load_plan() -> dict:
    with open(os.environ["HWGEN_TB_REQUANTIZE"]) as f:
        return json.load(f)


async def start_clock_and_reset(dut, cycles: int = 2) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


class RequantizerCheck:
    """Driver, monitor, golden reference and scoreboard of one Requantizer in the toplevel."""

    def __init__(self, dut, unit: dict, seed: int):
        self.name = unit["name"]
        self.in_fmt, self.out_fmt = QFmt.parse(unit["in_fmt"]), QFmt.parse(unit["out_fmt"])
        self.full_rate = unit.get("full_rate", False)
        self.vectors = np.load(unit["vectors"])
        self.expected = self.out_fmt.cast(self.vectors, self.in_fmt)
        corrupt = os.environ.get("HWGEN_TB_REQUANTIZE_CORRUPT", "")
        if corrupt.startswith(self.name + ":"):
            beat = int(corrupt.split(":")[1])
            self.expected[beat, 0] ^= 1
        lanes = unit["lanes"]
        # One RNG per unit and role: adding a unit never changes another unit's stall pattern.
        self.driver = StreamDriver(dut, unit["input"], dut.clk, unit["idle_prob"],
                                   random.Random(f"{seed}:{self.name}:idle"), lanes=lanes,
                                   signed=self.in_fmt.signed)
        self.monitor = StreamMonitor(dut, unit["output"], dut.clk, unit["backpressure_prob"],
                                     random.Random(f"{seed}:{self.name}:ready"), lanes=lanes,
                                     signed=self.out_fmt.signed)
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

    def check(self, latency: int) -> None:
        self.scoreboard.check(self.expected.tolist(), self.monitor.beats)
        if self.full_rate:
            beats = len(self.vectors)
            first_in, last_out = self.driver.transfer_cycles[0], self.monitor.transfer_cycles[-1]
            assert last_out - first_in + 1 == beats + latency, (
                f"{self.name}: {beats} beats took {last_out - first_in + 1} cycles from first input "
                f"to last output, expected {beats} + latency {latency}"
            )


@cocotb.test()
async def requantizers_match_golden(dut):
    """Every unit's output equals the golden cast of its vectors, beat for beat, under stalls."""
    plan = load_plan()
    await start_clock_and_reset(dut)
    checks = [RequantizerCheck(dut, unit, plan["seed"]) for unit in plan["units"]]
    for check in checks:
        check.start()
    started = time.perf_counter()
    runs = [cocotb.start_soon(check.run()) for check in checks]
    for run in runs:
        await run
    wall = time.perf_counter() - started
    for check in checks:
        check.check(plan["latency"])
    if os.environ.get("HWGEN_TB_REQUANTIZE_REPORT"):
        write_report(os.environ["HWGEN_TB_REQUANTIZE_REPORT"], checks, wall)


def write_report(path: str, checks: list[RequantizerCheck], wall_seconds: float) -> None:
    units = {
        check.name: {
            "beats": len(check.vectors),
            "cycles": check.monitor.transfer_cycles[-1] - check.driver.transfer_cycles[0] + 1,
        }
        for check in checks
    }
    cycles = max(check.monitor.cycle for check in checks)
    with open(path, "w") as f:
        json.dump({"units": units, "cycles": cycles, "wall_seconds": wall_seconds}, f, indent=1)


@cocotb.test()
async def beat_count_mismatch_fails(dut):
    """The scoreboard rejects a missing beat and an extra beat, not only a wrong value."""
    plan = load_plan()
    await start_clock_and_reset(dut)
    check = RequantizerCheck(dut, plan["units"][0], plan["seed"])
    check.vectors = check.vectors[:3]
    check.expected = check.expected[:3]
    check.start()
    await check.run()
    check.check(plan["latency"])  # the real comparison passes...
    for wrong in (check.expected[:2], np.concatenate([check.expected, check.expected[:1]])):
        try:
            check.scoreboard.check(wrong.tolist(), check.monitor.beats)
        except AssertionError as error:
            assert "beats, expected" in str(error), str(error)
        else:
            raise AssertionError(f"a scoreboard expecting {len(wrong)} beats accepted 3")
