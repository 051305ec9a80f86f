# SPDX-License-Identifier: Apache-2.0
"""The row engine in Python: LAYERNORM and SOFTMAX over rows (docs/isa.md §3.6) and their cycle estimate (§5)."""

from __future__ import annotations

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel, beats
from hwgen.compiler.layout import read_rows, read_vector, write_rows
from hwgen.golden import nonlinear as nl
from hwgen.hwparams import HwParams
from hwgen.isa import OPCODE_LAYERNORM, RowDescriptor

__all__ = ["run", "estimate"]


def run(desc: RowDescriptor, memory: np.ndarray, hw: HwParams) -> None:
    """Execute one LAYERNORM or SOFTMAX descriptor on ``memory``, as docs/isa.md §3.6 says."""
    units = hw.unit_formats()
    x = read_rows(memory, desc.x_addr, desc.m, desc.n, desc.x_stride, hw.act_bytes, True)
    if desc.opcode == OPCODE_LAYERNORM:
        gamma = read_vector(memory, desc.gamma_addr, desc.n, hw.act_bytes)
        beta = read_vector(memory, desc.beta_addr, desc.n, hw.act_bytes)
        y = nl.layernorm(units.layernorm_config(), x, gamma, beta, d_offset=desc.d_offset)
    else:
        y = nl.softmax(units.softmax_config(), x)
    write_rows(memory, desc.out_addr, y, desc.out_stride, hw.act_bytes)


def estimate(desc: RowDescriptor, hw: HwParams, model: CycleModel) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one LAYERNORM or SOFTMAX descriptor.

    LayerNorm takes ``hw.row_lanes`` elements (one AXI beat) per cycle, softmax one element per
    cycle, and a row's first result waits for the whole row (its statistics pass), so the first
    row costs its read latency and its pass before the stream starts; LAYERNORM's γ and β are read
    ahead of the rows. Short rows are bound by the read channel instead: each row is one burst,
    ``reads_in_flight`` at a time, each holding its slot for ``latency`` plus its length plus the
    reader's turnaround.
    """
    layernorm = desc.opcode == OPCODE_LAYERNORM
    row = beats(desc.n * hw.act_bytes, hw)
    per_row = -(-desc.n // hw.row_lanes) if layernorm else desc.n  # the unit's cycles per row
    params = 2 * row if layernorm else 0
    bursts = desc.m + (2 if layernorm else 0)
    turnaround = 3  # cycles a read slot stays taken beyond latency + length (measured in Verilator)
    fetch = model.descriptor_fetch(hw)
    first_load = model.latency + params + per_row
    read_bound = -(-bursts // model.reads_in_flight) * (model.latency + row + turnaround) + per_row
    body = max(desc.m * per_row, read_bound - first_load)
    drain = model.row_latency + model.drain
    return CycleEstimate(0, fetch + first_load + body + drain, fetch, first_load, body, drain)
