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
import time

import cocotb
import numpy as np

from hwgen.cosim.streams import LaneUnitCheck, start_clock_and_reset
from hwgen.qfx import QFmt


def load_plan() -> dict:
    with open(os.environ["HWGEN_TB_REQUANTIZE"]) as f:
        return json.load(f)


class RequantizerCheck(LaneUnitCheck):
    """One Requantizer of the toplevel: ``out_fmt.cast(vectors, in_fmt)`` is the reference."""

    def __init__(self, dut, unit: dict, seed: int, latency: int):
        in_fmt, out_fmt = QFmt.parse(unit["in_fmt"]), QFmt.parse(unit["out_fmt"])
        expected = out_fmt.cast(np.load(unit["vectors"]), in_fmt)
        super().__init__(dut, unit, seed, input=unit["input"], output=unit["output"], expected=expected,
                         in_signed=in_fmt.signed, out_signed=out_fmt.signed, latency=latency,
                         corrupt=self.corruption("HWGEN_TB_REQUANTIZE_CORRUPT"))


@cocotb.test()
async def requantizers_match_golden(dut):
    """Every unit's output equals the golden cast of its vectors, beat for beat, under stalls."""
    plan = load_plan()
    await start_clock_and_reset(dut)
    checks = [RequantizerCheck(dut, unit, plan["seed"], plan["latency"]) for unit in plan["units"]]
    for check in checks:
        check.start()
    started = time.perf_counter()
    runs = [cocotb.start_soon(check.run()) for check in checks]
    for run in runs:
        await run
    wall = time.perf_counter() - started
    for check in checks:
        check.check()
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
    check = RequantizerCheck(dut, plan["units"][0], plan["seed"], plan["latency"])
    check.vectors = check.vectors[:3]
    check.expected = check.expected[:3]
    check.start()
    await check.run()
    check.check()  # the real comparison passes...
    for wrong in (check.expected[:2], np.concatenate([check.expected, check.expected[:1]])):
        try:
            check.scoreboard.check(wrong.tolist(), check.monitor.beats)
        except AssertionError as error:
            assert "beats, expected" in str(error), str(error)
        else:
            raise AssertionError(f"a scoreboard expecting {len(wrong)} beats accepted 3")
