# SPDX-License-Identifier: Apache-2.0
"""CONV (docs/isa.md §3.9): the descriptor, its checks, isa_sim against the golden model, the models that use it.

The codec round-trips every field; the rule refuses in §3.7's order with LINEAR's checks where the
fields are LINEAR's; Conv2d layers (several kernels, strides, channel counts) and the zoo ViTs run in
isa_sim bit-exactly equal to the golden model; a corrupted weight or expected value is noticed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import compile_graph, isa_sim
from hwgen.compiler.engines import estimate_cycles
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.pipeline import build, run_passes
from hwgen.quant import QuantConfig
from hwgen.isa import (
    CONV_FIELDS, ConvDescriptor, Flag, LinearDescriptor, Opcode, Program, Requant, Status, check_descriptor,
    decode_descriptor, pack, unpack,
)
from hwgen.qfx import QFmt

HW = HwParams()
RQ = Requant.between(QFmt(32, 12), QFmt(16, 5, rounding="RND_CONV", overflow="SAT"))


def _patch_embedding(hw: HwParams = HW, **changes) -> ConvDescriptor:
    """DeiT-tiny's patch embedding (docs/isa.md §3.9): 3×224×224, 16×16 patches, 192 channels."""
    act = hw.act_bytes
    k, n = 16 * 16 * 3, 192
    fields = dict(flags=Flag.BIAS, grid_h=14, grid_w=14, kh=16, stride_y=16, k=k, n=n,
                  k_tiles=-(-k // hw.lanes_in), n_tiles=-(-n // hw.lanes_out), x_addr=0x10000, w_addr=0x400,
                  bias_addr=0x8000, res_addr=0, out_addr=0x80000, x_stride=16 * 3 * act, seg_stride=224 * 3 * act,
                  res_stride=0, out_stride=n * act, rq1=RQ, rq2=None, chunk_tiles=4)
    fields.update(changes)
    return ConvDescriptor(**fields)


def test_descriptor_round_trips_and_lists():
    desc = _patch_embedding()
    data = desc.encode()
    assert data[0] == Opcode.CONV and len(data) == 64
    assert decode_descriptor(data) == desc
    f = unpack(CONV_FIELDS, data)
    assert (f["grid_h"], f["kh"], f["stride_y"], f["x_stride"], f["grid_w"], f["seg_stride"]) == (14, 16, 16, 96, 14, 1344)
    assert desc.m == 196 and desc.seg_elems == 48
    assert desc.segment_addrs(15) == [0x10000 + 16 * 1344 + 96 + j * 1344 for j in range(16)]
    residual = dataclasses.replace(desc, flags=Flag.BIAS | Flag.RESIDUAL | Flag.RELU2, rq2=RQ, res_addr=0x100000,
                                   res_stride=384, y_shift=3, r_shift=1)
    assert ConvDescriptor.decode(residual.encode()) == residual
    text = Program(HW.fingerprint(), 1 << 21, (desc,)).listing()
    assert "CONV grid 14x14 (M=196) kernel rows 16 stride_y 16 K=768 N=192" in text
    assert "window stride 96 row stride 1344 segments 16x48" in text


def test_decode_refuses_other_opcodes():
    data = bytearray(_patch_embedding().encode())
    data[0] = Opcode.LINEAR
    with pytest.raises(ValueError, match=r"^descriptor opcode must be 2 \(CONV\), not 1$"):
        ConvDescriptor.decode(bytes(data))


def _edit(desc: ConvDescriptor, **values) -> bytes:
    f = unpack(CONV_FIELDS, desc.encode())
    f.update(values)
    return pack(CONV_FIELDS, f)


@pytest.mark.parametrize("edit,status", [
    (dict(), None),
    (dict(flags=int(Flag.BIAS) | 1 << 11), Status.BAD_DESCRIPTOR),
    (dict(flags=int(Flag.BIAS | Flag.BYPASS)), Status.BAD_DESCRIPTOR),
    (dict(flags=int(Flag.B_ROWMAJOR)), Status.BAD_DESCRIPTOR),
    (dict(flags=int(Flag.B_TRANSPOSED)), Status.BAD_DESCRIPTOR),
    (dict(grid_h=0), Status.BAD_DESCRIPTOR),
    (dict(grid_w=0), Status.BAD_DESCRIPTOR),
    (dict(kh=0), Status.BAD_DESCRIPTOR),
    (dict(stride_y=0), Status.BAD_DESCRIPTOR),
    (dict(kh=5), Status.BAD_DESCRIPTOR),  # 768 is not a multiple of 5
    (dict(k_tiles=47), Status.BAD_DESCRIPTOR),
    (dict(chunk_tiles=13), Status.BAD_DESCRIPTOR),
    (dict(rq1=0), Status.BAD_DESCRIPTOR),
    (dict(k=16 * 16 * 16, k_tiles=256), Status.DOES_NOT_FIT),
    (dict(chunk_tiles=12, flags=int(Flag.BIAS)), Status.DOES_NOT_FIT),
    (dict(x_stride=90), Status.MISALIGNED),
    (dict(seg_stride=1340), Status.MISALIGNED),
    (dict(k=16 * 16 * 3 - 16, k_tiles=47), Status.MISALIGNED),  # segments of 47 elements: 94 bytes
    (dict(x_addr=0x10008), Status.MISALIGNED),
    (dict(out_stride=380), Status.MISALIGNED),
    (dict(out_addr=(1 << 21) - 192), Status.OUT_OF_BOUNDS),
    (dict(seg_stride=1 << 14), Status.OUT_OF_BOUNDS),
    (dict(stride_y=255), Status.OUT_OF_BOUNDS),
])
def test_conv_checks_in_order(edit, status):
    refusal = check_descriptor(_edit(_patch_embedding(), **edit), HW, 1 << 21)
    assert (refusal.status if refusal else None) == status, refusal


def test_conv_x_extent_is_the_last_window_s_last_row():
    """OUT_OF_BOUNDS at exactly one byte short of the last segment's end; accepted at the end."""
    desc = _patch_embedding()
    end = desc.x_addr + 13 * 16 * 1344 + 13 * 96 + 15 * 1344 + 96
    big = max(end, desc.out_addr + 195 * 384 + 384)
    assert check_descriptor(desc.encode(), HW, big) is None
    moved = _edit(desc, x_addr=desc.x_addr + big - end + 16)
    assert check_descriptor(moved, HW, big).status == Status.OUT_OF_BOUNDS


# ------------------------------------------------------------------------------ isa_sim = golden

#: Convolutions of every shape the layout takes: RGB pixels padded to an AXI word (3 channels), packed
#: 8-channel pixels whose kernel rows (24 elements) no lane count divides, rectangular kernels and strides,
#: a CONV over a CONV's 20-channel output, a CONV with a fused constant residual, a residual Add and ReLU,
#: no bias, and the conv outputs read as tokens by a Linear.
CONV_SPEC = {
    "name": "conv-shapes",
    "inputs": {"img": {"shape": [3, 16, 16], "distribution": "normal", "scale": 1.0},
               "fm": {"shape": [8, 12, 12], "distribution": "uniform", "scale": 2.0},
               "odd": {"shape": [5, 10, 9], "distribution": "uniform", "scale": 1.0}},
    "layers": [
        {"name": "c1", "op": "Conv2d", "input": "img", "channels": 20, "kernel": 4, "stride": 4},
        {"name": "r1", "op": "ReLU", "input": "c1"},
        {"name": "c2", "op": "Conv2d", "input": "r1", "channels": 16, "kernel": 2, "bias": False},
        {"name": "c3", "op": "Conv2d", "input": "fm", "channels": 24, "kernel": 3},
        {"name": "a3", "op": "AddConstant", "input": "c3"},
        {"name": "t3", "op": "Tokens", "input": "a3"},
        {"name": "lin", "op": "Linear", "input": "t3", "features": 12},
        {"name": "c4", "op": "Conv2d", "input": "fm", "channels": 24, "kernel": [3, 2], "stride": [2, 3]},
        {"name": "c5", "op": "Conv2d", "input": "fm", "channels": 24, "kernel": [3, 2], "stride": [2, 3],
         "bias": False},
        {"name": "s5", "op": "Add", "inputs": ["c5", "c4"]},
        {"name": "r5", "op": "ReLU", "input": "s5"},
        {"name": "c6", "op": "Conv2d", "input": "odd", "channels": 7, "kernel": [3, 2], "stride": [2, 3]},
    ],
    "outputs": ["c2", "lin", "r5", "c6"],
}

#: MaxPool2d as pairwise-maximum CONVs (hwgen/compiler/maxpool.py): ResNet's padded 3×3/2 pool on a ReLU's
#: output (two doubling-and-strided steps per axis, a zero border standing in for −∞), a 2×2/2 pool of a
#: signed conv output, a (2, 5)/(1, 3) pool of a signed input whose strided step reads a widened scratch
#: map, and a (1, 2)/(1, 2) pool (a single step per axis).
MAXPOOL_SPEC = {
    "name": "maxpools",
    "inputs": {"img": {"shape": [3, 13, 12], "distribution": "normal", "scale": 1.0},
               "fm": {"shape": [8, 9, 11], "distribution": "normal", "scale": 2.0}},
    "layers": [
        {"name": "c1", "op": "Conv2d", "input": "img", "channels": 16, "kernel": 3, "padding": 1},
        {"name": "r1", "op": "ReLU", "input": "c1"},
        {"name": "mp1", "op": "MaxPool2d", "input": "r1", "kernel": 3, "stride": 2, "padding": 1},
        {"name": "c2", "op": "Conv2d", "input": "mp1", "channels": 16, "kernel": 3, "padding": 1},
        {"name": "mp2", "op": "MaxPool2d", "input": "c2", "kernel": 2, "stride": 2},
        {"name": "mp3", "op": "MaxPool2d", "input": "fm", "kernel": [2, 5], "stride": [1, 3]},
        {"name": "mp4", "op": "MaxPool2d", "input": "fm", "kernel": [1, 2], "stride": [1, 2]},
    ],
    "outputs": ["mp2", "mp3", "mp4"],
}

GEOMETRIES = {"8x8-axi64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64),
              "16x8-axi64": HwParams(lanes_in=16, lanes_out=8, axi_data_width=64),
              "16x16-axi128": HwParams(),
              "32x32-axi128": HwParams(lanes_in=32, lanes_out=32)}


def _quantized(spec_or_name, hw: HwParams, seed: int = 0):
    model = parse_spec(spec_or_name) if isinstance(spec_or_name, dict) else zoo.load_model(spec_or_name)
    return run_passes(model.graph, QuantConfig.for_hw(hw, formats=model.formats))


def _run(qgraph, hw: HwParams, seed: int, scale: float = 1.0):
    """(program, image with inputs, isa_sim's image, golden values) for seeded inputs."""
    raw = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=scale))
    program, image = compile_graph(qgraph, hw)
    image = image.write_all(raw)
    after = image.with_data(isa_sim(program, image, hw).data)
    return program, image, after, golden.run(qgraph, raw)


