# SPDX-License-Identifier: Apache-2.0
"""The LINEAR engine in Python: what one descriptor computes (docs/isa.md §3.3) and its cycle estimate (§5).

CONV (§3.9) runs here too: it is LINEAR whose rows of ``x`` are gathered window by window from a
channels-last feature map, so only reading ``x`` (:func:`read_x`) and the read commands of a row
(:func:`x_row_reads`) differ; a CONV in the RTL's window mode (:func:`conv_window_mode`, docs/isa.md §8.2)
reads each grid row's kh feature-map strips once instead (:func:`conv_strip_beats`).
"""

from __future__ import annotations

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel, beats
from hwgen.compiler.engines.integer import requantize_int, wrap
from hwgen.compiler.layout import read_rows, read_tiles, read_vector, read_windows, write_rows
from hwgen.golden import nonlinear as nl
from hwgen.golden.exact import exact_matmul
from hwgen.hwparams import HwParams
from hwgen.isa import ConvDescriptor, Flag, Limits, LinearDescriptor

__all__ = ["run", "estimate", "read_x", "x_row_reads", "conv_window_mode", "conv_strip_beats"]


def read_x(desc: LinearDescriptor | ConvDescriptor, memory: np.ndarray, hw: HwParams) -> np.ndarray:
    """The M rows of K elements of ``x``: row-major (LINEAR), or gathered window by window (CONV, §3.9)."""
    signed = not desc.flags & Flag.X_UNSIGNED
    if isinstance(desc, ConvDescriptor):
        steps = (desc.stride_y * desc.seg_stride, desc.x_stride, desc.seg_stride)
        return read_windows(memory, desc.x_addr, (desc.grid_h, desc.grid_w), desc.kh, desc.seg_elems, steps,
                            hw.act_bytes, signed)
    return read_rows(memory, desc.x_addr, desc.m, desc.k, desc.x_stride, hw.act_bytes, signed)


def x_row_reads(desc: LinearDescriptor | ConvDescriptor, hw: HwParams) -> tuple[int, int]:
    """(beats, read commands) of one row of ``x``: one burst of the row, or one per kernel row of a window."""
    if isinstance(desc, ConvDescriptor):
        return desc.kh * beats(desc.seg_elems * hw.act_bytes, hw), desc.kh
    return beats(desc.k * hw.act_bytes, hw), 1


def conv_strip_beats(desc: ConvDescriptor, hw: HwParams) -> int:
    """AXI words of one strip of a CONV: one kernel row of a grid row, window 0's first byte to the last
    window's segment end, ``(grid_w − 1)·x_stride + seg_bytes`` (docs/isa.md §8.2)."""
    return beats((desc.grid_w - 1) * desc.x_stride + desc.seg_elems * hw.act_bytes, hw)


def conv_window_mode(desc: LinearDescriptor | ConvDescriptor, hw: HwParams) -> bool:
    """Whether the RTL core runs a CONV in its window mode (docs/isa.md §8.2): its windows overlap or touch
    (``x_stride ≤ seg_bytes``: a strip holds no byte its windows skip) and the ``kh`` strips of a grid row, each
    ``pitch`` AXI words after the one before (the strip rounded up to ``≡ seg_beats`` modulo the ring word's AXI
    words), fit in one activation bank, so each strip is read once per grid row and chunk and the array reads the
    windows out of them. A core whose ring word or ring is not a power of two AXI words has no window mode."""
    if not isinstance(desc, ConvDescriptor):
        return False
    slots = hw.lanes_in * hw.act_bytes // hw.axi_bytes
    ring = 2 * hw.act_buffer_bytes // hw.axi_bytes
    if slots & (slots - 1) or ring & (ring - 1):
        return False
    seg_bytes = desc.seg_elems * hw.act_bytes
    if desc.x_stride > seg_bytes:
        return False
    strip, seg = conv_strip_beats(desc, hw), beats(seg_bytes, hw)
    pitch = strip + (seg - strip) % slots
    return desc.kh * pitch <= ring // 2


