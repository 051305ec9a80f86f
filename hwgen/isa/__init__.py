# SPDX-License-Identifier: Apache-2.0
"""The accelerator's instruction set, defined once (docs/isa.md §3).

- :mod:`hwgen.isa.spec`: opcodes, flags, status codes and the field tables, as data;
- :mod:`hwgen.isa.codec`: Python encoder and decoder of Programs, driven by those tables;
- :mod:`hwgen.isa.rules`: the one validity rule (:func:`check_header`, :func:`check_descriptor`);
- :mod:`hwgen.isa.cpp` and :mod:`hwgen.isa.doc`: the C++ header of the HLS core and the field tables
  of ``docs/isa.md``, generated from the same tables (``rtl/descriptor.py`` builds the Amaranth layouts).
"""

from hwgen.isa.codec import (
    AttentionDescriptor, ConvDescriptor, Descriptor, ExpertFfnDescriptor, GateTopkDescriptor, LinearDescriptor, Program,
    Requant, RowDescriptor, decode_descriptor, pack, unpack,
)
from hwgen.isa.rules import Limits, Refusal, check_descriptor, check_header, rows_end
from hwgen.isa.spec import (
    ATTENTION_FIELDS, ATTENTION_OPCODES, CONV_FIELDS, DESCRIPTOR_BYTES, EXPERT_FFN_FIELDS, GATE_TOPK_FIELDS, HEADER_BYTES,
    HEADER_FIELDS, LINEAR_FIELDS, LIST_ENTRY_BYTES, MAGIC, MOE_OPCODES, REQUANT_FIELDS, RESERVED_OPCODES, ROW_FIELDS,
    STATS_ENTRY_BYTES, VERSION, Field, Flag, MoeFlag, Opcode, Status, OPCODE_AV, OPCODE_CONV, OPCODE_EXPERT_FFN,
    OPCODE_GATE_TOPK, OPCODE_LINEAR, OPCODE_LAYERNORM, OPCODE_QK_SOFTMAX_STATS, OPCODE_SOFTMAX,
)

__all__ = [
    "MAGIC", "VERSION", "HEADER_BYTES", "DESCRIPTOR_BYTES",
    "Opcode", "OPCODE_LINEAR", "OPCODE_LAYERNORM", "OPCODE_SOFTMAX", "OPCODE_QK_SOFTMAX_STATS", "OPCODE_AV", "OPCODE_CONV",
    "OPCODE_GATE_TOPK", "OPCODE_EXPERT_FFN", "ATTENTION_OPCODES", "MOE_OPCODES", "STATS_ENTRY_BYTES", "LIST_ENTRY_BYTES",
    "RESERVED_OPCODES", "Flag", "MoeFlag", "Status", "Field",
    "HEADER_FIELDS", "LINEAR_FIELDS", "ROW_FIELDS", "ATTENTION_FIELDS", "CONV_FIELDS", "GATE_TOPK_FIELDS",
    "EXPERT_FFN_FIELDS", "REQUANT_FIELDS",
    "pack", "unpack", "Requant", "LinearDescriptor", "RowDescriptor", "AttentionDescriptor", "ConvDescriptor",
    "GateTopkDescriptor", "ExpertFfnDescriptor", "Descriptor",
    "decode_descriptor", "Program",
    "Refusal", "Limits", "check_header", "check_descriptor", "rows_end",
]
