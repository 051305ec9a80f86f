# SPDX-License-Identifier: Apache-2.0
"""cocotb bench: Softmax and SoftmaxStats units against ``hwgen.golden.nonlinear``.

The pytest side builds a :class:`~hwgen.cosim.bundle.Bundle` and points ``HWGEN_TB_SOFTMAX`` at
a JSON plan::

    {"seed": 1,
     "units": [{"name": "sm16", "kind": "softmax" | "stats", "config": {...config_to_dict...},
                "lanes": 4, "vectors": "/tmp/.../sm16.npz", "idle_prob": 0.3,
                "backpressure_prob": 0.3, "full_rate": false}, ...]}

``vectors`` holds ``x`` (beats, lanes) raw in_fmt values and ``last`` (beats,) flags: lane k of
consecutive beats up to a ``last`` is one row.  Expected outputs come from the golden model
(:func:`~hwgen.golden.nonlinear.softmax` per element, with ``last``;
:func:`~hwgen.golden.nonlinear.softmax_stats` per row).  A ``full_rate`` unit runs without
stalls and must accept one beat per cycle and, once its first probability is out, emit one per
cycle.  Payloads are structs (lanes and a ``last`` bit), so the drivers move them as single
unsigned integers packed and unpacked here.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, with_timeout

from hwgen.cosim.streams import Scoreboard, StreamDriver, StreamMonitor, pack_lanes, unpack_lanes
from hwgen.cosim.streams import start_clock_and_reset
from hwgen.golden import nonlinear as nl

CYCLES_PER_BEAT_LIMIT = 20
CYCLE_MARGIN = 5000
DRAIN_CYCLES = 32


def row_groups(last: np.ndarray) -> list[slice]:
    """Beat ranges of consecutive rows (each ends at a ``last``)."""
    ends = np.flatnonzero(last) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return [slice(int(a), int(b)) for a, b in zip(starts, ends)]


def expected_probabilities(cfg, x: np.ndarray, last: np.ndarray) -> np.ndarray:
    """(beats, lanes) golden probabilities: rows of equal length are computed together."""
    out = np.zeros_like(x)
    groups: dict[int, list[slice]] = {}
    for rows in row_groups(last):
        groups.setdefault(rows.stop - rows.start, []).append(rows)
    for length, slices in groups.items():
        block = np.stack([x[s].T for s in slices])  # (rows, lanes, length)
        p = nl.softmax(cfg, block)
        for s, rows_p in zip(slices, p):
            out[s] = rows_p.T
    return out


def expected_stats(cfg, x: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, lanes) golden max and 1/sum."""
    tops, invs = [], []
    for rows in row_groups(last):
        top, inv = nl.softmax_stats(cfg, x[rows].T)
        tops.append(top)
        invs.append(inv)
    return np.array(tops), np.array(invs)


class SoftmaxCheck:
    def __init__(self, dut, unit: dict, seed: int):
        self.name, self.kind = unit["name"], unit["kind"]
        self.cfg = cfg = nl.config_from_dict(unit["config"])
        self.lanes = lanes = unit["lanes"]
        self.full_rate = unit["full_rate"]
        vectors = np.load(unit["vectors"])
        self.x, self.last = vectors["x"], vectors["last"]
        in_width = cfg.in_fmt.width
        self.beats = [[pack_lanes(row, in_width, cfg.in_fmt.signed) | int(end) << (lanes * in_width)]
                      for row, end in zip(self.x.tolist(), self.last.tolist())]
        if self.kind == "softmax":
            p = expected_probabilities(cfg, self.x, self.last)
            self.expected = [list(row) + [int(end)] for row, end in zip(p.tolist(), self.last.tolist())]
        else:
            top, inv = expected_stats(cfg, self.x, self.last)
            self.expected = [a + b for a, b in zip(top.tolist(), inv.tolist())]
        corrupt = os.environ.get("HWGEN_TB_SOFTMAX_CORRUPT", "")
        if corrupt.startswith(self.name + ":"):
            self.expected[int(corrupt.split(":")[1])][0] ^= 1
        self.driver = StreamDriver(dut, f"{self.name}__i", dut.clk, unit["idle_prob"],
                                   random.Random(f"{seed}:{self.name}:idle"), lanes=1, signed=False)
        self.monitor = StreamMonitor(dut, f"{self.name}__o", dut.clk, unit["backpressure_prob"],
                                     random.Random(f"{seed}:{self.name}:ready"), lanes=1, signed=False)
        self.scoreboard = Scoreboard(self.name)

    def unpack(self, packed: int) -> list[int]:
        cfg, lanes = self.cfg, self.lanes
        if self.kind == "softmax":
            width = cfg.out_fmt.width
            return unpack_lanes(packed, lanes, width, cfg.out_fmt.signed) + [packed >> (lanes * width) & 1]
        in_width, inv_width = cfg.in_fmt.width, cfg.inv_fmt.width
        top = unpack_lanes(packed, lanes, in_width, cfg.in_fmt.signed)
        inv = unpack_lanes(packed >> (lanes * in_width), lanes, inv_width, cfg.inv_fmt.signed)
        return top + inv

    def start(self) -> None:
        self.driver.send(self.beats)
        self.driver.start()
        self.monitor.start()

    async def run(self) -> None:
        wanted = len(self.expected)
        limit = len(self.beats) * CYCLES_PER_BEAT_LIMIT + CYCLE_MARGIN
        await with_timeout(self.monitor.wait_for(wanted), limit * 10, "ns")
        await ClockCycles(self.driver.clk, DRAIN_CYCLES)
        self.driver.stop()
        self.monitor.stop()

    def check(self) -> None:
        got = [self.unpack(beat[0]) for beat in self.monitor.beats]
        self.scoreboard.check(self.expected, got)
        if self.full_rate:
            for what, cycles in (("input", self.driver.transfer_cycles), ("output", self.monitor.transfer_cycles)):
                span = cycles[-1] - cycles[0] + 1
                assert span == len(cycles), (
                    f"{self.name}: {len(cycles)} {what} beats took {span} cycles, not one per cycle"
                )


@cocotb.test()
async def softmax_units_match_golden(dut):
    """Every unit's output equals the golden model beat for beat, under stalls; full-rate units
    run one element per cycle per lane."""
    with open(os.environ["HWGEN_TB_SOFTMAX"]) as f:
        plan = json.load(f)
    await start_clock_and_reset(dut)
    checks = [SoftmaxCheck(dut, unit, plan["seed"]) for unit in plan["units"]]
    for check in checks:
        check.start()
    for task in [cocotb.start_soon(check.run()) for check in checks]:
        await task
    for check in checks:
        check.check()