def conv_residual_merged(desc: ConvDescriptor, hw: HwParams) -> bool:
    """Whether the RTL core reads a window-mode CONV's residual a grid row per command (docs/isa.md §8.2): one
    chunk, residual rows exactly ``res_stride`` apart (``res_stride = beats(N·act_bytes)·axi_bytes``) and a grid
    row of them within the residual FIFO."""
    row = beats(desc.n * hw.act_bytes, hw)
    fifo = 1 << max(0, 2 * Limits(hw).max_chunk_tiles * (hw.lanes_out * hw.act_bytes // hw.axi_bytes) - 1).bit_length()
    return (desc.chunk_tiles == desc.n_tiles and desc.res_stride == row * hw.axi_bytes
            and desc.grid_w * desc.res_stride // hw.axi_bytes <= fifo)


def run(desc: LinearDescriptor | ConvDescriptor, memory: np.ndarray, hw: HwParams) -> None:
    """Execute one LINEAR (docs/isa.md §3.3) or CONV (§3.9) descriptor on ``memory`` (the image as a uint8 array)."""
    flags = desc.flags
    x = read_x(desc, memory, hw)
    if flags & Flag.BYPASS:
        acc = x
    else:
        w_signed = not flags & Flag.W_UNSIGNED
        if flags & Flag.B_ROWMAJOR:
            w = read_rows(memory, desc.w_addr, desc.k, desc.n, desc.w_stride, hw.act_bytes, w_signed)
        elif flags & Flag.B_TRANSPOSED:
            w = read_rows(memory, desc.w_addr, desc.n, desc.k, desc.w_stride, hw.act_bytes, w_signed).T
        else:
            tiles = read_tiles(
                memory, desc.w_addr, desc.k_tiles, desc.n_tiles, hw.lanes_in, hw.lanes_out,
                hw.weight_bytes, hw.tile_stride(hw.weight_bytes), w_signed,
            )
            w = tiles[: desc.k, : desc.n]
        acc = exact_matmul(x, w)
        if flags & Flag.BIAS:
            acc = acc + read_vector(memory, desc.bias_addr, desc.n, hw.bias_bytes)
        # The accumulator registers are acc_bits wide: an overflowing sum would wrap there too.
        acc = wrap(acc, hw.acc_bits, True)
    y = requantize_int(acc, desc.rq1)
    if flags & Flag.RELU1:
        y = np.maximum(y, 0)
    if flags & Flag.GELU:
        # The GELU lanes read the low act_bits of y1 as their signed input format.
        y = nl.gelu(hw.unit_formats().gelu_config(), wrap(y, hw.act_bits, True))
    if flags & Flag.RESIDUAL:
        r = np.concatenate([
            read_rows(memory, addr, rows, desc.n, desc.res_stride, hw.act_bytes, not flags & Flag.R_UNSIGNED)
            for addr, rows in _grid_rows(desc, desc.res_addr, desc.res_stride, getattr(desc, "res_skip", 0))])
        total = wrap((y << desc.y_shift) + (r << desc.r_shift), hw.acc_bits, True)
        y = requantize_int(total, desc.rq2)
        if flags & Flag.RELU2:
            y = np.maximum(y, 0)
    first = 0
    for addr, rows in _grid_rows(desc, desc.out_addr, desc.out_stride, getattr(desc, "out_skip", 0)):
        write_rows(memory, addr, y[first: first + rows], desc.out_stride, hw.act_bytes)
        first += rows


def _grid_rows(desc: LinearDescriptor | ConvDescriptor, addr: int, stride: int, skip: int) -> list[tuple[int, int]]:
    """(first byte, rows) of each grid row of the output or residual: a LINEAR's M rows are one grid row; a
    CONV's grid rows are ``grid_w·stride + skip`` bytes apart (docs/isa.md §3.9)."""
    if not isinstance(desc, ConvDescriptor):
        return [(addr, desc.m)]
    pitch = desc.grid_w * stride + skip
    return [(addr + gy * pitch, desc.grid_w) for gy in range(desc.grid_h)]


def estimate(desc: LinearDescriptor | ConvDescriptor, hw: HwParams, model: CycleModel) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one LINEAR or CONV descriptor."""
    bypass = bool(desc.flags & Flag.BYPASS)
    residual = int(bool(desc.flags & Flag.RESIDUAL))
    element = Limits(hw).second_operand_bytes(desc.flags)
    bias_bytes = hw.bias_bytes if desc.flags & Flag.BIAS else 0
    depth = 1 if bypass else desc.k_tiles
    ideal = desc.m * depth * desc.n_tiles
    x_row, x_commands = x_row_reads(desc, hw)
    window = conv_window_mode(desc, hw)
    r_commands = desc.m * residual  # per chunk: a residual row each
    if window:  # per chunk: each grid row's kh strips, one command each, instead of M gathered rows
        strips = desc.kh * conv_strip_beats(desc, hw)
        x_rows, x_row_commands = desc.grid_h * strips, desc.grid_h * desc.kh
        if residual and conv_residual_merged(desc, hw):  # a grid row's residual rows in one command
            r_commands = desc.grid_h
    else:
        x_rows, x_row_commands = desc.m * x_row, desc.m * x_commands

    chunk_sizes = [min(desc.chunk_tiles, desc.n_tiles - start) for start in range(0, desc.n_tiles, desc.chunk_tiles)]
    # Per chunk, the read commands of its weights: bias then tiles, each in pieces.
    pieces = [[] if bypass else [beats(t * hw.lanes_out * bias_bytes, hw), beats(t * desc.k_tiles * hw.tile_stride(element), hw)]
              for t in chunk_sizes]
    wload = [sum(p) for p in pieces]
    body = 0
    for index, tiles in enumerate(chunk_sizes):
        cols = min(desc.n - index * desc.chunk_tiles * hw.lanes_out, tiles * hw.lanes_out)
        out_row = beats(cols * hw.act_bytes, hw)
        compute = desc.m * tiles * depth
        # The read channel carries this chunk's rows of x and r and, in the gaps, the next chunk's weights:
        # one beat per cycle at best, and no faster than reads_in_flight bursts per burst lifetime.
        next_pieces = pieces[index + 1] if index + 1 < len(chunk_sizes) else []
        next_weights = sum(next_pieces)
        reads = x_rows + desc.m * residual * out_row + next_weights
        next_bursts = sum(-(-b // model.weight_piece_beats) for b in next_pieces)
        lifetimes = (x_row_commands + r_commands) * model.latency + next_bursts * model.latency + reads
        reads = max(reads, -(-lifetimes // model.reads_in_flight))
        writes = desc.m * out_row
        if window:
            # A grid row's strips are read once a ring half is free, while the grid row before it computes; the next
            # chunk's weights, read in the gaps, delay them.
            reads = max(reads, desc.grid_h * (model.latency + strips) + next_weights)
        body += max(compute, reads, writes)

    fetch = model.descriptor_fetch(hw)
    # The first row of x (window mode: the first grid row's strips, after kh cycles of sizing).
    first_load = model.latency + wload[0] + (strips + desc.kh if window else x_row)
    return CycleEstimate(ideal, fetch + first_load + body + model.drain, fetch, first_load, body, model.drain)
