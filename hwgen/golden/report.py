# SPDX-License-Identifier: Apache-2.0
"""Per-tensor accuracy of a quantized run against the float reference: SQNR and max error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hwgen.ir import Graph

__all__ = ["TensorAccuracy", "accuracy_report", "format_report"]


@dataclass(frozen=True)
class TensorAccuracy:
    """How close one quantized tensor is to its float reference."""

    name: str
    fmt: str
    sqnr_db: float
    max_abs_error: float
    max_abs_reference: float


def accuracy_report(
    qgraph: Graph, float_values: Mapping[str, np.ndarray], raw_values: Mapping[str, np.ndarray]
) -> list[TensorAccuracy]:
    """SQNR (10·log10 Σref² / Σerr², inf when exact) and max |error| for every activation tensor."""
    rows = []
    for tensor in qgraph.tensors:
        if tensor.is_constant or tensor.name not in float_values or tensor.name not in raw_values:
            continue
        reference = float_values[tensor.name]
        error = tensor.fmt.to_float(raw_values[tensor.name]) - reference
        signal = float(np.sum(reference**2))
        noise = float(np.sum(error**2))
        sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
        rows.append(
            TensorAccuracy(tensor.name, str(tensor.fmt), sqnr, float(np.abs(error).max()), float(np.abs(reference).max()))
        )
    return rows


def format_report(rows: list[TensorAccuracy]) -> str:
    """The report as an aligned text table."""
    lines = [f"{'tensor':<20} {'format':<28} {'SQNR dB':>8} {'max |err|':>11} {'max |ref|':>10}"]
    for row in rows:
        lines.append(
            f"{row.name:<20} {row.fmt:<28} {row.sqnr_db:>8.2f} {row.max_abs_error:>11.3g} {row.max_abs_reference:>10.3g}"
        )
    return "\n".join(lines)
