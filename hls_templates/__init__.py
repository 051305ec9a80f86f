# SPDX-License-Identifier: Apache-2.0
"""Vitis-HLS C++ kernel headers driven by config structs (installed as ``hwgen.hls_templates``)."""

from pathlib import Path

#: Folder holding the headers: add it with ``-I`` to compile a kernel with g++ or Vitis HLS.
TEMPLATE_DIR = Path(__file__).resolve().parent
