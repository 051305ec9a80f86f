# SPDX-License-Identifier: Apache-2.0
"""The MoE engine in Python: GATE_TOPK and EXPERT_FFN (docs/isa.md §3.10), their cycle estimate (§5 of
docs/moe-isa-proposal.md) and DDR traffic.

The numerics are ``hwgen.golden.moe``'s (docs/moe.md): the gate is a LINEAR of ``N = E`` without
bias, requantized into the softmax unit's input, the softmax unit, :func:`hwgen.golden.moe.topk`'s
tie rule and :func:`hwgen.golden.moe.dispatch`'s lists; each expert is FC1 → GELU/ReLU → FC2 with
the LINEAR engine's integer steps, and ``score·y`` is summed exactly. Unlike the other engines', the
work of an EXPERT_FFN depends on data (the counts the gate wrote), so its estimate reads them from
the image when it has one, and the task is a run argument (the ``TASK`` register).

``BAD_TASK`` and ``BAD_COUNT`` (:func:`hwgen.isa.rules.check_task`, :func:`~hwgen.isa.rules.check_counts`,
:func:`~hwgen.isa.rules.check_list`) are raised as :class:`Stopped` before the descriptor writes anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel, beats
from hwgen.compiler.engines.integer import requantize_int, wrap
from hwgen.compiler.layout import read_rows, read_tiles, read_vector, write_rows
from hwgen.golden import moe as golden_moe
from hwgen.golden import nonlinear as nl
from hwgen.golden.products import exact_matmul
from hwgen.hwparams import HwParams
from hwgen.isa import LIST_ENTRY_BYTES, ExpertFfnDescriptor, GateTopkDescriptor, MoeFlag, Opcode, Refusal
from hwgen.isa.rules import Limits, check_counts, check_list, check_task

__all__ = ["Stopped", "run", "estimate", "ddr_bytes", "read_counts", "read_list", "gate_cycles", "expert_cycles",
           "chunk_split", "balanced_counts"]

#: Bits of a list entry's word 0 that hold the token; the slot is the next 8.
_TOKEN_MASK, _SLOT_SHIFT = 0xFFFF, 16


class Stopped(Exception):
    """A run-time refusal of the MoE engine (``BAD_TASK``, ``BAD_COUNT``): nothing of the descriptor was written."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.reason)
        self.refusal = refusal


def read_counts(memory: np.ndarray, desc: GateTopkDescriptor | ExpertFfnDescriptor) -> np.ndarray:
    """The ``E`` u32 token counts at ``counts_addr``."""
    return read_rows(memory, desc.counts_addr, 1, desc.experts, 4 * desc.experts, 4, False)[0]


