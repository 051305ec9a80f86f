# SPDX-License-Identifier: Apache-2.0
"""Compile a quantized graph to a Program for the accelerator, and execute it in NumPy (isa_sim).

``compile(qgraph, hw) -> (Program, MemoryImage)``; ``isa_sim(program, image, hw) -> IsaResult``.
The binary format, memory layout and cycle model are documented in ``docs/isa.md``.
"""

from hwgen.compiler.cycles import CycleEstimate, CycleModel
from hwgen.compiler.engines import estimate_cycles
from hwgen.compiler.isa_sim import IsaResult, Refused, isa_sim, requantize_int
from hwgen.compiler.layout import MemoryImage, Region
from hwgen.compiler.lower import SUPPORTED_OPS, compile_graph, hardware_problem
from hwgen.isa import ConvDescriptor, Flag, LinearDescriptor, Program, Requant, RowDescriptor

#: ``hwgen.compiler.compile(qgraph, hw)``: the name the design uses for :func:`compile_graph`.
compile = compile_graph  # noqa: A001 - deliberately the flow's name for this step

__all__ = [
    "compile",
    "compile_graph",
    "hardware_problem",
    "isa_sim",
    "IsaResult",
    "Refused",
    "requantize_int",
    "Program",
    "LinearDescriptor",
    "ConvDescriptor",
    "RowDescriptor",
    "Flag",
    "Requant",
    "MemoryImage",
    "Region",
    "CycleModel",
    "CycleEstimate",
    "estimate_cycles",
    "SUPPORTED_OPS",
]