def _mismatches(image, after, values) -> list[str]:
    """Every tensor region of the image whose codes (or bytes, padding included) differ from golden's."""
    bad = []
    for region in image.regions:
        if not region.kind.holds_tensor:
            continue
        if not np.array_equal(after.read(region.name), values[region.name]):
            bad.append(region.name)
        elif after.region_bytes(region.name)[: region.rows * region.row_stride] != \
                image.write(region.name, values[region.name]).region_bytes(region.name)[: region.rows * region.row_stride]:
            bad.append(f"{region.name} (bytes)")
    return bad


def assert_isa_sim_equals_golden(qgraph, hw: HwParams):
    """isa_sim = golden on two seeded inputs, the second at 3x the calibrated range (saturation): (program, image)."""
    for seed, scale in ((1, 1.0), (2, 3.0)):
        program, image, after, values = _run(qgraph, hw, seed, scale)
        assert _mismatches(image, after, values) == []
    return program, image


@pytest.mark.parametrize("name", GEOMETRIES)
def test_convolutions_in_isa_sim_equal_golden(name):
    hw = GEOMETRIES[name]
    program, image = assert_isa_sim_equals_golden(_quantized(CONV_SPEC, hw), hw)
    convs = [d for d in program.descriptors if isinstance(d, ConvDescriptor)]
    assert len(convs) == 6 and len(program.descriptors) == 7  # the Tokens is a view, the adds are fused
    by_label = dict(zip(image.labels, program.descriptors))
    c3 = by_label["c3 + c3.requantize + a3 + a3.requantize"]
    assert c3.flags & Flag.RESIDUAL and image.region("a3.value").layout == "hwc"
    assert by_label["c5 + c5.requantize + s5 + s5.requantize + r5"].flags & Flag.RELU2
    # The RGB image's 6-byte pixels are packed where a kernel row of 4 pixels is whole AXI words (24
    # bytes: AXI 64) and padded to an AXI word otherwise; the 8-channel map's 16-byte pixels are packed.
    pixel = 3 * hw.act_bytes if 4 * 3 * hw.act_bytes % hw.axi_bytes == 0 else hw.align(3 * hw.act_bytes)
    assert image.region("img").row_stride == pixel
    assert by_label["c1 + c1.requantize + r1"].k == 16 * pixel // hw.act_bytes
    assert image.region("fm").row_stride == 8 * hw.act_bytes and c3.k == 9 * 8
    assert image.region("t3").offset == image.region("a3").offset  # Tokens: the same bytes


