# SPDX-License-Identifier: Apache-2.0
"""Convolutional networks in the Python flow (docs/isa.md §3.9, §4): padded, grouped (depthwise) and strided
convolutions, batch normalization folded, pools lowered, residual blocks with 1×1 strided shortcuts.

isa_sim equals the golden model (integer equality of every tensor region, its bytes included) for the
CNN zoo models and for a spec of every padding, group and stride shape; resnet8's logits are within
30 dB SQNR of the float model; zero-bordered feature maps lie in DDR as documented and convert both
ways; a corrupted expected value is noticed; what still cannot run is refused in one line naming the
layer. (HLS C-sim: tests/test_cnn_hls.py; the RTL core: tests/test_conv_rtl.py.)
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import compile_graph
from hwgen.compiler.engines import estimate_cycles
from hwgen.frontend import parse_spec
from hwgen.golden.exact import conv_weight_matrix
from hwgen.hwparams import HwParams
from hwgen.isa import ConvDescriptor, Flag, check_descriptor
from hwgen.pipeline import build
from hwgen.quant.rewrite import fold_batchnorm, lower_pools

from test_conv import GEOMETRIES as CONV_GEOMETRIES, MAXPOOL_SPEC, _mismatches, _quantized, _run, _sqnr, assert_isa_sim_equals_golden

#: The issue's geometries: 8×8/AXI64, 16×8/AXI64 (pynq-z2's core for a CNN) and 16×16/AXI128.
GEOMETRIES = {"8x8-axi64": CONV_GEOMETRIES["8x8-axi64"], "16x8-axi64": CONV_GEOMETRIES["16x8-axi64"],
              "16x16-axi128": CONV_GEOMETRIES["16x16-axi128"]}
ATTENTION = {name: dataclasses.replace(hw, acc_bits=48, has_attention=True) for name, hw in GEOMETRIES.items()}

#: Every padding, group and stride shape: a padded stem on RGB pixels (padded to an AXI word or packed), BN
#: folded, a grouped conv over a bordered map whose residual is bordered too (Add + ReLU fused: RELU2), a
#: depthwise rectangular kernel with rectangular stride and padding next to a 1×1 strided shortcut reading
#: the same bordered map without padding, an average pool (a depthwise conv), a padded average pool of an
#: odd-sized input, a padded strided conv, and a global average pool, flatten and classifier.
CNN_SPEC = {
    "name": "cnn-shapes",
    "inputs": {"img": {"shape": [3, 12, 12], "distribution": "normal", "scale": 1.0},
               "fm": {"shape": [8, 10, 9], "distribution": "uniform", "scale": 2.0}},
    "layers": [
        {"name": "c1", "op": "Conv2d", "input": "img", "channels": 16, "kernel": 3, "padding": 1, "bias": False},
        {"name": "bn1", "op": "BatchNorm2d", "input": "c1"},
        {"name": "r1", "op": "ReLU", "input": "bn1"},
        {"name": "c2", "op": "Conv2d", "input": "r1", "channels": 16, "kernel": 3, "padding": 1, "groups": 4},
        {"name": "a2", "op": "Add", "inputs": ["c2", "r1"]},
        {"name": "r2", "op": "ReLU", "input": "a2"},
        {"name": "sc", "op": "Conv2d", "input": "r2", "channels": 16, "kernel": 1, "stride": [2, 1]},
        {"name": "c3", "op": "Conv2d", "input": "r2", "channels": 16, "kernel": [5, 3], "stride": [2, 1],
         "padding": [2, 1], "groups": 16},
        {"name": "a3", "op": "Add", "inputs": ["c3", "sc"]},
        {"name": "r3", "op": "ReLU", "input": "a3"},
        {"name": "pool", "op": "AvgPool2d", "input": "r3", "kernel": 2, "stride": 2},
        {"name": "p2", "op": "AvgPool2d", "input": "fm", "kernel": 3, "padding": 1},
        {"name": "c4", "op": "Conv2d", "input": "p2", "channels": 12, "kernel": 3, "stride": 2, "padding": 1},
        {"name": "gap", "op": "GlobalAvgPool", "input": "c4"},
        {"name": "flat", "op": "Flatten", "input": "gap"},
        {"name": "lin", "op": "Linear", "input": "flat", "features": 5},
    ],
    "outputs": ["pool", "lin"],
}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_padded_grouped_strided_convolutions_in_isa_sim_equal_golden(name):
    hw = GEOMETRIES[name]
    program, image = assert_isa_sim_equals_golden(_quantized(CNN_SPEC, hw), hw)
    by_label = {label.split(" + ")[0]: desc for label, desc in zip(image.labels, program.descriptors)}
    assert all(isinstance(by_label[n], ConvDescriptor) for n in ("c1", "c2", "sc", "c3", "pool", "p2", "c4"))
    # Borders: the largest padding of the convolutions reading each map.
    assert image.region("img").pad == (1, 1) and image.region("r1").pad == (1, 1)
    assert image.region("r2").pad == (2, 1) and image.region("fm").pad == (1, 1) and image.region("r3").pad == (0, 0)
    c2, sc, c3 = by_label["c2"], by_label["sc"], by_label["c3"]
    r1, r2 = image.region("r1"), image.region("r2")
    assert c2.flags & Flag.RESIDUAL and c2.flags & Flag.RELU2 and c2.k == 9 * 16
    # c2 writes r2's interior (pixel (2, 1) of its 16x14 bordered rows) and reads r1's as its residual.
    assert (c2.out_addr, c2.out_skip) == (r2.offset + (2 * 14 + 1) * r2.row_stride, 2 * r2.row_stride)
    assert (c2.res_addr, c2.res_skip) == (r1.offset + (1 * 14 + 1) * r1.row_stride, 2 * r1.row_stride)
    # c3 (padding (2, 1)) starts at r2's first pixel, the shortcut (no padding) at its interior.
    assert c3.x_addr == r2.offset and sc.x_addr == r2.offset + (2 * 14 + 1) * r2.row_stride
    assert c3.seg_stride == sc.seg_stride == 14 * r2.row_stride and (c3.grid_h, c3.grid_w) == (6, 12)
    # Groups: block-diagonal weight matrices, dense on the array.
    assert by_label["c3"].k == 15 * 16 and by_label["pool"].k == 4 * 16
    # The global average pool: one B_ROWMAJOR row over c4's pixels, its Flatten a view of that row.
    gap = by_label["gap"]
    assert gap.flags & Flag.B_ROWMAJOR and (gap.m, gap.k, gap.n) == (1, 25, 12)
    assert image.region("flat").offset == image.region("gap").offset


@pytest.mark.parametrize("model", ["resnet8", "mobilenet-block", "hybrid"])
@pytest.mark.parametrize("name", GEOMETRIES)
def test_cnn_zoo_in_isa_sim_equals_golden(model, name):
    hw = (ATTENTION if model == "hybrid" else GEOMETRIES)[name]
    program, image, after, values = _run(_quantized(model, hw), hw, seed=3)
    assert _mismatches(image, after, values) == []
    assert any(d.out_skip for d in program.descriptors if isinstance(d, ConvDescriptor))


@pytest.fixture(scope="module")
def resnet8():
    hw = GEOMETRIES["16x8-axi64"]
    return hw, _quantized("resnet8", hw)


def test_resnet8_lowers_to_eleven_descriptors(resnet8):
    hw, qgraph = resnet8
    program, image = compile_graph(qgraph, hw)
    labels = [label.split(" + ")[0] for label in image.labels]
    assert labels == ["stem", "s1.conv1", "s1.conv2", "s2.conv1", "s2.shortcut", "s2.conv2", "s3.conv1",
                      "s3.shortcut", "s3.conv2", "pool", "head"]
    convs = program.descriptors[:9]
    assert all(isinstance(d, ConvDescriptor) for d in convs)
    # Each residual add and its ReLU fuse into the second conv of its stack; the shortcuts are 1x1 stride 2.
    for index in (2, 5, 8):
        assert convs[index].flags & Flag.RESIDUAL and convs[index].flags & Flag.RELU2
    assert [(d.kh, d.stride_y, d.grid_h) for d in (convs[4], convs[7])] == [(1, 2, 16), (1, 2, 8)]
    # The skips (interiors of maps bordered by one pixel): two pixels of 16, 32 and 64 channels.
    skips = sorted({d.out_skip for d in convs} | {d.res_skip for d in convs})
    assert skips == [0] + [2 * hw.align(c * hw.act_bytes) for c in (16, 32, 64)]
    ideal = sum(estimate_cycles(d, hw).ideal for d in program.descriptors)
    assert zoo.macs(zoo.load_model("resnet8")) == 12_501_632 and ideal > 12_501_632 // (hw.lanes_in * hw.lanes_out)


def test_resnet8_logits_are_accurate(resnet8):
    """SQNR of the quantized logits against the float model (BatchNorm unfolded, the pool a mean): ≥ 30 dB."""
    _, qgraph = resnet8
    model = zoo.load_model("resnet8")
    figures = []
    for seed in (5, 6):
        floats = golden.sample_inputs(qgraph, seed=seed)
        values = golden.run(qgraph, golden.quantize_inputs(qgraph, floats))
        reference = golden.run_float(model.graph, floats)["head"]
        figures.append(_sqnr(reference, qgraph.tensor("head").fmt.to_float(values["head"])))
    assert min(figures) >= 30.0, figures


def test_a_wrong_expected_value_or_skip_is_noticed(resnet8):
    hw, qgraph = resnet8
    program, image, after, values = _run(qgraph, hw, seed=1)
    wrong = dict(values)
    wrong["s2.out"] = values["s2.out"].copy()
    wrong["s2.out"][5, 3, 7] += 1
    assert _mismatches(image, after, wrong) == ["s2.out"]
    # A CONV whose output skip is off by one AXI word writes the border and misses the interior.
    index = next(i for i, d in enumerate(program.descriptors) if isinstance(d, ConvDescriptor) and d.out_skip)
    broken = dataclasses.replace(program.descriptors[index], out_skip=program.descriptors[index].out_skip - hw.axi_bytes)
    from hwgen.compiler import isa_sim
    from hwgen.isa import Program

    moved = Program(program.fingerprint, program.image_bytes,
                    program.descriptors[:index] + (broken,) + program.descriptors[index + 1:])
    data = bytearray(image.data)
    data[: moved.nbytes] = moved.to_bytes()
    wrong_run = image.with_data(isa_sim(moved, bytes(data), hw).data)
    assert _mismatches(image, wrong_run, values)


def test_bordered_feature_maps_lie_in_ddr_as_documented(tmp_path):
    hw = GEOMETRIES["16x16-axi128"]
    _, image = compile_graph(_quantized(CNN_SPEC, hw), hw)
    r2 = image.region("r2")  # (16, 12, 12) with a (2, 1) border: 16 x 14 pixels
    assert r2.layout == "hwc" and r2.rows == 16 * 14 and r2.size == hw.align(16 * 14 * r2.row_stride)
    raw = np.arange(16 * 12 * 12).reshape(16, 12, 12) % 300 - 150
    written = image.write("r2", raw)
    assert np.array_equal(written.read("r2"), raw)
    memory = np.frombuffer(written.data, dtype="<i2")
    c, y, x = 5, 7, 3  # element (c, y, x) at offset + ((y + py)·(W + 2px) + x + px)·row_stride + c·act_bytes
    assert memory[(r2.offset + ((y + 2) * 14 + x + 1) * r2.row_stride) // 2 + c] == raw[c, y, x]
    border = np.frombuffer(written.region_bytes("r2"), dtype="<i2").reshape(16 * 14, -1)[:, :16].reshape(16, 14, 16)
    assert not border[:2].any() and not border[-2:].any() and not border[:, 0].any() and not border[:, -1].any()
    image.save(tmp_path)
    layout = json.loads((tmp_path / "memory.json").read_text())
    assert {r["name"]: r["pad"] for r in layout["regions"]}["r2"] == [2, 1]
    assert type(image).load(tmp_path).region("r2") == r2


def test_batchnorm_and_pools_are_rewritten_in_float():
    graph = parse_spec(CNN_SPEC).graph
    rewritten = lower_pools(fold_batchnorm(graph))
    ops = [node.op for node in rewritten.nodes]
    assert "BatchNorm2d" not in ops and "AvgPool2d" not in ops and "GlobalAvgPool" not in ops
    assert rewritten.node("pool").attrs == (("groups", 16), ("padding", 0), ("stride", 2))
    assert rewritten.node("gap").op == "MatMul" and rewritten.tensor("gap").shape == (1, 12)
    inputs = golden.sample_inputs(graph, seed=1)
    before, after = golden.run_float(graph, inputs), golden.run_float(rewritten, inputs)
    for name in ("r1", "pool", "p2", "lin"):
        assert np.allclose(before[name], after[name], rtol=1e-12, atol=1e-12), name
    # The folded weight is the conv's times gamma / sqrt(var + eps), per output channel.
    bn = graph.node("bn1")
    mean, var, gamma, beta = (graph.tensor(n).value for n in bn.inputs[1:])
    factor = gamma / np.sqrt(var + 1e-5)
    assert np.allclose(rewritten.tensor("c1.weight").value, graph.tensor("c1.weight").value * factor[:, None, None, None])
    assert np.allclose(rewritten.tensor("c1.bias").value, beta - mean * factor)


FLATTEN_SPEC = {
    "name": "flatten-head",
    "inputs": {"x": {"shape": [6, 5, 4], "distribution": "normal", "scale": 1.0}},
    "layers": [
        {"name": "c", "op": "Conv2d", "input": "x", "channels": 8, "kernel": 3, "padding": 1},
        {"name": "r", "op": "ReLU", "input": "c"},
        {"name": "flat", "op": "Flatten", "input": "r"},
        {"name": "fc", "op": "Linear", "input": "flat", "features": 7},
    ],
    "outputs": ["fc"],
}


def test_a_linear_on_a_flattened_map_is_a_whole_map_convolution():
    """PyTorch's (c, h, w) flatten order becomes the kernel's; the float graph computes the same logits, and
    isa_sim (a CONV gathering the bordered channels-last map as one row) equals the golden model."""
    from hwgen.quant.rewrite import lower_flatten_linear

    graph = parse_spec(FLATTEN_SPEC).graph
    rewritten = lower_flatten_linear(graph)
    assert [(n.op, n.inputs[0]) for n in rewritten.nodes][1:] == [("ReLU", "c"), ("Conv2d", "r"), ("Flatten", "fc.map")]
    assert rewritten.tensor("fc.weight").shape == (7, 8, 5, 4)
    inputs = golden.sample_inputs(graph, seed=1)
    assert np.allclose(golden.run_float(graph, inputs)["fc"], golden.run_float(rewritten, inputs)["fc"], rtol=1e-12)
    for hw in (GEOMETRIES["8x8-axi64"], GEOMETRIES["16x16-axi128"]):
        program, image = assert_isa_sim_equals_golden(_quantized(FLATTEN_SPEC, hw), hw)
        assert [d.name for d in program.descriptors] == ["CONV", "CONV"]


def test_grouped_weights_are_block_diagonal():
    w = np.arange(4 * 2 * 3 * 3).reshape(4, 2, 3, 3) + 1  # 4 outputs, 2 groups of 2 input channels
    matrix = conv_weight_matrix(w, groups=2).reshape(3, 3, 4, 4)  # (ky, kx, c, o)
    assert not matrix[:, :, 2:, :2].any() and not matrix[:, :, :2, 2:].any()
    assert matrix[1, 2, 3, 3] == w[3, 1, 1, 2] and matrix[0, 1, 0, 1] == w[1, 0, 0, 1]  # global channel 3: group 1's second


def test_cycle_estimate_of_a_conv_with_skips_is_linear_s():
    """The skips only move where rows are written: §5's estimate is the same as without them."""
    from test_compiler import _documented_cycles

    hw = GEOMETRIES["16x8-axi64"]
    program, _ = compile_graph(_quantized("resnet8", hw), hw)
    for desc in program.descriptors:
        assert estimate_cycles(desc, hw).cycles == _documented_cycles(desc, hw)
        if isinstance(desc, ConvDescriptor) and (desc.out_skip or desc.res_skip):
            dense = dataclasses.replace(desc, out_skip=0, res_skip=0)
            assert estimate_cycles(desc, hw) == estimate_cycles(dense, hw)


