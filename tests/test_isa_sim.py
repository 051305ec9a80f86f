# SPDX-License-Identifier: Apache-2.0
"""isa_sim executes Programs exactly as golden.run defines the model: integer equality everywhere.

Sweep: mlp-tiny and mlp-odd, 20 seeds each (the seed picks the weights, the calibration inputs and
the test inputs, which are never calibration inputs; odd seeds drive inputs at 3x the calibrated scale so saturation is exercised),
for lanes 8x8, 16x16 and 8x32: every activation region of the image (intermediates included,
padding bytes included) equals the golden model's tensor packed the same way. A coverage model
exercises every other descriptor path (bypass Add/ReLU/Requantize/GELU, fused GELU, activation-times-activation
MatMul, unsigned operands, every rounding and overflow mode, 8-byte bias, 32-bit containers, a
64-bit AXI port). The requantization recipe of docs/isa.md is checked against qfx.cast directly.
"""

import dataclasses

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import Flag, Program, Requant, compile_graph, isa_sim, requantize_int
from hwgen.compiler.isa_sim import Refused
from hwgen.isa import Status
from hwgen.compiler.layout import pack_rows, rows_of
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.pipeline import run_passes
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt
from hwgen.quant import QuantConfig

LANES = [(8, 8), (16, 16), (8, 32)]
SEEDS = range(20)


def _expected_region(image, name, raw):
    region = image.region(name)
    rows, cols = rows_of(region.shape)
    return pack_rows(raw.reshape(rows, cols), region.container_bits // 8, region.row_stride, region.fmt.signed)


def _check_against_golden(qgraph, hw, inputs_raw):
    """Compile, run isa_sim and golden, and compare every activation region; return the isa result."""
    program, image = compile_graph(qgraph, hw)
    image = image.write_all(inputs_raw)
    result = isa_sim(program, image, hw)
    after = image.with_data(result.data)
    expected = golden.run(qgraph, inputs_raw)
    compared = 0
    for region in image.regions:
        if region.kind in ("activation", "output"):
            got = after.read(region.name)
            want = expected[region.name]
            mismatch = np.argwhere(got != want)
            assert mismatch.size == 0, (
                f"{region.name}: first mismatch at {tuple(mismatch[0])}: isa_sim {got[tuple(mismatch[0])]}"
                f" golden {want[tuple(mismatch[0])]}"
            )
            assert after.region_bytes(region.name) == _expected_region(image, region.name, want)
            compared += 1
    assert compared >= 1
    return result, expected


@pytest.mark.parametrize("model_name", ["mlp-tiny", "mlp-odd"])
def test_isa_sim_equals_golden_on_zoo_models(model_name):
    saturated = 0
    for seed in SEEDS:
        model = zoo.load_model(model_name, seed=seed)
        qgraph = run_passes(model.graph, QuantConfig(seed=seed))
        scale = 3.0 if seed % 2 else 1.0
        inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=500 + seed, scale=scale))
        for lanes_in, lanes_out in LANES:
            hw = HwParams(lanes_in=lanes_in, lanes_out=lanes_out)
            result, expected = _check_against_golden(qgraph, hw, inputs)
            assert len(result.cycles) == 2
        out_fmt = qgraph.tensor("out").fmt
        saturated += int(np.count_nonzero(np.abs(expected["out"]) >= out_fmt.max_raw))
    # The 3x-scale seeds must actually drive the saturating path, or the sweep proves less than it says.
    assert saturated > 0


COVERAGE_SPEC = {
    "name": "isa-coverage",
    "inputs": {
        "a": {"shape": [12, 20], "distribution": "uniform", "scale": 2.0},
        "b": {"shape": [20, 9], "distribution": "uniform", "scale": 1.0},
        "c": {"shape": [7, 20], "distribution": "uniform", "scale": 1.5},
    },
    "layers": [
        {"name": "mm", "op": "MatMul", "inputs": ["a", "b"]},  # activation x activation (B_ROWMAJOR)
        {"name": "r1", "op": "ReLU", "input": "mm"},  # fused RELU1
        {"name": "p", "op": "Linear", "input": "a", "features": 9, "bias": False},
        {"name": "s", "op": "Add", "inputs": ["r1", "p"]},  # fused into p's descriptor as the residual
        {"name": "t", "op": "ReLU", "input": "s"},  # s is a graph output: standalone BYPASS ReLU
        {"name": "u", "op": "Add", "inputs": ["t", "t"]},  # standalone BYPASS Add
        {"name": "v", "op": "Requantize", "input": "u"},  # standalone BYPASS Requantize (WRAP_SM)
        {"name": "w", "op": "ReLU", "input": "v"},
        {"name": "z", "op": "Linear", "input": "w", "features": 5},  # unsigned weights, 8-byte bias
        {"name": "q", "op": "MatMul", "input": "z", "features": 7},  # constant MatMul, no bias
        {"name": "z2", "op": "Linear", "input": "a", "features": 5},
        {"name": "s2", "op": "Add", "inputs": ["z2", "z"]},  # unsigned residual
        {"name": "s3", "op": "ReLU", "input": "s2"},  # fused RELU2
        {"name": "g", "op": "Linear", "input": "a", "features": 6},
        {"name": "g1", "op": "GELU", "input": "g"},  # fused GELU
        {"name": "g2", "op": "GELU", "input": "t"},  # Requantize into the GELU format + GELU on the bypass path
        {"name": "mt", "op": "MatMul", "inputs": ["a", "c"], "transpose_b": True},  # a · cᵀ (B_TRANSPOSED)
        {"name": "qt", "op": "MatMul", "input": "z", "features": 4, "transpose_b": True},  # constant (N, K) weight
    ],
    "outputs": ["q", "s", "s3", "g1", "g2", "mt", "qt"],
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


@pytest.mark.parametrize(
    "hw",
    [
        HwParams(lanes_in=8, lanes_out=8, acc_bits=40),
        HwParams(lanes_in=16, lanes_out=16, acc_bits=40),
        HwParams(lanes_in=8, lanes_out=32, acc_bits=40),
        HwParams(lanes_in=3, lanes_out=5, acc_bits=48, act_bits=32, weight_bits=16, axi_data_width=64,
                 act_buffer_bytes=512, weight_buffer_bytes=1024),
    ],
    ids=["8x8", "16x16", "8x32", "3x5-wide-containers"],
)
def test_isa_sim_covers_every_descriptor_path(hw):
    model = parse_spec(COVERAGE_SPEC)
    flags_seen = Flag(0)
    for seed in range(5):
        qgraph = run_passes(model.graph, QuantConfig(acc_bits=hw.acc_bits, seed=seed, formats=model.formats,
                                                     units=hw.unit_formats()))
        inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=1.0 + seed))
        _check_against_golden(qgraph, hw, inputs)
        program, _ = compile_graph(qgraph, hw)
        for desc in program.descriptors:
            flags_seen |= desc.flags
    assert flags_seen == Flag(sum(int(f) for f in Flag)), f"paths not exercised: {~flags_seen}"


