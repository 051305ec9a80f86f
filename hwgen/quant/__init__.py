# SPDX-License-Identifier: Apache-2.0
"""QFX quantization: per-tensor power-of-two formats from range calibration, exact accumulators."""

from hwgen.quant.passes import (
    SUPPORTED_OPS,
    QuantConfig,
    check_supported,
    insert_requantize,
    load_calibration,
    quantize,
    range_format,
)

__all__ = ["QuantConfig", "SUPPORTED_OPS", "check_supported", "insert_requantize", "load_calibration", "quantize",
           "range_format"]
