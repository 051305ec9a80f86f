# SPDX-License-Identifier: Apache-2.0
"""Cycle estimate of m3vit-tiny under the MoE ISA proposal (docs/moe-isa-proposal.md).

Dense part: the compiler's Program for m3vit-tiny with every block dense (the top-2 x 384 MoE FFN has
exactly the MACs of the 768 MLP), each descriptor estimated by the calibrated §5 model; the odd blocks'
fc1/fc2 are then replaced by the proposal's GATE_TOPK + EXPERT_FFN model, run on the token counts the
golden model's gates give for a seeded image (both tasks). Run: .venv/bin/python benchmarks/estimate_moe.py
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import yaml

from hwgen import golden, zoo
from hwgen.compiler import CycleModel, compile_graph, estimate_cycles
from hwgen.compiler.cycles import beats
from hwgen.frontend.spec import parse_spec
from hwgen.golden import moe
from hwgen.hwparams import HwParams
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
    """GATE_TOPK: the array (k_tiles per token), the x row, the softmax unit (1 element a cycle), lists out."""
    k_tiles = -(-dim // hw.lanes_in)
    n_tiles = -(-experts // hw.lanes_out)
    wload = beats(n_tiles * k_tiles * hw.tile_stride(hw.weight_bytes), hw)
    x_row = beats(dim * hw.act_bytes, hw)
    per_token = max(k_tiles * n_tiles, x_row, experts)
    lists = beats(8 * tokens * k, hw) + beats(4 * experts, hw)  # entries + counts, written at the end
    topk_out = 2 * tokens * beats(k * hw.act_bytes, hw)         # top values and indices rows (graph tensors)
    return (M.descriptor_fetch(hw) + M.latency + wload + x_row + tokens * per_token + M.row_latency
            + max(lists + topk_out - tokens * per_token, 0) + lists + M.drain)


def chunk_split(tiles: int, k_tiles: int, hw: HwParams) -> list[int]:
    per_tile = k_tiles * hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes
    c_max = hw.weight_buffer_bytes // per_tile
    chunks = -(-tiles // c_max)
    size = -(-tiles // chunks)  # even chunks: a short last chunk cannot hide the next load
    return [min(size, tiles - s) for s in range(0, tiles, size)]


def expert_cycles(hw: HwParams, counts: list[int], dim: int, hidden: int, hidden_on_chip: bool,
                  weight_port: bool = False) -> dict:
    """EXPERT_FFN: every active expert's FC1 then FC2 as one stream of weight chunks, each loading while
    the previous computes; x gathered by token; hidden rows on chip or in DDR scratch; score·y into the
    on-chip wide accumulator; at the end one pass requantizes, adds the residual and writes the output."""
    k1, n1 = -(-dim // hw.lanes_in), -(-hidden // hw.lanes_out)
    k2, n2 = -(-hidden // hw.lanes_in), -(-dim // hw.lanes_out)
    tile = hw.tile_stride(hw.weight_bytes)
    x_row, h_row = beats(dim * hw.act_bytes, hw), beats(hidden * hw.act_bytes, hw)
    stream = []  # (n tokens, tiles, k_tiles, row beats read per token, row beats written per token)
    for n in counts:
        if n == 0:
            continue
        for t in chunk_split(n1, k1, hw):
            stream.append((n, t, k1, x_row, 0 if hidden_on_chip else beats(t * hw.lanes_out * hw.act_bytes, hw)))
        for t in chunk_split(n2, k2, hw):
            stream.append((n, t, k2, 0 if hidden_on_chip else h_row, 0))
    load = [beats(t * k * tile, hw) + beats(t * hw.lanes_out * hw.bias_bytes, hw) for _, t, k, _, _ in stream]
    body = compute_total = weight_beats = 0
    for i, (n, t, k, rin, rout) in enumerate(stream):
        compute = n * t * k
        nxt = load[i + 1] if i + 1 < len(stream) else 0
        if weight_port:  # a second AXI master carries the weights; the first the gathered rows
            reads = max(n * rin, -(-(n * rin + n * M.latency) // M.reads_in_flight), nxt + M.latency)
        else:
            reads = n * rin + nxt
            bursts = n * (1 if rin else 0) + -(-nxt // M.weight_piece_beats) + 1  # +1: the next list / counts
            reads = max(reads, -(-(reads + bursts * M.latency) // M.reads_in_flight))
        body += max(compute, reads, n * rout)
        compute_total += compute
        weight_beats += load[i]
    # FC2 after FC1 in DDR: its first hidden row waits for FC1's last write (per active expert).
    hazards = 0 if hidden_on_chip else sum(1 for n in counts if n) * (M.latency + M.drain)
    start = M.descriptor_fetch(hw) + 2 * M.latency + beats(4 * len(counts), hw) + load[0] + x_row
    tokens = sum(counts) // 2
    drain = M.latency + tokens * beats(dim * hw.act_bytes, hw) + M.drain  # residual read / output write per row
    return {"cycles": start + body + hazards + drain, "ideal": compute_total, "weight_bytes": weight_beats * hw.axi_bytes}


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
