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

import cocotb
import numpy as np

from hwgen.cosim.streams import LaneUnitCheck, start_clock_and_reset
from hwgen.golden import nonlinear as nl

FUNCTIONS = {"exp": nl.exp, "reciprocal": nl.reciprocal, "rsqrt": nl.rsqrt, "gelu": nl.gelu}


class UnaryCheck(LaneUnitCheck):
    """One unit of the bundle: its golden function of ``hwgen.golden.nonlinear`` is the reference."""

    def __init__(self, dut, unit: dict, seed: int):
        cfg = nl.config_from_dict(unit["config"])
        expected = FUNCTIONS[unit["function"]](cfg, np.load(unit["vectors"]))
        super().__init__(dut, unit, seed, input=f"{unit['name']}__i", output=f"{unit['name']}__o", expected=expected,
                         in_signed=cfg.in_fmt.signed, out_signed=cfg.out_fmt.signed, latency=unit["latency"],
                         corrupt=self.corruption("HWGEN_TB_UNARY_CORRUPT"))


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
