# SPDX-License-Identifier: Apache-2.0
"""INTERIM stand-in for ``hwgen.isa`` (issue 10) until that package lands on main.

It provides what the HLS core needs from the one ISA definition, written against
``notes/isa_decisions.md``: :class:`Status`, :class:`Limits` and :func:`isa_header` (the text of
``hwgen_isa.h``). It is deleted when ``hwgen/isa/`` is merged; nothing outside ``hwgen.hls``
imports it.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from hwgen.compiler.program import (
    DESCRIPTOR_BYTES, HEADER_BYTES, MAGIC, OPCODE_LAYERNORM, OPCODE_LINEAR, OPCODE_SOFTMAX, VERSION, Flag,
)
from hwgen.hwparams import HwParams

B_TRANSPOSED = 1 << 10


class Status(enum.IntEnum):
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


class Limits:
    """The capacities of the validity rule for ``hw``."""

    def __init__(self, hw: HwParams):
        self.hw = hw
        self.max_k_tiles = hw.act_buffer_bytes // (hw.lanes_in * hw.act_bytes)
        self.max_chunk_tiles = hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes)


class Field(NamedTuple):
    name: str
    word: int
    lo: int
    bits: int


HEADER_FIELDS = (Field("magic", 0, 0, 32), Field("version", 1, 0, 32), Field("fingerprint", 2, 0, 32),
                 Field("count", 3, 0, 32), Field("descriptor_bytes", 4, 0, 32), Field("image_bytes", 5, 0, 32))
LINEAR_FIELDS = (
    Field("opcode", 0, 0, 8), Field("flags", 0, 8, 24), Field("m", 1, 0, 32), Field("k", 2, 0, 16),
    Field("n", 2, 16, 16), Field("k_tiles", 3, 0, 16), Field("n_tiles", 3, 16, 16), Field("x_addr", 4, 0, 32),
    Field("w_addr", 5, 0, 32), Field("bias_addr", 6, 0, 32), Field("res_addr", 7, 0, 32), Field("out_addr", 8, 0, 32),
    Field("x_stride", 9, 0, 32), Field("w_stride", 10, 0, 32), Field("res_stride", 11, 0, 32),
    Field("out_stride", 12, 0, 32), Field("rq1", 13, 0, 32), Field("rq2", 14, 0, 32), Field("chunk_tiles", 15, 0, 16),
    Field("y_shift", 15, 16, 8), Field("r_shift", 15, 24, 8),
)
ROW_FIELDS = (
    Field("opcode", 0, 0, 8), Field("reserved0", 0, 8, 24), Field("m", 1, 0, 32), Field("n", 2, 0, 16),
    Field("reserved2", 2, 16, 16), Field("reserved3", 3, 0, 32), Field("x_addr", 4, 0, 32),
    Field("gamma_addr", 5, 0, 32), Field("beta_addr", 6, 0, 32), Field("reserved7", 7, 0, 32),
    Field("out_addr", 8, 0, 32), Field("x_stride", 9, 0, 32), Field("reserved10", 10, 0, 32),
    Field("reserved11", 11, 0, 32), Field("out_stride", 12, 0, 32), Field("d_offset0", 13, 0, 32),
    Field("d_offset1", 14, 0, 32), Field("d_offset2", 15, 0, 32),
)


def _getters(prefix: str, fields) -> list[str]:
    out = []
    for f in fields:
        mask = (1 << f.bits) - 1
        out.append(f"inline uint32_t {prefix}_{f.name}(const uint32_t w[16]) {{ return (w[{f.word}] >> {f.lo}) & {mask:#x}u; }}")
    return out


def isa_header() -> str:
    """``hwgen_isa.h``: the ISA constants and field decoders for the HLS core."""
    flags = [f"    FLAG_{f.name} = 1u << {int(f).bit_length() - 1}," for f in Flag]
    flags.append(f"    FLAG_B_TRANSPOSED = 1u << {B_TRANSPOSED.bit_length() - 1},")
    lines = [
        "// hwgen_isa.h: generated (interim generator hwgen/hls/_isa_interim.py). Do not edit.",
        "#ifndef HWGEN_ISA_H_",
        "#define HWGEN_ISA_H_",
        "",
        "#include <stdint.h>",
        "",
        "namespace hwgen {",
        "namespace isa {",
        "",
        f"static const uint32_t MAGIC = {MAGIC:#x}u;",
        f"static const uint32_t VERSION = {VERSION}u;",
        f"static const unsigned HEADER_BYTES = {HEADER_BYTES};",
        f"static const unsigned DESCRIPTOR_BYTES = {DESCRIPTOR_BYTES};",
        "",
        f"enum opcode {{ OPCODE_LINEAR = {OPCODE_LINEAR}, OPCODE_LAYERNORM = {OPCODE_LAYERNORM}, OPCODE_SOFTMAX = {OPCODE_SOFTMAX} }};",
        "",
        "enum flag {",
        *flags,
        f"    FLAGS_DEFINED = {(1 << 11) - 1:#x}u,",
        "};",
        "",
        "enum status {",
        *(f"    STATUS_{s.name} = {int(s)}," for s in Status),
        "};",
        "",
        *_getters("header", HEADER_FIELDS),
        *_getters("linear", LINEAR_FIELDS),
        *_getters("row", ROW_FIELDS),
        "",
        "}  // namespace isa",
        "}  // namespace hwgen",
        "",
        "#endif",
        "",
    ]
    return "\n".join(lines)
