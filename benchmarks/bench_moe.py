# SPDX-License-Identifier: Apache-2.0
"""m3vit-tiny on the MoE engine, from isa_sim's cycle model (docs/isa.md §3.10, docs/moe-isa-proposal.md §5).

For each core (16×16 / AXI 128 and 32×32 / AXI 128 by default) the compiled Program of m3vit-tiny
runs on isa_sim for both tasks of a seeded image; per task it prints the cycles per layer type
(opcode), the expert weight traffic against one load of every active expert, the MoE layers' DDR
bytes, and the SQNR of the final tokens against the float model. The numbers are the engines'
estimates (hwgen.compiler.engines.*.estimate), the same ones ``hwgen build`` reports.

Run: .venv/bin/python benchmarks/bench_moe.py [LANES ...]   (default: 16 32)
"""

from __future__ import annotations

import sys
import time

from hwgen import golden, zoo
from hwgen.compiler import CycleModel, compile_graph, isa_sim
from hwgen.compiler.engines import moe as moe_engine
from hwgen.golden import moe
from hwgen.hwparams import HwParams
from hwgen.isa import ExpertFfnDescriptor, Flag, GateTopkDescriptor, Limits, LinearDescriptor, MoeFlag, Opcode
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig
from hwgen.units import core_for

MODEL, SEED = "m3vit-tiny", 0


def _kind(desc) -> str:
    if isinstance(desc, LinearDescriptor) and desc.flags & Flag.BYPASS:
        return "BYPASS"
    return Opcode(desc.opcode).name


def main(lanes_list: list[int]) -> None:
    loaded = zoo.load_model(MODEL)
    for lanes in lanes_list:
        hw = core_for(loaded.graph, HwParams(lanes_in=lanes, lanes_out=lanes, axi_data_width=128))
        t0 = time.perf_counter()
        qgraph = run_passes(loaded.graph, QuantConfig.for_hw(hw, formats=loaded.formats))
        program, image = compile_graph(qgraph, hw)
        float_inputs = golden.sample_inputs(qgraph, seed=SEED)
        raw = golden.quantize_inputs(qgraph, float_inputs)
        image = image.write_all(raw)
        print(f"{MODEL} on {hw.lanes_in}x{hw.lanes_out} / AXI {hw.axi_data_width}, acc {hw.acc_bits} b, weight bank "
              f"{hw.weight_buffer_bytes // 1024} KiB, MoE hidden buffer {hw.moe_hidden_bytes} B "
              f"(compiled in {time.perf_counter() - t0:.1f} s; {len(program.descriptors)} descriptors)")
        limits = Limits(hw)
        for task in range(moe.graph_tasks(qgraph)):
            t0 = time.perf_counter()
            result = isa_sim(program, image, hw, task=task)
            values = golden.run(qgraph, raw, task=task)
            after = image.with_data(result.data)
            assert all((after.read(r.name) == values[r.name]).all() for r in image.regions if r.kind.holds_tensor), \
                "isa_sim must equal the golden model"
            report = {row.name: row for row in golden.accuracy_report(qgraph, golden.run_float(qgraph, float_inputs,
                                                                                                 task=task), values)}
            kinds: dict[str, list[int]] = {}
            for desc, est in zip(program.descriptors, result.cycles):
                row = kinds.setdefault(_kind(desc), [0, 0, 0])
                row[0] += 1
                row[1] += est.cycles
                row[2] += est.ideal
            seconds = time.perf_counter() - t0
            print(f"  task {task}: {result.total_cycles:,} cycles (isa_sim + golden + float {seconds:.1f} s), "
                  f"SQNR of 'norm' {report['norm'].sqnr_db:.1f} dB")
            for kind, (count, cycles, ideal) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
                share = 100 * cycles / result.total_cycles
                util = f", {100 * ideal / cycles:5.1f} % of ideal" if ideal else ""
                print(f"    {kind:<17} {count:>3} descriptors {cycles:>10,} cycles ({share:4.1f} %{util})")
            traffic = once = read = written = 0
            active, spread = [], []
            gates = [d for d in program.descriptors if isinstance(d, GateTopkDescriptor)]
            layers = [d for d in program.descriptors if isinstance(d, ExpertFfnDescriptor)]
            for index, (gate, ffn) in enumerate(zip(gates, layers)):
                block = f"b{2 * index + 1}"
                counts = [len(t) for t, _ in moe.dispatch(values[f"{block}.top.indices"], ffn.experts)]
                on_chip = not ffn.flags & MoeFlag.HIDDEN_DDR
                cycles = moe_engine.expert_cycles(hw, CycleModel(), counts, ffn.m, ffn.d, ffn.h,
                                                  (ffn.chunk1, ffn.chunk2), on_chip)
                traffic += cycles["weight_bytes"]
                once += sum(1 for n in counts if n) * limits.expert_block(ffn.d, ffn.h).size
                for desc, layer_counts in ((gate, None), (ffn, counts)):
                    r, w = moe_engine.ddr_bytes(desc, hw, layer_counts)
                    read, written = read + r, written + w
                active.append(sum(1 for n in counts if n))
                spread.append(f"{min(counts)}-{max(counts)}")
            print(f"    expert weights read {traffic / 1e6:.2f} MB; one load per active expert {once / 1e6:.2f} MB "
                  f"(active experts per layer {active}, tokens per expert {spread})")
            print(f"    MoE layers' DDR traffic: {read / 1e6:.2f} MB read, {written / 1e6:.3f} MB written")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [16, 32])
