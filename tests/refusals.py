# SPDX-License-Identifier: Apache-2.0
"""One table of Programs the accelerator must refuse (docs/isa.md §3.7), for every executor.

:func:`refusal_cases` builds, for given hardware, a small valid Program (LINEAR, LAYERNORM,
LINEAR with bias and residual, BYPASS, SOFTMAX) and then one mutated copy per rule of §3.7, each
with the status the document says every executor reports and the number of descriptors it
completes before stopping. The expectations are written here from the document, not computed by
``hwgen.isa.rules``, so the rule itself is under test too. A few cases change fields the
descriptor does not use and expect ``OK``: an executor must not refuse more than the rule says.

``tests/test_refusals.py`` runs the table against ``isa_sim``; the RTL and HLS tests run the same
table against their cores and compare status, descriptors completed and the whole image.

:func:`conv_refusal_cases` (part of :func:`refusal_cases`: every core has CONV) mutates the CONV
descriptors of a small convolution model (docs/isa.md §3.9) the same way.

:func:`attention_refusal_cases` is the same kind of table for the attention pair (docs/isa.md §3.8)
on hardware with the attention engine (``HwParams.has_attention``): only the executors that have
the engine run it (isa_sim, the HLS core and the RTL core).

:func:`moe_refusal_cases` is the table of the MoE pair (docs/isa.md §3.10) on hardware with the MoE
engine (``HwParams.has_moe``), with the run-time statuses ``BAD_TASK`` (a case's ``task``) and
``BAD_COUNT``: isa_sim and the HLS core run it. :func:`refusal_cases` (every core) expects opcodes 6
and 7 to be ``BAD_OPCODE``: no shipped core has the engine by default, and the RTL core has none.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass

from hwgen import golden
from hwgen.compiler import compile_graph
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.isa import DESCRIPTOR_BYTES, HEADER_BYTES, Flag, Opcode, Status
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig

__all__ = ["RefusalCase", "refusal_cases", "conv_refusal_cases", "attention_refusal_cases", "moe_refusal_cases",
           "BASE_SPEC", "CONV_SPEC", "ATTENTION_SPEC", "MOE_SPEC", "ROWLESS_HW"]

#: The valid Program every case starts from: fc1 (LINEAR), ln (LAYERNORM), fc2 with bias and the
#: residual add of fc1's output (LINEAR), a standalone Add (BYPASS), softmax (SOFTMAX).
BASE_SPEC = {
    "name": "refusal-base",
    "inputs": {"x": {"shape": [6, 40], "distribution": "uniform", "scale": 2.0}},
    "layers": [
        {"name": "fc1", "op": "Linear", "input": "x", "features": 40},
        {"name": "ln", "op": "LayerNorm", "input": "fc1"},
        {"name": "fc2", "op": "Linear", "input": "ln", "features": 40},
        {"name": "res", "op": "Add", "inputs": ["fc2", "fc1"]},
        {"name": "dbl", "op": "Add", "inputs": ["res", "res"]},
        {"name": "sm", "op": "Softmax", "input": "res"},
    ],
    "outputs": ["dbl", "sm"],
}
FC1, LN, FC2, BYPASS, SM = range(5)

#: The valid Program of the CONV table: conv1 (CONV with bias, the position-embedding-like constant as its
#: residual and ReLU2) over an 8-channel 6x6 map (16-byte pixels, packed), then conv2 (CONV with bias) over
#: conv1's 40-channel output: kernel rows of 80 elements, a 2x2 grid of overlapping windows.
CONV_SPEC = {
    "name": "refusal-conv",
    "inputs": {"img": {"shape": [8, 6, 6], "distribution": "uniform", "scale": 2.0}},
    "layers": [
        {"name": "conv1", "op": "Conv2d", "input": "img", "channels": 40, "kernel": 2, "stride": 2},
        {"name": "pos", "op": "AddConstant", "input": "conv1"},
        {"name": "relu", "op": "ReLU", "input": "pos"},
        {"name": "conv2", "op": "Conv2d", "input": "relu", "channels": 16, "kernel": 2},
    ],
    "outputs": ["conv2"],
}
CONV1, CONV2 = 0, 1

#: The valid Program of the attention table: the Q, K and V projections (LINEAR), then the QK_SOFTMAX_STATS
#: and AV pair of a 2-head attention over 7 tokens (an odd key count: score rows end inside an AXI word).
ATTENTION_SPEC = {
    "name": "refusal-attention",
    "inputs": {"x": {"shape": [7, 32], "distribution": "normal", "scale": 1.0}},
    "layers": [
        {"name": "q", "op": "Linear", "input": "x", "features": 32},
        {"name": "k", "op": "Linear", "input": "x", "features": 32},
        {"name": "v", "op": "Linear", "input": "x", "features": 32},
        {"name": "attn", "op": "Attention", "inputs": ["q", "k", "v"], "heads": 2},
    ],
    "outputs": ["attn"],
}
Q, QK, AV = 0, 3, 4

#: Hardware without row units (32-bit activations): LAYERNORM and SOFTMAX are BAD_OPCODE there.
ROWLESS_HW = HwParams(lanes_in=4, lanes_out=4, act_bits=32, acc_bits=48, axi_data_width=128)


@dataclass(frozen=True)
class RefusalCase:
    """A memory image with a Program at ``program_offset``, and what every executor must report."""

    name: str
    hw: HwParams
    image: bytes
    status: Status
    executed: int
    program_offset: int = 0
    task: int = 0  # the TASK register of the run (the MoE table's BAD_TASK cases)

    @property
    def program(self) -> bytes:
        """The Program bytes (header and descriptors) as the controller fetches them."""
        count = struct.unpack_from("<I", self.image, self.program_offset + 12)[0]
        end = self.program_offset + HEADER_BYTES + DESCRIPTOR_BYTES * min(count, 64)
        return self.image[self.program_offset : min(end, len(self.image))]


def _compiled(spec: dict, hw: HwParams, seed: int = 1):
    qgraph = run_passes(parse_spec(spec).graph, QuantConfig.for_hw(hw))
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed))
    program, image = compile_graph(qgraph, hw)
    return program, image.write_all(inputs).data


def _base(hw: HwParams, seed: int = 1) -> bytes:
    program, data = _compiled(BASE_SPEC, hw, seed)
    ops = [d.opcode if hasattr(d, "opcode") else None for d in program.descriptors]
    flags = [getattr(d, "flags", None) for d in program.descriptors]
    assert ops == [Opcode.LINEAR, Opcode.LAYERNORM, Opcode.LINEAR, Opcode.LINEAR, Opcode.SOFTMAX], ops
    assert flags[FC2] & Flag.BIAS and flags[FC2] & Flag.RESIDUAL and flags[BYPASS] & Flag.BYPASS, flags
    return data


def _words(image: bytes, index: int | None) -> list[int]:
    start = HEADER_BYTES + DESCRIPTOR_BYTES * index if index is not None else 0
    return list(struct.unpack_from("<16I", image, start))


def _put(image: bytes, index: int | None, words: list[int]) -> bytes:
    start = HEADER_BYTES + DESCRIPTOR_BYTES * index if index is not None else 0
    out = bytearray(image)
    struct.pack_into("<16I", out, start, *words)
    return bytes(out)


def _field(words, word, lo, bits, value):
    mask = ((1 << bits) - 1) << lo
    words[word] = (words[word] & ~mask) | ((value << lo) & mask)


def refusal_cases(hw: HwParams) -> list[RefusalCase]:
    """Every case of the table for hardware ``hw`` (which must have row units and ≥ 2 output tiles of 40)."""
    base = _base(hw)
    image_bytes = struct.unpack_from("<I", base, 20)[0]
    a, act = hw.axi_bytes, hw.act_bytes
    cases: list[RefusalCase] = []

    def case(name, index, status, edit, executed=None):
        words = _words(base, index)
        edit(words)
        cases.append(RefusalCase(name, hw, _put(base, index, words), status,
                                 index if executed is None and index is not None else executed or 0))

    def field(word, lo, bits, value):
        return lambda w: _field(w, word, lo, bits, value)

    def set_flags(*flags):
        return lambda w: _field(w, 0, 8, 24, (w[0] >> 8) | sum(int(f) for f in flags))

    def both(*edits):
        def apply(w):
            for e in edits:
                e(w)
        return apply

    fc2 = _words(base, FC2)
    k_tiles2, n_tiles2 = fc2[3] & 0xFFFF, fc2[3] >> 16

    # ------------------------------------------------------------------ header (nothing runs)
    case("header: magic", None, Status.BAD_MAGIC, lambda w: w.__setitem__(0, w[0] ^ 1), 0)
    case("header: version 2", None, Status.BAD_VERSION, field(1, 0, 32, 2), 0)
    case("header: fingerprint", None, Status.BAD_FINGERPRINT, lambda w: w.__setitem__(2, w[2] ^ 0x100), 0)
    case("header: descriptor_bytes 32", None, Status.BAD_HEADER, field(4, 0, 32, 32), 0)
    case("header: count past the image", None, Status.BAD_HEADER, field(3, 0, 32, image_bytes // 64), 0)
    # The first check: a misaligned Program address reads nothing, whatever is there.
    shifted = bytearray(base)
    cases.append(RefusalCase("header: misaligned program address", hw, bytes(shifted), Status.MISALIGNED, 0,
                             program_offset=a // 2))

    # ------------------------------------------------------------------ opcodes
    for opcode in (0, 3, 4, 6, 7, 9, 255):
        case(f"opcode {opcode}", FC2, Status.BAD_OPCODE, field(0, 0, 8, opcode))
    # Every core has CONV: opcode 2 on a LINEAR block reads M's bits 23:16 (0 here) as kh.
    case("opcode 2 on a LINEAR block (kh = 0)", FC2, Status.BAD_DESCRIPTOR, field(0, 0, 8, 2))

    # ------------------------------------------------------------------ LINEAR: BAD_DESCRIPTOR
    case("LINEAR: reserved flag bit 11", FC2, Status.BAD_DESCRIPTOR, field(0, 19, 1, 1))
    case("LINEAR: reserved flag bit 23", FC2, Status.BAD_DESCRIPTOR, field(0, 31, 1, 1))
    case("LINEAR: B_ROWMAJOR with B_TRANSPOSED", FC2, Status.BAD_DESCRIPTOR, set_flags(Flag.B_ROWMAJOR, Flag.B_TRANSPOSED))
    case("LINEAR: M = 0", FC2, Status.BAD_DESCRIPTOR, field(1, 0, 32, 0))
    case("LINEAR: K = 0", FC2, Status.BAD_DESCRIPTOR, both(field(2, 0, 16, 0), field(3, 0, 16, 0)))
    case("LINEAR: N = 0", FC2, Status.BAD_DESCRIPTOR, both(field(2, 16, 16, 0), field(3, 16, 16, 0)))
    case("LINEAR: k_tiles one too many", FC2, Status.BAD_DESCRIPTOR, field(3, 0, 16, k_tiles2 + 1))
    case("LINEAR: n_tiles one too few", FC2, Status.BAD_DESCRIPTOR, field(3, 16, 16, n_tiles2 - 1))
    case("LINEAR: chunk_tiles 0", FC2, Status.BAD_DESCRIPTOR, field(15, 0, 16, 0))
    case("LINEAR: chunk_tiles > n_tiles", FC2, Status.BAD_DESCRIPTOR, field(15, 0, 16, n_tiles2 + 1))
    case("LINEAR: RQ1 width 0", FC2, Status.BAD_DESCRIPTOR, field(13, 8, 6, 0))
    case("LINEAR: RQ1 width 33", FC2, Status.BAD_DESCRIPTOR, field(13, 8, 6, 33))
    case("LINEAR: RQ1 rounding code 7", FC2, Status.BAD_DESCRIPTOR, field(13, 16, 3, 7))
    case("LINEAR: RQ1 overflow code 5", FC2, Status.BAD_DESCRIPTOR, field(13, 20, 3, 5))
    for bit in (15, 19, 23, 30, 31):
        case(f"LINEAR: RQ1 reserved bit {bit}", FC2, Status.BAD_DESCRIPTOR, field(13, bit, 1, 1))
    case("LINEAR: RQ2 overflow code 7 with RESIDUAL", FC2, Status.BAD_DESCRIPTOR, field(14, 20, 3, 7))
    # BYPASS: one chunk, K == N, and no second operand.
    case("BYPASS: with BIAS", BYPASS, Status.BAD_DESCRIPTOR, set_flags(Flag.BIAS))
    case("BYPASS: with W_UNSIGNED", BYPASS, Status.BAD_DESCRIPTOR, set_flags(Flag.W_UNSIGNED))
    case("BYPASS: with B_ROWMAJOR", BYPASS, Status.BAD_DESCRIPTOR, set_flags(Flag.B_ROWMAJOR))
    case("BYPASS: with B_TRANSPOSED", BYPASS, Status.BAD_DESCRIPTOR, set_flags(Flag.B_TRANSPOSED))
    case("BYPASS: K != N", BYPASS, Status.BAD_DESCRIPTOR,
         both(field(2, 0, 16, 39), field(3, 0, 16, -(-39 // hw.lanes_in))))
    case("BYPASS: two chunks", BYPASS, Status.BAD_DESCRIPTOR, field(15, 0, 16, 1))

    # ------------------------------------------------------------------ LINEAR: DOES_NOT_FIT
    max_k_tiles = hw.act_buffer_bytes // (hw.lanes_in * act)
    big_k = (max_k_tiles + 1) * hw.lanes_in
    case("LINEAR: a row of x larger than an activation bank", FC2, Status.DOES_NOT_FIT,
         both(field(2, 0, 16, big_k), field(3, 0, 16, max_k_tiles + 1)))
    tile = hw.tile_stride(hw.weight_bytes)
    max_chunk = hw.weight_buffer_bytes // (tile + hw.lanes_out * hw.bias_bytes)
    wide_n = (max_chunk + 1) * hw.lanes_out
    case("LINEAR: chunk_tiles over the bias bank", FC2, Status.DOES_NOT_FIT,
         both(field(2, 16, 16, wide_n), field(3, 16, 16, max_chunk + 1), field(15, 0, 16, max_chunk + 1)))
    # k_tiles within the activation bank, but one output tile's weights over the weight bank.
    column = hw.weight_buffer_bytes // tile + 1
    if column <= max_k_tiles:
        case("LINEAR: one chunk's weights over the weight bank", FC2, Status.DOES_NOT_FIT,
             both(field(2, 0, 16, column * hw.lanes_in), field(3, 0, 16, column)))
    fits_as_weights = hw.weight_buffer_bytes // (k_tiles2 * tile + hw.lanes_out * hw.bias_bytes)
    if fits_as_weights + 1 <= max_chunk:
        chunk = fits_as_weights + 1
        case("LINEAR: a chunk's weights and bias over the weight bank", FC2, Status.DOES_NOT_FIT,
             both(field(2, 16, 16, chunk * hw.lanes_out), field(3, 16, 16, chunk), field(15, 0, 16, chunk)))
    # B from activations: the same chunk in act_bytes tiles needs act_bytes/weight_bytes times the room.
    act_tile = hw.tile_stride(act)
    too_many_as_b = hw.weight_buffer_bytes // (k_tiles2 * act_tile + hw.lanes_out * hw.bias_bytes) + 1
    if act > hw.weight_bytes and too_many_as_b <= min(fits_as_weights, max_chunk):
        n_b = too_many_as_b * hw.lanes_out
        case("LINEAR: B_TRANSPOSED chunk over the weight bank", FC2, Status.DOES_NOT_FIT,
             both(set_flags(Flag.B_TRANSPOSED), field(2, 16, 16, n_b), field(3, 16, 16, too_many_as_b),
                  field(15, 0, 16, too_many_as_b)))

    # ------------------------------------------------------------------ LINEAR: MISALIGNED
    for name, word in (("x_addr", 4), ("w_addr", 5), ("bias_addr", 6), ("res_addr", 7), ("out_addr", 8),
                       ("x_stride", 9), ("res_stride", 11), ("out_stride", 12)):
        case(f"LINEAR: {name} misaligned", FC2, Status.MISALIGNED, lambda w, word=word: w.__setitem__(word, w[word] + act))
    case("B_ROWMAJOR: w_stride misaligned", FC2, Status.MISALIGNED,
         both(set_flags(Flag.B_ROWMAJOR), field(10, 0, 32, a + act)))

    # ------------------------------------------------------------------ LINEAR: OUT_OF_BOUNDS
    case("LINEAR: out past the image", FC2, Status.OUT_OF_BOUNDS, field(8, 0, 32, image_bytes - a))
    case("LINEAR: x stride past the image", FC2, Status.OUT_OF_BOUNDS, field(9, 0, 32, image_bytes // a * a))
    case("LINEAR: r past the image", FC2, Status.OUT_OF_BOUNDS, field(7, 0, 32, image_bytes - a))
    case("LINEAR: weights past the image", FC2, Status.OUT_OF_BOUNDS, field(5, 0, 32, image_bytes - a))
    case("LINEAR: bias past the image", FC2, Status.OUT_OF_BOUNDS, field(6, 0, 32, image_bytes - a))
    case("B_TRANSPOSED: N rows of B past the image", FC2, Status.OUT_OF_BOUNDS,
         both(set_flags(Flag.B_TRANSPOSED), field(10, 0, 32, image_bytes // a * a)))
    case("B_ROWMAJOR: K rows of B past the image", FC2, Status.OUT_OF_BOUNDS,
         both(set_flags(Flag.B_ROWMAJOR), field(10, 0, 32, image_bytes // a * a)))

    # ------------------------------------------------------------------ row descriptors
    case("LAYERNORM: reserved word 0 bits", LN, Status.BAD_DESCRIPTOR, field(0, 8, 24, 1))
    case("LAYERNORM: reserved word 2 bits", LN, Status.BAD_DESCRIPTOR, field(2, 16, 16, 1))
    for word in (3, 7, 10, 11):
        case(f"LAYERNORM: reserved word {word}", LN, Status.BAD_DESCRIPTOR, field(word, 0, 32, 1 << 31))
    case("LAYERNORM: M = 0", LN, Status.BAD_DESCRIPTOR, field(1, 0, 32, 0))
    case("LAYERNORM: N = 0", LN, Status.BAD_DESCRIPTOR, field(2, 0, 16, 0))
    case("LAYERNORM: N = 1025", LN, Status.BAD_DESCRIPTOR, field(2, 0, 16, 1025))
    f = hw.unit_formats().layernorm_in.frac_bits
    n_ln = _words(base, LN)[2] & 0xFFFF
    limit = (n_ln * n_ln) << (2 * f)
    case("LAYERNORM: d_offset = N²·2^2F (ε = 1)", LN, Status.BAD_DESCRIPTOR,
         both(field(13, 0, 32, limit & 0xFFFFFFFF), field(14, 0, 32, (limit >> 32) & 0xFFFFFFFF),
              field(15, 0, 32, limit >> 64)))
    case("LAYERNORM: gamma misaligned", LN, Status.MISALIGNED, lambda w: w.__setitem__(5, w[5] + act))
    case("LAYERNORM: beta misaligned", LN, Status.MISALIGNED, lambda w: w.__setitem__(6, w[6] + act))
    case("LAYERNORM: x stride misaligned", LN, Status.MISALIGNED, lambda w: w.__setitem__(9, w[9] + act))
    case("LAYERNORM: beta past the image", LN, Status.OUT_OF_BOUNDS, field(6, 0, 32, image_bytes - a))
    case("LAYERNORM: out past the image", LN, Status.OUT_OF_BOUNDS, field(8, 0, 32, image_bytes - a))
    case("SOFTMAX: gamma_addr set", SM, Status.BAD_DESCRIPTOR, field(5, 0, 32, a))
    case("SOFTMAX: d_offset set", SM, Status.BAD_DESCRIPTOR, field(15, 0, 32, 1))
    case("SOFTMAX: N = 1025", SM, Status.BAD_DESCRIPTOR, field(2, 0, 16, 1025))
    case("SOFTMAX: x past the image", SM, Status.OUT_OF_BOUNDS, field(4, 0, 32, image_bytes - a))

    # ------------------------------------------------------------------ accepted: fields a descriptor does not use
    case("accepted: BYPASS ignores a misaligned w_addr", BYPASS, Status.OK, field(5, 0, 32, act), 5)
    case("accepted: RQ2 garbage without RESIDUAL", FC1, Status.OK, field(14, 0, 32, 0xFFFFFFFF), 5)
    case("accepted: BIAS cleared, bias_addr past the image", FC1, Status.OK,
         both(field(0, 8, 1, 0), field(6, 0, 32, image_bytes + act)), 5)
    return cases + conv_refusal_cases(hw)


def conv_refusal_cases(hw: HwParams) -> list[RefusalCase]:
    """One case per CONV rule of docs/isa.md §3.9 (in §3.7's order) on the CONV descriptors of :data:`CONV_SPEC`."""
    program, base = _compiled(CONV_SPEC, hw)
    assert [d.opcode for d in program.descriptors] == [Opcode.CONV, Opcode.CONV], program.descriptors
    conv1, conv2 = program.descriptors
    assert conv1.flags & Flag.RESIDUAL and conv1.flags & Flag.RELU2 and conv2.flags & Flag.BIAS, program.descriptors
    assert (conv2.grid_h, conv2.grid_w, conv2.kh, conv2.k, conv2.seg_stride) == (2, 2, 2, 160, 3 * 40 * hw.act_bytes)
    image_bytes = struct.unpack_from("<I", base, 20)[0]
    a, act = hw.axi_bytes, hw.act_bytes
    end = image_bytes // a * a
    cases: list[RefusalCase] = []

    def case(name, index, status, *edits, executed=None):
        words = _words(base, index)
        for word, lo, bits, value in edits:
            _field(words, word, lo, bits, value)
        cases.append(RefusalCase(name, hw, _put(base, index, words), status, index if executed is None else executed))

    def flags(index, *added):
        return (0, 8, 24, (_words(base, index)[0] >> 8) | sum(int(f) for f in added))

    def ceil(k, lanes):
        return -(-k // lanes)

    w2 = _words(base, CONV2)
    k_tiles2, n_tiles2 = w2[3] & 0xFFFF, w2[3] >> 16

    # Opcode 1 on a CONV block: word 1 is M = grid_h | kh << 16 | stride_y << 24, far past the image.
    case("opcode 1 on a CONV block", CONV2, Status.OUT_OF_BOUNDS, (0, 0, 8, 1))

    # BAD_DESCRIPTOR
    case("CONV: reserved flag bit 11", CONV2, Status.BAD_DESCRIPTOR, (0, 19, 1, 1))
    for flag in (Flag.BYPASS, Flag.B_ROWMAJOR, Flag.B_TRANSPOSED):
        case(f"CONV: {flag.name} set", CONV2, Status.BAD_DESCRIPTOR, flags(CONV2, flag))
    case("CONV: grid_h = 0", CONV2, Status.BAD_DESCRIPTOR, (1, 0, 16, 0))
    case("CONV: grid_w = 0", CONV2, Status.BAD_DESCRIPTOR, (9, 16, 16, 0))
    case("CONV: kh = 0", CONV2, Status.BAD_DESCRIPTOR, (1, 16, 8, 0))
    case("CONV: stride_y = 0", CONV2, Status.BAD_DESCRIPTOR, (1, 24, 8, 0))
    case("CONV: K = 0", CONV2, Status.BAD_DESCRIPTOR, (2, 0, 16, 0), (3, 0, 16, 0))
    case("CONV: N = 0", CONV2, Status.BAD_DESCRIPTOR, (2, 16, 16, 0), (3, 16, 16, 0))
    case("CONV: K not a multiple of kh (kh = 3)", CONV2, Status.BAD_DESCRIPTOR, (1, 16, 8, 3))
    case("CONV: k_tiles one too many", CONV2, Status.BAD_DESCRIPTOR, (3, 0, 16, k_tiles2 + 1))
    case("CONV: n_tiles one too few", CONV2, Status.BAD_DESCRIPTOR, (3, 16, 16, n_tiles2 - 1))
    case("CONV: chunk_tiles 0", CONV2, Status.BAD_DESCRIPTOR, (15, 0, 16, 0))
    case("CONV: chunk_tiles > n_tiles", CONV2, Status.BAD_DESCRIPTOR, (15, 0, 16, n_tiles2 + 1))
    case("CONV: RQ1 width 0", CONV2, Status.BAD_DESCRIPTOR, (13, 8, 6, 0))
    case("CONV: RQ1 reserved bit 31", CONV2, Status.BAD_DESCRIPTOR, (13, 31, 1, 1))
    case("CONV: RQ2 overflow code 7 with RESIDUAL", CONV1, Status.BAD_DESCRIPTOR, (14, 20, 3, 7))

    # DOES_NOT_FIT: LINEAR's capacities.
    max_k_tiles = hw.act_buffer_bytes // (hw.lanes_in * act)
    big_k = (max_k_tiles + 1) * hw.lanes_in  # even: two kernel rows still divide it
    case("CONV: a gathered row of x larger than an activation bank", CONV2, Status.DOES_NOT_FIT,
         (2, 0, 16, big_k), (3, 0, 16, max_k_tiles + 1))
    max_chunk = hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes)
    case("CONV: chunk_tiles over the bias bank", CONV2, Status.DOES_NOT_FIT,
         (2, 16, 16, (max_chunk + 1) * hw.lanes_out), (3, 16, 16, max_chunk + 1), (15, 0, 16, max_chunk + 1))

    # MISALIGNED
    for name, word, bits in (("x_addr", 4, 32), ("w_addr", 5, 32), ("bias_addr", 6, 32), ("out_addr", 8, 32),
                             ("x_stride", 9, 16), ("seg_stride", 10, 32), ("out_stride", 12, 32)):
        case(f"CONV: {name} misaligned", CONV2, Status.MISALIGNED, (word, 0, bits, (w2[word] & ((1 << bits) - 1)) + act))
    w1 = _words(base, CONV1)
    for name, word in (("res_addr", 7), ("res_stride", 11)):
        case(f"CONV: {name} misaligned with RESIDUAL", CONV1, Status.MISALIGNED, (word, 0, 32, w1[word] + act))
    # The skips after each grid row (a bordered map's interior): checked for alignment like the strides.
    case("CONV: out_skip misaligned", CONV2, Status.MISALIGNED, (12, 16, 16, act))
    case("CONV: res_skip misaligned with RESIDUAL", CONV1, Status.MISALIGNED, (11, 16, 16, act))
    odd = 2 * (80 - 1)  # kernel rows of 79 containers: segments end inside an AXI word
    case("CONV: segment bytes misaligned", CONV2, Status.MISALIGNED, (2, 0, 16, odd), (3, 0, 16, ceil(odd, hw.lanes_in)))

    # OUT_OF_BOUNDS: the last window's last kernel row, and LINEAR's operands.
    case("CONV: x past the image (seg_stride)", CONV2, Status.OUT_OF_BOUNDS, (10, 0, 32, end))
    case("CONV: x past the image (stride_y)", CONV2, Status.OUT_OF_BOUNDS, (1, 24, 8, 255), (10, 0, 32, end // 256 // a * a))
    case("CONV: x past the image (x_stride)", CONV2, Status.OUT_OF_BOUNDS, (9, 0, 16, min(end, 0x10000 - a)),
         (4, 0, 32, end - 2 * a))
    case("CONV: out past the image", CONV2, Status.OUT_OF_BOUNDS, (8, 0, 32, end - a))
    case("CONV: weights past the image", CONV2, Status.OUT_OF_BOUNDS, (5, 0, 32, end - a))
    case("CONV: bias past the image", CONV2, Status.OUT_OF_BOUNDS, (6, 0, 32, end - a))
    case("CONV: r past the image", CONV1, Status.OUT_OF_BOUNDS, (7, 0, 32, end - a))
    # The skips move every grid row after the first: the last one ends (grid_h − 1)·skip bytes further.
    case("CONV: out past the image (out_skip)", CONV2, Status.OUT_OF_BOUNDS, (12, 16, 16, 0x10000 - a))
    case("CONV: r past the image (res_skip)", CONV1, Status.OUT_OF_BOUNDS, (11, 16, 16, 0x10000 - a))

    # Accepted: overlapping windows, fewer of them, fields CONV does not use.
    case("accepted: CONV windows overlapping (stride_y 1)", CONV1, Status.OK, (1, 24, 8, 1), executed=2)
    case("accepted: CONV over one window per grid row", CONV2, Status.OK, (9, 16, 16, 1), executed=2)
    case("accepted: CONV RQ2 garbage without RESIDUAL", CONV2, Status.OK, (14, 0, 32, 0xFFFFFFFF), executed=2)
    case("accepted: CONV res_skip garbage without RESIDUAL", CONV2, Status.OK, (11, 16, 16, act), executed=2)
    # Skips inside the image: conv1's later grid rows (and residual rows) one AXI word further on.
    case("accepted: CONV out_skip and res_skip of one AXI word", CONV1, Status.OK, (12, 16, 16, a), (11, 16, 16, a),
         executed=2)
    return cases


def attention_refusal_cases(hw: HwParams) -> list[RefusalCase]:
    """The attention table for hardware ``hw`` with the attention engine: one case per rule of
    docs/isa.md §3.8's checks (§3.7's order), on the QK_SOFTMAX_STATS or the AV descriptor of
    :data:`ATTENTION_SPEC`, opcodes 3 and 4 on other blocks, the Program on a core without the
    engine, and changes the rule accepts."""
    if not hw.has_attention:
        raise ValueError(f"the attention table needs hardware with the attention engine, not {hw}")
    program, base = _compiled(ATTENTION_SPEC, hw)
    ops = [d.opcode for d in program.descriptors]
    assert ops == [Opcode.LINEAR] * 3 + [Opcode.QK_SOFTMAX_STATS, Opcode.AV], ops
    assert program.descriptors[Q].flags & Flag.BIAS, program.descriptors[Q]
    image_bytes = struct.unpack_from("<I", base, 20)[0]
    a, act = hw.axi_bytes, hw.act_bytes
    qk = program.descriptors[QK]
    m, s, heads, d_head = qk.m, qk.s, qk.heads, qk.d_head
    assert (m, s, heads, d_head) == (7, 7, 2, 16), (m, s, heads, d_head)
    cases: list[RefusalCase] = []

    def case(name, index, status, *edits, executed=None):
        words = _words(base, index)
        for word, lo, bits, value in edits:
            _field(words, word, lo, bits, value)
        cases.append(RefusalCase(name, hw, _put(base, index, words), status, index if executed is None else executed))

    # Opcodes 3 and 4 on blocks of the other layout or the other opcode: the unused operands are not 0.
    case("opcode 3 on a LINEAR with BIAS (flags are reserved bits)", Q, Status.BAD_DESCRIPTOR, (0, 0, 8, 3))
    case("opcode 4 on a LINEAR with BIAS (flags are reserved bits)", Q, Status.BAD_DESCRIPTOR, (0, 0, 8, 4))
    case("QK: opcode 4 (Q, K and scale set)", QK, Status.BAD_DESCRIPTOR, (0, 0, 8, 4))
    case("AV: opcode 3 (V and out set, scale 0)", AV, Status.BAD_DESCRIPTOR, (0, 0, 8, 3))
    for opcode in (5, 8):
        case(f"QK: opcode {opcode} (a row descriptor)", QK, Status.BAD_DESCRIPTOR, (0, 0, 8, opcode))

    # BAD_DESCRIPTOR
    case("QK: reserved word 0 bits", QK, Status.BAD_DESCRIPTOR, (0, 8, 24, 1 << 23))
    case("AV: reserved word 2 bits", AV, Status.BAD_DESCRIPTOR, (2, 8, 8, 1))
    case("QK: reserved word 15 bits", QK, Status.BAD_DESCRIPTOR, (15, 16, 16, 1))
    case("QK: M = 0", QK, Status.BAD_DESCRIPTOR, (1, 0, 16, 0))
    case("AV: S = 0", AV, Status.BAD_DESCRIPTOR, (1, 16, 16, 0))
    case("QK: S = 1025", QK, Status.BAD_DESCRIPTOR, (1, 16, 16, 1025))
    case("AV: heads = 0", AV, Status.BAD_DESCRIPTOR, (2, 0, 8, 0))
    case("QK: d_head = 0", QK, Status.BAD_DESCRIPTOR, (2, 16, 16, 0))
    case("QK: v_addr set", QK, Status.BAD_DESCRIPTOR, (5, 0, 32, a))
    case("QK: out_stride set", QK, Status.BAD_DESCRIPTOR, (10, 0, 32, a))
    case("AV: q_stride set", AV, Status.BAD_DESCRIPTOR, (7, 0, 32, a))
    case("AV: scale set", AV, Status.BAD_DESCRIPTOR, (15, 0, 16, 1))
    case("QK: scale = 0", QK, Status.BAD_DESCRIPTOR, (15, 0, 16, 0))
    case("QK: rq width 0", QK, Status.BAD_DESCRIPTOR, (14, 8, 6, 0))
    case("AV: rq overflow code 5", AV, Status.BAD_DESCRIPTOR, (14, 20, 3, 5))
    case("AV: rq reserved bit 30", AV, Status.BAD_DESCRIPTOR, (14, 30, 1, 1))
    case("QK: rq into an unsigned score format", QK, Status.BAD_DESCRIPTOR, (14, 14, 1, 0))
    case(f"QK: rq into {hw.act_bits - 1}-bit scores", QK, Status.BAD_DESCRIPTOR, (14, 8, 6, hw.act_bits - 1))

    # DOES_NOT_FIT: the activation bank, the row buffers, one head's operand in the weight bank.
    max_k_tiles = hw.act_buffer_bytes // (hw.lanes_in * act)
    max_chunk = hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes)
    act_tile = hw.tile_stride(act)
    case("QK: a row of Q over the activation bank", QK, Status.DOES_NOT_FIT,
         (2, 16, 16, (max_k_tiles + 1) * hw.lanes_in))
    if (max_chunk + 1) * hw.lanes_out < 1 << 16:
        case("AV: an output row segment over the row buffers", AV, Status.DOES_NOT_FIT,
             (2, 16, 16, (max_chunk + 1) * hw.lanes_out))
    # S = 1024 keys: one head's K is k_tiles·1024/lanes_out tiles; the fewest k_tiles that overflow the bank.
    k_over = hw.weight_buffer_bytes // (-(-1024 // hw.lanes_out) * act_tile) + 1
    if k_over <= max_k_tiles:
        case("QK: one head's K over the weight bank", QK, Status.DOES_NOT_FIT,
             (1, 16, 16, 1024), (2, 16, 16, k_over * hw.lanes_in))

    # MISALIGNED
    for name, word in (("q_addr", 3), ("k_stride", 8), ("scores_addr", 11), ("stats_addr", 13)):
        case(f"QK: {name} misaligned", QK, Status.MISALIGNED, (word, 0, 32, _words(base, QK)[word] + act))
    for name, word in (("v_addr", 5), ("out_addr", 6), ("v_stride", 9), ("out_stride", 10), ("scores_stride", 12)):
        case(f"AV: {name} misaligned", AV, Status.MISALIGNED, (word, 0, 32, _words(base, AV)[word] + act))
    case("QK: a head's columns start inside an AXI word", QK, Status.MISALIGNED, (2, 16, 16, d_head - 1))

    # OUT_OF_BOUNDS
    end = image_bytes // a * a
    case("QK: scores past the image", QK, Status.OUT_OF_BOUNDS, (11, 0, 32, end - a))
    case("AV: scores stride past the image", AV, Status.OUT_OF_BOUNDS, (12, 0, 32, end))
    case("QK: statistics past the image", QK, Status.OUT_OF_BOUNDS, (13, 0, 32, end - a))
    case("QK: K past the image", QK, Status.OUT_OF_BOUNDS, (4, 0, 32, end - a))
    case("QK: Q stride past the image", QK, Status.OUT_OF_BOUNDS, (7, 0, 32, end))
    case("AV: V past the image", AV, Status.OUT_OF_BOUNDS, (5, 0, 32, end - a))
    case("AV: out past the image", AV, Status.OUT_OF_BOUNDS, (6, 0, 32, end - a))

    # Accepted: what the rule does not ask for.
    case("accepted: AV requantizes into an 8-bit unsigned output", AV, Status.OK, (14, 8, 6, 8), (14, 14, 1, 0),
         executed=5)
    case("accepted: QK over fewer query rows", QK, Status.OK, (1, 0, 16, m - 2), executed=5)
    case("accepted: one head of 32 columns", QK, Status.OK, (2, 0, 8, 1), (2, 16, 16, 2 * d_head), executed=5)

    # The same Program on the same core without the engine: BAD_OPCODE at the QK descriptor.
    plain = dataclasses.replace(hw, has_attention=False)
    words = _words(base, None)
    words[2] = plain.fingerprint()
    cases.append(RefusalCase("QK_SOFTMAX_STATS on a core without the engine", plain, _put(base, None, words),
                             Status.BAD_OPCODE, QK))
    return cases


def rowless_case() -> RefusalCase:
    """A LAYERNORM on hardware without row units (32-bit activations): BAD_OPCODE after one LINEAR."""
    spec = {"name": "rowless", "inputs": {"x": {"shape": [3, 8]}},
            "layers": [{"name": "fc", "op": "Linear", "input": "x", "features": 8},
                       {"name": "fc2", "op": "Linear", "input": "fc", "features": 8}], "outputs": ["fc2"]}
    qgraph = run_passes(parse_spec(spec).graph, QuantConfig.for_hw(ROWLESS_HW))
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=2))
    _, image = compile_graph(qgraph, ROWLESS_HW)
    base = image.write_all(inputs).data
    words = _words(base, 1)
    layernorm = [int(Opcode.LAYERNORM), 3, 8, 0, words[4], 0, 0, 0, words[8], words[9], 0, 0, words[12], 0, 0, 0]
    return RefusalCase("LAYERNORM without a row unit", ROWLESS_HW, _put(base, 1, layernorm), Status.BAD_OPCODE, 1)