def read_list(memory: np.ndarray, desc: ExpertFfnDescriptor, hw: HwParams, expert: int,
              count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` entries of expert ``expert``'s list: tokens (word 0, bits 15:0) and score codes
    (word 1, its low ``act_bits``, as the score multiplier takes them)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    addr = desc.lists_addr + expert * Limits(hw).list_stride(desc.m)
    words = read_rows(memory, addr, count, 2, LIST_ENTRY_BYTES, 4, False)
    return words[:, 0] & _TOKEN_MASK, words[:, 1] & ((1 << hw.act_bits) - 1)


def run(desc: GateTopkDescriptor | ExpertFfnDescriptor, memory: np.ndarray, hw: HwParams, task: int = 0) -> None:
    """Execute one GATE_TOPK (for ``task``, the ``TASK`` register) or EXPERT_FFN descriptor on ``memory``."""
    if desc.opcode == Opcode.GATE_TOPK:
        _run_gate(desc, memory, hw, task)
    else:
        _run_experts(desc, memory, hw)


def _run_gate(desc: GateTopkDescriptor, memory: np.ndarray, hw: HwParams, task: int) -> None:
    refusal = check_task(desc.tasks, task)
    if refusal:
        raise Stopped(refusal)
    act, m, experts, k = hw.act_bytes, desc.m, desc.experts, desc.top_k
    x = read_rows(memory, desc.x_addr, m, desc.k, desc.x_stride, act, True)
    w = read_tiles(memory, desc.w_addr + task * desc.task_stride, desc.k_tiles, desc.n_tiles, hw.lanes_in,
                   hw.lanes_out, hw.weight_bytes, hw.tile_stride(hw.weight_bytes), True)[:desc.k, :experts]
    acc = wrap(exact_matmul(x, w), hw.acc_bits, True)  # step 1, in the array's accumulators
    z = wrap(requantize_int(acc, desc.rq), hw.act_bits, True)
    p = nl.softmax(hw.unit_formats().softmax_config(), z)  # step 2: the softmax unit
    scores, idx = golden_moe.topk(p, k)  # step 3: k-long insertion, ties to the lower index
    top_stride = hw.align(k * act)
    if desc.probs_addr:
        write_rows(memory, desc.probs_addr, p, hw.align(experts * act), act)
    write_rows(memory, desc.top_addr, scores, top_stride, act)
    write_rows(memory, desc.idx_addr, idx, top_stride, act)
    stride = Limits(hw).list_stride(m)
    counts = np.zeros(experts, dtype=np.int64)
    for e, (tokens, slots) in enumerate(golden_moe.dispatch(idx, experts)):  # step 4
        counts[e] = len(tokens)
        if len(tokens):
            entries = np.stack([tokens | (slots << _SLOT_SHIFT), scores[tokens, slots]], axis=1)
            write_rows(memory, desc.lists_addr + e * stride, entries, LIST_ENTRY_BYTES, 4)
    write_rows(memory, desc.counts_addr, counts[None, :], 4 * experts, 4)


def _expert_weights(memory: np.ndarray, desc: ExpertFfnDescriptor, hw: HwParams, expert: int):
    """W1 (D, H), b1 (H), W2 (H, D), b2 (D) of ``expert``, as its weight block lays them out."""
    limits = Limits(hw)
    (k1, n1), (k2, n2) = limits.expert_tiles(desc.d, desc.h)
    block = limits.expert_block(desc.d, desc.h)
    base = desc.w_addr + expert * desc.expert_stride
    tile = hw.tile_stride(hw.weight_bytes)
    w1 = read_tiles(memory, base + block.w1, k1, n1, hw.lanes_in, hw.lanes_out, hw.weight_bytes, tile, True)
    w2 = read_tiles(memory, base + block.w2, k2, n2, hw.lanes_in, hw.lanes_out, hw.weight_bytes, tile, True)
    b1 = read_vector(memory, base + block.b1, desc.h, hw.bias_bytes)
    b2 = read_vector(memory, base + block.b2, desc.d, hw.bias_bytes)
    return w1[:desc.d, :desc.h], b1, w2[:desc.h, :desc.d], b2


def _run_experts(desc: ExpertFfnDescriptor, memory: np.ndarray, hw: HwParams) -> None:
    act, m, d = hw.act_bytes, desc.m, desc.d
    counts = read_counts(memory, desc)
    refusal = check_counts(counts, m, desc.top_k)
    if refusal:
        raise Stopped(refusal)
    lists = [read_list(memory, desc, hw, e, int(c)) for e, c in enumerate(counts)]
    for e, (tokens, _) in enumerate(lists):  # every list before the first write (HIDDEN_DDR's scratch)
        refusal = check_list(tokens, e, m)
        if refusal:
            raise Stopped(refusal)
    row = hw.align(d * act)
    x = read_rows(memory, desc.x_addr, m, d, row, act, True)
    gelu = hw.unit_formats().gelu_config()
    total = np.zeros((m, d), dtype=np.int64)  # the on-chip accumulator A
    hidden_row = hw.align(desc.h * act)
    for e, (tokens, scores) in enumerate(lists):  # ascending; the order changes no bit
        if not len(tokens):
            continue  # no token chose this expert: its weights are never read
        w1, b1, w2, b2 = _expert_weights(memory, desc, hw, e)
        h = requantize_int(wrap(exact_matmul(x[tokens], w1) + b1, hw.acc_bits, True), desc.rq_hidden)
        g = np.maximum(h, 0) if desc.flags & MoeFlag.RELU else nl.gelu(gelu, wrap(h, hw.act_bits, True))
        if desc.flags & MoeFlag.HIDDEN_DDR:  # one row per list position, read back by FC2
            write_rows(memory, desc.hidden_addr, g, hidden_row, act)
            g = read_rows(memory, desc.hidden_addr, len(tokens), desc.h, hidden_row, act, True)
        else:
            g = wrap(g, hw.act_bits, True)
        y = requantize_int(wrap(exact_matmul(g, w2) + b2, hw.acc_bits, True), desc.rq_expert)  # step 5
        np.add.at(total, tokens, scores[:, None] * wrap(y, hw.act_bits, True))  # step 6: exact products
        total = wrap(total, hw.moe_acc_bits, True)
    y = requantize_int(total, desc.rq_out)  # step 7
    if desc.flags & MoeFlag.RESIDUAL:
        r = read_rows(memory, desc.res_addr, m, d, row, act, True)
        y = requantize_int(wrap((y << desc.y_shift) + (r << desc.r_shift), hw.acc_bits, True), desc.rq2)
    write_rows(memory, desc.out_addr, y, row, act)


# The cycle model (docs/moe-isa-proposal.md §5): the calibrated §5 model of docs/isa.md for the array and
# the channels, the weight stream as one sequence of chunks over every active expert.


def balanced_counts(m: int, top_k: int, experts: int) -> list[int]:
    """``M·k`` token slots spread as evenly as possible over the experts (what a load-balanced gate gives)."""
    slots = m * top_k
    return [slots // experts + (1 if e < slots % experts else 0) for e in range(experts)]


def chunk_split(tiles: int, largest: int) -> list[int]:
    """Output tiles per chunk of an FC of ``tiles`` output tiles, chunks of at most ``largest``: split
    evenly (``ceil(tiles / ceil(tiles / largest))``), since a short last chunk could not hide the next load."""
    chunks = -(-tiles // largest)
    size = -(-tiles // chunks)
    return [min(size, tiles - start) for start in range(0, tiles, size)]


def gate_cycles(hw: HwParams, model: CycleModel, m: int, dim: int, experts: int, top_k: int,
                probs: bool = True) -> tuple[int, int]:
    """(cycles, ideal) of a GATE_TOPK: the array (``k_tiles·n_tiles`` per token), the x row, the softmax unit
    (one element a cycle), the top/idx (and probs) rows, then the lists and counts."""
    k_tiles, n_tiles = -(-dim // hw.lanes_in), -(-experts // hw.lanes_out)
    wload = beats(Limits(hw).gate_bytes(k_tiles, n_tiles), hw)
    x_row = beats(dim * hw.act_bytes, hw)
    per_token = max(k_tiles * n_tiles, x_row, experts)
    lists = beats(LIST_ENTRY_BYTES * m * top_k, hw) + beats(4 * experts, hw)  # written at the end
    rows_out = m * (2 * beats(top_k * hw.act_bytes, hw) + (beats(experts * hw.act_bytes, hw) if probs else 0))
    cycles = (model.descriptor_fetch(hw) + model.latency + wload + x_row + m * per_token + model.row_latency
              + max(lists + rows_out - m * per_token, 0) + lists + model.drain)
    return cycles, m * k_tiles * n_tiles


def expert_cycles(hw: HwParams, model: CycleModel, counts: Sequence[int], m: int, dim: int, hidden: int,
                  chunks: tuple[int, int], hidden_on_chip: bool, weight_port: bool = False) -> dict:
    """An EXPERT_FFN: every active expert's FC1 then FC2 as one stream of weight chunks, each loading
    while the previous computes; x gathered by token; hidden rows on chip or in DDR scratch; ``score·y``
    into the on-chip accumulator; at the end one pass requantizes, adds the residual and writes the
    output. ``chunks`` are the largest FC1 and FC2 chunks (the descriptor's ``chunk1``, ``chunk2``);
    ``weight_port``: a second AXI master carries the weights (a what-if of the proposal).

    Returns ``cycles``, ``ideal`` (Σ compute), ``weight_bytes`` (weights read), ``fetch``, ``first_load``,
    ``body``, ``drain``.
    """
    limits = Limits(hw)
    (k1, n1), (k2, n2) = limits.expert_tiles(dim, hidden)
    tile = hw.tile_stride(hw.weight_bytes)
    x_row, h_row = beats(dim * hw.act_bytes, hw), beats(hidden * hw.act_bytes, hw)
    stream = []  # (tokens, tiles, k_tiles, row beats read per token, row beats written per token)
    for n in counts:
        if n == 0:
            continue
        for t in chunk_split(n1, chunks[0]):
            stream.append((n, t, k1, x_row, 0 if hidden_on_chip else beats(t * hw.lanes_out * hw.act_bytes, hw)))
        for t in chunk_split(n2, chunks[1]):
            stream.append((n, t, k2, 0 if hidden_on_chip else h_row, 0))
    load = [beats(t * k * tile, hw) + beats(t * hw.lanes_out * hw.bias_bytes, hw) for _, t, k, _, _ in stream]
    body = compute_total = weight_beats = 0
    for i, (n, t, k, rin, rout) in enumerate(stream):
        compute = n * t * k
        nxt = load[i + 1] if i + 1 < len(stream) else 0
        if weight_port:  # a second AXI master carries the weights; the first the gathered rows
            reads = max(n * rin, -(-(n * rin + n * model.latency) // model.reads_in_flight), nxt + model.latency)
        else:
            reads = n * rin + nxt
            bursts = n * (1 if rin else 0) + -(-nxt // model.weight_piece_beats) + 1  # +1: the next list / counts
            reads = max(reads, -(-(reads + bursts * model.latency) // model.reads_in_flight))
        body += max(compute, reads, n * rout)
        compute_total += compute
        weight_beats += load[i]
    # FC2 after FC1 in DDR: its first hidden row waits for FC1's last write (per active expert).
    hazards = 0 if hidden_on_chip else sum(1 for n in counts if n) * (model.latency + model.drain)
    fetch = model.descriptor_fetch(hw)
    first_load = 2 * model.latency + beats(4 * len(counts), hw) + (load[0] if load else 0) + x_row
    drain = model.latency + m * x_row + model.drain  # the final pass: residual read / output write per row
    return {"cycles": fetch + first_load + body + hazards + drain, "ideal": compute_total,
            "weight_bytes": weight_beats * hw.axi_bytes, "fetch": fetch, "first_load": first_load,
            "body": body + hazards, "drain": drain}


def estimate(desc: GateTopkDescriptor | ExpertFfnDescriptor, hw: HwParams, model: CycleModel,
             memory: np.ndarray | None = None) -> CycleEstimate:
    """The cycle estimate of one GATE_TOPK or EXPERT_FFN. An EXPERT_FFN's depends on the token counts:
    those in ``memory`` (the image after its GATE_TOPK ran), else evenly spread ones (:func:`balanced_counts`)."""
    fetch = model.descriptor_fetch(hw)
    if desc.opcode == Opcode.GATE_TOPK:
        cycles, ideal = gate_cycles(hw, model, desc.m, desc.k, desc.experts, desc.top_k, bool(desc.probs_addr))
        first_load = model.latency + beats(Limits(hw).gate_bytes(desc.k_tiles, desc.n_tiles), hw)
        drain = model.row_latency + model.drain
        return CycleEstimate(ideal, cycles, fetch, first_load, cycles - fetch - first_load - drain, drain)
    e = expert_cycles(hw, model, _counts(desc, hw, memory), desc.m, desc.d, desc.h, (desc.chunk1, desc.chunk2),
                      not desc.flags & MoeFlag.HIDDEN_DDR)
    return CycleEstimate(e["ideal"], e["cycles"], e["fetch"], e["first_load"], e["body"], e["drain"])


def _counts(desc: ExpertFfnDescriptor, hw: HwParams, memory: np.ndarray | None) -> list[int]:
    if memory is None:
        return balanced_counts(desc.m, desc.top_k, desc.experts)
    return [int(c) for c in read_counts(memory, desc)]


def ddr_bytes(desc: GateTopkDescriptor | ExpertFfnDescriptor, hw: HwParams,
              counts: Sequence[int] | None = None) -> tuple[int, int]:
    """(bytes read, bytes written) by one descriptor, whole AXI beats. GATE_TOPK: x, one task's gate; top,
    idx, probs, the lists and counts. EXPERT_FFN (with the token ``counts`` of its layer, else balanced ones):
    the counts and lists, each active expert's weights once and its tokens' rows of x (and hidden rows with
    HIDDEN_DDR), the residual; the output (and hidden rows)."""
    act = hw.act_bytes
    if desc.opcode == Opcode.GATE_TOPK:
        read = desc.m * beats(desc.k * act, hw) + beats(Limits(hw).gate_bytes(desc.k_tiles, desc.n_tiles), hw)
        rows = 2 * beats(desc.top_k * act, hw) + (beats(desc.experts * act, hw) if desc.probs_addr else 0)
        written = desc.m * rows + beats(LIST_ENTRY_BYTES * desc.m * desc.top_k, hw) + beats(4 * desc.experts, hw)
        return read * hw.axi_bytes, written * hw.axi_bytes
    counts = balanced_counts(desc.m, desc.top_k, desc.experts) if counts is None else list(counts)
    block = Limits(hw).expert_block(desc.d, desc.h)
    active = [n for n in counts if n]
    x_row, h_row = beats(desc.d * act, hw), beats(desc.h * act, hw)
    ddr_hidden = bool(desc.flags & MoeFlag.HIDDEN_DDR)
    read = (beats(4 * desc.experts, hw) + sum(beats(LIST_ENTRY_BYTES * n, hw) for n in active)
            + len(active) * beats(block.size, hw) + sum(active) * (x_row + (h_row if ddr_hidden else 0))
            + (desc.m * x_row if desc.flags & MoeFlag.RESIDUAL else 0))
    written = desc.m * x_row + (sum(active) * h_row if ddr_hidden else 0)
    return read * hw.axi_bytes, written * hw.axi_bytes
