# SPDX-License-Identifier: Apache-2.0
"""The analytical cycle model (docs/isa.md §5): its constants and the terms of an estimate.

Each engine's estimate of one descriptor lives beside its semantics in :mod:`hwgen.compiler.engines`;
:func:`hwgen.compiler.engines.estimate_cycles` picks it by opcode. An estimate reads only a
descriptor and the hardware parameters, like the controller. Its structure follows
the RTL core (docs/isa.md §8.2): one AXI read channel shared by rows of ``x``, residual segments
and the next chunk's weights; one write channel; an array issuing one tile per cycle. The
constants were calibrated against Verilator at 16×16 lanes, AXI 128, 64-cycle read latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen.isa import DESCRIPTOR_BYTES, HEADER_BYTES
from hwgen.hwparams import HwParams

__all__ = ["CycleModel", "CycleEstimate", "beats"]


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
    #: Cycles of a LAYERNORM or SOFTMAX descriptor beyond the row unit's rate (a beat per cycle for
    #: LayerNorm, an element per cycle for softmax): the statistics FIFO and normalization pipeline on
    #: the last row, and softmax's serializer and gatherer (Verilator: 17 for LayerNorm, 23 for
    #: softmax at 16x16 / AXI 128).
    row_latency: int = 20

    #: Cycles the controller spends checking a descriptor against the validity rule (docs/isa.md §3.7)
    #: before it starts it: the RTL checker's ``CHECK_CYCLES`` (its bounds multiplier, one extent a cycle).
    check: int = 6

    def descriptor_fetch(self, hw: HwParams) -> int:
        """Cycles from a descriptor's read to its start: the 64-byte burst, then the checks."""
        return self.fetch(DESCRIPTOR_BYTES, hw) + self.check

    def fetch(self, nbytes: int, hw: HwParams) -> int:
        """Cycles to read ``nbytes`` with one burst whose result is waited for (header, descriptor)."""
        return self.latency + beats(nbytes, hw)

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


def beats(nbytes: int, hw: HwParams) -> int:
    return -(-nbytes // hw.axi_bytes)
