# SPDX-License-Identifier: Apache-2.0
"""The HLS accelerator, C-simulated with g++, executes Programs exactly as isa_sim does.

isa_sim (NumPy, docs/isa.md read literally) is the reference: the image after a C-sim run must
equal isa_sim's byte for byte, every region (program, constants, inputs, intermediates, outputs,
padding). Covered: the compiler's output for mlp-tiny and mlp-odd at lanes 8×8 and 16×16 with
AXI 64 and 128, and for softmax-rows and vit-mlp-block (LAYERNORM, GELU, SOFTMAX) at 8×8/AXI64,
16×8/AXI64, 16×16/AXI128 and 32×32/AXI128 (LayerNorm at 4 and 8 elements per beat);
every shipped board's geometry (16×8/AXI64, 16×16/AXI128 with two buffer sizes, 32×32/AXI128) on mlp-odd,
on a coverage model (standalone Add/ReLU/Requantize as BYPASS, activation × activation MatMuls
as B_ROWMAJOR and B_TRANSPOSED) and on hand-assembled descriptors; GELU set on compiled
descriptors; a descriptor-level Program exercising every flag (multi-chunk, remainders, row
segments starting inside an AXI word) and the compiler's output for a model using every flag, on
odd configurations (3×5 and 4×8 lanes, 8/32-bit activations, 48/24-bit accumulators); LAYERNORM
and SOFTMAX descriptors of 1 to 1024 elements with odd strides, in place, random padding and the
rows that stress the units; the runtime requantizer against ``QFmt.cast`` for all 35 rounding ×
overflow pairs; the refusal table of ``tests/refusals.py`` (same status, same descriptors
completed, the image as isa_sim leaves it) at every shipped geometry; a Program at an offset.
One g++ binary per configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import struct

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.board import board_names, load_board
from hwgen.compiler import Flag, LinearDescriptor, Program, Refused, Requant, RowDescriptor, compile_graph, isa_sim
from hwgen.compiler.layout import pack_rows, pack_tiles, pack_vector
from hwgen.frontend import parse_spec
from hwgen.hls.accelerator import (
    CONFIG_HEADER,
    ISA_HEADER,
    KERNEL_HEADERS,
    TOP_NAME,
    TOP_SOURCE,
    AcceleratorCSim,
    Status,
    accelerator_context,
    accelerator_sources,
    bank_tiles,
    x_bank_rows,
)
from hwgen.hls.emit import stamp
from hwgen.hwparams import HwParams
from hwgen.isa import OPCODE_LAYERNORM, OPCODE_SOFTMAX, Limits
from hwgen.isa.cpp import isa_header
from hwgen.pipeline import build, run_passes
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt
from hwgen.quant import QuantConfig
from hwgen.units import ROW_MAX

from refusals import refusal_cases, rowless_case

HW_16X16_AXI128 = HwParams()
HW_8X8_AXI64 = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
HW_16X16_AXI64 = HwParams(axi_data_width=64)
HW_8X8_AXI128 = HwParams(lanes_in=8, lanes_out=8)
# Lanes that divide nothing: tiles share AXI words, chunks start inside words, 8-byte bias.
HW_3X5_WIDE = HwParams(lanes_in=3, lanes_out=5, acc_bits=48, act_bits=32, weight_bits=16, axi_data_width=64,
                       act_buffer_bytes=512, weight_buffer_bytes=1024)
# Activations narrower than weights, a tile row narrower than an AXI word.
HW_4X8_NARROW = HwParams(lanes_in=4, lanes_out=8, acc_bits=24, act_bits=8, weight_bits=16,
                         act_buffer_bytes=256, weight_buffer_bytes=2048)
MODEL_CONFIGS = [HW_16X16_AXI128, HW_8X8_AXI64, HW_16X16_AXI64, HW_8X8_AXI128]
#: Every shipped board's HwParams (boards/*.yaml).
BOARD_HW = {name: load_board(name).hw_params() for name in board_names()}
MODEL_IDS = ["16x16-axi128", "8x8-axi64", "16x16-axi64", "8x8-axi128"]

ALL_FLAGS = Flag(sum(int(f) for f in Flag))


@functools.cache
def csim(hw: HwParams) -> AcceleratorCSim:
    """One compiled harness per configuration, shared by every test that uses it."""
    return AcceleratorCSim(hw)


def assert_same_image(got: bytes, want: bytes, regions) -> None:
    """Byte equality, reporting the first differing region (name, offset) when there is one."""
    assert len(got) == len(want), f"image sizes differ: {len(got)} != {len(want)}"
    for name, offset, size in regions:
        a = np.frombuffer(got[offset : offset + size], dtype=np.uint8)
        b = np.frombuffer(want[offset : offset + size], dtype=np.uint8)
        bad = np.flatnonzero(a != b)
        assert bad.size == 0, (
            f"region {name}: {bad.size} byte(s) differ, first at offset {offset + bad[0]:#x}: "
            f"C-sim {a[bad[0]]:#04x}, isa_sim {b[bad[0]]:#04x}"
        )
    assert got == want, "bytes outside the listed regions differ"


def image_regions(image):
    return [(r.name, r.offset, r.size) for r in image.regions]


def compiled_model(name: str, hw: HwParams, seed: int, scale: float):
    """The compiler's Program and image for a zoo model, with seeded inputs written in."""
    result = build(zoo.load_model(name, seed=seed), hw)
    inputs = golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=seed, scale=scale))
    return result.program, result.image.write_all(inputs)


