# SPDX-License-Identifier: Apache-2.0
"""Whole-ViT figures: deit-tiny (or vit-tiny, vit-block) on a board's attention core.

Run: ``.venv/bin/python benchmarks/bench_vit.py [--model deit-tiny] [--board kv260] [--lanes 16x16]
[--rtl]``. The core is the one ``hwgen build --board B --model M`` makes (``Board.core_for``: the
attention engine, 48-bit accumulators, the board's attention lanes unless ``--lanes``). Prints:

- the wall time of the golden model (best of 3) and of isa_sim on one image;
- cycles per layer type from the analytical model (docs/isa.md §5; the same numbers isa_sim
  reports), the array's ideal cycles (MACs / lanes, per tile), utilization and share of the total;
- the DDR bytes of each attention layer's QK_SOFTMAX_STATS/AV pair against the minimum (Q, K, V
  read once, the scores written and read once, the output written once) and of the whole image;
- SQNR against the float model of the logits and of each block's output;
- with ``--rtl``: the whole Program in Verilator (the core beside the HDL AXI memory, 64-cycle read
  latency, no stalls), its measured cycles beside the analytical ones, and the simulation speed;
  the run is checked byte for byte against the golden model.

Figures, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from hwgen import golden, zoo
from hwgen.board import load_board
from hwgen.build import TEST_INPUT_SEED, accelerator_verilog, compile_for
from hwgen.compiler import Flag, isa_sim
from hwgen.compiler.engines import attention as attention_engine
from hwgen.isa import OPCODE_QK_SOFTMAX_STATS, AttentionDescriptor, RowDescriptor


def best_of(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def layer_type(desc) -> str:
    if isinstance(desc, (RowDescriptor, AttentionDescriptor)):
        return desc.name
    return "BYPASS" if desc.flags & Flag.BYPASS else desc.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit-tiny")
    parser.add_argument("--board", default="kv260", help="the board whose attention core runs it (default kv260: 16x16/AXI128)")
    parser.add_argument("--lanes", help="lanes_in x lanes_out instead of the board's attention lanes")
    parser.add_argument("--rtl", action="store_true", help="also run the Program in Verilator")
    args = parser.parse_args()

    board = load_board(args.board)
    loaded = zoo.load_model(args.model)
    hw = board.hw_params()
    if args.lanes:
        lanes_in, lanes_out = (int(v) for v in args.lanes.lower().split("x"))
        hw = board.hw_params(lanes_in=lanes_in, lanes_out=lanes_out)
    hw = board.core_for(loaded.graph, hw, lanes_given=bool(args.lanes))
    print(f"{args.model} on {board.name}'s core: {hw}")

    start = time.perf_counter()
    compiled = compile_for(args.model, hw)
    print(f"compile (quantize, lower, golden, isa_sim, float): {time.perf_counter() - start:.1f} s")
    qgraph, image = compiled.qgraph, compiled.image
    inputs = {name: compiled.values[name] for name in qgraph.inputs}
    print(f"golden, one image: {best_of(lambda: golden.run(qgraph, inputs), 3):.2f} s (best of 3)")
    reference = compiled.reference
    print(f"isa_sim, one image: {best_of(lambda: isa_sim(compiled.program, image, hw), 1):.2f} s")

    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for desc, estimate in zip(compiled.program.descriptors, reference.cycles):
        row = by_type[layer_type(desc)]
        row[0] += 1
        row[1] += estimate.cycles
        row[2] += estimate.ideal
    total = reference.total_cycles
    ideal_macs = compiled.macs / hw.macs_per_cycle
    print(f"\nanalytical cycles {total:,} (ideal at {hw.macs_per_cycle} MAC/cycle: {ideal_macs:,.0f}, "
          f"{ideal_macs / total:.1%} of the array over the whole model); {compiled.macs / 1e9:.3f} GMAC")
    print(f"{'layer type':<18} {'descriptors':>11} {'cycles':>12} {'ideal':>12} {'util':>7} {'share':>7}")
    for name, (count, cycles, ideal) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
        util = f"{ideal / cycles:.1%}" if cycles and ideal else "-"
        print(f"{name:<18} {count:>11} {cycles:>12,} {ideal:>12,} {util:>7} {cycles / total:>7.1%}")

    print("\nDDR bytes per attention layer (read + written) against the minimum:")
    pairs = [d for d in compiled.program.descriptors if isinstance(d, AttentionDescriptor)]
    layers, act, qk = 0, hw.act_bytes, (0, 1)
    for desc in pairs:
        read, written = attention_engine.ddr_bytes(desc, hw)
        if desc.opcode == OPCODE_QK_SOFTMAX_STATS:
            width = desc.heads * desc.d_head
            scores = desc.heads * desc.m * desc.s * act
            minimum = (desc.m + desc.s) * width * act + scores  # Q and K once, scores written once
            qk = (read + written, minimum)
        else:
            width = desc.heads * desc.d_head
            scores = desc.heads * desc.m * desc.s * act
            minimum = scores + desc.s * width * act + desc.m * width * act  # scores and V once, output once
            if layers < 1:
                print(f"  QK_SOFTMAX_STATS {qk[0]:,} (minimum {qk[1]:,}, {qk[0] / qk[1]:.3f}x); "
                      f"AV {read + written:,} (minimum {minimum:,}, {(read + written) / minimum:.3f}x)")
            layers += 1
    print(f"  ({layers} attention layers alike)")
    print(f"memory image: {len(image.data):,} bytes")

    print("\nSQNR against float (dB):")
    float_values = golden.run_float(loaded.graph, golden.sample_inputs(qgraph, seed=TEST_INPUT_SEED))
    accuracy = {row.name: row for row in golden.accuracy_report(qgraph, float_values, compiled.values)}
    for name in qgraph.outputs:
        print(f"  {name:<12} {accuracy[name].sqnr_db:6.2f}")
    blocks = [n for n in accuracy if n.endswith(".out")]
    print("  blocks: " + ", ".join(f"{n.split('.')[0]} {accuracy[n].sqnr_db:.1f}" for n in blocks))

    if args.rtl:
        from hwgen.sim import run_rtl

        verilog = accelerator_verilog(hw)
        with tempfile.TemporaryDirectory(prefix="bench-vit-") as work:
            start = time.perf_counter()
            outcome = run_rtl(verilog, hw, image, compiled.expected, Path(work))
            wall = time.perf_counter() - start
        cycles = outcome["cycles"]
        if not outcome["equal"] or not cycles:
            print(f"\nVerilator: the run did not complete equal to golden: {outcome['detail']}")
            return
        print(f"\nVerilator: {cycles:,} cycles ({'equal to golden' if outcome['equal'] else 'MISMATCH: ' + outcome['detail']}), "
              f"analytical {total:,} ({(total - cycles) / cycles:+.2%}); {ideal_macs / cycles:.1%} of the array; "
              f"{cycles / board.clock_mhz() / 1e3:.2f} ms at {board.clock_mhz():g} MHz; "
              f"{wall:.0f} s wall ({cycles / wall:,.0f} cycles/s, the Verilator build included if not cached)")


if __name__ == "__main__":
    main()