def test_a_wrong_weight_or_expected_value_is_noticed():
    hw = GEOMETRIES["16x16-axi128"]
    qgraph = _quantized(CONV_SPEC, hw)
    program, image, after, values = _run(qgraph, hw, seed=1)
    wrong = dict(values)
    wrong["c6"] = values["c6"].copy()
    wrong["c6"][3, 1, 2] += 1
    assert _mismatches(image, after, wrong) == ["c6"]
    weights = image.region("c3.weight")
    data = bytearray(image.data)
    data[weights.offset + 5] ^= 0x11
    corrupted = image.with_data(isa_sim(program, bytes(data), hw).data)
    assert "a3" in _mismatches(image, corrupted, values)


def test_cycle_estimate_is_linear_s_with_a_read_command_per_kernel_row():
    from test_compiler import _documented_cycles

    for hw in GEOMETRIES.values():
        program, _ = compile_graph(_quantized(CONV_SPEC, hw), hw)
        for desc in program.descriptors:
            for tiles in range(1, desc.n_tiles + 1):  # every chunk size, not only the compiler's choice
                sized = dataclasses.replace(desc, chunk_tiles=tiles)
                estimate = estimate_cycles(sized, hw)
                assert estimate.cycles == _documented_cycles(sized, hw)
                assert estimate.ideal == desc.m * desc.k_tiles * desc.n_tiles
    # DeiT-tiny's patch embedding at 16x16 / AXI 128: 196 windows of 16 kernel rows of 96 bytes.
    desc = _patch_embedding()
    linear = LinearDescriptor(**{f: getattr(desc, f) for f in LinearDescriptor.__dataclass_fields__
                                 if f not in ("m", "x_stride", "w_stride")}, m=196, x_stride=1536, w_stride=0)
    conv, flat = estimate_cycles(desc, HW), estimate_cycles(linear, HW)
    assert conv.ideal == flat.ideal == 196 * 48 * 12
    assert conv.first_load - flat.first_load == 16 * 6 - 96  # 16 segments of 6 beats, against one row of 96
    assert conv.cycles >= flat.cycles