def with_gelu(program: Program, data: bytes, indices, drop=Flag(0)) -> tuple[Program, bytes]:
    """The Program with GELU set (and ``drop`` cleared) on descriptors ``indices``, written into ``data``."""
    descriptors = list(program.descriptors)
    for index in indices:
        descriptors[index] = dataclasses.replace(descriptors[index], flags=(descriptors[index].flags & ~drop) | Flag.GELU)
    program = dataclasses.replace(program, descriptors=tuple(descriptors))
    encoded = program.to_bytes()
    return program, encoded + data[len(encoded) :]


def run_and_compare(hw: HwParams, program: Program, data: bytes, regions) -> bytes:
    """C-sim and isa_sim on the same image: same bytes, status OK, one array step per ideal cycle."""
    want = isa_sim(program, data, hw)
    got = csim(hw).run(data)
    assert got.status == Status.OK
    assert got.executed == len(program.descriptors)
    assert got.array_steps == sum(c.ideal for c in want.cycles)
    assert_same_image(got.data, want.data, regions)
    return got.data


# ------------------------------------------------------------------------------ compiled models


@pytest.mark.cosim
@pytest.mark.parametrize("hw", MODEL_CONFIGS, ids=MODEL_IDS)
@pytest.mark.parametrize("model_name", ["mlp-tiny", "mlp-odd"])
def test_csim_equals_isa_sim_on_zoo_models(model_name, hw):
    # Seed 1 drives the input at 3x its calibrated range, so saturation is exercised; mlp-odd is
    # cheap enough for a second, in-range seed.
    runs = [(1, 3.0)] if model_name == "mlp-tiny" else [(1, 3.0), (2, 1.0)]
    for seed, scale in runs:
        program, image = compiled_model(model_name, hw, seed, scale)
        after = run_and_compare(hw, program, image.data, image_regions(image))
        assert np.any(image.with_data(after).read("out") != image.read("out"))  # the output was written


def _program_features(program: Program) -> set:
    """Opcode names, and GELU when a LINEAR descriptor sets it."""
    features = {getattr(d, "name", "LINEAR") for d in program.descriptors}
    if any(isinstance(d, LinearDescriptor) and d.flags & Flag.GELU for d in program.descriptors):
        features.add("GELU")
    return features


@pytest.mark.cosim
@pytest.mark.parametrize("hw", [HW_16X16_AXI128, HW_8X8_AXI64, BOARD_HW["pynq-z2"], BOARD_HW["zcu102"]],
                         ids=["16x16-axi128", "8x8-axi64", "16x8-axi64", "32x32-axi128"])
@pytest.mark.parametrize("model_name, output, features", [
    pytest.param("softmax-rows", "probs", {"LINEAR", "SOFTMAX"}, id="softmax-rows"),
    pytest.param("vit-mlp-block", "out", {"LAYERNORM", "LINEAR", "GELU"}, id="vit-mlp-block", marks=pytest.mark.full_model),
])
def test_csim_equals_isa_sim_on_transformer_models(model_name, output, features, hw):
    # Seed 2 drives the inputs at 3x their calibrated range: saturation in every unit.
    for seed, scale in [(1, 1.0), (2, 3.0)]:
        program, image = compiled_model(model_name, hw, seed, scale)
        assert _program_features(program) == features
        after = run_and_compare(hw, program, image.data, image_regions(image))
        assert np.any(image.with_data(after).read(output) != image.read(output))  # the output was written


@pytest.mark.cosim
@pytest.mark.parametrize("hw", MODEL_CONFIGS, ids=MODEL_IDS)
def test_gelu_flag_on_compiled_descriptors(hw):
    # mlp-odd's fc1 (BIAS|RELU1) with GELU instead of the ReLU, and fc2 (BIAS|RESIDUAL) with GELU
    # before its residual add: isa_sim defines the result for any raw input.
    program, image = compiled_model("mlp-odd", hw, seed=4, scale=3.0)
    plain = isa_sim(program, image, hw).data
    program, data = with_gelu(program, image.data, [0, 1], drop=Flag.RELU1)
    after = run_and_compare(hw, program, data, image_regions(image))
    assert image.with_data(after).read("out").tolist() != image.with_data(plain).read("out").tolist()


