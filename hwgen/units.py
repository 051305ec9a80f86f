# SPDX-License-Identifier: Apache-2.0
"""The accelerator's nonlinear units as golden-model configs: one definition for every layer.

The GELU lanes, the LayerNorm unit and the softmax unit are generated for fixed formats (fields of
:class:`~hwgen.hwparams.HwParams`), so the quantizer gives every GELU, LayerNorm and Softmax
tensor exactly these formats and the compiler refuses others. :func:`gelu_config`,
:func:`layernorm_config` and :func:`softmax_config` turn formats into the
:mod:`hwgen.golden.nonlinear` configs that ``golden.run``, ``isa_sim``, the RTL and the HLS all
use, so the four agree by construction on tables, Newton steps and internal precisions.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen.golden import nonlinear as nl
from hwgen.qfx import QFmt

__all__ = ["ROW_MAX", "UnitFormats", "gelu_config", "layernorm_config", "softmax_config", "row_units_problem"]

#: Longest row the LayerNorm and softmax units take (channels of a LayerNorm, length of a softmax row).
ROW_MAX = 1024
_ROUNDING, _OVERFLOW = "RND_CONV", "SAT"


@dataclass(frozen=True)
class UnitFormats:
    """Formats of the GELU lanes, the LayerNorm unit and the softmax unit."""

    gelu: QFmt  # GELU input and output
    layernorm_in: QFmt
    layernorm_param: QFmt  # γ and β
    layernorm_out: QFmt
    softmax_in: QFmt
    softmax_out: QFmt

    @classmethod
    def from_hw(cls, hw) -> UnitFormats:
        """The formats :class:`~hwgen.hwparams.HwParams` ``hw`` is generated for."""
        def fmt(int_bits: int, signed: bool = True) -> QFmt:
            return QFmt(hw.act_bits, int_bits, signed, _ROUNDING, _OVERFLOW)

        return cls(
            gelu=fmt(hw.gelu_int_bits),
            layernorm_in=fmt(hw.layernorm_int_bits),
            layernorm_param=fmt(hw.layernorm_param_int_bits),
            layernorm_out=fmt(hw.layernorm_out_int_bits),
            softmax_in=fmt(hw.softmax_int_bits),
            softmax_out=fmt(1, signed=False),
        )

    def gelu_config(self) -> nl.GeluTableConfig | nl.GeluPolyConfig:
        return gelu_config(self.gelu, self.gelu)

    def layernorm_config(self, eps: float = 0.0) -> nl.LayerNormConfig:
        return layernorm_config(self.layernorm_in, self.layernorm_param, self.layernorm_param, self.layernorm_out, eps)

    def softmax_config(self) -> nl.SoftmaxConfig:
        return softmax_config(self.softmax_in, self.softmax_out)


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


def row_units_problem(hw) -> str | None:
    """Why hardware ``hw`` has no LayerNorm and softmax unit, or ``None`` when it has both.

    At 32-bit activations the units' internal products exceed the 62 bits ``hwgen.qfx`` supports,
    so their configs cannot be built: the RTL and HLS cores then leave the row unit out and refuse
    opcodes 5 and 8 (``BAD_OPCODE``), ``isa_sim`` refuses them too, and the compiler refuses
    LayerNorm and Softmax layers for such hardware with this reason.
    """
    units = UnitFormats.from_hw(hw)
    try:
        cfg = units.layernorm_config()
        units.softmax_config()
    except ValueError as exc:
        return f"{hw.act_bits}-bit activations leave no room for their internal precision ({exc})"
    # D = n·S2 − S1² + d_offset, with any d_offset a descriptor may carry (< n²·2^2F), must fit d_bits.
    largest = ROW_MAX * ROW_MAX * ((1 << 2 * (cfg.in_fmt.width - 1)) + (1 << 2 * cfg.in_fmt.frac_bits))
    if largest >> cfg.d_bits:
        return f"LayerNorm's D must fit {cfg.d_bits} bits for every d_offset, not need {largest.bit_length()}"
    return None
