# SPDX-License-Identifier: Apache-2.0
"""The analytical cycle model of one descriptor on the ``lanes_in × lanes_out`` array (docs/isa.md §5).

It reads only a descriptor and the hardware parameters, like the controller. The constants are
first guesses, named so the next issue can calibrate them against Verilator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwgen.compiler.program import Flag, LinearDescriptor
from hwgen.hwparams import HwParams

__all__ = ["CycleModel", "CycleEstimate", "estimate_cycles"]


@dataclass(frozen=True)
class CycleModel:
    """Overheads the ideal MAC count leaves out."""

    latency: int = 40  # cycles from a DDR read request to its first beat
    mult_stages: int = 3  # multiplier pipeline of the array
    post_stages: int = 6  # requantize, ReLU, residual align/add/requantize, write

    def fill(self, hw: HwParams) -> int:
        """Pipeline depth from the first activation into the array to the first result written."""
        return self.mult_stages + math.ceil(math.log2(hw.lanes_in)) + self.post_stages


@dataclass(frozen=True)
class CycleEstimate:
    """Estimated cycles of one descriptor, with the terms that make them up."""

    ideal: int  # M · k_tiles · n_tiles: every cycle a full tile of MACs
    cycles: int
    fetch: int
    weight_load_exposed: int
    compute_or_io: int
    fill: int

    @property
    def utilization(self) -> float:
        """ideal / cycles."""
        return self.ideal / self.cycles if self.cycles else 0.0


def estimate_cycles(desc: LinearDescriptor, hw: HwParams, model: CycleModel = CycleModel()) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one LINEAR descriptor."""

    def beats(nbytes: int) -> int:
        return -(-nbytes // hw.axi_bytes)

    bypass = bool(desc.flags & Flag.BYPASS)
    residual = bool(desc.flags & Flag.RESIDUAL)
    element = hw.act_bytes if desc.flags & Flag.B_ROWMAJOR else hw.weight_bytes
    bias = hw.bias_bytes if desc.flags & Flag.BIAS else 0
    chunk_sizes = [min(desc.chunk_tiles, desc.n_tiles - start) for start in range(0, desc.n_tiles, desc.chunk_tiles)]
    depth = 1 if bypass else desc.k_tiles
    ideal = desc.m * depth * desc.n_tiles

    compute, wload, io = [], [], []
    for index, tiles in enumerate(chunk_sizes):
        cols = min(desc.n - index * desc.chunk_tiles * hw.lanes_out, tiles * hw.lanes_out)
        compute.append(desc.m * tiles * depth)
        wload.append(0 if bypass else beats(tiles * desc.k_tiles * hw.tile_stride(element)) + beats(tiles * hw.lanes_out * bias))
        io.append(desc.m * (beats(desc.k * hw.act_bytes) + beats(cols * hw.act_bytes) * (1 + residual)))

    fetch = model.latency + beats(64)
    exposed = (model.latency + wload[0]) if not bypass else 0
    for index in range(1, len(chunk_sizes)):
        exposed += max(0, model.latency + wload[index] - compute[index - 1])
    body = sum(max(c, i) for c, i in zip(compute, io))
    fill = len(chunk_sizes) * (model.latency + model.fill(hw))
    return CycleEstimate(ideal, fetch + exposed + body + fill, fetch, exposed, body, fill)
