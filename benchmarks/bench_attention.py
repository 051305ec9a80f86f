# SPDX-License-Identifier: Apache-2.0
"""Attention figures for vit-block (one DeiT-tiny encoder block) on hardware with the attention engine.

Run: ``.venv/bin/python benchmarks/bench_attention.py``. Prints the best-of-N wall time of the golden
model and of isa_sim, the SQNR of the attention output and the block output against float, and per
lane configuration the cycle estimate of the QK_SOFTMAX_STATS/AV pair (docs/isa.md §5) with its
utilization against the tile ideal and against the 197·197·64·3 MACs per product, and the DDR bytes
each descriptor moves against the minimum (Q, K, V read once, scores written and read once, output
written once). No core implements the engine yet: the cycles are the analytical model's.
"""

from __future__ import annotations

import math

from bench_compiler import best_of  # the script's folder is on sys.path

from hwgen import golden, zoo
from hwgen.compiler import CycleModel, compile_graph, isa_sim
from hwgen.compiler.engines import attention as engine
from hwgen.hwparams import HwParams
from hwgen.isa import OPCODE_QK_SOFTMAX_STATS, AttentionDescriptor
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig

LANES = ((8, 8), (16, 8), (16, 16), (32, 16), (32, 32))
def sqnr(reference, approx) -> float:
    return 10 * math.log10(float((reference**2).sum()) / float(((reference - approx) ** 2).sum()))


def main() -> None:
    hw = HwParams(acc_bits=48, has_attention=True)
    qgraph = run_passes(zoo.load_model("vit-block").graph, QuantConfig.for_hw(hw))
    floats = golden.sample_inputs(qgraph, seed=3)
    raw = golden.quantize_inputs(qgraph, floats)
    values = golden.run(qgraph, raw)
    reference = golden.run_float(qgraph, floats)
    program, image = compile_graph(qgraph, hw)
    start = image.write_all(raw)
    print(f"vit-block: golden {best_of(lambda: golden.run(qgraph, raw), 5):.0f} ms, "
          f"isa_sim {best_of(lambda: isa_sim(program, start, hw), 5):.0f} ms (16x16)")
    for name in ("attn", "out"):
        print(f"  SQNR {name} vs float: {sqnr(reference[name], values[name] * qgraph.tensor(name).fmt.lsb):.1f} dB")
    print("lanes   opcode             cycles  ideal  util(tiles)  util(MACs)  DDR read/written  minimum read/written")
    macs = 197 * 197 * 64 * 3
    for lanes_in, lanes_out in LANES:
        lanes_hw = HwParams(lanes_in=lanes_in, lanes_out=lanes_out, acc_bits=48, has_attention=True)
        lanes_program, _ = compile_graph(qgraph, lanes_hw)
        for desc in (d for d in lanes_program.descriptors if isinstance(d, AttentionDescriptor)):
            estimate = engine.estimate(desc, lanes_hw, CycleModel())
            read, written = engine.ddr_bytes(desc, lanes_hw)
            act, width = lanes_hw.act_bytes, desc.heads * desc.d_head
            if desc.opcode == OPCODE_QK_SOFTMAX_STATS:
                minimum = (2 * 197 * width * act, desc.heads * 197 * (197 * act + 8))
            else:
                minimum = (desc.heads * 197 * (197 * act + 8) + 197 * width * act, 197 * width * act)
            print(f"{f'{lanes_in}x{lanes_out}':<7} {desc.name:<18} {estimate.cycles:>6} {estimate.ideal:>6} "
                  f"{estimate.utilization:>10.1%} {macs / lanes_hw.macs_per_cycle / estimate.cycles:>11.1%} "
                  f"{read:>9}/{written:<8} {minimum[0]:>9}/{minimum[1]}")


if __name__ == "__main__":
    main()
