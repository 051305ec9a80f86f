# SPDX-License-Identifier: Apache-2.0
"""The nonlinear units' configs for given formats: one definition for every executor.

``golden.run`` calls these for every GELU, LayerNorm and Softmax node; :mod:`hwgen.units` calls them
for the formats the hardware is generated for, so the golden model, ``isa_sim``, the RTL and the HLS
agree by construction on tables, Newton steps and internal precisions.
"""

from __future__ import annotations

from hwgen.golden import nonlinear as nl
from hwgen.qfx import QFmt

__all__ = ["ROW_MAX", "GELU_TABLE_MAX_FRAC_BITS", "gelu_config", "layernorm_config", "softmax_config"]

#: Longest row the LayerNorm and softmax units take (channels of a LayerNorm, length of a softmax row).
ROW_MAX = 1024


#: Most fraction bits at which Edge-MoE's GELU table stays within one LSB (measured exhaustively at 16 bits).
GELU_TABLE_MAX_FRAC_BITS = 13


def gelu_config(in_fmt: QFmt, out_fmt: QFmt) -> nl.GeluTableConfig | nl.GeluPolyConfig:
    """GELU within one LSB of ``out_fmt``: Edge-MoE's table where it suffices, else piecewise quadratics.

    Edge-MoE's table (step 1/32 to 5.5, ``ufixed<22,0>`` entries, linear interpolation) is off by
    up to 9.7e-5, one LSB up to 13 fraction bits (every 16-bit default); finer formats (32-bit
    activations) get :meth:`GeluPolyConfig.for_formats`, within one LSB at any width for one more
    multiplier per lane (docs/nonlinear.md).
    """
    if max(in_fmt.frac_bits, out_fmt.frac_bits) <= GELU_TABLE_MAX_FRAC_BITS:
        return nl.GeluTableConfig(in_fmt, out_fmt)
    return nl.GeluPolyConfig.for_formats(in_fmt, out_fmt)


def layernorm_config(in_fmt: QFmt, gamma_fmt: QFmt, beta_fmt: QFmt, out_fmt: QFmt, eps: float) -> nl.LayerNormConfig:
    """LayerNorm over rows of up to :data:`ROW_MAX` channels, within one output LSB."""
    return nl.LayerNormConfig.for_formats(in_fmt, gamma_fmt, beta_fmt, out_fmt, max_channels=ROW_MAX, eps=eps)


def softmax_config(in_fmt: QFmt, out_fmt: QFmt) -> nl.SoftmaxConfig:
    """Single-pass softmax over rows of up to :data:`ROW_MAX` elements, within one output LSB."""
    return nl.SoftmaxConfig.for_formats(in_fmt, out_fmt, max_row=ROW_MAX)
