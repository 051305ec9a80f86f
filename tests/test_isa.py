# SPDX-License-Identifier: Apache-2.0
"""The ISA is defined once: the codec, the C++ header and docs/isa.md all follow hwgen.isa.spec.

- the field tables tile every block; packing and unpacking random field values round-trips;
- the generated ``hwgen_isa.h``, compiled with g++, decodes random blocks into exactly the fields
  the Python codec unpacks (cosim tier: it needs g++);
- the tables of docs/isa.md are the generator's output, byte for byte.
"""

import random
import struct
from pathlib import Path

import pytest

from hwgen import toolchain
from hwgen.isa import (
    ATTENTION_FIELDS, CONV_FIELDS, EXPERT_FFN_FIELDS, GATE_TOPK_FIELDS, HEADER_FIELDS, LINEAR_FIELDS, REQUANT_FIELDS,
    ROW_FIELDS, ExpertFfnDescriptor, Flag, GateTopkDescriptor, MoeFlag, Opcode, Requant, Status, decode_descriptor, pack,
    unpack,
)
from hwgen.isa.cpp import ISA_HEADER_NAME, isa_header
from hwgen.isa.doc import TABLES, render_document

DOC = Path(__file__).resolve().parents[1] / "docs" / "isa.md"
BLOCKS = {"header": HEADER_FIELDS, "linear": LINEAR_FIELDS, "conv": CONV_FIELDS, "row": ROW_FIELDS,
          "attention": ATTENTION_FIELDS, "gate_topk": GATE_TOPK_FIELDS, "expert_ffn": EXPERT_FFN_FIELDS,
          "requant": REQUANT_FIELDS}


def _random_values(fields, rng):
    values = {}
    for f in fields:
        low, high = (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else (0, (1 << f.bits) - 1)
        values[f.name] = rng.choice([low, high, rng.randint(low, high)])
    return values


@pytest.mark.parametrize("name", BLOCKS)
def test_pack_and_unpack_round_trip(name):
    rng = random.Random(name)
    fields = BLOCKS[name]
    for _ in range(200):
        values = _random_values(fields, rng)
        assert unpack(fields, pack(fields, values)) == values


def test_pack_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match=r"^k must fit a 16-bit field \(0\.\.65535\), not 65536$"):
        pack(LINEAR_FIELDS, {"k": 1 << 16})
    with pytest.raises(ValueError, match=r"^shift must fit a signed 8-bit field \(-128\.\.127\), not 128$"):
        pack(REQUANT_FIELDS, {"shift": 128})
    with pytest.raises(ValueError, match="must be among the block's"):
        pack(ROW_FIELDS, {"flags": 1})


def test_moe_descriptors_round_trip_and_refuse_undefined_bits():
    rq = Requant(7, 16, True, "RND_CONV", "SAT", 29)
    gate = GateTopkDescriptor(m=129, experts=16, top_k=2, k=192, tasks=2, k_tiles=12, n_tiles=1, x_addr=0x1000,
                              w_addr=0x2000, task_stride=3072, probs_addr=0x3000, top_addr=0x4000, x_stride=384,
                              lists_addr=0x5000, counts_addr=0x6000, idx_addr=0x7000, rq=rq)
    data = gate.encode()
    assert data[0] == Opcode.GATE_TOPK == 6 and decode_descriptor(data) == gate
    assert unpack(GATE_TOPK_FIELDS, data)["task_stride"] == 3072
    ffn = ExpertFfnDescriptor(flags=MoeFlag.RESIDUAL | MoeFlag.HIDDEN_DDR, m=129, experts=16, top_k=2, d=192, h=384,
                              chunk1=24, chunk2=12, x_addr=0x1000, w_addr=0x8000, expert_stride=148992,
                              lists_addr=0x5000, counts_addr=0x6000, res_addr=0x9000, out_addr=0xa000,
                              hidden_addr=0xb000, rq_hidden=rq, rq_expert=rq, rq_out=rq, rq2=rq, y_shift=1, r_shift=2)
    data = ffn.encode()
    assert data[0] == Opcode.EXPERT_FFN == 7 and decode_descriptor(data) == ffn
    assert unpack(EXPERT_FFN_FIELDS, data)["flags"] == 5 and "flags RESIDUAL|HIDDEN_DDR" in ffn.listing()[0]
    with pytest.raises(ValueError, match=r"^EXPERT_FFN flags must use only defined bits, not 0x8$"):
        decode_descriptor(pack(EXPERT_FFN_FIELDS, {**unpack(EXPERT_FFN_FIELDS, data), "flags": 8}))
    with pytest.raises(ValueError, match=r"^GATE_TOPK descriptor must have its reserved fields 0$"):
        decode_descriptor(pack(GATE_TOPK_FIELDS, {**unpack(GATE_TOPK_FIELDS, gate.encode()), "reserved2": 1}))
    # Without RESIDUAL, rq2 is not a requantization word: 0, decoded as None.
    plain = ExpertFfnDescriptor(**{**ffn.__dict__, "flags": MoeFlag(0), "rq2": None, "hidden_addr": 0})
    assert decode_descriptor(plain.encode()).rq2 is None