def test_padding_and_groups_run_and_match_the_float_convolution():
    """A padded and a grouped Conv2d (refused before zero-bordered maps) run in isa_sim equal to golden, and the
    golden model's exact sums are the float convolution's on the quantized values (tests/test_cnn.py has the rest)."""
    spec = {"name": "pad", "inputs": {"x": {"shape": [4, 8, 8]}},
            "layers": [{"name": "c", "op": "Conv2d", "input": "x", "channels": 4, "kernel": 3, "padding": 1},
                       {"name": "g", "op": "Conv2d", "input": "c", "channels": 6, "kernel": 3, "padding": [1, 2],
                        "groups": 2, "stride": 2}],
            "outputs": ["g"]}
    hw = GEOMETRIES["16x16-axi128"]
    qgraph = run_passes(parse_spec(spec).graph, QuantConfig.for_hw(hw))
    program, image, after, values = _run(qgraph, hw, seed=1)
    assert _mismatches(image, after, values) == [] and image.region("c").pad == (1, 2)
    from hwgen.golden.reference import FLOAT_OPS
    from hwgen.ir.ops import OPS

    for name in ("c.acc", "g.acc"):
        node = qgraph.producer(name)
        args = [qgraph.tensor(n).fmt.to_float(values[n]) for n in node.inputs]  # dyadic: the float sums are exact
        (reference,) = FLOAT_OPS["Conv2d"](args, {**OPS["Conv2d"].attr_defaults(), **dict(node.attrs)})
        assert np.array_equal(qgraph.tensor(name).fmt.to_float(values[name]), reference)


