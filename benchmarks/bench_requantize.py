# SPDX-License-Identifier: Apache-2.0
"""Requantizer figures: Yosys synth_xilinx (xcup) LUT/FF/DSP, Verilator throughput and speed.

Run: ``.venv/bin/python benchmarks/bench_requantize.py``.  Resources are for 8 and 16 lanes of
fixed<32,12> -> fixed<16,6,RND_CONV,SAT> and of the TRN/WRAP variant (pure bit selection); the
throughput figures come from cocotb + Verilator runs of 8 lanes with and without random stalls.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from hwgen import toolchain
from hwgen.cosim.bundle import Bundle
from hwgen.qfx import QFmt
from hwgen.rtl.requantize import Requantizer

IN_FMT = QFmt.parse("fixed<32,12>")
OUT_FMTS = {"RND_CONV/SAT": QFmt.parse("fixed<16,6,RND_CONV,SAT>"), "TRN/WRAP": QFmt.parse("fixed<16,6>")}
LANES = (8, 16)
SIM_LANES = 8
SIM_BEATS = 20_000
STALL_PROB = 0.3


def resources() -> None:
    print("Yosys synth_xilinx -family xcup, Requantizer fixed<32,12> -> out_fmt")
    print(f"{'out_fmt':<28}{'lanes':>6}{'LUT':>8}{'FF':>8}{'DSP':>6}{'CARRY':>7}{'LUT/lane':>10}{'seconds':>9}")
    for label, out_fmt in OUT_FMTS.items():
        for lanes in LANES:
            started = time.perf_counter()
            text = verilog.convert(Requantizer(IN_FMT, out_fmt, lanes), name="requantizer")
            counts = toolchain.yosys_resources(text, "requantizer", family="xcup")
            seconds = time.perf_counter() - started
            print(f"{str(out_fmt):<28}{lanes:>6}{counts['LUT']:>8}{counts['FF']:>8}{counts['DSP']:>6}"
                  f"{counts['CARRY']:>7}{counts['LUT'] / lanes:>10.1f}{seconds:>9.1f}")


def throughput() -> None:
    out_fmt = OUT_FMTS["RND_CONV/SAT"]
    units = {"full_rate": 0.0, "stalled": STALL_PROB}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan = {"seed": 1, "latency": Requantizer.latency, "units": []}
        for name, stalls in units.items():
            vectors = rng.integers(IN_FMT.min_raw, IN_FMT.max_raw + 1, size=(SIM_BEATS, SIM_LANES))
            np.save(tmp / f"{name}.npy", vectors)
            plan["units"].append({
                "name": name, "input": f"{name}__i", "output": f"{name}__o", "lanes": SIM_LANES,
                "in_fmt": str(IN_FMT), "out_fmt": str(out_fmt), "vectors": str(tmp / f"{name}.npy"),
                "idle_prob": stalls, "backpressure_prob": stalls, "full_rate": stalls == 0.0,
            })
        (tmp / "plan.json").write_text(json.dumps(plan))
        design = Bundle({name: Requantizer(IN_FMT, out_fmt, SIM_LANES) for name in units})
        text = verilog.convert(design, name="requantizers")
        started = time.perf_counter()
        toolchain.run_cocotb(text, "requantizers", "hwgen.cosim.tb_requantize", work_dir=tmp / "build",
                             testcase="beat_count_mismatch_fails",
                             extra_env={"HWGEN_TB_REQUANTIZE": str(tmp / "plan.json")})
        build_seconds = time.perf_counter() - started
        toolchain.run_cocotb(text, "requantizers", "hwgen.cosim.tb_requantize", work_dir=tmp / "sim",
                             testcase="requantizers_match_golden",
                             extra_env={"HWGEN_TB_REQUANTIZE": str(tmp / "plan.json"),
                                        "HWGEN_TB_REQUANTIZE_REPORT": str(tmp / "report.json")})
        report = json.loads((tmp / "report.json").read_text())
    print(f"\nVerilator + cocotb, {SIM_LANES} lanes, {SIM_BEATS} beats per unit, two units side by side "
          f"(build + first run {build_seconds:.1f} s, cached afterwards)")
    for name, unit in report["units"].items():
        stalls = f"idle/backpressure {units[name]:.0%}" if units[name] else "no stalls"
        print(f"  {name:<10} {unit['beats'] / unit['cycles']:.4f} beats/cycle "
              f"({unit['beats']} beats in {unit['cycles']} cycles, {stalls})")
    print(f"  simulation speed: {report['cycles'] / report['wall_seconds']:,.0f} cycles/s "
          f"({report['cycles']} cycles in {report['wall_seconds']:.2f} s, Python bench included)")


if __name__ == "__main__":
    # Filter on the handler: cocotb's runner sets its own logger to INFO and logs every command.
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    resources()
    throughput()
