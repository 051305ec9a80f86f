# SPDX-License-Identifier: Apache-2.0
"""The intermediate representation: an immutable graph of tensors and nodes, its op table and checks.

:class:`Graph` (frozen, tuples, read-only arrays), :data:`OPS` (operands, attributes, shape rule of
every op), :func:`verify` (run after every pass) and :func:`save_graph` / :func:`load_graph`
(YAML + ``.npz``, no pickle).
"""

from hwgen.ir.graph import DISTRIBUTIONS, Graph, InputDistribution, Node, Tensor
from hwgen.ir.ops import OPS, OpSpec
from hwgen.ir.serialize import load_graph, read_npz, save_graph, write_npz
from hwgen.ir.verify import accumulator_bound, verify

__all__ = [
    "DISTRIBUTIONS",
    "Graph",
    "InputDistribution",
    "Node",
    "Tensor",
    "OPS",
    "OpSpec",
    "verify",
    "accumulator_bound",
    "save_graph",
    "load_graph",
    "write_npz",
    "read_npz",
]