def _spec(*layers, shape=(4, 8, 8)):
    return {"name": "refused", "inputs": {"x": {"shape": list(shape)}}, "layers": list(layers),
            "outputs": [layers[-1]["name"]]}


@pytest.mark.parametrize("spec,message", [
    (_spec({"name": "mp", "op": "MaxPool2d", "input": "x", "kernel": 3, "stride": 2, "padding": 1}),
     r"^MaxPool2d 'mp' must read a ReLU's output \(or an unsigned format\) when it pads, not 'x': feature maps are "
     r"bordered with zeros, the maximum of a window needs −∞$"),
    (_spec({"name": "mp", "op": "MaxPool2d", "input": "x", "kernel": 2, "stride": 3}),
     r"^MaxPool2d 'mp' must have a stride no larger than its kernel, not stride \(3, 3\) kernel \(2, 2\)$"),
    (_spec({"name": "bn", "op": "BatchNorm2d", "input": "x"}),
     r"^BatchNorm2d 'bn' must follow a Conv2d read by it alone \(it is folded into the convolution\), not a graph "
     r"input$"),
    (_spec({"name": "c", "op": "Conv2d", "input": "x", "channels": 8, "kernel": 3, "padding": 1},
           {"name": "t", "op": "Tokens", "input": "x"}, {"name": "l", "op": "Linear", "input": "t", "features": 4}),
     r"^Tokens 't' must read a feature map without a zero border, not 'x' \(bordered for the padding of Conv2d "
     r"'c'\)$"),
    (_spec({"name": "c0", "op": "Conv2d", "input": "x", "channels": 8, "kernel": 1},
           {"name": "s", "op": "Add", "inputs": ["c0", "c0"]},
           {"name": "c", "op": "Conv2d", "input": "s", "channels": 8, "kernel": 3, "padding": 1}),
     r"^Add 's' must not read or write the bordered feature map 's' row by row \(only a Conv2d with what fuses "
     r"into it can; 's' is bordered for the padding of Conv2d 'c'\)$"),
    (_spec({"name": "g", "op": "GlobalAvgPool", "input": "x"},
           {"name": "c", "op": "Conv2d", "input": "g", "channels": 8, "kernel": 1}),
     r"^GlobalAvgPool 'g' must be read by Flatten layers only \(its \(C, 1, 1\) output is computed as a row of C\), "
     r"not by Conv2d 'c'$"),
])
def test_what_cannot_run_is_refused_in_one_line(spec, message):
    with pytest.raises(ValueError, match=message):
        build(parse_spec(spec), HwParams())


