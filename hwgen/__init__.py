# SPDX-License-Identifier: Apache-2.0
"""hwgen: quantized ViT / MoE-ViT / CNN models to bit-exact FPGA accelerators.

The flow is model → IR → QFX quantization → golden model → Program → RTL / HLS / board project;
``../DESIGN.md`` in the project describes it. The public entry points are the subpackages:
:mod:`hwgen.qfx` (fixed point), :mod:`hwgen.toolchain` (Verilator, g++, Yosys), :mod:`hwgen.rtl`,
:mod:`hwgen.cosim`, :mod:`hwgen.hls_templates` and :mod:`hwgen.boards`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