def test_feature_maps_are_channels_last_in_the_image():
    hw = GEOMETRIES["16x16-axi128"]
    qgraph = _quantized(CONV_SPEC, hw)
    _, image = compile_graph(qgraph, hw)
    fm = image.region("fm")
    raw = np.arange(8 * 12 * 12).reshape(8, 12, 12) % 200 - 100
    written = image.write("fm", raw)
    assert np.array_equal(written.read("fm"), raw)
    memory = np.frombuffer(written.data, dtype="<i2")
    c, y, x = 5, 7, 3  # element (c, y, x) at offset + (y·W + x)·row_stride + c·act_bytes
    assert memory[(fm.offset + (y * 12 + x) * fm.row_stride) // 2 + c] == raw[c, y, x]


# ------------------------------------------------------------------------------ the zoo ViTs

ATTENTION_HW = {name: dataclasses.replace(hw, acc_bits=48, has_attention=True) for name, hw in GEOMETRIES.items()}


@pytest.fixture(scope="module")
def vit_tiny():
    hw = ATTENTION_HW["16x16-axi128"]
    return _quantized("vit-tiny", hw)


@pytest.mark.parametrize("name", ATTENTION_HW)
def test_vit_tiny_in_isa_sim_equals_golden(vit_tiny, name):
    hw = ATTENTION_HW[name]
    program, image, after, values = _run(vit_tiny, hw, seed=4)
    assert _mismatches(image, after, values) == []
    ops = [d.name for d in program.descriptors]
    # Patch embedding, the class token's row, the position embedding; per block LN, Q, K, V, QK, AV,
    # proj+res, LN, fc1+GELU, fc2+res; the final LayerNorm on the class token's row only; the head.
    assert ops[:3] == ["CONV", "LINEAR", "LINEAR"] and ops[-2:] == ["LAYERNORM", "LINEAR"]
    assert len(ops) == 3 + 2 * 10 + 2
    final = program.descriptors[-2]
    assert final.m == 1 and final.x_addr == image.region("b1.out").offset  # row 0: the class token
    cls, tokens = image.region("cls"), image.region("tokens")
    assert tokens.offset == cls.offset + cls.row_stride == image.region("patch").offset  # written in place


def _sqnr(reference: np.ndarray, approx: np.ndarray) -> float:
    return 10 * math.log10(float((reference**2).sum()) / float(((reference - approx) ** 2).sum()))


def test_vit_tiny_logits_are_accurate(vit_tiny):
    floats = golden.sample_inputs(vit_tiny, seed=5)
    values = golden.run(vit_tiny, golden.quantize_inputs(vit_tiny, floats))
    reference = golden.run_float(vit_tiny, floats)["head"]
    assert _sqnr(reference, vit_tiny.tensor("head").fmt.to_float(values["head"])) >= 30.0


def test_deit_tiny_in_isa_sim_equals_golden_and_is_accurate():
    hw = ATTENTION_HW["16x16-axi128"]
    qgraph = _quantized("deit-tiny", hw)
    floats = golden.sample_inputs(qgraph, seed=1)
    raw = golden.quantize_inputs(qgraph, floats)
    start = time.perf_counter()
    values = golden.run(qgraph, raw)
    elapsed = time.perf_counter() - start
    program, image = compile_graph(qgraph, hw)
    image = image.write_all(raw)
    after = image.with_data(isa_sim(program, image, hw).data)
    assert _mismatches(image, after, values) == []
    assert sum(isinstance(d, ConvDescriptor) for d in program.descriptors) == 1
    reference = golden.run_float(qgraph, floats)["head"]
    assert _sqnr(reference, qgraph.tensor("head").fmt.to_float(values["head"])) >= 30.0
    # Not a timing assertion on a loaded machine: a generous bound that catches a return to seconds per block.
    assert elapsed < 10.0, f"golden of deit-tiny took {elapsed:.1f} s"


def test_timm_vit_export_compiles_bit_exactly():
    """The ONNX front end's patch embedding, class token, position embedding and class-token selection
    (a timm ViT export) lower to the same CONV, views and BYPASS descriptors, equal to golden."""
    hw = ATTENTION_HW["16x16-axi128"]
    model = zoo.load_model(Path(__file__).parent / "data" / "onnx" / "timm_vit_legacy17.onnx")
    qgraph = run_passes(model.graph, QuantConfig.for_hw(hw, formats=model.formats))
    program, image, after, values = _run(qgraph, hw, seed=2)
    assert _mismatches(image, after, values) == []
    assert program.descriptors[0].name == "CONV"


def test_isa_doc_excerpt_is_what_the_compiler_prints():
    """docs/isa.md §3.9 shows the start and the end of vit-tiny's listing: each part is the compiler's."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text(encoding="utf-8")
    section = text.split("### 3.9 ", 1)[1].split("\n## 4.", 1)[0]
    (block,) = section.split("```\n")[3:4]
    hw = ATTENTION_HW["16x16-axi128"]
    result = build(zoo.load_model("vit-tiny"), hw)
    listing = result.program.listing(result.image.labels)
    head, tail = block.split("…\n")
    assert listing.startswith(head) and listing.endswith(tail)


def test_a_field_out_of_range_is_refused_naming_the_layer():
    # 8-byte pixels padded to 16 (a 1-pixel kernel row is not an AXI word), windows 9000 pixels apart:
    # x_stride = 144000 bytes, more than its 16 bits.
    spec = {"name": "wide", "inputs": {"x": {"shape": [4, 1, 18000]}},
            "layers": [{"name": "c", "op": "Conv2d", "input": "x", "channels": 8, "kernel": 1, "stride": [1, 9000]}],
            "outputs": ["c"]}
    with pytest.raises(ValueError, match=r"^layer 'c': x_stride must fit a 16-bit field \(0\.\.65535\), not 144000$"):
        build(parse_spec(spec), HwParams())
