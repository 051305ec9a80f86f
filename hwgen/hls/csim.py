# SPDX-License-Identifier: Apache-2.0
"""C-simulate HLS kernels with g++ against ``ap_types``: raw int64 vectors in, raw int64 out.

One :class:`CSim` renders a single harness for several kernels (``csim_harness.cpp.j2``) and
compiles it once through :func:`hwgen.toolchain.compile_cpp` (cached by content), because a g++
build against the ap_fixed headers costs seconds while running a kernel on 10⁴ vectors costs
milliseconds.  Inputs cross into C++ as raw bits (``.range()``), so no float rounding is involved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from hwgen import toolchain
from hwgen.hls.emit import render
from hwgen.hls.kernel import Kernel
from hwgen.hls_templates import TEMPLATE_DIR

__all__ = ["CSim", "csimulate"]

log = logging.getLogger(__name__)


class CSim:
    """A g++ build of ``kernels`` (one binary) and :meth:`run` to call any of them on vectors."""

    def __init__(self, kernels: Sequence[Kernel], *, flags: Sequence[str] = ()):
        kernels = tuple(kernels)
        if not kernels or not all(isinstance(k, Kernel) for k in kernels):
            raise ValueError(f"kernels must be a non-empty sequence of Kernel, not {kernels!r}")
        names = [k.name for k in kernels]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel names must be unique, not {names}")
        self.kernels = {k.name: k for k in kernels}
        self.source = render("csim_harness.cpp.j2", kernels=kernels)
        self.binary = toolchain.compile_cpp(
            self.source, includes=[TEMPLATE_DIR], flags=list(flags), name="csim_" + names[0]
        )

    def run(self, kernel: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call ``kernel`` once per row of the input arrays; return its outputs as int64 arrays.

        ``inputs`` maps each input port to an integer array of shape ``(calls, port.size)`` (or
        ``(calls * port.size,)``) of raw values inside the port's format; each output comes back
        with shape ``(calls, port.size)``.
        """
        if kernel not in self.kernels:
            raise ValueError(f"kernel must be one of {', '.join(self.kernels)}, not {kernel!r}")
        spec = self.kernels[kernel]
        if set(inputs) != {p.name for p in spec.inputs}:
            raise ValueError(
                f"inputs of {kernel} must be {sorted(p.name for p in spec.inputs)}, not {sorted(inputs)}"
            )
        columns, calls = [], None
        for port in spec.inputs:
            raw = np.asarray(inputs[port.name])
            if raw.dtype.kind not in "iu":
                raise ValueError(f"input {port.name} must hold integer raw values, not {raw.dtype}")
            raw = raw.astype(np.int64).reshape(-1, port.size) if raw.size else raw.reshape(0, port.size)
            if raw.size and (raw.min() < port.fmt.min_raw or raw.max() > port.fmt.max_raw):
                raise ValueError(
                    f"input {port.name} raw values must lie in [{port.fmt.min_raw}, {port.fmt.max_raw}] "
                    f"for {port.fmt}, not [{raw.min()}, {raw.max()}]"
                )
            if calls is not None and raw.shape[0] != calls:
                raise ValueError(f"input {port.name} must hold {calls} rows like the others, not {raw.shape[0]}")
            calls = raw.shape[0]
            columns.append(raw)
        stdin = np.concatenate(columns, axis=1).astype("<i8").tobytes() if columns else b""
        log.info("C-simulating %s on %d call(s)", kernel, calls or 0)
        out = np.frombuffer(toolchain.run_cpp(self.binary, [kernel], stdin=stdin), dtype="<i8")
        out = out.astype(np.int64).reshape(calls or 0, -1)
        results, start = {}, 0
        for port in spec.outputs:
            results[port.name] = out[:, start : start + port.size].copy()
            start += port.size
        return results


def csimulate(kernel: Kernel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """C-simulate one kernel: ``CSim([kernel]).run(kernel.name, inputs)``."""
    return CSim([kernel]).run(kernel.name, inputs)