# A model whose compiled Program uses every flag (fused and standalone descriptors).
FLAG_MODEL_SPEC = {
    "name": "hls-flags",
    "inputs": {
        "a": {"shape": [12, 20], "distribution": "uniform", "scale": 2.0},
        "b": {"shape": [20, 9], "distribution": "uniform", "scale": 1.0},
        "c": {"shape": [11, 20], "distribution": "uniform", "scale": 1.0},
    },
    "layers": [
        {"name": "mm", "op": "MatMul", "inputs": ["a", "b"]},
        {"name": "mt", "op": "MatMul", "inputs": ["a", "c"], "transpose_b": True},
        {"name": "r1", "op": "ReLU", "input": "mm"},
        {"name": "p", "op": "Linear", "input": "a", "features": 9, "bias": False},
        {"name": "s", "op": "Add", "inputs": ["r1", "p"]},
        {"name": "t", "op": "ReLU", "input": "s"},
        {"name": "u", "op": "Add", "inputs": ["t", "t"]},
        {"name": "v", "op": "Requantize", "input": "u"},
        {"name": "w", "op": "ReLU", "input": "v"},
        {"name": "z", "op": "Linear", "input": "w", "features": 5},
        {"name": "q", "op": "MatMul", "input": "z", "features": 7},
        {"name": "z2", "op": "Linear", "input": "a", "features": 5},
        {"name": "s2", "op": "Add", "inputs": ["z2", "z"]},
        {"name": "s3", "op": "ReLU", "input": "s2"},
    ],
    "outputs": ["q", "s", "s3", "mt"],
    "formats": {
        "a": "fixed<10,2,RND,SAT>",
        "b": "ufixed<12,1,RND_INF,SAT>",
        "mm": "fixed<12,3,TRN,WRAP>",
        "p": "fixed<10,2,RND_INF,SAT_SYM>",
        "s": "fixed<14,4,TRN_ZERO,SAT_ZERO>",
        "u": "fixed<12,3,RND_MIN_INF,SAT>",
        "v": "fixed<6,1,RND_ZERO,WRAP_SM>",
        "z.weight": "ufixed<8,-1,RND_CONV,SAT>",
        "z": "ufixed<9,2,RND_CONV,SAT>",
        "q": "fixed<16,2,RND,WRAP>",
    },
}


@pytest.mark.cosim
@pytest.mark.parametrize("hw", [HW_16X16_AXI128, HW_3X5_WIDE], ids=["16x16-axi128", "3x5-wide"])
def test_csim_equals_isa_sim_on_compiled_model_using_every_flag(hw):
    model = parse_spec(FLAG_MODEL_SPEC)
    flags_seen = Flag(0)
    for seed in range(2):
        qgraph = run_passes(model.graph, QuantConfig(acc_bits=hw.acc_bits, seed=seed, formats=model.formats))
        program, image = compile_graph(qgraph, hw)
        inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=1.0 + seed))
        for name, raw in inputs.items():
            image = image.write(name, raw)
        # The model has no GELU node: the flag goes on every other descriptor.
        program, data = with_gelu(program, image.data, range(seed, len(program.descriptors), 2))
        run_and_compare(hw, program, data, image_regions(image))
        for desc in program.descriptors:
            flags_seen |= desc.flags
    assert flags_seen == ALL_FLAGS, f"paths not exercised: {ALL_FLAGS & ~flags_seen}"


# ---------------------------------------------------------------------- hand-assembled descriptors


class ImageBuilder:
    """A memory image laid out by hand per docs/isa.md §4: program first, then AXI-aligned buffers."""

    def __init__(self, hw: HwParams, descriptors: int):
        self.hw = hw
        self.data = bytearray(hw.align(64 + 64 * descriptors))
        self.regions = [("program", 0, len(self.data))]

    def place(self, name: str, payload: bytes) -> int:
        offset = len(self.data)
        self.data += payload + bytes(self.hw.align(len(payload)) - len(payload))
        self.regions.append((name, offset, len(self.data) - offset))
        return offset

    def rows(self, name: str, raw: np.ndarray, signed: bool) -> tuple[int, int]:
        stride = self.hw.align(raw.shape[1] * self.hw.act_bytes)
        return self.place(name, pack_rows(raw, self.hw.act_bytes, stride, signed)), stride


def _random_requant(rng, hw: HwParams, max_shift: int) -> Requant:
    width = int(rng.integers(1, min(hw.act_bits, 32) + 1))
    overflow = OVERFLOW_MODES[int(rng.integers(len(OVERFLOW_MODES)))]
    signed = True if overflow == "WRAP_SM" else bool(rng.integers(2))
    rounding = ROUNDING_MODES[int(rng.integers(len(ROUNDING_MODES)))]
    return Requant(int(rng.integers(-3, max_shift + 1)), width, signed, rounding, overflow, hw.acc_bits)


def _random_codes(rng, shape, bits: int, signed: bool) -> np.ndarray:
    magnitude = 1 << min(bits - 1, 10)  # moderate values: sums rarely wrap, so requantization matters
    low = -magnitude if signed else 0
    return rng.integers(low, magnitude, size=shape, endpoint=False).astype(np.int64)


# (flags, chunk_tiles or None for all tiles); shapes below are remainders of every lane count.
DESCRIPTOR_CASES = [
    (Flag(0), 1),
    (Flag.BIAS, 2),
    (Flag.BIAS | Flag.RELU1, None),
    (Flag.RESIDUAL, 2),
    (Flag.RESIDUAL | Flag.RELU1 | Flag.RELU2, 1),
    (Flag.BYPASS, None),
    (Flag.BYPASS | Flag.RELU1 | Flag.RESIDUAL | Flag.R_UNSIGNED, None),
    (Flag.B_ROWMAJOR, 2),
    (Flag.B_ROWMAJOR | Flag.W_UNSIGNED | Flag.BIAS | Flag.X_UNSIGNED, 1),
    (Flag.X_UNSIGNED | Flag.W_UNSIGNED | Flag.BIAS | Flag.RESIDUAL | Flag.RELU2 | Flag.R_UNSIGNED, 2),
    (Flag.GELU | Flag.BIAS, 2),
    (Flag.GELU | Flag.RELU1 | Flag.RESIDUAL | Flag.RELU2, 1),
    (Flag.BYPASS | Flag.GELU, None),
    (Flag.B_TRANSPOSED, 2),
    (Flag.B_TRANSPOSED | Flag.W_UNSIGNED | Flag.BIAS | Flag.X_UNSIGNED | Flag.GELU, 1),
    (Flag.B_TRANSPOSED | Flag.RESIDUAL | Flag.RELU2 | Flag.R_UNSIGNED, None),
]


