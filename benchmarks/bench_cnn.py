# SPDX-License-Identifier: Apache-2.0
"""CNN figures: resnet8, mobilenet-block and hybrid on the issue's geometries, from isa_sim's analytical model.

Run: ``.venv/bin/python benchmarks/bench_cnn.py``. For each model: its MACs, the SQNR of its output
against the float model (BatchNorm unfolded, pools as means; seeds 1 and 2), then per geometry
(8x8/AXI64, pynq-z2's 16x8/AXI64 core for the model, 16x16/AXI128) the whole Program's estimated cycles
(docs/isa.md §5, header included), the array's ideal cycles (sum of M·k_tiles·n_tiles), the utilization
(ideal / cycles), the latency at pynq-z2's 100 MHz, and the cycles and utilization per layer type (3x3
convolutions, 1x1 convolutions, depthwise, the global average pool's row, Linear). The cycles are the
analytical model's, calibrated against Verilator on LINEAR (docs/isa.md §5); the RTL core's measured
figures come from its own benches. Figures, not tests: nothing here asserts.
"""

from __future__ import annotations

import math
from collections import defaultdict

from hwgen import golden, zoo
from hwgen.board import load_board
from hwgen.compiler import isa_sim
from hwgen.hwparams import HwParams
from hwgen.isa import ConvDescriptor, Flag
from hwgen.pipeline import build

MODELS = ("resnet8", "mobilenet-block", "hybrid")


def geometries(model: str) -> dict[str, HwParams]:
    graph = zoo.load_model(model).graph
    attention = any(node.op == "Attention" for node in graph.nodes)
    extra = dict(acc_bits=48, has_attention=True) if attention else {}
    return {"8x8-axi64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64, **extra),
            "pynq-z2": load_board("pynq-z2").core_for(graph),
            "16x16-axi128": HwParams(**extra)}


def layer_type(desc, graph, label: str) -> str:
    if not isinstance(desc, ConvDescriptor):
        if desc.name == "LINEAR" and desc.flags & Flag.B_ROWMAJOR and desc.m == 1:
            return "pool row"
        return desc.name.lower()
    node = graph.node(label.split(" + ")[0])
    kernel = graph.tensor(node.inputs[1]).shape
    if node.attr("groups", 1) > 1:
        return "depthwise" if kernel[1] == 1 else "grouped"
    return f"conv {kernel[2]}x{kernel[3]}"


def sqnr(reference, approx) -> float:
    return 10 * math.log10(float((reference**2).sum()) / float(((reference - approx) ** 2).sum()))


def main() -> None:
    clock = load_board("pynq-z2").pl_clock.default_mhz
    for model in MODELS:
        spec = zoo.load_model(model)
        print(f"{model}: {zoo.macs(spec):,} MACs")
        for name, hw in geometries(model).items():
            result = build(spec, hw)
            qgraph, out = result.qgraph, spec.graph.outputs[0]
            if name == "pynq-z2":
                figures = []
                for seed in (1, 2):
                    floats = golden.sample_inputs(qgraph, seed=seed)
                    values = golden.run(qgraph, golden.quantize_inputs(qgraph, floats))
                    reference = golden.run_float(spec.graph, floats)[out]
                    figures.append(sqnr(reference, qgraph.tensor(out).fmt.to_float(values[out])))
                print(f"  SQNR of {out} against float: " + ", ".join(f"{f:.1f} dB" for f in figures))
            image = result.image.write_all(golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=1)))
            run = isa_sim(result.program, image, hw)
            ideal = sum(c.ideal for c in run.cycles)
            print(f"  {name:13s} {hw.lanes_in}x{hw.lanes_out}/AXI{hw.axi_data_width}: {run.total_cycles:,} cycles, "
                  f"ideal {ideal:,}, utilization {ideal / run.total_cycles:.1%}, "
                  f"{run.total_cycles / clock / 1e3:.3f} ms at {clock:g} MHz")
            by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for label, desc, cycles in zip(result.image.labels, result.program.descriptors, run.cycles):
                kind = layer_type(desc, qgraph, label)
                by_type[kind][0] += cycles.cycles
                by_type[kind][1] += cycles.ideal
            for kind, (cycles, kind_ideal) in by_type.items():
                print(f"      {kind:16s} {cycles:9,} cycles, utilization {kind_ideal / cycles:.1%}")


if __name__ == "__main__":
    main()