def test_the_hardware_check_accepts_what_lowers_and_names_what_does_not():
    from hwgen.compiler import hardware_problem

    refused = parse_spec(_spec({"name": "mp", "op": "MaxPool2d", "input": "x", "kernel": 2, "stride": 3})).graph
    assert hardware_problem(refused, HwParams()).startswith("MaxPool2d 'mp' must have a stride no larger")
    ok = parse_spec(CNN_SPEC).graph  # BatchNorm2d and the pools are lowered, so the hardware has what they need
    assert hardware_problem(ok, HwParams()) is None
    assert hardware_problem(parse_spec(MAXPOOL_SPEC).graph, HwParams()) is None


@pytest.mark.parametrize("name", GEOMETRIES)
def test_maxpools_in_isa_sim_equal_golden(name):
    """Each MaxPool2d is ceil(log2 kw) + ceil(log2 kh) pairwise-maximum CONVs (a 1-wide strided axis: one copy)."""
    hw = GEOMETRIES[name]
    program, image = assert_isa_sim_equals_golden(_quantized(MAXPOOL_SPEC, hw), hw)
    steps = Counter(label for label in image.labels)
    assert steps["mp1"] == 4 and steps["mp2"] == 2 and steps["mp3"] == 4 and steps["mp4"] == 1
    by_label = [(label, desc) for label, desc in zip(image.labels, program.descriptors) if label.startswith("mp")]
    assert all(isinstance(d, ConvDescriptor) and d.flags & Flag.RELU1 and d.flags & Flag.RESIDUAL for _, d in by_label)
    assert image.region("r1").pad == (1, 1)  # the padded pool reads a zero border (its input is a ReLU's)
    assert image.region("mp1.max0").kind.name == "SCRATCH"


