# SPDX-License-Identifier: Apache-2.0
"""Running element-wise nonlinear units three ways: RTL in Verilator (one Bundle build per test),
HLS in g++ (one binary per test), both compared with the golden model as int64 raw values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from hwgen import toolchain
from hwgen.cosim.bundle import Bundle
from hwgen.golden import nonlinear as nl
from hwgen.hls import CSim

STALL_PROB = 0.3


@dataclass
class UnaryCase:
    """One unit configuration in a bundle: its name, config, lanes and raw input values."""

    name: str
    cfg: object
    lanes: int
    values: np.ndarray
    full_rate: bool = False

    def beats(self) -> np.ndarray:
        """The values as (beats, lanes), padded with the first values to whole beats."""
        values = np.asarray(self.values, dtype=np.int64)
        pad = (-len(values)) % self.lanes
        return np.concatenate([values, values[:pad]]).reshape(-1, self.lanes)


def run_rtl(tmp_path: Path, function: str, component, cases: list[UnaryCase], seed: int = 1) -> None:
    """Build one Bundle of ``component(case.cfg, case.lanes)`` and run ``hwgen.cosim.tb_unary`` on it;
    raises :class:`~hwgen.toolchain.ToolError` if any unit differs from the golden model."""
    members = {case.name: component(case.cfg, case.lanes) for case in cases}
    source = verilog.convert(Bundle(members), name=f"{function}_bundle")
    units = []
    for case in cases:
        path = tmp_path / f"{case.name}.npy"
        np.save(path, case.beats())
        stall = 0.0 if case.full_rate else STALL_PROB
        units.append({
            "name": case.name, "function": function, "config": nl.config_to_dict(case.cfg),
            "lanes": case.lanes, "latency": members[case.name].latency, "vectors": str(path),
            "idle_prob": stall, "backpressure_prob": stall, "full_rate": case.full_rate,
        })
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"seed": seed, "units": units}))
    toolchain.run_cocotb(source, f"{function}_bundle", "hwgen.cosim.tb_unary", work_dir=tmp_path / "sim",
                         extra_env={"HWGEN_TB_UNARY": str(plan)})


def run_hls(kernel_factory, golden, cases: list[UnaryCase]) -> None:
    """C-simulate ``kernel_factory(name, cfg, lanes)`` for every case in one g++ binary and assert
    exact equality with ``golden(cfg, values)``."""
    sim = CSim([kernel_factory(case.name, case.cfg, case.lanes) for case in cases])
    for case in cases:
        beats = case.beats()
        got = sim.run(case.name, {"in": beats})["out"]
        want = golden(case.cfg, beats)
        mismatch = np.argwhere(got != want)
        assert not len(mismatch), (
            f"{case.name}: C-sim differs from golden at {len(mismatch)} values, first at input "
            f"{beats[tuple(mismatch[0])]}: got {got[tuple(mismatch[0])]}, expected {want[tuple(mismatch[0])]}"
        )
