# SPDX-License-Identifier: Apache-2.0
"""The Program's binary layouts as Amaranth data layouts, generated from :mod:`hwgen.isa.spec`; the read-data tags.

Every layout here is built from the ISA's field tables (docs/isa.md §3), so the hardware names the
same bits the Python codec packs and the C++ header decodes.
"""

import enum

from amaranth import signed, unsigned
from amaranth.lib import data

from hwgen.isa.spec import (
    ATTENTION_FIELDS, CONV_FIELDS, DESCRIPTOR_BYTES, HEADER_BYTES, HEADER_FIELDS, LINEAR_FIELDS, MAGIC, OPCODE_AV,
    OPCODE_CONV, OPCODE_LAYERNORM, OPCODE_LINEAR, OPCODE_QK_SOFTMAX_STATS, OPCODE_SOFTMAX, REQUANT_FIELDS,
    ROW_FIELDS, STATS_ENTRY_BYTES, VERSION, Field, Flag, Status,
)

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_BYTES",
    "DESCRIPTOR_BYTES",
    "OPCODE_LINEAR",
    "OPCODE_CONV",
    "OPCODE_LAYERNORM",
    "OPCODE_SOFTMAX",
    "OPCODE_QK_SOFTMAX_STATS",
    "OPCODE_AV",
    "STATS_ENTRY_BYTES",
    "struct_layout",
    "HEADER_LAYOUT",
    "RQ_LAYOUT",
    "FLAGS_LAYOUT",
    "DESCRIPTOR_LAYOUT",
    "ROW_DESCRIPTOR_LAYOUT",
    "ATTENTION_DESCRIPTOR_LAYOUT",
    "CONV_DESCRIPTOR_LAYOUT",
    "Tag",
    "TAG_WIDTH",
    "Status",
]


def struct_layout(fields: tuple[Field, ...], shapes: dict | None = None) -> data.StructLayout:
    """A ``StructLayout`` of ``fields`` in bit order; ``shapes`` replaces a field's plain integer shape."""
    shapes = shapes or {}
    return data.StructLayout({
        f.name: shapes.get(f.name, signed(f.bits) if f.signed else unsigned(f.bits)) for f in fields})


def _flags_layout() -> data.StructLayout:
    """The 24-bit flags field of a LINEAR descriptor: one named bit per :class:`~hwgen.isa.spec.Flag`."""
    flags = sorted(Flag, key=int)
    assert [int(f) for f in flags] == [1 << i for i in range(len(flags))], "flags must be consecutive bits"
    width = next(f.bits for f in LINEAR_FIELDS if f.name == "flags")
    return data.StructLayout({**{f.name.lower(): unsigned(1) for f in flags}, "reserved": unsigned(width - len(flags))})


#: Program header, 16 little-endian words (docs/isa.md §3.1).
HEADER_LAYOUT = struct_layout(HEADER_FIELDS)
#: The requantization word of docs/isa.md §3.5, bit 0 first.
RQ_LAYOUT = struct_layout(REQUANT_FIELDS)
#: The flags of a LINEAR descriptor (docs/isa.md §3.3).
FLAGS_LAYOUT = _flags_layout()
#: A LINEAR descriptor, 16 little-endian words (docs/isa.md §3.3), bit 0 of word 0 first.
DESCRIPTOR_LAYOUT = struct_layout(LINEAR_FIELDS, {"flags": FLAGS_LAYOUT, "rq1": RQ_LAYOUT, "rq2": RQ_LAYOUT})
#: A LAYERNORM or SOFTMAX descriptor (docs/isa.md §3.6): the same 512 bits as a LINEAR descriptor, named differently.
ROW_DESCRIPTOR_LAYOUT = struct_layout(ROW_FIELDS)

#: A QK_SOFTMAX_STATS or AV descriptor (docs/isa.md §3.8): the same 512 bits again.
ATTENTION_DESCRIPTOR_LAYOUT = struct_layout(ATTENTION_FIELDS, {"rq": RQ_LAYOUT})

#: A CONV descriptor (docs/isa.md §3.9): LINEAR's flags and RQ words, its grid and segment fields in words 1, 9, 10.
CONV_DESCRIPTOR_LAYOUT = struct_layout(CONV_FIELDS, {"flags": FLAGS_LAYOUT, "rq1": RQ_LAYOUT, "rq2": RQ_LAYOUT})

assert (ROW_DESCRIPTOR_LAYOUT.size == DESCRIPTOR_LAYOUT.size == ATTENTION_DESCRIPTOR_LAYOUT.size
        == CONV_DESCRIPTOR_LAYOUT.size)
assert HEADER_LAYOUT.size == 8 * HEADER_BYTES and DESCRIPTOR_LAYOUT.size == 8 * DESCRIPTOR_BYTES


class Tag(enum.IntEnum):
    """What a read command fetches; the read engine hands the tag back with every data beat."""

    DESC = 0        # Program header or descriptor words, for the controller
    BIAS = 1        # bias entries of the chunk being loaded
    WEIGHT = 2      # weight tiles of the chunk being loaded
    WEIGHT_END = 3  # the last weight piece of a chunk: its last beat completes the chunk
    ACT = 4         # one row of x, or the last segment of a CONV row (its last beat ends the row)
    RES = 5         # one chunk-row of the residual r
    ROW_PARAM = 6   # LAYERNORM's γ, then its β (each one read command: its last beat ends it)
    ROW = 7         # one row of a LAYERNORM or SOFTMAX descriptor
    SCORE = 8       # one score row of an AV descriptor (normalized into probabilities on the way in)
    STATS = 9       # the AXI word holding one score row's statistics entry (AV)
    ACT_PART = 10   # a segment of a CONV row of x before its last: it joins the row, its last beat does not end it


TAG_WIDTH = 4
