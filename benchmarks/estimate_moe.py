# SPDX-License-Identifier: Apache-2.0
"""Cycle estimate of m3vit-tiny under the MoE ISA proposal (docs/moe-isa-proposal.md).

Dense part: the compiler's Program for m3vit-tiny with every block dense (the top-2 x 384 MoE FFN has
exactly the MACs of the 768 MLP), each descriptor estimated by the calibrated §5 model; the odd blocks'
fc1/fc2 are then replaced by the GATE_TOPK + EXPERT_FFN model (the MoE engine's estimate,
hwgen.compiler.engines.moe, one definition), run on the token counts the golden model's gates give for
a seeded image (both tasks), and on what-if scenarios the compiled Program does not have (a balanced
gate, hidden rows in DDR, a second weight port). benchmarks/bench_moe.py runs the compiled m3vit-tiny
itself on isa_sim. Run: .venv/bin/python benchmarks/estimate_moe.py
"""

from __future__ import annotations

import sys
import time

import yaml

from hwgen import golden, zoo
from hwgen.compiler import CycleModel, compile_graph, estimate_cycles
from hwgen.compiler.engines import moe as moe_engine
from hwgen.frontend.spec import parse_spec
from hwgen.golden import moe
from hwgen.hwparams import HwParams
from hwgen.isa import Limits
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig

M = CycleModel()


def dense_variant() -> dict:
    spec = yaml.safe_load(zoo.resolve("m3vit-tiny").read_text())
    layers = []
    for layer in spec["layers"]:
        name = layer["name"]
        b = name.split(".")[0]
        if layer["op"] == "MoEGate":
            layers += [{"name": f"{b}.fc1", "op": "Linear", "input": layer["input"], "features": 768},
                       {"name": f"{b}.gelu", "op": "GELU", "input": f"{b}.fc1"},
                       {"name": f"{b}.fc2", "op": "Linear", "input": f"{b}.gelu", "features": 192}]
        elif layer["op"] in ("Softmax", "TopK", "Expert") and name.startswith(b + ".") and name.split(".")[1] in ("probs", "top", "moe"):
            continue
        elif layer["op"] == "Add" and name.endswith(".out") and layer["inputs"][0].endswith(".moe"):
            layers.append({**layer, "inputs": [f"{b}.fc2", layer["inputs"][1]]})
        else:
            layers.append(layer)
    return {**spec, "name": "m3vit-dense", "layers": layers}


def gate_cycles(hw: HwParams, tokens: int, dim: int, experts: int, k: int) -> int:
    """GATE_TOPK without the probabilities: the engine's model (hwgen.compiler.engines.moe.gate_cycles)."""
    return moe_engine.gate_cycles(hw, M, tokens, dim, experts, k, probs=False)[0]


def expert_cycles(hw: HwParams, counts: list[int], dim: int, hidden: int, hidden_on_chip: bool,
                  weight_port: bool = False) -> dict:
    """EXPERT_FFN: the engine's model (hwgen.compiler.engines.moe.expert_cycles) with the largest chunks that
    fit the weight bank, as the compiler chooses them."""
    limits = Limits(hw)
    (k1, n1), (k2, n2) = limits.expert_tiles(dim, hidden)
    chunks = (limits.moe_largest_chunk(k1, n1), limits.moe_largest_chunk(k2, n2))
    tokens = sum(counts) // 2  # top-2
    return moe_engine.expert_cycles(hw, M, counts, tokens, dim, hidden, chunks, hidden_on_chip, weight_port)


def main(lanes: int = 16, axi: int = 128, weight_buffer: int = 65536) -> None:
    hw = HwParams(lanes_in=lanes, lanes_out=lanes, axi_data_width=axi, acc_bits=48, has_attention=True,
                  weight_buffer_bytes=weight_buffer)
    dense = parse_spec(dense_variant(), where="m3vit-dense").graph
    qd = run_passes(dense, QuantConfig.for_hw(hw))
    program, image = compile_graph(qd, hw)
    est = [estimate_cycles(d, hw) for d in program.descriptors]
    labels = image.labels
    odd_ffn = {f"b{b}.{l}" for b in range(1, 12, 2) for l in ("fc1", "fc2")}
    dense_total = M.program_overhead(hw) + sum(e.cycles for e in est)
    removed = sum(e.cycles for e, lab in zip(est, labels) if lab.split(" + ")[0] in odd_ffn)
    removed_ideal = sum(e.ideal for e, lab in zip(est, labels) if lab.split(" + ")[0] in odd_ffn)
    by_kind: dict[str, list[int]] = {}
    for d, e, lab in zip(program.descriptors, est, labels):
        head = lab.split(" + ")[0]
        kind = ("moe-ffn (replaced)" if head in odd_ffn else "attention" if d.opcode in (3, 4) else
                "layernorm" if d.opcode == 5 else "patch" if d.opcode == 2 else
                "mlp" if head.endswith(("fc1", "fc2")) else "qkv/proj/other")
        by_kind.setdefault(kind, [0, 0])
        by_kind[kind][0] += e.cycles
        by_kind[kind][1] += e.ideal

    m3 = run_passes(zoo.load_model("m3vit-tiny").graph, QuantConfig.for_hw(hw))
    x = golden.quantize_inputs(m3, golden.sample_inputs(m3, seed=0))
    print(f"hw {lanes}x{lanes} AXI{axi} weight bank {weight_buffer // 1024} KiB; dense part {dense_total:,} cycles"
          f" ({len(program.descriptors)} descriptors)")
    for kind, (c, i) in sorted(by_kind.items()):
        print(f"  {kind:<20} {c:>10,} cycles  ideal {i:>10,}  ({100 * i / max(c, 1):.1f} %)")
    balanced = [258 // 16 + (1 if e < 258 % 16 else 0) for e in range(16)]
    scenarios = {}
    for task in (0, 1):
        t0 = time.perf_counter()
        values = golden.run(m3, x, task=task)
        print(f"golden m3vit-tiny task {task}: {time.perf_counter() - t0:.2f} s")
        counts = [[len(t) for t, _ in moe.dispatch(values[f"b{b}.top.indices"], 16)] for b in range(1, 12, 2)]
        print(f"  token counts per MoE layer: min {[min(c) for c in counts]}, max {[max(c) for c in counts]},"
              f" active experts {[sum(1 for n in c if n) for c in counts]}")
        scenarios[f"seeded image, task {task}"] = counts
    scenarios["balanced gate (16-17 tokens each)"] = [balanced] * 6
    for name, counts in scenarios.items():
        for on_chip, port in ((True, False), (False, False), (True, True)):
            total, ideal, wbytes, gates, moe_cycles = dense_total - removed, 0, 0, 0, 0
            for c in counts:
                g = gate_cycles(hw, 129, 192, 16, 2)
                ex = expert_cycles(hw, c, 192, 384, on_chip, port)
                total += g + ex["cycles"]
                moe_cycles += g + ex["cycles"]
                gates += g
                ideal += ex["ideal"]
                wbytes += ex["weight_bytes"]
            print(f"{name:<36} hidden {'on chip' if on_chip else 'in DDR '}{', 2nd weight port' if port else '':<18}:"
                  f" total {total:>9,} cycles; MoE layers {moe_cycles:>9,} (gates {gates:,}, expert ideal {ideal:,}:"
                  f" {100 * ideal / moe_cycles:.0f} %); expert weights {wbytes / 1e6:.2f} MB")
    print(f"dense FFN cycles the MoE layers replace: {removed:,} (ideal {removed_ideal:,})")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