def _random_formats(rng, count):
    for _ in range(count):
        src_signed = bool(rng.integers(2))
        src = QFmt(int(rng.integers(2, 49)), int(rng.integers(-8, 30)), src_signed)
        dst_signed = bool(rng.integers(2))
        width = int(rng.integers(1, 33))
        int_bits = src.int_bits + int(rng.integers(-12, 13)) - (src.width - width) // 2
        yield src, width, int_bits, dst_signed


def test_requantize_recipe_equals_qfx_cast_for_every_mode():
    """docs/isa.md §3.5 (as isa_sim implements it) is ap_fixed assignment: all 35 mode pairs."""
    rng = np.random.default_rng(7)
    checked = 0
    for rounding in ROUNDING_MODES:
        for overflow in OVERFLOW_MODES:
            for src, width, int_bits, dst_signed in _random_formats(rng, 40):
                if overflow == "WRAP_SM":
                    dst_signed = True
                dst = QFmt(width, int_bits, dst_signed, rounding, overflow)
                rq = Requant.between(src, dst)
                if not -128 <= rq.shift <= 127:
                    continue
                edges = np.array([src.min_raw, src.max_raw, 0, 1, -1 if src.signed else 2], dtype=np.int64)
                shift = src.frac_bits - dst.frac_bits
                if shift > 0:  # ties and near-ties at the rounding bit
                    half = 1 << (shift - 1)
                    edges = np.concatenate([edges, [half, half - 1, half + 1, 3 * half, -half, -3 * half]])
                raw = np.concatenate([edges, rng.integers(src.min_raw, src.max_raw, size=500, endpoint=True)])
                raw = np.clip(raw, src.min_raw, src.max_raw)
                got = requantize_int(raw, Requant.decode(rq.encode()))
                want = dst.cast(raw, src)
                bad = np.flatnonzero(got != want)
                assert bad.size == 0, f"{src} -> {dst}: raw {raw[bad[0]]} gives {got[bad[0]]}, cast gives {want[bad[0]]}"
                checked += raw.size
    assert checked > 500_000


def test_isa_sim_refuses_program_for_other_hardware():
    model = zoo.load_model("mlp-odd")
    qgraph = run_passes(model.graph, QuantConfig())
    program, image = compile_graph(qgraph, HwParams())
    other = HwParams(lanes_in=8)
    with pytest.raises(Refused, match=r"^program hardware fingerprint must be 0x[0-9a-f]{8} \(8x16 lanes.*\), not 0x") as caught:
        isa_sim(program, image, other)
    assert caught.value.status == Status.BAD_FINGERPRINT and caught.value.executed == 0


def test_comparison_detects_a_corrupted_weight_and_a_corrupted_descriptor():
    """The equality checks above can fail: one flipped weight byte or one shift changes the result."""
    model = zoo.load_model("mlp-odd")
    qgraph = run_passes(model.graph, QuantConfig())
    hw = HwParams(lanes_in=8, lanes_out=8)
    program, image = compile_graph(qgraph, hw)
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=3))
    image = image.write("x", inputs["x"])
    expected = golden.run(qgraph, inputs)["out"]

    weights = image.region("fc2.weight")
    memory = image.array()
    memory[weights.offset] ^= 0x01
    corrupted = isa_sim(program, image.with_data(memory), hw)
    assert not np.array_equal(image.with_data(corrupted.data).read("out"), expected)

    first = program.descriptors[0]
    shifted = dataclasses.replace(first, rq1=dataclasses.replace(first.rq1, shift=first.rq1.shift + 1))
    bad_program = Program(program.fingerprint, program.image_bytes, (shifted,) + program.descriptors[1:])
    corrupted = isa_sim(bad_program, image, hw)
    assert not np.array_equal(image.with_data(corrupted.data).read("out"), expected)
    assert np.array_equal(image.with_data(isa_sim(program, image, hw).data).read("out"), expected)
