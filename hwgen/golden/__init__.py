# SPDX-License-Identifier: Apache-2.0
"""The golden model: bit-exact NumPy execution of quantized graphs, and the float64 reference.

``run(qgraph, x)`` is the spec every other executor (isa_sim, RTL, HLS) must equal bit for bit;
``run_float(graph, x)`` is the accuracy baseline; ``accuracy_report`` compares the two per tensor.
"""

from hwgen.golden.exact import EXACT_OPS, exact_matmul, quantize_inputs, run
from hwgen.golden.reference import FLOAT_OPS, run_float, sample_inputs
from hwgen.golden.report import TensorAccuracy, accuracy_report, format_report

__all__ = [
    "run",
    "run_float",
    "sample_inputs",
    "quantize_inputs",
    "exact_matmul",
    "accuracy_report",
    "format_report",
    "TensorAccuracy",
    "EXACT_OPS",
    "FLOAT_OPS",
]