def flag_program(hw: HwParams, seed: int) -> tuple[Program, bytes, list]:
    """One Program with a descriptor per DESCRIPTOR_CASES entry, each on its own random operands."""
    cases = []
    for flags, chunk in DESCRIPTOR_CASES:
        k = 2 * hw.lanes_in + 1
        n = k if flags & Flag.BYPASS else 3 * hw.lanes_out - 1
        cases.append((flags, 3, k, n, chunk))
    return linear_program(hw, seed, cases)


def linear_program(hw: HwParams, seed: int, cases) -> tuple[Program, bytes, list]:
    """One Program with a LINEAR descriptor per (flags, M, K, N, chunk_tiles or None) case, on random operands."""
    rng = np.random.default_rng(seed)
    image = ImageBuilder(hw, len(cases))
    descriptors = []
    for index, (flags, m, k, n, chunk) in enumerate(cases):
        k_tiles, n_tiles = -(-k // hw.lanes_in), -(-n // hw.lanes_out)
        x_signed = not flags & Flag.X_UNSIGNED
        x_addr, x_stride = image.rows(f"x{index}", _random_codes(rng, (m, k), hw.act_bits, x_signed), x_signed)
        w_addr = w_stride = bias_addr = res_addr = res_stride = 0
        if not flags & Flag.BYPASS:
            w_signed = not flags & Flag.W_UNSIGNED
            if flags & Flag.B_ROWMAJOR:
                w_addr, w_stride = image.rows(f"b{index}", _random_codes(rng, (k, n), hw.act_bits, w_signed), w_signed)
            elif flags & Flag.B_TRANSPOSED:
                # N rows of K: w[k, n] at w_addr + n·w_stride + k·act_bytes
                w_addr, w_stride = image.rows(f"bt{index}", _random_codes(rng, (n, k), hw.act_bits, w_signed), w_signed)
            else:
                weights = _random_codes(rng, (k, n), hw.weight_bits, w_signed)
                tiles = pack_tiles(weights, hw.lanes_in, hw.lanes_out, hw.weight_bytes, hw.tile_stride(hw.weight_bytes), w_signed)
                w_addr = image.place(f"w{index}", tiles)
            if flags & Flag.BIAS:
                bias = _random_codes(rng, n, min(hw.acc_bits, 20), True)
                bias_addr = image.place(f"bias{index}", pack_vector(bias, n_tiles * hw.lanes_out, hw.bias_bytes))
        if flags & Flag.RESIDUAL:
            r_signed = not flags & Flag.R_UNSIGNED
            res_addr, res_stride = image.rows(f"r{index}", _random_codes(rng, (m, n), hw.act_bits, r_signed), r_signed)
        out_addr, out_stride = image.rows(f"out{index}", np.zeros((m, n), dtype=np.int64), True)
        descriptors.append(LinearDescriptor(
            flags=flags, m=m, k=k, n=n, k_tiles=k_tiles, n_tiles=n_tiles,
            x_addr=x_addr, w_addr=w_addr, bias_addr=bias_addr, res_addr=res_addr, out_addr=out_addr,
            x_stride=x_stride, w_stride=w_stride, res_stride=res_stride, out_stride=out_stride,
            rq1=_random_requant(rng, hw, 12), rq2=_random_requant(rng, hw, 4) if flags & Flag.RESIDUAL else None,
            chunk_tiles=min(chunk or n_tiles, n_tiles),
            y_shift=int(rng.integers(0, 4)) if flags & Flag.RESIDUAL else 0,
            r_shift=int(rng.integers(0, 4)) if flags & Flag.RESIDUAL else 0,
        ))
    program = Program(hw.fingerprint(), len(image.data), tuple(descriptors))
    encoded = program.to_bytes()
    image.data[: len(encoded)] = encoded
    return program, bytes(image.data), image.regions


@pytest.mark.cosim
@pytest.mark.parametrize("hw", [HW_16X16_AXI128, HW_3X5_WIDE, HW_4X8_NARROW], ids=["16x16-axi128", "3x5-wide", "4x8-narrow"])
def test_every_flag_descriptor_by_descriptor(hw):
    flags_seen = Flag(0)
    for seed in range(3):
        program, data, regions = flag_program(hw, seed)
        run_and_compare(hw, program, data, regions)
        for desc in program.descriptors:
            flags_seen |= desc.flags
            assert desc.n_tiles > 1 and (desc.k % hw.lanes_in or desc.n % hw.lanes_out)
        assert any(-(-d.n_tiles // d.chunk_tiles) > 1 for d in program.descriptors)  # multi-chunk
    assert flags_seen == ALL_FLAGS


# ------------------------------------------------------------------------------ shipped geometries

def test_shipped_geometries_are_the_ones_these_tests_name():
    # kv260 moved from 32x16 to 16x16 (boards/kv260.yaml: act-width weight banks over its BRAM at 32x16).
    geometries = {(hw.lanes_in, hw.lanes_out, hw.axi_data_width) for hw in BOARD_HW.values()}
    assert geometries == {(16, 8, 64), (16, 16, 128), (32, 32, 128)}


@pytest.mark.cosim
@pytest.mark.parametrize("board", sorted(BOARD_HW))
def test_every_shipped_geometry(board):
    # Each board's own HwParams (lanes, AXI width, buffers): mlp-odd, the coverage model whose
    # standalone Add, ReLU and Requantize are BYPASS descriptors and whose activation x activation
    # MatMul is B_ROWMAJOR (and B_TRANSPOSED with transpose_b; non-square lanes on pynq-z2 and kv260), and the hand-assembled
    # descriptors of every flag, Flag.B_TRANSPOSED included.
    hw = BOARD_HW[board]
    for seed, scale in [(1, 3.0), (2, 1.0)]:
        program, image = compiled_model("mlp-odd", hw, seed, scale)
        after = run_and_compare(hw, program, image.data, image_regions(image))
        assert np.any(image.with_data(after).read("out") != image.read("out"))

    model = parse_spec(FLAG_MODEL_SPEC)
    qgraph = run_passes(model.graph, QuantConfig(acc_bits=hw.acc_bits, seed=0, formats=model.formats))
    program, image = compile_graph(qgraph, hw)
    image = image.write_all(golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=0, scale=1.0)))
    flags = Flag(0)
    for desc in program.descriptors:
        flags |= desc.flags
    assert flags & (Flag.BYPASS | Flag.B_ROWMAJOR | Flag.B_TRANSPOSED) == Flag.BYPASS | Flag.B_ROWMAJOR | Flag.B_TRANSPOSED
    run_and_compare(hw, program, image.data, image_regions(image))

    program, data, regions = flag_program(hw, seed=hw.lanes_in + hw.lanes_out)
    run_and_compare(hw, program, data, regions)


@pytest.mark.cosim
@pytest.mark.parametrize("hw", [HW_3X5_WIDE, HW_4X8_NARROW], ids=["3x5-wide", "4x8-narrow"])
def test_the_largest_descriptors_the_rule_accepts_fit_the_banks(hw):
    # The banks are sized from hwgen.isa.rules.Limits: descriptors at each capacity run exactly
    # (the largest chunk of weight tiles, of B_ROWMAJOR and of B_TRANSPOSED activations; the longest
    # x row an array descriptor may have; BYPASS over as many output tiles as it may have), and one
    # more tile is refused.
    limits = Limits(hw)
    cases = []
    for flags in (Flag(0), Flag.B_ROWMAJOR | Flag.BIAS, Flag.B_TRANSPOSED):
        k_tiles = max(range(1, limits.max_k_tiles + 1), key=lambda kt: kt * limits.largest_chunk(flags, kt, 1 << 16))
        chunk = limits.largest_chunk(flags, k_tiles, 1 << 16)
        cases.append((flags, 2, k_tiles * hw.lanes_in, chunk * hw.lanes_out - 1, chunk))
    assert max(c[2] // hw.lanes_in * c[4] for c in cases) == bank_tiles(hw)
    rows = x_bank_rows(hw)
    row_flags = Flag(0) if limits.largest_chunk(Flag(0), rows, 1) else Flag.B_ROWMAJOR
    cases.append((row_flags, 2, rows * hw.lanes_in, hw.lanes_out + 1, 1))
    bypass_n = min(limits.max_chunk_tiles * hw.lanes_out, limits.max_k_tiles * hw.lanes_in)
    cases.append((Flag.BYPASS | Flag.RESIDUAL, 2, bypass_n, bypass_n, None))
    program, data, regions = linear_program(hw, seed=7, cases=cases)
    run_and_compare(hw, program, data, regions)

    for index, desc in enumerate(program.descriptors[:4]):
        if index < 3:  # one more output tile in the chunk
            bigger = dataclasses.replace(desc, n=desc.n + hw.lanes_out, n_tiles=desc.n_tiles + 1, chunk_tiles=desc.chunk_tiles + 1)
        else:  # one more x word in the row
            bigger = dataclasses.replace(desc, k=desc.k + hw.lanes_in, k_tiles=desc.k_tiles + 1)
        patched = bytearray(data)
        patched[64 * (index + 1) : 64 * (index + 2)] = bigger.encode()
        run = csim(hw).run(bytes(patched))
        assert (run.status, run.executed) == (Status.DOES_NOT_FIT, index), desc


# ------------------------------------------------------------------------------- row descriptors


def _noisy_rows(rng, raw: np.ndarray, nbytes: int, stride: int) -> bytes:
    """Row-major containers of ``raw`` with random bytes (not zeros) in every row's padding."""
    rows, cols = raw.shape
    out = np.frombuffer(rng.bytes(rows * stride), dtype=np.uint8).reshape(rows, stride).copy()
    out[:, : cols * nbytes] = np.frombuffer(pack_rows(raw, nbytes, cols * nbytes, True), dtype=np.uint8).reshape(rows, -1)
    return out.tobytes()


def layernorm_rows(rng, fmt: QFmt, m: int, n: int) -> np.ndarray:
    """Rows of LayerNorm inputs: full-range noise, values near ±1, constant rows and extremes."""
    kinds = [
        lambda: rng.integers(fmt.min_raw, fmt.max_raw, n, endpoint=True),
        lambda: rng.normal(0.0, 1 << fmt.frac_bits, n).round().clip(fmt.min_raw, fmt.max_raw),
        lambda: np.full(n, rng.integers(fmt.min_raw, fmt.max_raw, endpoint=True)),  # D = d_offset
        lambda: rng.choice([fmt.min_raw, fmt.max_raw], n),
        lambda: rng.integers(-2, 3, n),  # tiny variance: the rsqrt's largest exponents
    ]
    return np.stack([kinds[(i + int(rng.integers(len(kinds)))) % len(kinds)]() for i in range(m)]).astype(np.int64)


def softmax_rows(rng, fmt: QFmt, m: int, n: int) -> np.ndarray:
    """Rows of softmax inputs: noise, ties at the max, all-equal rows, very negative values."""
    def ties():
        row = rng.integers(fmt.min_raw // 4, fmt.max_raw // 4, n, endpoint=True)
        row[rng.choice(n, max(1, n // 3))] = row.max() + 1
        return row

    def very_negative():
        row = rng.integers(fmt.min_raw, fmt.min_raw + 8, n, endpoint=True)
        row[rng.integers(n)] = rng.integers(fmt.min_raw, fmt.max_raw, endpoint=True)  # one far above the rest
        return row

    kinds = [
        lambda: rng.integers(fmt.min_raw, fmt.max_raw, n, endpoint=True),
        lambda: rng.normal(0.0, 2 << fmt.frac_bits, n).round().clip(fmt.min_raw, fmt.max_raw),
        ties,
        lambda: np.full(n, rng.integers(fmt.min_raw, fmt.max_raw, endpoint=True)),
        lambda: np.full(n, fmt.min_raw),
        very_negative,
    ]
    return np.stack([kinds[(i + int(rng.integers(len(kinds)))) % len(kinds)]() for i in range(m)]).astype(np.int64)


# (opcode, M, N, ε, extra AXI words of row stride, in place); ε only for LAYERNORM.
ROW_CASES = [
    (OPCODE_LAYERNORM, 5, 1, 0.0, 0, False),
    (OPCODE_LAYERNORM, 6, 7, 0.0, 1, False),
    (OPCODE_LAYERNORM, 5, 192, 1e-5, 3, False),
    (OPCODE_LAYERNORM, 5, 7, 0.25, 0, True),
    (OPCODE_LAYERNORM, 3, ROW_MAX, 1e-3, 1, False),
    (OPCODE_SOFTMAX, 6, 1, 0.0, 2, False),
    (OPCODE_SOFTMAX, 6, 129, 0.0, 1, False),
    (OPCODE_SOFTMAX, 6, 129, 0.0, 0, True),
    (OPCODE_SOFTMAX, 3, ROW_MAX, 0.0, 0, False),
]


def row_program(hw: HwParams, seed: int, cases=ROW_CASES) -> tuple[Program, bytes, list]:
    """One Program with a row descriptor per case: random γ/β, padding and output bytes."""
    rng = np.random.default_rng(seed)
    units = hw.unit_formats()
    image = ImageBuilder(hw, len(cases))
    descriptors = []
    for index, (opcode, m, n, eps, pad_words, in_place) in enumerate(cases):
        stride = hw.align(n * hw.act_bytes) + pad_words * hw.axi_bytes
        if opcode == OPCODE_LAYERNORM:
            x = layernorm_rows(rng, units.layernorm_in, m, n)
            param = units.layernorm_param
            gamma = rng.integers(param.min_raw, param.max_raw, n, endpoint=True)
            beta = rng.integers(param.min_raw, param.max_raw, n, endpoint=True)
            gamma_addr = image.place(f"gamma{index}", pack_rows(gamma[None], hw.act_bytes, n * hw.act_bytes, True))
            beta_addr = image.place(f"beta{index}", pack_rows(beta[None], hw.act_bytes, n * hw.act_bytes, True))
            extra = {"gamma_addr": gamma_addr, "beta_addr": beta_addr,
                     "d_offset": n * n * units.layernorm_config(eps).eps_raw if eps else 0}
        else:
            x = softmax_rows(rng, units.softmax_in, m, n)
            extra = {}
        x_addr = image.place(f"x{index}", _noisy_rows(rng, x, hw.act_bytes, stride))
        out_addr = x_addr if in_place else image.place(f"out{index}", rng.bytes(m * stride))
        descriptors.append(RowDescriptor(opcode, m, n, x_addr, out_addr, stride, stride, **extra))
    program = Program(hw.fingerprint(), len(image.data), tuple(descriptors))
    encoded = program.to_bytes()
    image.data[: len(encoded)] = encoded
    return program, bytes(image.data), image.regions


ROW_CONFIGS = [HW_16X16_AXI128, HW_8X8_AXI64, HW_4X8_NARROW]
ROW_IDS = ["16x16-axi128", "8x8-axi64", "4x8-narrow"]


@pytest.mark.cosim
@pytest.mark.parametrize("hw", ROW_CONFIGS, ids=ROW_IDS)
def test_layernorm_and_softmax_descriptors(hw):
    program, data, regions = row_program(hw, seed=hw.act_bits + hw.axi_data_width)
    after = run_and_compare(hw, program, data, regions)
    assert after != data
    assert {d.d_offset > 0 for d in program.descriptors if d.opcode == OPCODE_LAYERNORM} == {False, True}




def requantizer_vectors(acc_bits: int, seed: int):
    """(values, words, expected) for all 35 mode pairs: random formats, edge and tie values.

    The expected codes are ``dst.cast(raw, src)``; the word is ``Requant.between(src, dst)``.
    """
    rng = np.random.default_rng(seed)
    values, words, expected = [], [], []
    pairs = set()
    for rounding in ROUNDING_MODES:
        for overflow in OVERFLOW_MODES:
            for trial in range(40):
                src_signed = bool(rng.integers(2))
                src = QFmt(int(rng.integers(2, acc_bits + 1 - (not src_signed))), int(rng.integers(-8, 30)), src_signed)
                width = int(rng.integers(1, 33))
                # Mostly moderate shifts, some anywhere in the s8 field.
                shift = int(rng.integers(-128, 128)) if trial % 8 == 0 else int(rng.integers(-20, 40))
                dst_signed = True if overflow == "WRAP_SM" else bool(rng.integers(2))
                dst = QFmt(width, width - (src.frac_bits - shift), dst_signed, rounding, overflow)
                rq = Requant.between(src, dst)
                edges = [src.min_raw, src.min_raw + 1, src.max_raw, src.max_raw - 1, 0, 1, 2]
                if src.signed:
                    edges += [-1, -2]
                if shift > 0:  # ties and near-ties at the rounding bit, around 0 and the range ends
                    half = 1 << min(shift - 1, 62)
                    for base in (0, dst.min_raw << shift if shift < 40 else 0, dst.max_raw << shift if shift < 40 else 0):
                        edges += [base + half, base + half - 1, base + half + 1, base - half, base + 3 * half]
                raw = np.concatenate([np.array(edges, dtype=object).clip(src.min_raw, src.max_raw).astype(np.int64),
                                      rng.integers(src.min_raw, src.max_raw, size=300, endpoint=True)])
                values.append(raw)
                words.append(np.full(raw.size, rq.encode(), dtype=np.int64))
                expected.append(dst.cast(raw, src))
                pairs.add((rounding, overflow))
    assert len(pairs) == 35
    return np.concatenate(values), np.concatenate(words), np.concatenate(expected)


@pytest.mark.cosim
@pytest.mark.parametrize("hw", [HW_3X5_WIDE, HW_16X16_AXI128], ids=["acc48", "acc32"])
def test_runtime_requantizer_equals_qfx_cast_for_every_mode(hw):
    values, words, expected = requantizer_vectors(hw.acc_bits, seed=hw.acc_bits)
    got = csim(hw).requantize(values, words)
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (
        f"{bad.size} of {values.size} differ; first: value {values[bad[0]]} word {int(words[bad[0]]):#010x} "
        f"({Requant.decode(int(words[bad[0]]))}) gives {got[bad[0]]}, cast gives {expected[bad[0]]}"
    )
    assert values.size > 400_000


# -------------------------------------------------------------------------- comparison and refusals


@pytest.mark.cosim
def test_corrupted_expected_output_fails_the_comparison():
    hw = HW_8X8_AXI64
    program, image = compiled_model("mlp-odd", hw, seed=3, scale=1.0)
    got = csim(hw).run(image.data).data
    want = bytearray(isa_sim(program, image, hw).data)
    assert_same_image(got, bytes(want), image_regions(image))
    out = image.region("out")
    want[out.offset + out.size // 2 - 1] ^= 0x10
    with pytest.raises(AssertionError, match=r"^region out: 1 byte\(s\) differ"):
        assert_same_image(got, bytes(want), image_regions(image))


@pytest.mark.cosim
def test_program_with_wrong_fingerprint_is_refused():
    hw = HW_16X16_AXI128
    other = HW_8X8_AXI128
    program, image = compiled_model("mlp-odd", other, seed=0, scale=1.0)
    run = csim(hw).run(image.data)
    assert run.status == Status.BAD_FINGERPRINT
    assert (run.executed, run.array_steps) == (0, 0)
    assert run.data == image.data  # no descriptor executed
    with pytest.raises(ValueError, match="fingerprint"):
        isa_sim(program, image, hw)
    assert csim(other).run(image.data).status == Status.OK


def _patched(data: bytes, block: int, word: int, value: int) -> bytes:
    """``data`` with 32-bit word ``word`` of 64-byte block ``block`` (0: header) replaced."""
    out = bytearray(data)
    struct.pack_into("<I", out, 64 * block + 4 * word, value & 0xFFFFFFFF)
    return bytes(out)


@pytest.mark.cosim
def test_program_at_an_offset():
    # The header counts from program_addr (program_offset + 64·(count + 1) must stay within
    # image_bytes), the descriptors' addresses from the image base.
    hw = HW_8X8_AXI64
    program, image = compiled_model("mlp-odd", hw, seed=0, scale=1.0)
    data = image.data
    blocks = 64 * (len(program.descriptors) + 1)
    moved = data + data[:blocks]
    run = csim(hw).run(moved, program_addr=len(data))
    assert (run.status, run.executed, run.data) == (Status.BAD_HEADER, 0, moved)
    moved = data + _patched(data, 0, 5, len(data) + blocks)[:blocks]
    run = csim(hw).run(moved, program_addr=len(data))
    assert (run.status, run.executed) == (Status.OK, len(program.descriptors))
    assert run.data[: len(data)] == isa_sim(program, image, hw).data


# ------------------------------------------------------------------------- the refusal table

REFUSAL_HW = {**BOARD_HW, "8x8-axi64": HW_8X8_AXI64}


@pytest.mark.cosim
@pytest.mark.parametrize("name", sorted(REFUSAL_HW))
def test_refusal_table(name):
    # tests/refusals.py, the one table every executor runs: the HLS core reports the table's status
    # after the table's number of descriptors, leaving the image exactly as those descriptors
    # leave it in isa_sim (untouched when none ran); the accepted cases run to the end like isa_sim.
    cases = refusal_cases(REFUSAL_HW[name]) + ([rowless_case()] if name == "8x8-axi64" else [])
    # BAD_TASK and BAD_COUNT are the MoE engine's (refusals.moe_refusal_cases, on a core with has_moe).
    assert {c.status for c in cases} >= set(Status) - {Status.READ_ERROR, Status.WRITE_ERROR, Status.BAD_TASK,
                                                      Status.BAD_COUNT}
    for case in cases:
        where = case.program_offset
        run = csim(case.hw).run(case.image, program_addr=where)
        assert (run.status, run.executed) == (case.status, case.executed), case.name
        if case.status == Status.OK:
            want = isa_sim(case.image[where:], case.image, case.hw, program_offset=where).data
        else:
            with pytest.raises(Refused) as caught:
                isa_sim(case.image[where:], case.image, case.hw, program_offset=where)
            want = caught.value.data
            if case.executed == 0:
                assert run.data == case.image, case.name
        assert run.data == want, case.name


# ----------------------------------------------------------------------------------- emission


def test_emitted_sources_are_deterministic_complete_and_stamped():
    hw = HW_3X5_WIDE
    files = accelerator_sources(hw, image_bytes=5000)
    assert files == accelerator_sources(hw, image_bytes=5000)
    assert sorted(files) == sorted([CONFIG_HEADER, ISA_HEADER, TOP_SOURCE, *KERNEL_HEADERS])
    for name in (CONFIG_HEADER, TOP_SOURCE):
        assert files[name].startswith(f"// {stamp()}\n")
    # The ISA header is hwgen.isa's, and the kernel reads descriptor fields only through its decoders:
    # no word of a fetched block is indexed and no opcode, flag or status is a bare number.
    assert files[ISA_HEADER] == isa_header()
    for name in ("accelerator.h", "requantize_rt.h", "compute_unit.h"):
        code = re.sub(r"//.*", "", files[name])
        assert f'#include "{ISA_HEADER}"' in files[name] or name == "compute_unit.h", name
        assert not re.search(r"\b(w|words|h|header)\[(?!16\])\d+\]", code), name  # [16]: a whole block
        assert not re.search(r"(opcode|flags|status|code)\s*[=!]=\s*\d", code), name
    config = files[CONFIG_HEADER]
    context = accelerator_context(hw)
    for field in ("lanes_in", "lanes_out", "acc_bits", "act_bits", "weight_bits", "bias_bits", "axi_bits",
                  "weight_buffer_bytes", "max_k_tiles", "max_chunk_tiles", "x_bank_rows", "weight_tiles"):
        assert re.search(rf"static const unsigned {field} = {context[field]};", config), field
    assert f"fingerprint = {hw.fingerprint():#010x}u;" in config
    # The units: GELU lanes always; at 32-bit activations no LayerNorm or softmax unit.
    assert "struct accel_gelu {" in config and "typedef accel_gelu gelu;" in config
    assert "has_layernorm = false;" in config and "has_softmax = false;" in config
    assert "struct accel_layernorm" not in config and "struct accel_softmax" not in config
    default = accelerator_sources(HwParams())[CONFIG_HEADER]
    assert "has_layernorm = true;" in default and "has_softmax = true;" in default
    for struct_name in ("accel_gelu", "accel_layernorm", "accel_layernorm_rsqrt", "accel_softmax", "accel_softmax_recip"):
        assert f"struct {struct_name} {{" in default, struct_name
    assert "typedef accel_layernorm layernorm;" in default and "typedef accel_softmax softmax;" in default
    assert (context["bias_bits"], context["axi_bits"]) == (64, 64)
    # The rule's capacities: 512 // (3·4) x rows, 1024 // (tile_stride(2) = 32 + 5·8) output tiles.
    assert (context["max_k_tiles"], context["max_chunk_tiles"]) == (42, 14)
    # Banks: 1024 // 32 weight tiles hold the longest array row and the largest chunk.
    assert (context["x_bank_rows"], context["weight_tiles"]) == (32, 32)
    top = files[TOP_SOURCE]
    assert re.search(rf"void {TOP_NAME}\(ap_uint<64>\* mem, ap_uint<32> program_addr,", top)
    assert "#pragma HLS INTERFACE mode=m_axi port=mem bundle=gmem offset=slave depth=625 " in top
    for port in ("mem", "program_addr", "status", "executed", "array_steps", "return"):
        assert f"#pragma HLS INTERFACE mode=s_axilite port={port} bundle=control" in top
    for name in KERNEL_HEADERS:
        assert "hls_math" not in files[name] and files[name].startswith("// SPDX-License-Identifier: Apache-2.0")
    kernel = "".join(files[name] for name in KERNEL_HEADERS)
    for pragma in ("PIPELINE II=1", "ARRAY_PARTITION variable=w_bank dim=3 complete", "BIND_STORAGE variable=w_bank"):
        assert f"#pragma HLS {pragma}" in kernel
    assert accelerator_sources(HwParams())[CONFIG_HEADER] != config


def test_emission_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"^hw must be a HwParams, not dict$"):
        accelerator_sources({"lanes_in": 8})
    with pytest.raises(ValueError, match=r"^image_bytes must be a positive integer, not 0$"):
        accelerator_sources(HwParams(), image_bytes=0)