def test_maxpool_steps_double_then_stride():
    from hwgen.compiler.maxpool import maxpool_steps

    graph = parse_spec(MAXPOOL_SPEC).graph
    plan = {name: [(s.axis, s.distance, s.stride, s.dst_hw, s.pitch) for s in maxpool_steps(graph, graph.node(name))]
            for name in ("mp1", "mp3", "mp4")}
    # 3×3/2 with padding 1 of 13×12 (15×14 bordered): spans of 2 pixels (13 of them), then every second pair of
    # spans (6); then the same down the 15 rows (14, then 7).
    assert plan["mp1"] == [("x", 1, 1, (15, 13), 13), ("x", 1, 2, (15, 6), 6), ("y", 1, 1, (14, 6), 6),
                           ("y", 1, 2, (7, 6), 6)]
    # (2, 5)/(1, 3) of 9×11: spans 2 and 4, then the strided step joins spans 4 apart by 1; its scratch input is
    # widened to 3·3 pixels so the residual walk goes forward.
    assert plan["mp3"] == [("x", 1, 1, (9, 10), 10), ("x", 2, 1, (9, 8), 9), ("x", 1, 3, (9, 3), 3),
                           ("y", 1, 1, (8, 3), 3)]
    assert plan["mp4"] == [("x", 1, 2, (9, 5), 5)]


def test_every_cnn_descriptor_passes_the_validity_rule():
    hw = GEOMETRIES["8x8-axi64"]
    for model in ("resnet8", "mobilenet-block"):
        program, image = compile_graph(_quantized(model, hw), hw)
        for desc in program.descriptors:
            assert check_descriptor(desc.encode(), hw, len(image.data)) is None
