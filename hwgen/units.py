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

import dataclasses

from dataclasses import dataclass

from hwgen.golden import nonlinear as nl
from hwgen.golden.unit_configs import ROW_MAX, gelu_config, layernorm_config, softmax_config
from hwgen.qfx import QFmt

__all__ = ["ROW_MAX", "UnitFormats", "gelu_config", "layernorm_config", "softmax_config", "row_units_problem", "moe_problem",
           "attention_problem", "ROW_UNIT_OPS"]

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


def row_units_problem(hw) -> str | None:
    """Why hardware ``hw`` has no LayerNorm and softmax unit, or ``None`` when it has both.

    At 32-bit activations the units' internal products exceed the 62 bits ``hwgen.qfx`` supports,
    so their configs cannot be built: the RTL and HLS cores then leave the row unit out and refuse
    opcodes 5 and 8 (``BAD_OPCODE``), ``isa_sim`` refuses them too, and the compiler refuses
    LayerNorm and Softmax layers for such hardware with this reason. Hardware built without them
    (``HwParams.has_row_units`` false: ``hwgen build --trim-units``) is refused the same way.
    """
    if not hw.has_row_units:
        return "this hardware has no LayerNorm and softmax unit (HwParams.has_row_units is false)"
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


def attention_problem(hw) -> str | None:
    """Why hardware ``hw`` cannot run the attention opcodes (``QK_SOFTMAX_STATS``, ``AV``), or ``None``.

    The attention engine is a capability of the core (``HwParams.has_attention``); the HLS and RTL
    cores implement it, and ``hwgen build`` turns it on for a model with attention (:func:`core_for`);
    a core without it refuses the opcodes with ``BAD_OPCODE``. Its softmax statistics use the
    softmax unit's numerics, so it also needs them.
    """
    if not hw.has_attention:
        return "this hardware has no attention engine (HwParams.has_attention is false)"
    problem = row_units_problem(hw)
    if problem is not None:
        return f"the attention engine needs the softmax unit's numerics: {problem}"
    return None


def moe_problem(hw) -> str | None:
    """Why hardware ``hw`` cannot run the MoE opcodes (``GATE_TOPK``, ``EXPERT_FFN``), or ``None``.

    The MoE engine is a capability of the core (``HwParams.has_moe``); ``hwgen build`` turns it on for
    a model with a ``MoEGate`` (:func:`core_for`). Its gate runs on the softmax unit and its experts on
    the GELU lanes, so it also needs the row units' numerics.
    """
    if not hw.has_moe:
        return "this hardware has no MoE engine (HwParams.has_moe is false)"
    problem = row_units_problem(hw)
    if problem is not None:
        return f"the MoE engine needs the softmax unit's numerics: {problem}"
    return None


#: Accumulator bits of a core with the attention engine. Q·Kᵀ and A·V of 16-bit codes need about 40
#: (``hwgen.golden.attention.AttentionFormats.acc_bits``: d_head or keys products of two 16-bit codes);
#: 48 is the accumulator of a DSP48, so the MACs cost no more DSPs than at 32.
ATTENTION_ACC_BITS = 48


#: Ops that run on (or need the numerics of) the LayerNorm and softmax units.
ROW_UNIT_OPS = frozenset({"LayerNorm", "Softmax", "Attention", "MoEGate"})


def core_for(graph, hw, *, trim_units: bool = False):
    """``hw`` with what ``graph`` needs of the core: the attention engine and ``ATTENTION_ACC_BITS``
    accumulators when it has an ``Attention`` node; the MoE engine (``has_moe``) when it has a
    ``MoEGate``; with ``trim_units``, no LayerNorm and softmax unit
    when it has none of :data:`ROW_UNIT_OPS` (``hwgen build --trim-units``); else ``hw`` unchanged.

    A board file gives the core's geometry and buffers; the engines a model never uses stay out, so
    a model without attention builds the same core (and fingerprint) as before the engine existed.
    """
    ops = {node.op for node in graph.nodes}
    if trim_units and not ops & ROW_UNIT_OPS:
        hw = dataclasses.replace(hw, has_row_units=False)
    if "MoEGate" in ops and not hw.has_moe:
        hw = dataclasses.replace(hw, has_moe=True)
    if hw.has_attention or "Attention" not in ops:
        return hw
    return dataclasses.replace(hw, has_attention=True, acc_bits=max(hw.acc_bits, ATTENTION_ACC_BITS))
