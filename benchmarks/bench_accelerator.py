# SPDX-License-Identifier: Apache-2.0
"""RTL accelerator figures: measured cycles, utilization, the cycle model's error, simulation speed, resources.

Run: ``.venv/bin/python benchmarks/bench_accelerator.py`` (``--no-yosys`` skips synthesis, which
takes minutes). At 16x16 lanes and a 128-bit AXI port with a 64-cycle DDR read latency it runs, in
Verilator through the cocotb bench (every run also checked byte-for-byte against isa_sim):

- mlp-tiny (64 tokens, 192 -> 768 -> 192 with ReLU and residual), as the compiler emits it;
- a single 129x192 -> 192 Linear with bias (Edge-MoE's Q/K/V shape), at the chunk size the
  compiler picks and at smaller ones (the weight layout does not depend on the chunk size, so only
  the descriptor's ``chunk_tiles`` changes).

For each: cycles from the CYCLES register, ideal MAC cycles (M * k_tiles * n_tiles), utilization
(ideal / cycles), isa_sim's analytical estimate and its error against Verilator, and the simulation
speed (simulated cycles per wall second of the cocotb test). Then the Verilog conversion and
Verilator build times (the build in a fresh cache folder, so it is a real build) and the Yosys
``synth_xilinx -family xcup`` LUT/FF/DSP/BRAM36 of the whole core at 8x8 and 16x16 lanes against
the Ultra96 (ZU3EG) budget. Figures, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from hwgen import golden, toolchain, zoo
from hwgen.compiler import Program, compile_graph
from hwgen.cosim import tb_accelerator as tb
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig

HW = HwParams(lanes_in=16, lanes_out=16, axi_data_width=128)
LINEAR_SPEC = {
    "name": "linear-129x192",
    "description": "Edge-MoE's Q/K/V projection: 129 tokens, Linear 192 -> 192 with bias",
    "inputs": {"x": {"shape": [129, 192], "distribution": "normal", "scale": 1.0}},
    "layers": [{"name": "qkv", "op": "Linear", "input": "x", "features": 192}],
    "outputs": ["qkv"],
}
ULTRA96 = {"LUT": 70_560, "FF": 141_120, "DSP": 360, "BRAM36": 216}


def compiled(model, hw, seed=1):
    qgraph = run_passes(model.graph, QuantConfig.for_hw(hw, formats=model.formats))
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed))
    program, image = compile_graph(qgraph, hw)
    for name, raw in inputs.items():
        image = image.write(name, raw)
    return program, image


def with_chunk_tiles(program, image, chunk_tiles):
    descriptors = tuple(dataclasses.replace(d, chunk_tiles=min(chunk_tiles, d.n_tiles)) for d in program.descriptors)
    program = Program(program.fingerprint, program.image_bytes, descriptors)
    encoded = program.to_bytes()
    return program, image.with_data(encoded + image.data[len(encoded):])


def sim_seconds(work_dir) -> float:
    case = ET.parse(Path(work_dir) / "results.xml").find(".//testcase")
    return float(case.get("time"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-yosys", action="store_true", help="skip the Yosys resource estimates")
    args = parser.parse_args()

    runs = []
    tiny = compiled(zoo.load_model("mlp-tiny"), HW)
    runs.append(("mlp-tiny (compiler's chunks)", *tiny))
    linear = compiled(parse_spec(LINEAR_SPEC), HW)
    chosen = linear[0].descriptors[0].chunk_tiles
    runs.append((f"linear 129x192->192, chunk_tiles={chosen} (compiler)", *linear))
    for chunk_tiles in (6, 4, 3):
        runs.append((f"linear 129x192->192, chunk_tiles={chunk_tiles}", *with_chunk_tiles(*linear, chunk_tiles)))

    start = time.perf_counter()
    tb.accelerator_verilog(HW)
    convert_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
        saved = os.environ.get("HWGEN_CACHE_DIR")
        os.environ["HWGEN_CACHE_DIR"] = cache  # a fresh cache: the first run below is a real build
        try:
            rows = []
            for index, (label, program, image) in enumerate(runs):
                work_dir = Path(work) / f"run{index}"
                start = time.perf_counter()
                (result,) = tb.simulate(work_dir, HW, [(program, image)])
                wall = time.perf_counter() - start
                if index == 0:
                    build_s = wall - sim_seconds(work_dir)
                rows.append((label, result, sim_seconds(work_dir)))
        finally:
            if saved is None:
                os.environ.pop("HWGEN_CACHE_DIR")
            else:
                os.environ["HWGEN_CACHE_DIR"] = saved

    print(f"RTL core {HW}, DDR read latency 64 cycles; every run equals isa_sim byte for byte")
    print(f"{'workload':<50} {'cycles':>8} {'ideal':>8} {'util':>6} {'estimate':>9} {'error':>7}"
          f" {'array idle':>10} {'sim cyc/s':>10}")
    for label, r, seconds in rows:
        error = (r["estimate"] - r["cycles"]) / r["cycles"]
        print(f"{label:<50} {r['cycles']:>8,} {r['ideal']:>8,} {r['ideal'] / r['cycles']:>6.1%} {r['estimate']:>9,}"
              f" {error:>+7.1%} {r['stalls']:>10,} {r['cycles'] / seconds:>10,.0f}")
    print(f"Verilog conversion {convert_s:.1f} s; Verilator build (fresh cache, with cocotb start-up) {build_s:.1f} s")

    if not args.no_yosys:
        print(f"\nYosys synth_xilinx -family xcup, whole core (Ultra96 ZU3EG budget: "
              f"{', '.join(f'{k} {v:,}' for k, v in ULTRA96.items())})")
        print(f"{'configuration':<28} {'LUT':>8} {'FF':>8} {'DSP':>5} {'BRAM36':>7} {'LUTRAM':>7} {'synth s':>8}  fits")
        for hw in (HwParams(lanes_in=8, lanes_out=8, axi_data_width=64), HW):
            start = time.perf_counter()
            res = toolchain.yosys_resources(tb.accelerator_verilog(hw), tb.TOPLEVEL, family="xcup")
            seconds = time.perf_counter() - start
            fits = all(res[k] <= ULTRA96[k] for k in ULTRA96)
            print(f"{hw.lanes_in}x{hw.lanes_out} lanes, AXI {hw.axi_data_width:<9} {res['LUT']:>8,} {res['FF']:>8,}"
                  f" {res['DSP']:>5} {res['BRAM36']:>7} {res['LUTRAM']:>7} {seconds:>8.0f}  {'yes' if fits else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
