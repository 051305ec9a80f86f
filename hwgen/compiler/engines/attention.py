# SPDX-License-Identifier: Apache-2.0
"""The attention engine in Python: QK_SOFTMAX_STATS and AV (docs/isa.md §3.8), their cycle estimate and DDR traffic (§5).

Both run every head of a layer in one descriptor, on the full ``lanes_in × lanes_out`` array, head
by head: the head's second operand (K, or V) is loaded into a weight bank as ``act_bytes`` tiles
(the next head's load hides behind this head's rows), then each query row streams through once.
QK_SOFTMAX_STATS writes each score row as it leaves the array and that row's statistics (max,
1/sum) computed in the same pass; AV reads each score row and its statistics once, turns the
scores into probabilities on the fly and accumulates p·V.
"""

from __future__ import annotations

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel, beats
from hwgen.compiler.engines.integer import requantize_int, wrap
from hwgen.compiler.layout import read_rows, write_rows
from hwgen.golden import nonlinear as nl
from hwgen.golden.attention import merge_heads, split_heads
from hwgen.golden.products import exact_matmul
from hwgen.hwparams import HwParams
from hwgen.isa import OPCODE_QK_SOFTMAX_STATS, STATS_ENTRY_BYTES, AttentionDescriptor, Limits

__all__ = ["run", "estimate", "ddr_bytes", "read_stats"]


def read_stats(memory: np.ndarray, desc: AttentionDescriptor, hw: HwParams) -> tuple[np.ndarray, np.ndarray]:
    """The (max, 1/sum) of every score row, as AV reads them: the max is the low ``act_bits`` of word 0,
    sign-extended; 1/sum the low ``inv_fmt.width`` bits of word 1."""
    words = read_rows(memory, desc.stats_addr, desc.heads * desc.m, 2, STATS_ENTRY_BYTES, 4, False)
    inv_bits = hw.unit_formats().softmax_config().inv_fmt.width
    return wrap(words[:, 0], hw.act_bits, True), words[:, 1] & ((1 << inv_bits) - 1)


def run(desc: AttentionDescriptor, memory: np.ndarray, hw: HwParams) -> None:
    """Execute one QK_SOFTMAX_STATS or AV descriptor on ``memory``, as docs/isa.md §3.8 says."""
    cfg = hw.unit_formats().softmax_config()
    act, heads, width = hw.act_bytes, desc.heads, desc.heads * desc.d_head
    if desc.opcode == OPCODE_QK_SOFTMAX_STATS:
        q = read_rows(memory, desc.q_addr, desc.m, width, desc.q_stride, act, True)
        k = read_rows(memory, desc.k_addr, desc.s, width, desc.k_stride, act, True)
        acc = wrap(exact_matmul(split_heads(q, heads), split_heads(k, heads).transpose(0, 2, 1)), hw.acc_bits, True)
        scores = wrap(requantize_int(acc * desc.scale, desc.rq), hw.act_bits, True).reshape(heads * desc.m, desc.s)
        write_rows(memory, desc.scores_addr, scores, desc.scores_stride, act)
        top, inv = nl.softmax_stats(cfg, scores)
        write_rows(memory, desc.stats_addr, np.stack([top, inv], axis=1), STATS_ENTRY_BYTES, 4)
        return
    scores = read_rows(memory, desc.scores_addr, heads * desc.m, desc.s, desc.scores_stride, act, True)
    top, inv = read_stats(memory, desc, hw)
    p = nl.softmax_normalize(cfg, scores, top[:, None], inv[:, None]).reshape(heads, desc.m, desc.s)
    v = read_rows(memory, desc.v_addr, desc.s, width, desc.v_stride, act, True)
    acc = wrap(exact_matmul(p, split_heads(v, heads)), hw.acc_bits, True)
    write_rows(memory, desc.out_addr, merge_heads(requantize_int(acc, desc.rq)), desc.out_stride, act)


def _rows(desc: AttentionDescriptor, hw: HwParams) -> tuple[int, int, int, int]:
    """Beats per query row read and written, and beats and bursts of one head's second operand."""
    act = hw.act_bytes
    operand_row = beats(desc.d_head * act, hw)  # one row of a head's K or V
    if desc.opcode == OPCODE_QK_SOFTMAX_STATS:
        row_in, row_out = beats(desc.d_head * act, hw), beats(desc.s * act, hw) + beats(STATS_ENTRY_BYTES, hw)
    else:
        row_in, row_out = beats(desc.s * act, hw), beats(desc.d_head * act, hw)
    return row_in, row_out, desc.s * operand_row, desc.s


def estimate(desc: AttentionDescriptor, hw: HwParams, model: CycleModel) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one QK_SOFTMAX_STATS or AV descriptor.

    Per head: ``M`` query rows of ``k_tiles · n_tiles`` array cycles each (the head's K or V resident
    in a weight bank), against the read channel (each row's Q segment or score row, AV's statistics
    of the head in one burst, and the next head's operand, row by row, ``reads_in_flight`` bursts at
    a time) and the write channel (score rows and statistics, or output rows). The first head's
    operand and first row cannot hide; QK adds the statistics pipeline (``row_latency``) to the drain.
    """
    k_tiles, n_tiles = Limits(hw).attention_product(desc.opcode, desc.s, desc.d_head)
    row_in, row_out, operand, operand_bursts = _rows(desc, hw)
    qk = desc.opcode == OPCODE_QK_SOFTMAX_STATS
    stats_in = 0 if qk else beats(desc.m * STATS_ENTRY_BYTES, hw)
    compute = desc.m * k_tiles * n_tiles
    body = 0
    for head in range(desc.heads):
        last = head == desc.heads - 1
        next_operand, next_bursts = (0, 0) if last else (operand, operand_bursts)
        reads = desc.m * row_in + stats_in + next_operand
        lifetimes = (desc.m + int(not qk) + next_bursts) * model.latency + reads
        reads = max(reads, -(-lifetimes // model.reads_in_flight))
        body += max(compute, reads, desc.m * row_out)
    fetch = model.descriptor_fetch(hw)
    first_operand = max(operand, -(-operand_bursts // model.reads_in_flight) * (model.latency + operand // operand_bursts))
    first_load = model.latency + first_operand + row_in
    drain = model.drain + (model.row_latency if qk else 0)
    ideal = desc.heads * compute
    return CycleEstimate(ideal, fetch + first_load + body + drain, fetch, first_load, body, drain)


def ddr_bytes(desc: AttentionDescriptor, hw: HwParams) -> tuple[int, int]:
    """(bytes read, bytes written) by one descriptor, whole AXI beats: Q, K (or the scores, their
    statistics and V) read once per head, the scores and statistics (or the output) written once."""
    row_in, row_out, operand, _ = _rows(desc, hw)
    stats_in = 0 if desc.opcode == OPCODE_QK_SOFTMAX_STATS else beats(desc.m * STATS_ENTRY_BYTES, hw)
    read = desc.heads * (desc.m * row_in + stats_in + operand)
    written = desc.heads * desc.m * row_out
    return read * hw.axi_bytes, written * hw.axi_bytes
