# SPDX-License-Identifier: Apache-2.0
"""The immutable graph every pass reads and returns: tensors, nodes and the graph holding them.

Everything is a frozen dataclass with tuples, and constant data lives in read-only NumPy arrays, so
a pass can only produce a new graph (``dataclasses.replace``), never edit one in place. Structural
rules (shapes, producers, order, formats) are checked by :func:`hwgen.ir.verify.verify`, not here.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwgen.qfx import QFmt

__all__ = ["Tensor", "Node", "Graph", "InputDistribution", "DISTRIBUTIONS"]

#: How seeded inputs of a graph input are drawn: ``uniform`` on [-scale, scale], ``normal`` with std scale.
DISTRIBUTIONS = ("uniform", "normal")


def _frozen_array(values: Any, dtype: type) -> np.ndarray:
    array = np.array(values, dtype=dtype, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Tensor:
    """A named tensor: its shape, its fixed-point format once quantized, and data if it is a constant.

    ``value`` holds a constant's float64 values (the float reference uses them); ``raw`` holds its
    int64 raw codes in ``fmt`` once quantized. Both are read-only copies. Equality compares names,
    shapes and formats, not data (compare saved bytes to compare weights).
    """

    name: str
    shape: tuple[int, ...]
    fmt: QFmt | None = None
    value: np.ndarray | None = field(default=None, compare=False, repr=False)
    raw: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.value is not None:
            object.__setattr__(self, "value", _frozen_array(self.value, np.float64))
        if self.raw is not None:
            object.__setattr__(self, "raw", _frozen_array(self.raw, np.int64))

    @property
    def is_constant(self) -> bool:
        """Whether the tensor is a weight (it carries data) rather than an activation."""
        return self.value is not None

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    def replace(self, **changes: Any) -> Tensor:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Node:
    """One operation: ``op`` names an entry of :data:`hwgen.ir.ops.OPS`; attributes are sorted pairs."""

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        attrs = self.attrs.items() if isinstance(self.attrs, dict) else self.attrs
        object.__setattr__(self, "attrs", tuple(sorted((str(k), v) for k, v in attrs)))

    def attr(self, key: str, default: Any = None) -> Any:
        """The value of attribute ``key``, or ``default``."""
        return dict(self.attrs).get(key, default)

    def replace(self, **changes: Any) -> Node:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class InputDistribution:
    """How seeded test and calibration inputs for one graph input are drawn."""

    tensor: str
    kind: str = "uniform"
    scale: float = 1.0

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Float64 samples of this distribution."""
        if self.kind == "uniform":
            return rng.uniform(-self.scale, self.scale, size=shape)
        return rng.normal(0.0, self.scale, size=shape)


@dataclass(frozen=True)
class Graph:
    """A model: named inputs and outputs, all tensors, and nodes in topological order."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tensors: tuple[Tensor, ...]
    nodes: tuple[Node, ...]
    input_distributions: tuple[InputDistribution, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "tensors", "nodes", "input_distributions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    # Lookups are cached on the instance: the graph never changes after construction.

    @functools.cached_property
    def _tensor_index(self) -> dict[str, Tensor]:
        return {t.name: t for t in self.tensors}

    @functools.cached_property
    def _producer_index(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    @functools.cached_property
    def _consumer_index(self) -> dict[str, tuple[Node, ...]]:
        consumers: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                consumers.setdefault(name, []).append(node)
        return {k: tuple(v) for k, v in consumers.items()}

    def has_tensor(self, name: str) -> bool:
        """Whether a tensor called ``name`` exists."""
        return name in self._tensor_index

    def tensor(self, name: str) -> Tensor:
        """The tensor called ``name``."""
        try:
            return self._tensor_index[name]
        except KeyError:
            raise ValueError(f"tensor name must be one of the graph's tensors, not {name!r}") from None

    def producer(self, name: str) -> Node | None:
        """The node writing tensor ``name``, or None for graph inputs and constants."""
        return self._producer_index.get(name)

    def consumers(self, name: str) -> tuple[Node, ...]:
        """The nodes reading tensor ``name``, in graph order."""
        return self._consumer_index.get(name, ())

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ValueError(f"node name must be one of the graph's nodes, not {name!r}")

    def distribution(self, name: str) -> InputDistribution:
        """How inputs of graph input ``name`` are drawn (uniform on [-1, 1] unless the model says)."""
        for dist in self.input_distributions:
            if dist.tensor == name:
                return dist
        return InputDistribution(name)

    @property
    def is_quantized(self) -> bool:
        """Whether tensors carry fixed-point formats (verify checks it is all or none)."""
        return any(t.fmt is not None for t in self.tensors)

    @property
    def constants(self) -> tuple[Tensor, ...]:
        """The weight tensors, in tensor order."""
        return tuple(t for t in self.tensors if t.is_constant)

    def replace(self, **changes: Any) -> Graph:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
