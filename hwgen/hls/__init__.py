# SPDX-License-Identifier: Apache-2.0
"""HLS side of hwgen: render configs and tops from ``hls_templates/`` and C-simulate kernels with g++.

- :mod:`hwgen.hls.emit` — the strict Jinja2 environment, :func:`~hwgen.hls.emit.render` (stamped
  output) and the per-kernel builders such as :func:`~hwgen.hls.emit.requantize_kernel`.
- :mod:`hwgen.hls.kernel` — :class:`~hwgen.hls.kernel.Kernel`, how to call one kernel on raw arrays.
- :mod:`hwgen.hls.csim` — :class:`~hwgen.hls.csim.CSim`: one g++ binary running kernels on vectors.
"""

from hwgen.hls.csim import CSim, csimulate
from hwgen.hls.emit import render, requantize_kernel
from hwgen.hls.kernel import Kernel, KernelPort

__all__ = ["CSim", "csimulate", "render", "requantize_kernel", "Kernel", "KernelPort"]
