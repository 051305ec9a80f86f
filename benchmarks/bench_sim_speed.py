# SPDX-License-Identifier: Apache-2.0
"""Simulation speed of whole-Program RTL runs: cycles per second, Verilator's ceiling, build and CLI times.

Run: ``.venv/bin/python benchmarks/bench_sim_speed.py`` (``--skip-build-flags`` and ``--skip-cli`` leave
out the slow parts: every build-flag set and the cold CLI run are fresh Verilator builds of the 16x16
core, minutes each). Figures, not tests: nothing here asserts on time.

1. **Speed.** vit-mlp-block (LayerNorm, Linear+GELU, Linear+residual at DeiT-tiny size) as
   ``hwgen.pipeline.build`` compiles it, at 8x8/AXI64, 16x16/AXI128 and 32x32/AXI128, on the core
   beside the Verilog AXI memory (``cosim/axi_memory.v``, 64-cycle read latency) under cocotb: without
   stalls and with random stalls (probability 0.3 on every ready/valid the memory drives); and, at
   16x16, with the Python ``AxiMemory`` (the path whole-Program runs took before). "cycles/s" is
   the CYCLES register over the wall time from the CONTROL write to the interrupt (the run itself:
   no simulator start-up, image load or read-back), "cyc/CPU-s" the same over the simulator's CPU
   time (what the machine's other load does not change); "process" is the whole cocotb run's wall
   time.
   Every run is also checked byte for byte against isa_sim.
2. **Ceiling.** The same Verilated design (core + Verilog memory) driven by a Verilog testbench
   (``hwgen_bench_main``: AXI-Lite start sequence and wait for the interrupt in Verilog, the same
   wrapper clock, built with ``verilator --binary`` and the same flags): no cocotb, no VPI. Its
   cycles/s is the CYCLES register over the wall time from the CONTROL write to the interrupt (read
   with a DPI call to ``clock_gettime``), as for the cocotb runs; the ratio is the cocotb run's speed
   over it. "process" is the whole binary's wall time (model construction, ``$readmemh`` included).
3. **Build time.** Cold builds (a fresh cache) of the 16x16 core + memory under cocotb with several
   Verilator and C++ flag sets, each with the sim speed it then gives.
4. **CLI.** ``hwgen build --board ultra96 --out X --force`` then ``hwgen sim X --backend rtl``, cold
   (fresh HWGEN_CACHE_DIR: Yosys and Verilator run) and warm (same cache again).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from hwgen import golden, toolchain, zoo
from hwgen.compiler import isa_sim
from hwgen.cosim import tb_accelerator as tb
from hwgen.cosim.hdl_memory import SIM_BUILD_ARGS, to_hex
from hwgen.hwparams import HwParams
from hwgen.pipeline import build
from hwgen.rtl.axi import REGISTER_MAP

GEOMETRIES = {
    "8x8/AXI64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64),
    "16x16/AXI128": HwParams(lanes_in=16, lanes_out=16, axi_data_width=128),
    "32x32/AXI128": HwParams(lanes_in=32, lanes_out=32, axi_data_width=128),
}
MODEL = "vit-mlp-block"
BASE = 0x1000


def program_of(hw, model=MODEL, seed=1):
    result = build(zoo.load_model(model, seed=seed), hw)
    inputs = golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=seed))
    return result.program, result.image.write_all(inputs)


def cocotb_run(work, hw, program, image, *, memory="hdl", stall_prob=0.0, build_args=None):
    """One run under cocotb; (result dict, process wall seconds)."""
    run = tb.Run(image.data, isa_sim(program, image, hw).data, image.regions, label=MODEL)
    env = tb.prepare(work, hw, [run], memory=memory, stall_prob=stall_prob)
    source, toplevel, args = tb.bench_verilog(hw, memory)
    start = time.perf_counter()
    toolchain.run_cocotb(source, toplevel, "hwgen.cosim.tb_accelerator", work_dir=work, extra_env=env,
                         build_args=args if build_args is None else build_args)
    (result,) = tb.read_results(work)
    return result, time.perf_counter() - start


# ------------------------------------------------------------------------------------------- ceiling

MAIN_TEMPLATE = """
module hwgen_bench_main;
  reg rst = 1;
  wire clk = dut.clk;  // the wrapper's own clock
  reg [{aw}:0] awaddr = 0, araddr = 0;
  reg awvalid = 0, wvalid = 0, bready = 0, arvalid = 0, rready = 0;
  reg [31:0] wdata = 0;
  reg [3:0] wstrb = 4'hf;
  wire awready, wready, bvalid, arready, rvalid, irq;
  wire [1:0] bresp, rresp;
  wire [31:0] rdata;
  reg mem_load = 0, mem_dump = 0;
  reg [31:0] mem_bytes = 0, cycles = 0;
  wire [31:0] c0, c1, c2, c3, c4, c5;
  wire idle;
  {top} dut (.rst(rst), .irq(irq),
    .s_axi__awaddr(awaddr), .s_axi__awvalid(awvalid), .s_axi__awready(awready),
    .s_axi__wdata(wdata), .s_axi__wstrb(wstrb), .s_axi__wvalid(wvalid), .s_axi__wready(wready),
    .s_axi__bresp(bresp), .s_axi__bvalid(bvalid), .s_axi__bready(bready),
    .s_axi__araddr(araddr), .s_axi__arvalid(arvalid), .s_axi__arready(arready),
    .s_axi__rdata(rdata), .s_axi__rresp(rresp), .s_axi__rvalid(rvalid), .s_axi__rready(rready),
    .mem_load(mem_load), .mem_dump(mem_dump), .mem_bytes(mem_bytes), .mem_read_latency(32'd64),
    .mem_write_latency(32'd16), .mem_stall_threshold(17'd0), .mem_seed(32'd1),
    .mem_read_beats(c0), .mem_write_beats(c1), .mem_read_bursts(c2), .mem_write_bursts(c3),
    .mem_max_reads_in_flight(c4), .mem_errors(c5), .mem_idle(idle));

  import "DPI-C" function real hwgen_wall_seconds();
  import "DPI-C" function real hwgen_cpu_seconds();
  real started, started_cpu;

  task lite_write(input [{aw}:0] addr, input [31:0] data);
    reg a, w;
    begin
      @(negedge clk);
      awaddr = addr; awvalid = 1; wdata = data; wvalid = 1; bready = 1;
      while (awvalid || wvalid) begin
        a = awvalid && awready; w = wvalid && wready;
        @(posedge clk); #1;
        if (a) awvalid = 0;
        if (w) wvalid = 0;
        @(negedge clk);
      end
      while (!bvalid) @(negedge clk);
      @(posedge clk); #1 bready = 0;
    end
  endtask

  task lite_read(input [{aw}:0] addr, output [31:0] data);
    reg a;
    begin
      @(negedge clk);
      araddr = addr; arvalid = 1; rready = 1;
      while (arvalid) begin
        a = arready;
        @(posedge clk); #1;
        if (a) arvalid = 0;
        @(negedge clk);
      end
      while (!rvalid) @(negedge clk);
      data = rdata;
      @(posedge clk); #1 rready = 0;
    end
  endtask

  initial begin
    if (!$value$plusargs("mem_bytes=%d", mem_bytes)) $fatal(1, "+mem_bytes= missing");
    mem_load = 1;
    repeat (4) @(posedge clk);
    #1 rst = 0; mem_load = 0;
    lite_write({program_addr}, {base});
    lite_write({image_base}, {base});
    lite_write({gie}, 1);
    lite_write({ier}, 1);
    started = hwgen_wall_seconds();
    started_cpu = hwgen_cpu_seconds();
    lite_write({control}, 1);
    wait (irq);
    $display("HWGEN_RUN_SECONDS %0.6f", hwgen_wall_seconds() - started);
    $display("HWGEN_RUN_CPU_SECONDS %0.6f", hwgen_cpu_seconds() - started_cpu);
    lite_read({cycles_reg}, cycles);
    $display("HWGEN_CYCLES %0d", cycles);
    mem_dump = 1;
    @(posedge clk); @(posedge clk); #1 mem_dump = 0;
    $finish;
  end
endmodule
"""


WALL_CPP = """
#include <time.h>
extern "C" double hwgen_wall_seconds() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
extern "C" double hwgen_cpu_seconds() {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
"""


def ceiling_binary(hw, cache: Path) -> tuple[Path, float]:
    """Build (or reuse) the core + memory under the Verilog testbench with ``verilator --binary``."""
    source, top, _ = tb.bench_verilog(hw)
    text = source + MAIN_TEMPLATE.format(
        aw=7, top=top, base=BASE, program_addr=REGISTER_MAP["PROGRAM_ADDR"], image_base=REGISTER_MAP["IMAGE_BASE"],
        gie=REGISTER_MAP["GIE"], ier=REGISTER_MAP["IER"], control=REGISTER_MAP["CONTROL"],
        cycles_reg=REGISTER_MAP["CYCLES"])
    digest = hashlib.sha256((text + WALL_CPP + repr(SIM_BUILD_ARGS)).encode()).hexdigest()[:16]
    folder = cache / f"ceiling-{hw.lanes_in}x{hw.lanes_out}-{hw.axi_data_width}-{digest}"
    binary = folder / "obj" / "Vhwgen_bench_main"
    if binary.exists():
        return binary, 0.0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.v").write_text(text)
    (folder / "wall.cpp").write_text(WALL_CPP)
    # SIM_BUILD_ARGS: --timing for the wrapper's clock (and -fcoroutines for g++), as under cocotb.
    cmd = ["verilator", "--binary", *toolchain.VERILATOR_ARGS, *SIM_BUILD_ARGS, "-j", "2", "--top-module", "hwgen_bench_main", "-Mdir", str(folder / "obj"), str(folder / "main.v"), str(folder / "wall.cpp")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=toolchain.verilator_env(), capture_output=True, text=True, cwd=folder)
    if proc.returncode != 0:
        raise toolchain.ToolError(f"verilator --binary failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return binary, time.perf_counter() - start


def ceiling_run(binary: Path, hw, image, work: Path) -> tuple[int, float]:
    work.mkdir(parents=True, exist_ok=True)
    size = BASE + len(image.data) + 4096
    memory = bytearray(size)
    memory[BASE:BASE + len(image.data)] = image.data
    (work / "axi_memory_in.hex").write_text(to_hex(memory, hw.axi_bytes))
    start = time.perf_counter()
    proc = subprocess.run([str(binary), f"+mem_bytes={size}"], cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = dict(ln.split()[:2] for ln in proc.stdout.splitlines() if ln.startswith("HWGEN_"))
    if proc.returncode != 0 or "HWGEN_CYCLES" not in found:
        raise toolchain.ToolError(f"the ceiling run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return int(found["HWGEN_CYCLES"]), float(found["HWGEN_RUN_SECONDS"]), float(found["HWGEN_RUN_CPU_SECONDS"]), wall


# ----------------------------------------------------------------------------------------- build flags

#: (label, Verilator arguments after toolchain.VERILATOR_ARGS, make variables of the C++ build).
FLAG_SETS = (
    ("hwgen: -O3 --x-assign fast, SIM_BUILD_ARGS", SIM_BUILD_ARGS, ""),
    ("+ --x-initial fast", (*SIM_BUILD_ARGS, "--x-initial", "fast"), ""),
    ("+ --output-split 5000", (*SIM_BUILD_ARGS, "--output-split", "5000"), ""),
    ("C++ OPT_FAST=-O1 (default -Os)", SIM_BUILD_ARGS, "OPT_FAST=-O1"),
    ("C++ OPT_FAST=-O2", SIM_BUILD_ARGS, "OPT_FAST=-O2"),
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_build(hw, program, image, args, make_vars, work: Path):
    """A cold build (fresh cache) and one run on it: (build s wall, build CPU s, cycles/s, cycles/CPU-s).

    Build CPU seconds are the child processes' (Verilator, make, g++) minus the run's own CPU time, so
    they hold on a loaded machine where wall seconds do not (the simulator's start-up is counted in).
    """
    cpu_before = _children_cpu()
    with tempfile.TemporaryDirectory(prefix="hwgen-bench-cache-") as cache:
        saved = dict(os.environ)
        os.environ["HWGEN_CACHE_DIR"] = cache
        if make_vars:
            os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {make_vars}".strip()
        try:
            result, wall = cocotb_run(work, hw, program, image, build_args=args)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    sim = float(ET.parse(work / "results.xml").find(".//testcase").get("time"))
    build_cpu = _children_cpu() - cpu_before - result["run_cpu_s"]
    return wall - sim, build_cpu, result["cycles"] / result["run_wall_s"], result["cycles"] / result["run_cpu_s"]


# ------------------------------------------------------------------------------------------------ CLI

def cli_times(work: Path, cache: str | None) -> tuple[float, float, str]:
    env = dict(os.environ)
    if cache:
        env["HWGEN_CACHE_DIR"] = cache
    hwgen = str(Path(sys.executable).with_name("hwgen"))
    out = work / "ultra96"
    start = time.perf_counter()
    subprocess.run([hwgen, "build", "--board", "ultra96", "--out", str(out), "--force", "--quiet"], env=env,
                   check=True, capture_output=True)
    built = time.perf_counter() - start
    start = time.perf_counter()
    proc = subprocess.run([hwgen, "sim", str(out), "--backend", "rtl", "--quiet"], env=env, capture_output=True,
                          text=True)
    simmed = time.perf_counter() - start
    return built, simmed, "equal" if proc.returncode == 0 else f"exit {proc.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build-flags", action="store_true", help="no cold builds per flag set")
    parser.add_argument("--flag-sets", default=",".join(str(i) for i in range(len(FLAG_SETS))),
                        help="comma-separated indices of the flag sets to build cold: " +
                        "; ".join(f"{i} = {label}" for i, (label, _, _) in enumerate(FLAG_SETS)))
    parser.add_argument("--skip-cli", action="store_true", help="no hwgen build / hwgen sim timing")
    parser.add_argument("--skip-speed", action="store_true", help="no speed and ceiling tables")
    parser.add_argument("--skip-python", action="store_true", help="no run with the Python AxiMemory")
    parser.add_argument("--geometries", default=",".join(GEOMETRIES), help="comma-separated, of " + ", ".join(GEOMETRIES))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hwgen-bench-speed-"))
    try:
        speeds, compiled = {}, {}
        geometries = [] if args.skip_speed else args.geometries.split(",")
        print(f"{MODEL} on the RTL core, 64-cycle read latency; every run equals isa_sim byte for byte")
        print(f"{'geometry':<14} {'memory':<22} {'cycles':>9} {'run s':>7} {'cycles/s':>10} {'cyc/CPU-s':>10}"
              f" {'process s':>9}")
        for name in geometries:
            hw = GEOMETRIES[name]
            program, image = compiled[name] = program_of(hw)
            cases = [("HDL", "hdl", 0.0), ("HDL, stalls 0.3", "hdl", 0.3)]
            if name == "16x16/AXI128" and not args.skip_python:
                cases.append(("Python AxiMemory", "python", 0.0))
            for label, memory, stall_prob in cases:
                tag = f"{name}-{label}".replace("/", "_").replace(" ", "_").replace(",", "")
                result, wall = cocotb_run(work / tag, hw, program, image, memory=memory, stall_prob=stall_prob)
                speed = result["cycles"] / result["run_wall_s"]
                speed_cpu = result["cycles"] / result["run_cpu_s"]
                speeds[name, label] = speed, speed_cpu
                print(f"{name:<14} {label:<22} {result['cycles']:>9,} {result['run_wall_s']:>7.2f} {speed:>10,.0f}"
                      f" {speed_cpu:>10,.0f} {wall:>9.1f}", flush=True)

        print("\nCeiling: the same Verilated core + memory under a Verilog testbench (verilator --binary --timing)")
        print(f"{'geometry':<14} {'build s':>8} {'cycles':>9} {'run s':>7} {'cycles/s':>10} {'cyc/CPU-s':>10}"
              f" {'ratio':>8} {'CPU rat.':>8} {'process s':>9}")
        for name in geometries:
            if name != "16x16/AXI128":
                continue
            hw = GEOMETRIES[name]
            program, image = compiled[name]
            binary, build_s = ceiling_binary(hw, toolchain.cache_dir() / "bench-ceiling")
            cycles, run_s, cpu_s, wall = ceiling_run(binary, hw, image, work / f"ceiling-{hw.lanes_in}")
            ceiling, ceiling_cpu = cycles / run_s, cycles / cpu_s
            ours, ours_cpu = speeds[name, "HDL"]
            print(f"{name:<14} {build_s:>8.0f} {cycles:>9,} {run_s:>7.2f} {ceiling:>10,.0f} {ceiling_cpu:>10,.0f}"
                  f" {ours / ceiling:>8.0%} {ours_cpu / ceiling_cpu:>8.0%} {wall:>9.1f}", flush=True)

        if not args.skip_build_flags:
            hw = GEOMETRIES["16x16/AXI128"]
            program, image = compiled.get("16x16/AXI128") or program_of(hw)
            print("\nCold Verilator build (verilate + C++ under cocotb's runner, make -j 2) of the 16x16/AXI128 "
                  "core + memory")
            print(f"{'flags':<44} {'build s':>8} {'CPU s':>8} {'cycles/s':>10} {'cyc/CPU-s':>10}")
            for index in (int(i) for i in args.flag_sets.split(",")):
                label, flags, make_vars = FLAG_SETS[index]
                build_s, build_cpu, speed, speed_cpu = timed_build(hw, program, image, flags, make_vars,
                                                                   work / f"flags-{index}")
                print(f"{label:<44} {build_s:>8.0f} {build_cpu:>8.0f} {speed:>10,.0f} {speed_cpu:>10,.0f}", flush=True)

        if not args.skip_cli:
            print("\nhwgen build --board ultra96 --out X --force; hwgen sim X --backend rtl (default model)")
            with tempfile.TemporaryDirectory(prefix="hwgen-bench-cli-cache-") as cache:
                for label in ("cold (empty cache)", "warm"):
                    built, simmed, verdict = cli_times(work, cache)
                    print(f"{label:<20} build {built:>6.1f} s   sim --backend rtl {simmed:>6.1f} s   ({verdict})",
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
