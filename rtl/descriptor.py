# SPDX-License-Identifier: Apache-2.0
"""The Program's binary layouts as Amaranth data layouts (docs/isa.md §3), and the read-data tags.

The constants (magic, version, sizes, opcodes) come from :mod:`hwgen.compiler.program`, the one
place that encodes Programs; the layouts here give the same bits names inside the hardware.
"""

import enum

from amaranth import unsigned
from amaranth.lib import data

from hwgen.compiler.program import (
    DESCRIPTOR_BYTES, HEADER_BYTES, MAGIC, OPCODE_LAYERNORM, OPCODE_LINEAR, OPCODE_SOFTMAX, VERSION,
)

from .runtime_requantize import RQ_LAYOUT

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_BYTES",
    "DESCRIPTOR_BYTES",
    "OPCODE_LINEAR",
    "OPCODE_LAYERNORM",
    "OPCODE_SOFTMAX",
    "HEADER_LAYOUT",
    "FLAGS_LAYOUT",
    "DESCRIPTOR_LAYOUT",
    "ROW_DESCRIPTOR_LAYOUT",
    "Tag",
    "TAG_WIDTH",
    "Status",
]

#: Program header, 16 little-endian words (docs/isa.md §3.1).
HEADER_LAYOUT = data.StructLayout({
    "magic": unsigned(32),
    "version": unsigned(32),
    "fingerprint": unsigned(32),
    "count": unsigned(32),
    "descriptor_bytes": unsigned(32),
    "image_bytes": unsigned(32),
    "reserved": unsigned(320),
})

#: The 24-bit flags field of a LINEAR descriptor (docs/isa.md §3.3).
FLAGS_LAYOUT = data.StructLayout({
    "bias": unsigned(1),
    "relu1": unsigned(1),
    "residual": unsigned(1),
    "relu2": unsigned(1),
    "bypass": unsigned(1),
    "b_rowmajor": unsigned(1),
    "x_unsigned": unsigned(1),
    "w_unsigned": unsigned(1),
    "r_unsigned": unsigned(1),
    "gelu": unsigned(1),
    "b_transposed": unsigned(1),
    "reserved": unsigned(13),
})

#: A LINEAR descriptor, 16 little-endian words (docs/isa.md §3.3), bit 0 of word 0 first.
DESCRIPTOR_LAYOUT = data.StructLayout({
    "opcode": unsigned(8),
    "flags": FLAGS_LAYOUT,
    "m": unsigned(32),
    "k": unsigned(16),
    "n": unsigned(16),
    "k_tiles": unsigned(16),
    "n_tiles": unsigned(16),
    "x_addr": unsigned(32),
    "w_addr": unsigned(32),
    "bias_addr": unsigned(32),
    "res_addr": unsigned(32),
    "out_addr": unsigned(32),
    "x_stride": unsigned(32),
    "w_stride": unsigned(32),
    "res_stride": unsigned(32),
    "out_stride": unsigned(32),
    "rq1": RQ_LAYOUT,
    "rq2": RQ_LAYOUT,
    "chunk_tiles": unsigned(16),
    "y_shift": unsigned(8),
    "r_shift": unsigned(8),
})

#: A LAYERNORM or SOFTMAX descriptor, 16 little-endian words (docs/isa.md §3.6): the same 512 bits
#: as a LINEAR descriptor, named differently.
ROW_DESCRIPTOR_LAYOUT = data.StructLayout({
    "opcode": unsigned(8),
    "reserved0": unsigned(24),
    "m": unsigned(32),
    "n": unsigned(16),
    "reserved2": unsigned(16),
    "reserved3": unsigned(32),
    "x_addr": unsigned(32),
    "gamma_addr": unsigned(32),
    "beta_addr": unsigned(32),
    "reserved7": unsigned(32),
    "out_addr": unsigned(32),
    "x_stride": unsigned(32),
    "reserved10": unsigned(64),
    "out_stride": unsigned(32),
    "d_offset": unsigned(96),
})

assert ROW_DESCRIPTOR_LAYOUT.size == DESCRIPTOR_LAYOUT.size
assert HEADER_LAYOUT.size == 8 * HEADER_BYTES and DESCRIPTOR_LAYOUT.size == 8 * DESCRIPTOR_BYTES


class Status(enum.IntEnum):
    """Why a run stopped: the STATUS register's code (0 = success; the first error wins)."""

    OK = 0
    BAD_MAGIC = 1
    BAD_VERSION = 2
    BAD_FINGERPRINT = 3
    BAD_HEADER = 4
    BAD_OPCODE = 5
    BAD_DESCRIPTOR = 6
    DOES_NOT_FIT = 7
    MISALIGNED = 8
    OUT_OF_BOUNDS = 9
    READ_ERROR = 10
    WRITE_ERROR = 11


class Tag(enum.IntEnum):
    """What a read command fetches; the read engine hands the tag back with every data beat."""

    DESC = 0        # Program header or descriptor words, for the controller
    BIAS = 1        # bias entries of the chunk being loaded
    WEIGHT = 2      # weight tiles of the chunk being loaded
    WEIGHT_END = 3  # the last weight piece of a chunk: its last beat completes the chunk
    ACT = 4         # one row of x
    RES = 5         # one chunk-row of the residual r
    ROW_PARAM = 6   # LAYERNORM's γ, then its β (each one read command: its last beat ends it)
    ROW = 7         # one row of a LAYERNORM or SOFTMAX descriptor


TAG_WIDTH = 3