#: The valid Program of the MoE table: a 2-task gate over 4 experts (top-2) of 7 tokens of 32, and the experts
#: (hidden 48) with the residual add of x: a GATE_TOPK and an EXPERT_FFN with RESIDUAL.
MOE_SPEC = {
    "name": "refusal-moe",
    "inputs": {"x": {"shape": [7, 32], "distribution": "normal", "scale": 1.0}},
    "layers": [
        {"name": "gate", "op": "MoEGate", "input": "x", "experts": 4, "tasks": 2},
        {"name": "probs", "op": "Softmax", "input": "gate"},
        {"name": "top", "op": "TopK", "input": "probs", "k": 2},
        {"name": "moe", "op": "Expert", "inputs": ["x", "top", "top.indices"], "experts": 4, "hidden": 48},
        {"name": "out", "op": "Add", "inputs": ["moe", "x"]},
    ],
    "outputs": ["out"],
}
GATE, FFN = 0, 1


def moe_refusal_cases(hw: HwParams) -> list[RefusalCase]:
    """The MoE table for hardware ``hw`` with the MoE engine: one case per rule of docs/isa.md §3.10 (§3.7's
    order) on the GATE_TOPK or the EXPERT_FFN of :data:`MOE_SPEC`; the run-time refusals ``BAD_TASK`` (the
    ``task`` of the case) and ``BAD_COUNT`` (counts and lists corrupted in an image the gate already ran on,
    under a Program of the EXPERT_FFN alone); the Program on a core without the engine; and changes the rule
    accepts."""
    if not hw.has_moe:
        raise ValueError(f"the MoE table needs hardware with the MoE engine, not {hw}")
    program, base = _compiled(MOE_SPEC, hw)
    assert [d.opcode for d in program.descriptors] == [Opcode.GATE_TOPK, Opcode.EXPERT_FFN], program.descriptors
    gate, ffn = program.descriptors
    assert (gate.m, gate.experts, gate.top_k, gate.k, gate.tasks) == (7, 4, 2, 32, 2), gate
    assert (ffn.d, ffn.h, int(ffn.flags)) == (32, 48, 1), ffn  # RESIDUAL
    image_bytes = struct.unpack_from("<I", base, 20)[0]
    a, act = hw.axi_bytes, hw.act_bytes
    end = image_bytes // a * a
    cases: list[RefusalCase] = []

    def case(name, index, status, *edits, executed=None, task=0, image=base):
        words = _words(image, index)
        for word, lo, bits, value in edits:
            _field(words, word, lo, bits, value)
        cases.append(RefusalCase(name, hw, _put(image, index, words), status, index if executed is None else executed,
                                 task=task))

    g, e = _words(base, GATE), _words(base, FFN)
    far = (1 << 30) // a * a  # a stride that passes every size check and leaves the image (3 strides < 2^32)

    # BAD_TASK: the TASK register is a run argument; the gate has 2 tasks.
    case("GATE_TOPK: task 2 of 2", GATE, Status.BAD_TASK, task=2)
    case("GATE_TOPK: task 1 of 1", GATE, Status.BAD_TASK, (2, 16, 8, 1), task=1)
    case("accepted: GATE_TOPK task 1 of 2", GATE, Status.OK, executed=2, task=1)

    # GATE_TOPK: BAD_DESCRIPTOR
    case("GATE_TOPK: reserved word 0 bits", GATE, Status.BAD_DESCRIPTOR, (0, 8, 24, 1))
    case("GATE_TOPK: reserved word 2 bits", GATE, Status.BAD_DESCRIPTOR, (2, 24, 8, 1))
    case("GATE_TOPK: reserved word 15", GATE, Status.BAD_DESCRIPTOR, (15, 31, 1, 1))
    case("GATE_TOPK: M = 0", GATE, Status.BAD_DESCRIPTOR, (1, 0, 16, 0))
    case("GATE_TOPK: experts = 0", GATE, Status.BAD_DESCRIPTOR, (1, 16, 8, 0), (3, 16, 16, 0))
    case("GATE_TOPK: top_k = 0", GATE, Status.BAD_DESCRIPTOR, (1, 24, 8, 0))
    case("GATE_TOPK: top_k = E + 1", GATE, Status.BAD_DESCRIPTOR, (1, 24, 8, 5))
    case("GATE_TOPK: top_k = 9 of 16 experts", GATE, Status.BAD_DESCRIPTOR, (1, 16, 8, 16), (1, 24, 8, 9),
         (3, 16, 16, -(-16 // hw.lanes_out)))
    case("GATE_TOPK: D = 0", GATE, Status.BAD_DESCRIPTOR, (2, 0, 16, 0), (3, 0, 16, 0))
    case("GATE_TOPK: tasks = 0", GATE, Status.BAD_DESCRIPTOR, (2, 16, 8, 0))
    case("GATE_TOPK: k_tiles one too many", GATE, Status.BAD_DESCRIPTOR, (3, 0, 16, (g[3] & 0xFFFF) + 1))
    case("GATE_TOPK: n_tiles one too many", GATE, Status.BAD_DESCRIPTOR, (3, 16, 16, (g[3] >> 16) + 1))
    case("GATE_TOPK: task_stride below one task's tiles", GATE, Status.BAD_DESCRIPTOR, (6, 0, 32, g[6] - a))
    case("GATE_TOPK: rq width 0", GATE, Status.BAD_DESCRIPTOR, (13, 8, 6, 0))
    case("GATE_TOPK: rq reserved bit 31", GATE, Status.BAD_DESCRIPTOR, (13, 31, 1, 1))
    case("GATE_TOPK: rq into an unsigned format", GATE, Status.BAD_DESCRIPTOR, (13, 14, 1, 0))
    case(f"GATE_TOPK: rq into {hw.act_bits - 1} bits", GATE, Status.BAD_DESCRIPTOR, (13, 8, 6, hw.act_bits - 1))

    # GATE_TOPK: DOES_NOT_FIT (the tile counts follow D and E, so only the capacities are over)
    max_k_tiles = hw.act_buffer_bytes // (hw.lanes_in * act)
    case("GATE_TOPK: a row of x over the activation bank", GATE, Status.DOES_NOT_FIT,
         (2, 0, 16, (max_k_tiles + 1) * hw.lanes_in), (3, 0, 16, max_k_tiles + 1), (6, 0, 32, far))
    tile = hw.tile_stride(hw.weight_bytes)
    n_255 = -(-255 // hw.lanes_out)
    k_over = hw.weight_buffer_bytes // (n_255 * tile) + 1
    case("GATE_TOPK: one task's gate of 255 experts over the weight bank", GATE, Status.DOES_NOT_FIT,
         (1, 16, 8, 255), (3, 16, 16, n_255), (2, 0, 16, k_over * hw.lanes_in), (3, 0, 16, k_over), (6, 0, 32, far))

    # GATE_TOPK: MISALIGNED
    for name, word in (("x_addr", 4), ("w_addr", 5), ("task_stride", 6), ("probs_addr", 7), ("top_addr", 8),
                       ("x_stride", 9), ("lists_addr", 10), ("counts_addr", 11), ("idx_addr", 12)):
        case(f"GATE_TOPK: {name} misaligned", GATE, Status.MISALIGNED, (word, 0, 32, g[word] + act))

    # GATE_TOPK: OUT_OF_BOUNDS
    case("GATE_TOPK: x stride past the image", GATE, Status.OUT_OF_BOUNDS, (9, 0, 32, end))
    case("GATE_TOPK: task 1's gate past the image", GATE, Status.OUT_OF_BOUNDS, (6, 0, 32, end))
    for name, word in (("probs", 7), ("top", 8), ("lists", 10), ("idx", 12)):
        case(f"GATE_TOPK: {name} past the image", GATE, Status.OUT_OF_BOUNDS, (word, 0, 32, end - a))
    case("GATE_TOPK: counts past the image", GATE, Status.OUT_OF_BOUNDS, (11, 0, 32, end))
    case("accepted: GATE_TOPK without probs (probs_addr 0)", GATE, Status.OK, (7, 0, 32, 0), executed=2)

    # EXPERT_FFN: BAD_DESCRIPTOR (after the gate ran: executed 1)
    case("EXPERT_FFN: flag bit 3", FFN, Status.BAD_DESCRIPTOR, (0, 11, 1, 1))
    case("EXPERT_FFN: M = 0", FFN, Status.BAD_DESCRIPTOR, (1, 0, 16, 0))
    case("EXPERT_FFN: experts = 0", FFN, Status.BAD_DESCRIPTOR, (1, 16, 8, 0))
    case("EXPERT_FFN: top_k = 0", FFN, Status.BAD_DESCRIPTOR, (1, 24, 8, 0))
    case("EXPERT_FFN: top_k = E + 1", FFN, Status.BAD_DESCRIPTOR, (1, 24, 8, 5))
    case("EXPERT_FFN: D = 0", FFN, Status.BAD_DESCRIPTOR, (2, 0, 16, 0))
    case("EXPERT_FFN: H = 0", FFN, Status.BAD_DESCRIPTOR, (2, 16, 16, 0))
    n1, n2 = -(-48 // hw.lanes_out), -(-32 // hw.lanes_out)
    case("EXPERT_FFN: chunk1 = 0", FFN, Status.BAD_DESCRIPTOR, (3, 0, 8, 0))
    case("EXPERT_FFN: chunk1 > FC1's tiles", FFN, Status.BAD_DESCRIPTOR, (3, 0, 8, n1 + 1))
    case("EXPERT_FFN: chunk2 > FC2's tiles", FFN, Status.BAD_DESCRIPTOR, (3, 8, 8, n2 + 1))
    case("EXPERT_FFN: residual fields without RESIDUAL", FFN, Status.BAD_DESCRIPTOR, (0, 8, 1, 0))
    case("EXPERT_FFN: hidden_addr without HIDDEN_DDR", FFN, Status.BAD_DESCRIPTOR, (11, 0, 32, a))
    case("EXPERT_FFN: expert_stride below one expert's block", FFN, Status.BAD_DESCRIPTOR, (6, 0, 32, e[6] - a))
    case("EXPERT_FFN: rq_hidden width 0", FFN, Status.BAD_DESCRIPTOR, (12, 8, 6, 0))
    case("EXPERT_FFN: rq_expert rounding code 7", FFN, Status.BAD_DESCRIPTOR, (13, 16, 3, 7))
    case("EXPERT_FFN: rq_out reserved bit 15", FFN, Status.BAD_DESCRIPTOR, (14, 15, 1, 1))
    case("EXPERT_FFN: rq2 overflow code 7 with RESIDUAL", FFN, Status.BAD_DESCRIPTOR, (15, 20, 3, 7))

    # EXPERT_FFN: DOES_NOT_FIT (a large expert_stride keeps the block-size check quiet)
    case("EXPERT_FFN: M·D over the MoE accumulator", FFN, Status.DOES_NOT_FIT,
         (1, 0, 16, hw.moe_acc_entries // 32 + 1))
    case("EXPERT_FFN: a weighted sum wider than moe_acc_bits", FFN, Status.DOES_NOT_FIT,
         (14, 24, 6, hw.moe_acc_bits + 1))
    case("EXPERT_FFN: a row of x over the activation bank", FFN, Status.DOES_NOT_FIT,
         (2, 0, 16, (max_k_tiles + 1) * hw.lanes_in), (6, 0, 32, far))
    per_tile = -(-32 // hw.lanes_in) * tile + hw.lanes_out * hw.bias_bytes
    c_over = hw.weight_buffer_bytes // per_tile + 1
    case("EXPERT_FFN: an FC1 chunk over the weight bank", FFN, Status.DOES_NOT_FIT,
         (2, 16, 16, c_over * hw.lanes_out), (3, 0, 8, min(c_over, 255)), (6, 0, 32, far))
    tokens = hw.moe_hidden_bytes // hw.align(64 * act) + 1
    assert tokens * 32 <= hw.moe_acc_entries, tokens
    case("EXPERT_FFN: the hidden rows over the hidden buffer", FFN, Status.DOES_NOT_FIT,
         (1, 0, 16, tokens), (2, 16, 16, 64), (6, 0, 32, far))

    # EXPERT_FFN: MISALIGNED
    for name, word in (("x_addr", 4), ("w_addr", 5), ("expert_stride", 6), ("lists_addr", 7), ("counts_addr", 8),
                       ("res_addr", 9), ("out_addr", 10)):
        case(f"EXPERT_FFN: {name} misaligned", FFN, Status.MISALIGNED, (word, 0, 32, e[word] + act))
    case("EXPERT_FFN: hidden_addr misaligned with HIDDEN_DDR", FFN, Status.MISALIGNED, (0, 10, 1, 1),
         (11, 0, 32, act))

    # EXPERT_FFN: OUT_OF_BOUNDS
    for name, word in (("x", 4), ("lists", 7), ("r", 9), ("out", 10)):
        case(f"EXPERT_FFN: {name} past the image", FFN, Status.OUT_OF_BOUNDS, (word, 0, 32, end - a))
    case("EXPERT_FFN: counts past the image", FFN, Status.OUT_OF_BOUNDS, (8, 0, 32, end))
    case("EXPERT_FFN: the last expert past the image", FFN, Status.OUT_OF_BOUNDS, (6, 0, 32, far))
    case("EXPERT_FFN: hidden rows past the image", FFN, Status.OUT_OF_BOUNDS, (0, 10, 1, 1), (11, 0, 32, end - a))

    # BAD_COUNT: the image after the gate ran, under a Program of the EXPERT_FFN alone.
    from hwgen.compiler import isa_sim

    ran = bytearray(isa_sim(program, base, hw).data)
    header = _words(base, None)
    header[3] = 1
    struct.pack_into("<16I", ran, 0, *header)
    struct.pack_into("<16I", ran, HEADER_BYTES, *e)
    counts_addr, lists_addr = e[8], e[7]
    counts = list(struct.unpack_from("<4I", ran, counts_addr))
    stride = -(-8 * 7 // a) * a

    def corrupted(name, status, *writes):
        image = bytearray(ran)
        for addr, value in writes:
            struct.pack_into("<I", image, addr, value)
        cases.append(RefusalCase(name, hw, bytes(image), status, 0 if status != Status.OK else 1))

    first = counts.index(max(counts))
    corrupted("accepted: EXPERT_FFN alone on the gate's lists", Status.OK)
    corrupted("EXPERT_FFN: a count one too many (sum ≠ M·k)", Status.BAD_COUNT, (counts_addr, counts[0] + 1))
    corrupted("EXPERT_FFN: a count above M", Status.BAD_COUNT, (counts_addr + 4 * first, 8),
              *[(counts_addr + 4 * i, 0) for i in range(4) if i != first])
    corrupted("EXPERT_FFN: a list entry's token = M", Status.BAD_COUNT, (lists_addr + first * stride, 7))
    corrupted("EXPERT_FFN: a list entry's token ≥ M in its high bits", Status.BAD_COUNT,
              (lists_addr + first * stride, 0x8000))
    corrupted("accepted: EXPERT_FFN ignores a list entry's slot bits", Status.OK,
              (lists_addr + first * stride, struct.unpack_from("<I", ran, lists_addr + first * stride)[0] | 0xFF0000))

    # The same Program on the same core without the engine: BAD_OPCODE at the GATE_TOPK.
    plain = dataclasses.replace(hw, has_moe=False)
    words = _words(base, None)
    words[2] = plain.fingerprint()
    cases.append(RefusalCase("GATE_TOPK on a core without the engine", plain, _put(base, None, words),
                             Status.BAD_OPCODE, GATE))
    return cases
