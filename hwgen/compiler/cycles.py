# SPDX-License-Identifier: Apache-2.0
"""The analytical cycle model of one descriptor on the ``lanes_in × lanes_out`` array (docs/isa.md §5).

It reads only a descriptor and the hardware parameters, like the controller. Its structure follows
the RTL core (docs/isa.md §8.2): one AXI read channel shared by rows of ``x``, residual segments
and the next chunk's weights; one write channel; an array issuing one tile per cycle. The
constants were calibrated against Verilator at 16×16 lanes, AXI 128, 64-cycle read latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen.isa import DESCRIPTOR_BYTES, HEADER_BYTES, OPCODE_LAYERNORM, Flag, Limits, LinearDescriptor, RowDescriptor
from hwgen.hwparams import HwParams

__all__ = ["CycleModel", "CycleEstimate", "estimate_cycles", "estimate_row_cycles"]


@dataclass(frozen=True)
class CycleModel:
    """The memory latency and the fixed overheads the ideal MAC count leaves out."""

    #: Cycles from a DDR read request to its first beat; 64 is the cosim memory model's default
    #: (``hwgen.cosim.tb_accelerator.prepare(read_latency=64)``). Set it to the board's DDR latency.
    latency: int = 64
    #: Cycles from the array's last tile of a descriptor to its last write acknowledged: the
    #: multiplier/adder-tree and post-processing pipeline, the last write burst and its response.
    drain: int = 30
    #: Read bursts the core keeps in flight (the RTL's ``AXI4Reader(max_outstanding=8)``). Each
    #: holds its slot for ``latency`` plus its length, which bounds the rate of short bursts.
    reads_in_flight: int = 8
    #: Longest read command of the weight stream (the RTL's ``PIECE_BEATS``).
    weight_piece_beats: int = 64
    #: Cycles of a LAYERNORM or SOFTMAX descriptor beyond one element per cycle: the unit's
    #: unpacker, statistics FIFO, normalization pipeline and packer on the last row (Verilator:
    #: 17 for LayerNorm, 23 for softmax at 16x16 / AXI 128).
    row_latency: int = 20

    #: Cycles the controller spends checking a descriptor against the validity rule (docs/isa.md §3.7)
    #: before it starts it: the RTL checker's ``CHECK_CYCLES`` (its bounds multiplier, one extent a cycle).
    check: int = 6

    def descriptor_fetch(self, hw: HwParams) -> int:
        """Cycles from a descriptor's read to its start: the 64-byte burst, then the checks."""
        return self.fetch(DESCRIPTOR_BYTES, hw) + self.check

    def fetch(self, nbytes: int, hw: HwParams) -> int:
        """Cycles to read ``nbytes`` with one burst whose result is waited for (header, descriptor)."""
        return self.latency + _beats(nbytes, hw)

    def program_overhead(self, hw: HwParams) -> int:
        """Cycles a Program costs once, before its first descriptor: reading the header."""
        return self.fetch(HEADER_BYTES, hw)


@dataclass(frozen=True)
class CycleEstimate:
    """Estimated cycles of one descriptor, with the terms that make them up."""

    ideal: int  # M · k_tiles · n_tiles: every cycle a full tile of MACs
    cycles: int  # fetch + first_load + body + drain
    fetch: int  # reading the descriptor itself
    first_load: int  # chunk 0's weights and the first row of x: nothing to hide behind
    body: int  # Σ_c max(compute_c, reads_c, writes_c): the array or a memory channel, whichever is slowest
    drain: int  # pipeline and the last write response

    @property
    def utilization(self) -> float:
        """ideal / cycles."""
        return self.ideal / self.cycles if self.cycles else 0.0


def _beats(nbytes: int, hw: HwParams) -> int:
    return -(-nbytes // hw.axi_bytes)


def estimate_row_cycles(desc: RowDescriptor, hw: HwParams, model: CycleModel = CycleModel()) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one LAYERNORM or SOFTMAX descriptor: one element per cycle.

    The row unit takes one element per cycle, and a row's first result waits for the whole row
    (its statistics pass), so the first row costs its read latency and its length before the
    stream starts; LAYERNORM's γ and β are read ahead of the rows. Short rows are bound by the
    read channel instead: each row is one burst, ``reads_in_flight`` at a time, each holding its
    slot for ``latency`` plus its length plus the reader's turnaround.
    """
    layernorm = desc.opcode == OPCODE_LAYERNORM
    row = _beats(desc.n * hw.act_bytes, hw)
    params = 2 * row if layernorm else 0
    bursts = desc.m + (2 if layernorm else 0)
    turnaround = 3  # cycles a read slot stays taken beyond latency + length (measured in Verilator)
    fetch = model.descriptor_fetch(hw)
    first_load = model.latency + params + desc.n
    read_bound = -(-bursts // model.reads_in_flight) * (model.latency + row + turnaround) + desc.n
    body = max(desc.m * desc.n, read_bound - first_load)
    drain = model.row_latency + model.drain
    return CycleEstimate(0, fetch + first_load + body + drain, fetch, first_load, body, drain)


def estimate_cycles(desc: LinearDescriptor | RowDescriptor, hw: HwParams, model: CycleModel = CycleModel()) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one descriptor."""
    if isinstance(desc, RowDescriptor):
        return estimate_row_cycles(desc, hw, model)
    bypass = bool(desc.flags & Flag.BYPASS)
    residual = int(bool(desc.flags & Flag.RESIDUAL))
    element = Limits(hw).second_operand_bytes(desc.flags)
    bias_bytes = hw.bias_bytes if desc.flags & Flag.BIAS else 0
    depth = 1 if bypass else desc.k_tiles
    ideal = desc.m * depth * desc.n_tiles
    x_row = _beats(desc.k * hw.act_bytes, hw)

    chunk_sizes = [min(desc.chunk_tiles, desc.n_tiles - start) for start in range(0, desc.n_tiles, desc.chunk_tiles)]
    # Per chunk, the read commands of its weights: bias then tiles, each in pieces.
    pieces = [[] if bypass else [_beats(t * hw.lanes_out * bias_bytes, hw), _beats(t * desc.k_tiles * hw.tile_stride(element), hw)]
              for t in chunk_sizes]
    wload = [sum(p) for p in pieces]
    body = 0
    for index, tiles in enumerate(chunk_sizes):
        cols = min(desc.n - index * desc.chunk_tiles * hw.lanes_out, tiles * hw.lanes_out)
        out_row = _beats(cols * hw.act_bytes, hw)
        compute = desc.m * tiles * depth
        # The read channel carries this chunk's rows of x and r and, in the gaps, the next chunk's weights:
        # one beat per cycle at best, and no faster than reads_in_flight bursts per burst lifetime.
        next_pieces = pieces[index + 1] if index + 1 < len(chunk_sizes) else []
        next_weights = sum(next_pieces)
        reads = desc.m * (x_row + residual * out_row) + next_weights
        next_bursts = sum(-(-b // model.weight_piece_beats) for b in next_pieces)
        lifetimes = desc.m * (1 + residual) * model.latency + next_bursts * model.latency + reads
        reads = max(reads, -(-lifetimes // model.reads_in_flight))
        writes = desc.m * out_row
        body += max(compute, reads, writes)

    fetch = model.descriptor_fetch(hw)
    first_load = model.latency + wload[0] + x_row
    return CycleEstimate(ideal, fetch + first_load + body + model.drain, fetch, first_load, body, model.drain)
