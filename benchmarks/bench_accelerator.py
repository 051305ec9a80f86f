# SPDX-License-Identifier: Apache-2.0
"""RTL accelerator figures: measured cycles, utilization, the cycle model's error, simulation speed, resources.

Run: ``.venv/bin/python benchmarks/bench_accelerator.py`` (``--no-yosys`` skips synthesis, which
takes minutes; ``--reuse-build`` uses the cached Verilator builds instead of timing a fresh one).
With a 64-cycle DDR read latency it runs, in Verilator through the cocotb bench (every run also
checked byte-for-byte against isa_sim), at 16x16 lanes and a 128-bit AXI port:

- mlp-tiny (64 tokens, 192 -> 768 -> 192 with ReLU and residual), as the compiler emits it;
- a single 129x192 -> 192 Linear with bias (Edge-MoE's Q/K/V shape), as the compiler emits it,
  then at other chunk sizes (the weight layout does not depend on the chunk size, so only the
  descriptor's ``chunk_tiles`` changes): one chunk of all 12 output tiles, 6, 4 and 2;
- mlp-odd (50 tokens, 100 -> 37 -> 100), as the compiler emits it;

and mlp-odd again at 8x8 lanes with a 64-bit AXI port. Then the row unit: single LAYERNORM and
SOFTMAX descriptors (long rows bound by the unit's rate, short rows by the read bursts in flight) at
16x16 / AXI 128, and the zoo's softmax-rows and vit-mlp-block as ``hwgen.pipeline.build`` compiles
them (where the zoo has them); for row descriptors "ideal" is the row unit's cycles, not MACs:
M·ceil(N/row_lanes) for LAYERNORM (a beat per cycle), M·N for SOFTMAX (an element per cycle).

For each: the chunk sizes, cycles from the CYCLES register, ideal MAC cycles (M * k_tiles *
n_tiles), utilization (ideal / cycles), isa_sim's analytical estimate (docs/isa.md §5) and its error
against Verilator, and the simulation speed (simulated cycles per wall second of the cocotb test).
Then the Verilog conversion and Verilator build times (the build in a fresh cache folder, so it is
a real build) and the Yosys ``synth_xilinx`` LUT/FF/DSP/BRAM36 of the whole core: ``-family xcup``
at 8x8 and 16x16 lanes against the Ultra96 (ZU3EG) budget, ``-family xc7`` at the PYNQ-Z2's 16x8
against its XC7Z020. Figures, not tests: nothing here asserts.
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
from hwgen.compiler import Flag, LinearDescriptor, Program, compile_graph
from hwgen.isa import OPCODE_LAYERNORM, OPCODE_SOFTMAX
from hwgen.cosim import tb_accelerator as tb
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.pipeline import build, run_passes
from hwgen.quant import QuantConfig

HW = HwParams(lanes_in=16, lanes_out=16, axi_data_width=128)
HW_SMALL = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
LINEAR_SPEC = {
    "name": "linear-129x192",
    "description": "Edge-MoE's Q/K/V projection: 129 tokens, Linear 192 -> 192 with bias",
    "inputs": {"x": {"shape": [129, 192], "distribution": "normal", "scale": 1.0}},
    "layers": [{"name": "qkv", "op": "Linear", "input": "x", "features": 192}],
    "outputs": ["qkv"],
}
ULTRA96 = {"LUT": 70_560, "FF": 141_120, "DSP": 360, "BRAM36": 216}
PYNQ_Z2 = {"LUT": 53_200, "FF": 106_400, "DSP": 220, "BRAM36": 140}
HW_PYNQ = HwParams(lanes_in=16, lanes_out=8, weight_buffer_bytes=32768, axi_data_width=64)  # boards/pynq-z2.yaml
#: (label, opcode, M, N) of the row descriptors measured alone.
ROW_CASES = (("LAYERNORM 129x192", OPCODE_LAYERNORM, 129, 192), ("LAYERNORM 197x192", OPCODE_LAYERNORM, 197, 192),
             ("LAYERNORM 16x1024", OPCODE_LAYERNORM, 16, 1024),
             ("LAYERNORM 50x7", OPCODE_LAYERNORM, 50, 7), ("SOFTMAX 129x129", OPCODE_SOFTMAX, 129, 129),
             ("SOFTMAX 4x1024", OPCODE_SOFTMAX, 4, 1024), ("SOFTMAX 64x1", OPCODE_SOFTMAX, 64, 1))


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


def chunks_of(program) -> str:
    return ",".join(str(d.chunk_tiles) for d in program.descriptors
                    if isinstance(d, LinearDescriptor) and not d.flags & Flag.BYPASS) or "-"


def zoo_build(name, hw, seed=1):
    result = build(zoo.load_model(name, seed=seed), hw)
    inputs = golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=seed))
    image = result.image
    for tensor, raw in inputs.items():
        image = image.write(tensor, raw)
    return result.program, image


def row_ideal(program, hw) -> int:
    """The row unit's cycles of the row descriptors: a beat (``hw.row_lanes`` elements) per cycle for
    LAYERNORM, an element per cycle for SOFTMAX."""
    return sum(d.m * (-(-d.n // hw.row_lanes) if d.opcode == OPCODE_LAYERNORM else d.n)
               for d in program.descriptors if not isinstance(d, LinearDescriptor))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-yosys", action="store_true", help="skip the Yosys resource estimates")
    parser.add_argument("--reuse-build", action="store_true",
                        help="use the cached Verilator builds (no build time is reported)")
    args = parser.parse_args()

    runs = [("mlp-tiny (compiler)", HW, *compiled(zoo.load_model("mlp-tiny"), HW))]
    linear = compiled(parse_spec(LINEAR_SPEC), HW)
    runs.append(("linear 129x192->192 (compiler)", HW, *linear))
    chosen = linear[0].descriptors[0].chunk_tiles
    for chunk_tiles in (12, 6, 4, 2):
        if chunk_tiles != chosen:
            runs.append(("linear 129x192->192", HW, *with_chunk_tiles(*linear, chunk_tiles)))
    runs.append(("mlp-odd (compiler)", HW, *compiled(zoo.load_model("mlp-odd"), HW)))
    runs.append(("mlp-odd (compiler)", HW_SMALL, *compiled(zoo.load_model("mlp-odd"), HW_SMALL)))
    for label, opcode, m, n in ROW_CASES:
        runs.append((label, HW, *tb.row_program(HW, opcode, m, n)))
    for name in ("softmax-rows", "vit-mlp-block"):
        if name in zoo.names():
            runs.append((f"{name} (pipeline.build)", HW, *zoo_build(name, HW)))

    start = time.perf_counter()
    tb.accelerator_verilog(HW)
    convert_s = time.perf_counter() - start
    build_s = None
    rows = []
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
        saved = os.environ.get("HWGEN_CACHE_DIR")
        if not args.reuse_build:
            os.environ["HWGEN_CACHE_DIR"] = cache  # a fresh cache: the first run below is a real build
        try:
            for index, (label, hw, program, image) in enumerate(runs):
                if hw != HW and not args.reuse_build:  # only the 16x16 build is timed
                    if saved is None:
                        os.environ.pop("HWGEN_CACHE_DIR", None)
                    else:
                        os.environ["HWGEN_CACHE_DIR"] = saved
                work_dir = Path(work) / f"run{index}"
                start = time.perf_counter()
                (result,) = tb.simulate(work_dir, hw, [(program, image)])
                wall = time.perf_counter() - start
                if index == 0 and not args.reuse_build:
                    build_s = wall - sim_seconds(work_dir)
                rows.append((label, hw, chunks_of(program), result, sim_seconds(work_dir), program))
        finally:
            if saved is None:
                os.environ.pop("HWGEN_CACHE_DIR", None)
            else:
                os.environ["HWGEN_CACHE_DIR"] = saved

    print("RTL core, DDR read latency 64 cycles; every run equals isa_sim byte for byte")
    print(f"{'workload':<32} {'lanes/AXI':<12} {'chunks':>7} {'cycles':>8} {'ideal':>8} {'util':>6} {'estimate':>9}"
          f" {'error':>7} {'array idle':>10} {'sim cyc/s':>10}")
    for label, hw, chunks, r, seconds, program in rows:
        error = (r["estimate"] - r["cycles"]) / r["cycles"]
        lanes = f"{hw.lanes_in}x{hw.lanes_out}/{hw.axi_data_width}"
        ideal = r["ideal"] + row_ideal(program, hw)  # MAC tile steps plus the row unit's cycles
        print(f"{label:<32} {lanes:<12} {chunks:>7} {r['cycles']:>8,} {ideal:>8,} {ideal / r['cycles']:>6.1%}"
              f" {r['estimate']:>9,} {error:>+7.1%} {r['stalls']:>10,} {r['cycles'] / seconds:>10,.0f}")
    print(f"Verilog conversion {convert_s:.1f} s", end="")
    if build_s is not None:
        print(f"; Verilator build (fresh cache, with cocotb start-up) {build_s:.1f} s", end="")
    print()

    if not args.no_yosys:
        print(f"\nYosys synth_xilinx, whole core (xcup against the Ultra96 ZU3EG budget: "
              f"{', '.join(f'{k} {v:,}' for k, v in ULTRA96.items())}; xc7 at 16x8 against the PYNQ-Z2: "
              f"{', '.join(f'{k} {v:,}' for k, v in PYNQ_Z2.items())})")
        print(f"{'configuration':<33} {'LUT':>8} {'FF':>8} {'DSP':>5} {'BRAM36':>7} {'LUTRAM':>7} {'synth s':>8}  fits")
        for hw, budget, family in ((HW_SMALL, ULTRA96, "xcup"), (HW, ULTRA96, "xcup"), (HW_PYNQ, PYNQ_Z2, "xc7")):
            start = time.perf_counter()
            res = toolchain.yosys_resources(tb.accelerator_verilog(hw), tb.TOPLEVEL, family=family)
            seconds = time.perf_counter() - start
            fits = all(res[k] <= budget[k] for k in budget)
            print(f"{hw.lanes_in}x{hw.lanes_out} lanes, AXI {hw.axi_data_width:<4}{family:<5}"
                  f" {res['LUT']:>8,} {res['FF']:>8,}"
                  f" {res['DSP']:>5} {res['BRAM36']:>7} {res['LUTRAM']:>7} {seconds:>8.0f}  {'yes' if fits else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
