# SPDX-License-Identifier: Apache-2.0
"""Compiler figures: golden / float / isa_sim run times, accuracy, and the analytical cycle model.

Run: ``.venv/bin/python benchmarks/bench_compiler.py``. For mlp-tiny and mlp-odd it prints the
best-of-N wall time of the float64 reference, the bit-exact golden model, quantization and
compilation, and isa_sim; the output SQNR against float at 16/8 bits; and, per descriptor, the
analytical cycle estimate (docs/isa.md §5) at lanes 8x8, 16x16 and 8x32 with its ideal MAC
cycles and utilization. Times are wall clock on whatever machine runs it; they are figures, not tests.
"""

from __future__ import annotations

import time

import numpy as np

from hwgen import golden, zoo
from hwgen.compiler import RowDescriptor, compile_graph, isa_sim
from hwgen.hwparams import HwParams
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig

MODELS = ("mlp-tiny", "mlp-odd", "vit-mlp-block", "softmax-rows")
LANES = ((8, 8), (16, 16), (8, 32))
REPEATS = 15


def best_of(fn, repeats: int = REPEATS) -> float:
    """Fastest of ``repeats`` runs, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> int:
    print(f"{'model':<13} {'MACs':>11} {'float ms':>9} {'golden ms':>10} {'quantize ms':>12} {'compile ms':>11}"
          f" {'isa_sim ms':>11} {'out SQNR dB':>12}")
    cycle_rows = []
    for name in MODELS:
        model = zoo.load_model(name)
        config = QuantConfig.for_hw(HwParams())
        qgraph = run_passes(model.graph, config)
        x_float = golden.sample_inputs(qgraph, seed=1)
        x_raw = golden.quantize_inputs(qgraph, x_float)
        hw = HwParams()
        program, image = compile_graph(qgraph, hw)
        loaded = image.write("x", x_raw["x"])
        result = isa_sim(program, loaded, hw)
        values = golden.run(qgraph, x_raw)
        out = qgraph.outputs[0]
        assert np.array_equal(loaded.with_data(result.data).read(out), values[out]), "isa_sim != golden"
        report = {r.name: r for r in golden.accuracy_report(qgraph, golden.run_float(qgraph, x_float), values)}
        t_float = best_of(lambda: golden.run_float(qgraph, x_float))
        t_golden = best_of(lambda: golden.run(qgraph, x_raw))
        t_quant = best_of(lambda: run_passes(model.graph, config), 3)
        t_compile = best_of(lambda: compile_graph(qgraph, hw))
        t_isa = best_of(lambda: isa_sim(program, loaded, hw))
        print(f"{name:<13} {zoo.macs(model):>11,} {t_float:>9.2f} {t_golden:>10.2f} {t_quant:>12.1f} {t_compile:>11.2f}"
              f" {t_isa:>11.2f} {report[out].sqnr_db:>12.2f}")
        for lanes_in, lanes_out in LANES:
            hw = HwParams(lanes_in=lanes_in, lanes_out=lanes_out)
            program, image = compile_graph(qgraph, hw)
            estimates = isa_sim(program, image, hw).cycles
            for index, (desc, est) in enumerate(zip(program.descriptors, estimates)):
                if isinstance(desc, RowDescriptor):
                    dims, chunks = f"{desc.name} {desc.m}x{desc.n}", ""
                else:
                    dims, chunks = f"{desc.m}x{desc.k}x{desc.n}", -(-desc.n_tiles // desc.chunk_tiles)
                cycle_rows.append((name, f"{lanes_in}x{lanes_out}", index, image.labels[index].split(" + ")[0],
                                   dims, chunks, est.ideal, est.cycles, est.utilization))
            total_ideal = sum(e.ideal for e in estimates)
            total = sum(e.cycles for e in estimates)
            cycle_rows.append((name, f"{lanes_in}x{lanes_out}", "all", "", "", "", total_ideal, total, total_ideal / total))

    print("\nAnalytical cycles per descriptor (docs/isa.md §5, calibrated against the RTL core in Verilator)")
    print(f"{'model':<13} {'lanes':<6} {'desc':>4} {'layer':<6} {'MxKxN':<20} {'chunks':>6} {'ideal':>8} {'cycles':>8} {'util':>6}")
    for model_name, lanes, index, layer, dims, chunks, ideal, cycles, util in cycle_rows:
        print(f"{model_name:<13} {lanes:<6} {index!s:>4} {layer:<6} {dims:<20} {chunks!s:>6} {ideal:>8} {cycles:>8} {util:>6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