def test_docs_tables_are_the_generated_ones():
    text = DOC.read_text()
    assert render_document(text) == text, "run `python -m hwgen.isa.doc docs/isa.md`"
    for name in TABLES:
        assert f"<!-- isa:{name} -->" in text
    # A changed table is noticed: the check can fail.
    assert render_document(text.replace("| 3 | `BAD_FINGERPRINT`", "| 3 | `FINGERPRINT_MISMATCH`")) == text


_HARNESS = r"""
#include <cstdio>
#include "hwgen_isa.h"
using namespace hwgen;
template <int N> static void put(const ap_uint<N>& v) { std::printf(" %s", v.to_string(16).c_str()); }
static void put(uint32_t v) { std::printf(" %u", v); }
static void put(int32_t v) { std::printf(" %d", v); }
int main() {
    std::printf("%d %d %d %u %u %d %d %d %u %u", OPCODE_LINEAR, STATUS_WRITE_ERROR, FLAG_B_TRANSPOSED, FLAGS_DEFINED,
                PROGRAM_MAGIC, OPCODE_EXPERT_FFN, STATUS_BAD_COUNT, MOE_FLAG_HIDDEN_DDR, MOE_FLAGS_DEFINED,
                LIST_ENTRY_BYTES);
    std::printf("\n");
    uint32_t w[16];
    while (std::fread(w, 4, 16, stdin) == 16) {
        header_fields h = decode_header(w);
        linear_descriptor l = decode_linear(w);
        conv_descriptor c = decode_conv(w);
        row_descriptor r = decode_rows(w);
        attention_descriptor a = decode_attention(w);
        gate_topk_descriptor g = decode_gate_topk(w);
        expert_ffn_descriptor e = decode_expert_ffn(w);
        requant_fields q = decode_requant_fields(w[13]);
        %PUTS%
        std::printf("\n");
    }
}
"""


@pytest.mark.cosim
def test_generated_cpp_header_decodes_every_field_like_the_codec(tmp_path):
    (tmp_path / ISA_HEADER_NAME).write_text(isa_header())
    order = [("h", HEADER_FIELDS), ("l", LINEAR_FIELDS), ("c", CONV_FIELDS), ("r", ROW_FIELDS), ("a", ATTENTION_FIELDS),
             ("g", GATE_TOPK_FIELDS), ("e", EXPERT_FFN_FIELDS), ("q", REQUANT_FIELDS)]
    puts = " ".join(f"put({var}.{f.name});" for var, fields in order for f in fields)
    binary = toolchain.compile_cpp(_HARNESS.replace("%PUTS%", puts), includes=[tmp_path], name="isa_decode")
    rng = random.Random(7)
    blocks = [bytes(rng.getrandbits(8) for _ in range(64)) for _ in range(300)]
    blocks += [bytes(64), b"\xff" * 64]
    lines = toolchain.run_cpp(binary, stdin=b"".join(blocks)).decode().splitlines()
    constants = [int(v) for v in lines[0].split()]
    assert constants == [int(Opcode.LINEAR), int(Status.WRITE_ERROR), int(Flag.B_TRANSPOSED),
                         sum(int(f) for f in Flag), 0x50475748, 7, 13, 4, 7, 8]
    for block, line in zip(blocks, lines[1:], strict=True):
        expected = []
        for _, fields in order:
            data = block[52:56] if fields is REQUANT_FIELDS else block
            expected += list(unpack(fields, data).values())
        values = line.split()
        widths = [f.bits for _, fields in order for f in fields]
        got = [int(v, 16) if bits > 32 else int(v) for v, bits in zip(values, widths, strict=True)]
        assert got == expected
    assert struct.unpack("<I", blocks[-1][52:56])[0] == 0xFFFFFFFF
