# SPDX-License-Identifier: Apache-2.0
"""Parameters of the one accelerator every Program is compiled for.

The compiler, ``isa_sim``, the Amaranth RTL and the HLS C++ are all generated from the same
:class:`HwParams`; :meth:`HwParams.fingerprint` is stored in every Program header and in the
hardware's parameter register, so a Program built for other parameters is refused instead of
silently producing wrong numbers.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["HwParams", "AXI_DATA_WIDTHS", "CONTAINER_BITS"]

#: AXI4 data widths the memory interface supports (Zynq-7000 HP ports are 64 bits, UltraScale+ 128).
AXI_DATA_WIDTHS = (64, 128)
#: Container widths of activations and weights in DDR and on chip: whole bytes, so every element
#: has a byte address.
CONTAINER_BITS = (8, 16, 32)
#: Widest hardware accumulator: the DSP48E2 accumulator is 48 bits.
MAX_ACC_BITS = 48
MAX_LANES = 128
#: The MoE engine's fields: in the fingerprint only when ``has_moe`` is set.
_MOE_FIELDS = ("has_moe", "moe_acc_entries", "moe_acc_bits", "moe_hidden_bytes")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")


@dataclass(frozen=True)
class HwParams:
    """The accelerator's parameters; every field is validated on construction.

    Parameters
    ----------
    lanes_in : int
        Activations the compute array takes per cycle (the reduction width of one weight tile).
    lanes_out : int
        Output columns the compute array accumulates per cycle (the width of one weight tile).
    acc_bits : int
        Width of each hardware accumulator register (32 by default; a DSP48E2 gives 48).
    act_bits : int
        Container width of one activation element in DDR and in the on-chip buffers (8, 16 or 32).
    weight_bits : int
        Container width of one weight element (8, 16 or 32).
    act_buffer_bytes : int
        Size of one bank of the on-chip activation row buffer (two banks, ping-pong).
    weight_buffer_bytes : int
        Size of one bank of the on-chip weight tile buffer (two banks, ping-pong).
    axi_data_width : int
        Data width of the AXI4 master to DDR in bits (64 or 128).
    gelu_int_bits : int
        Integer bits of the GELU lanes' input and output format ``fixed<act_bits, gelu_int_bits>``.
    layernorm_int_bits : int
        Integer bits of the LayerNorm unit's input format ``fixed<act_bits, layernorm_int_bits>``.
    layernorm_out_int_bits : int
        Integer bits of the LayerNorm unit's output format.
    layernorm_param_int_bits : int
        Integer bits of LayerNorm's γ and β, stored in ``act_bits`` containers.
    softmax_int_bits : int
        Integer bits of the softmax unit's input format; its output is ``ufixed<act_bits, 1>``.
    has_attention : bool
        The core has the attention engine (opcodes ``QK_SOFTMAX_STATS`` and ``AV``, docs/isa.md §3.8).
        ``False`` for every board hwgen ships today, so the validity rule refuses them
        (``BAD_OPCODE``) and the compiler refuses Attention layers. ``True`` runs them on ``isa_sim``,
        the golden model, the HLS core and the RTL core (``rtl/attention_engine.py``, on the LINEAR
        engine's MAC array; it needs AXI words of at least 64 bits). It enters the fingerprint only when set,
        so the fingerprints of the shipped cores are unchanged.
    has_row_units : bool
        The core has the LayerNorm and softmax units (opcodes ``LAYERNORM`` and ``SOFTMAX``, docs/isa.md
        §3.6). ``True`` by default; ``hwgen build --trim-units`` clears it for a model without
        LayerNorm, Softmax or Attention (a CNN), and every executor then refuses the opcodes
        (``BAD_OPCODE``) and leaves the units out. It enters the fingerprint only when cleared.
    has_moe : bool
        The core has the MoE engine (opcodes ``GATE_TOPK`` and ``EXPERT_FFN``, docs/isa.md §3.10).
        ``False`` by default (every executor then refuses them with ``BAD_OPCODE``); ``hwgen build``
        sets it for a model with a ``MoEGate`` (:func:`hwgen.units.core_for`). It and the three
        ``moe_*`` sizes enter the fingerprint only when set, so every other core keeps its fingerprint.
    moe_acc_entries : int
        Entries of the on-chip weighted-sum accumulator ``A`` (``m·D`` of an EXPERT_FFN must fit).
    moe_acc_bits : int
        Width of each entry of ``A`` (the exact weighted sum ``ExpertFormats.sum`` must fit).
    moe_hidden_bytes : int
        Bytes of the on-chip hidden buffer: one expert's hidden rows (``m·align(H·act_bytes)``) stay
        on chip when they fit, else they go to a DDR scratch (``HIDDEN_DDR``).
    """

    lanes_in: int = 16
    lanes_out: int = 16
    acc_bits: int = 32
    act_bits: int = 16
    weight_bits: int = 8
    act_buffer_bytes: int = 4096
    weight_buffer_bytes: int = 65536
    axi_data_width: int = 128
    gelu_int_bits: int = 5
    layernorm_int_bits: int = 6
    layernorm_out_int_bits: int = 5
    layernorm_param_int_bits: int = 4
    softmax_int_bits: int = 6
    has_attention: bool = False
    has_row_units: bool = True
    has_moe: bool = False
    moe_acc_entries: int = 32768
    moe_acc_bits: int = 36
    moe_hidden_bytes: int = 102400

    def __post_init__(self) -> None:
        _check_int("lanes_in", self.lanes_in, 1, MAX_LANES)
        _check_int("lanes_out", self.lanes_out, 1, MAX_LANES)
        _check_int("acc_bits", self.acc_bits, 8, MAX_ACC_BITS)
        for name in ("act_bits", "weight_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or value not in CONTAINER_BITS:
                raise ValueError(f"{name} must be one of {', '.join(map(str, CONTAINER_BITS))}, not {value!r}")
        if isinstance(self.axi_data_width, bool) or self.axi_data_width not in AXI_DATA_WIDTHS:
            raise ValueError(
                f"axi_data_width must be one of {', '.join(map(str, AXI_DATA_WIDTHS))}, not {self.axi_data_width!r}"
            )
        for name in ("act_buffer_bytes", "weight_buffer_bytes"):
            value = getattr(self, name)
            _check_int(name, value, self.axi_bytes, 1 << 30)
            if value % self.axi_bytes:
                raise ValueError(f"{name} must be a multiple of the {self.axi_bytes}-byte AXI word, not {value}")
        for name in ("gelu_int_bits", "layernorm_int_bits", "layernorm_out_int_bits", "layernorm_param_int_bits",
                     "softmax_int_bits"):
            _check_int(name, getattr(self, name), 1, self.act_bits - 1)
        _check_int("moe_acc_entries", self.moe_acc_entries, 1, 1 << 24)
        _check_int("moe_acc_bits", self.moe_acc_bits, 8, 64)
        _check_int("moe_hidden_bytes", self.moe_hidden_bytes, 0, 1 << 30)
        for name in ("has_attention", "has_row_units", "has_moe"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")

    # Derived sizes: the single place that defines them for the compiler, isa_sim, RTL and HLS.

    @property
    def axi_bytes(self) -> int:
        """Bytes per AXI data beat; every DDR buffer starts on a multiple of it."""
        return self.axi_data_width // 8

    @property
    def act_bytes(self) -> int:
        """Bytes per activation container."""
        return self.act_bits // 8

    @property
    def weight_bytes(self) -> int:
        """Bytes per weight container."""
        return self.weight_bits // 8

    @property
    def bias_bytes(self) -> int:
        """Bytes per bias container: a bias is stored already aligned to the accumulator."""
        return 4 if self.acc_bits <= 32 else 8

    @property
    def row_lanes(self) -> int:
        """Elements the LayerNorm row unit takes per cycle: one AXI beat's containers.

        Derived, not a field: the unit reads its rows through the one read channel and writes
        them through the one write channel, a beat per cycle each, so a wider unit could not go
        faster and a narrower one would need an unpacker and packer again. Its results do not
        depend on it (exact sums), so Programs do not either: it stays out of the fingerprint.
        """
        return self.axi_bytes // self.act_bytes

    @property
    def macs_per_cycle(self) -> int:
        """Multiply-accumulates the compute array performs per cycle."""
        return self.lanes_in * self.lanes_out

    def align(self, nbytes: int) -> int:
        """``nbytes`` rounded up to a whole number of AXI words."""
        return -(-nbytes // self.axi_bytes) * self.axi_bytes

    def tile_stride(self, element_bytes: int) -> int:
        """Bytes one ``lanes_in × lanes_out`` tile of ``element_bytes`` elements occupies in DDR."""
        return self.align(self.lanes_in * self.lanes_out * element_bytes)

    def unit_formats(self):
        """The formats the GELU, LayerNorm and softmax units are generated for (:class:`hwgen.units.UnitFormats`)."""
        from hwgen.units import UnitFormats

        return UnitFormats.from_hw(self)

    # Identity.

    def to_dict(self) -> dict[str, int]:
        """The fields as a plain dict, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HwParams:
        """Build from a dict such as a YAML mapping; unknown keys are refused."""
        if not isinstance(data, dict):
            raise ValueError(f"hardware parameters must be a mapping, not {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ValueError(f"hardware parameter must be one of {', '.join(known)}, not {key!r}")
        return cls(**data)

    def canonical(self) -> str:
        """The text the fingerprint hashes: ``hwgen-hw-1;lanes_in=16;lanes_out=16;…`` in field order.

        ``has_attention`` appears (as ``has_attention=1``) only when set and ``has_row_units`` (as
        ``has_row_units=0``) only when cleared, so hardware with the defaults keeps the fingerprint it
        had before the fields existed. Likewise ``has_moe=1`` and the three ``moe_*`` sizes appear only
        when ``has_moe`` is set (a core without the engine does not depend on them).
        """
        fields = {k: v for k, v in self.to_dict().items() if k not in ("has_attention", "has_row_units", *_MOE_FIELDS)}
        if self.has_attention:
            fields["has_attention"] = 1
        if not self.has_row_units:
            fields["has_row_units"] = 0
        if self.has_moe:
            fields.update(has_moe=1, **{k: getattr(self, k) for k in _MOE_FIELDS[1:]})
        return "hwgen-hw-1;" + ";".join(f"{k}={v}" for k, v in fields.items())

    def fingerprint(self) -> int:
        """CRC-32 (zlib polynomial) of :meth:`canonical` as ASCII: a 32-bit parameter identity."""
        return zlib.crc32(self.canonical().encode("ascii")) & 0xFFFFFFFF

    def __str__(self) -> str:
        return (
            f"{self.lanes_in}x{self.lanes_out} lanes, acc {self.acc_bits} b, act/weight {self.act_bits}/"
            f"{self.weight_bits} b, buffers {self.act_buffer_bytes}/{self.weight_buffer_bytes} B, "
            f"AXI {self.axi_data_width} b" + (", attention engine" if self.has_attention else "")
            + (", MoE engine" if self.has_moe else "")
        )
