# SPDX-License-Identifier: Apache-2.0
"""cocotb bench: LayerNorm units against ``hwgen.golden.nonlinear.layernorm``.

The pytest side builds a :class:`~hwgen.cosim.bundle.Bundle` and points ``HWGEN_TB_LAYERNORM``
at a JSON plan::

    {"seed": 1,
     "units": [{"name": "ln16", "config": {...config_to_dict...}, "lanes": 4,
                "vectors": "/tmp/.../ln16.npz", "idle_prob": 0.3, "backpressure_prob": 0.3,
                "full_rate": false}, ...]}

``vectors`` holds ``x`` (rows, n) for each row length as ``x<n>`` with its ``gamma<n>`` and
``beta<n>`` (n,).  Rows stream as beats of ``lanes`` elements (``last`` on a row's final beat; a
row whose length is not a multiple of ``lanes`` ends in a partial beat, its ``mask`` clear and its
padding lanes holding ±max, whose outputs must be 0), γ/β beats are replayed for every row on the
``affine`` port (with their own random idle), and the output must equal the golden LayerNorm beat
for beat.  A ``full_rate`` unit runs without stalls and must move one beat per cycle in and out.
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


class LayerNormCheck:
    def __init__(self, dut, unit: dict, seed: int):
        self.name = name = unit["name"]
        self.cfg = cfg = nl.config_from_dict(unit["config"])
        self.lanes = lanes = unit["lanes"]
        self.full_rate = unit["full_rate"]
        vectors = np.load(unit["vectors"])
        lengths = sorted(int(key[1:]) for key in vectors.files if key.startswith("x"))
        fmt_in, fmt_g, fmt_b, fmt_out = cfg.in_fmt, cfg.gamma_fmt, cfg.beta_fmt, cfg.out_fmt
        self.beats, self.affine, self.expected = [], [], []
        # A row's last beat may be partial: its padding lanes carry junk (here: ±max, γ and β
        # random) that must not reach the sums, and their outputs are 0.
        junk = random.Random(f"{seed}:{name}:padding")
        for n in lengths:
            x, gamma, beta = vectors[f"x{n}"], vectors[f"gamma{n}"], vectors[f"beta{n}"]
            y = nl.layernorm(cfg, x, gamma, beta)
            for row, out in zip(x.tolist(), y.tolist()):
                for k in range(0, n, lanes):
                    end = int(k + lanes >= n)
                    used = min(lanes, n - k)
                    pad = lanes - used
                    xs = row[k:k + used] + [junk.choice((fmt_in.min_raw, fmt_in.max_raw)) for _ in range(pad)]
                    gs = gamma[k:k + used].tolist() + [junk.randint(fmt_g.min_raw, fmt_g.max_raw) for _ in range(pad)]
                    bs = beta[k:k + used].tolist() + [junk.randint(fmt_b.min_raw, fmt_b.max_raw) for _ in range(pad)]
                    mask = (1 << used) - 1
                    self.beats.append([pack_lanes(xs, fmt_in.width, fmt_in.signed)
                                       | end << (lanes * fmt_in.width) | mask << (lanes * fmt_in.width + 1)])
                    self.affine.append([pack_lanes(gs, fmt_g.width, fmt_g.signed)
                                        | pack_lanes(bs, fmt_b.width, fmt_b.signed) << (lanes * fmt_g.width)])
                    self.expected.append(out[k:k + used] + [0] * pad + [end])
        corrupt = os.environ.get("HWGEN_TB_LAYERNORM_CORRUPT", "")
        if corrupt.startswith(name + ":"):
            self.expected[int(corrupt.split(":")[1])][0] ^= 1
        idle, bp = unit["idle_prob"], unit["backpressure_prob"]
        self.driver = StreamDriver(dut, f"{name}__i", dut.clk, idle, random.Random(f"{seed}:{name}:idle"),
                                   lanes=1, signed=False)
        self.affine_driver = StreamDriver(dut, f"{name}__affine", dut.clk, idle,
                                          random.Random(f"{seed}:{name}:affine"), lanes=1, signed=False)
        self.monitor = StreamMonitor(dut, f"{name}__o", dut.clk, bp, random.Random(f"{seed}:{name}:ready"),
                                     lanes=1, signed=False)
        self.scoreboard = Scoreboard(name)

    def unpack(self, packed: int) -> list[int]:
        width = self.cfg.out_fmt.width
        return unpack_lanes(packed, self.lanes, width, self.cfg.out_fmt.signed) + [packed >> (self.lanes * width) & 1]

    def start(self) -> None:
        self.driver.send(self.beats)
        self.affine_driver.send(self.affine)
        for part in (self.driver, self.affine_driver, self.monitor):
            part.start()

    async def run(self) -> None:
        limit = len(self.beats) * CYCLES_PER_BEAT_LIMIT + CYCLE_MARGIN
        await with_timeout(self.monitor.wait_for(len(self.expected)), limit * 10, "ns")
        await ClockCycles(self.driver.clk, DRAIN_CYCLES)
        for part in (self.driver, self.affine_driver, self.monitor):
            part.stop()

    def check(self) -> None:
        self.scoreboard.check(self.expected, [self.unpack(beat[0]) for beat in self.monitor.beats])
        if self.full_rate:
            for what, cycles in (("input", self.driver.transfer_cycles), ("output", self.monitor.transfer_cycles)):
                span = cycles[-1] - cycles[0] + 1
                assert span == len(cycles), f"{self.name}: {len(cycles)} {what} beats took {span} cycles"


@cocotb.test()
async def layernorm_units_match_golden(dut):
    """Every unit's output equals the golden LayerNorm beat for beat, under stalls; full-rate
    units move one beat per cycle."""
    with open(os.environ["HWGEN_TB_LAYERNORM"]) as f:
        plan = json.load(f)
    await start_clock_and_reset(dut)
    checks = [LayerNormCheck(dut, unit, plan["seed"]) for unit in plan["units"]]
    for check in checks:
        check.start()
    for task in [cocotb.start_soon(check.run()) for check in checks]:
        await task
    for check in checks:
        check.check()
