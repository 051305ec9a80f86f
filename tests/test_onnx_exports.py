# SPDX-License-Identifier: Apache-2.0
"""Real exporter output: tiny models exported by torch 2.13 (legacy and dynamo exporters) and Brevitas
0.13.4 (QONNX), and small models of timm 1.0.31 and torchvision 0.29.1 (their own classes, exported by
torch 2.14.1), checked in under tests/data/onnx/ with the script that made them (make_exports.py, not
run in CI).

Each imports into the expected IR ops; its float executor equals onnxruntime and torch's own output
(saved next to it) within 1e-4 of the output's magnitude; the models the accelerator runs compile
and isa_sim equals the golden model bit for bit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from hwgen.build import compile_for
from hwgen.frontend.onnx import load_onnx
from hwgen.golden import run_float
from hwgen.hwparams import HwParams
from hwgen.zoo import macs

DATA = Path(__file__).parent / "data" / "onnx"

MLP = ["LayerNorm", "Linear", "GELU", "Linear", "Add", "Softmax"]
BLOCK = ["LayerNorm", "Linear", "Linear", "Linear", "Attention", "Linear", "Add"] + MLP
CNN = ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "GlobalAvgPool", "Flatten", "Linear"]
# timm's VisionTransformer: patch embedding, class token, position embedding, two blocks, norm, head on the class token.
TIMM_VIT = ["Conv2d", "Tokens", "ClassToken", "AddConstant"] + 2 * BLOCK[:-1] + ["LayerNorm", "SelectRow", "Linear"]
# torchvision's ResNet (BasicBlock, resnet18's [2, 2, 2, 2]): stem, then per stage a block with a downsampling
# 1x1 conv on the shortcut (not in the first stage) and an identity block.
_BASIC = ["Conv2d", "ReLU", "Conv2d", "Add", "ReLU"]
_BASIC_DOWN = ["Conv2d", "ReLU", "Conv2d", "Conv2d", "Add", "ReLU"]
TV_RESNET = (["Conv2d", "ReLU", "MaxPool2d"] + 2 * _BASIC + 3 * (_BASIC_DOWN + _BASIC)
             + ["GlobalAvgPool", "Flatten", "Linear"])
# torchvision's MobileNetV2: stem, inverted residuals (expand 1x1, depthwise 3x3, project 1x1; Add when the
# shape stays) for the settings (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), last 1x1 conv, pool, classifier.
_EXPAND = ["Conv2d", "Clip", "Conv2d", "Clip", "Conv2d"]
TV_MOBILENET = (["Conv2d", "Clip", "Conv2d", "Clip", "Conv2d"] + _EXPAND + _EXPAND + ["Add"] + _EXPAND
                + 2 * (_EXPAND + ["Add"]) + ["Conv2d", "Clip", "GlobalAvgPool", "Flatten", "Linear"])
ZOO = {  # the timm and torchvision classes, exported (MobileNetV2's ReLU6 is refused: no Clip yet)
    "timm_vit_legacy17": TIMM_VIT,  # timm's Attention with F.scaled_dot_product_attention, Gather of the class token
    "timm_vit_dynamo18": TIMM_VIT,
    "tv_resnet18_w8_legacy17": TV_RESNET,  # BatchNorm folded by the exporter
    "tv_mobilenet_v2_legacy17_nofold": TV_MOBILENET,  # BatchNormalization kept by the exporter, folded by the import
    "tv_mobilenet_v2_dynamo18": TV_MOBILENET,  # ReLU6 as Clip(0, 6), ReduceMean + Reshape for the pooling
}
EXPORTS = {
    "mlp_block_legacy17": MLP,
    "mlp_block_legacy14": MLP,  # LayerNorm decomposed (opset < 17)
    "mlp_block_tanh_dynamo18": MLP,
    "vit_block_legacy17": BLOCK,  # Split + Squeeze, Mul(q, d^-½)
    "vit_block_sdpa_dynamo20": BLOCK,  # scaled_dot_product_attention: Slice + Squeeze, d^-¼ on q and kᵀ, Gelu op
    "cnn_legacy17_nofold": CNN,  # BatchNormalization kept by the exporter, folded by the import
    "cnn_dynamo18": CNN,  # ReduceMean + Reshape instead of GlobalAveragePool + Flatten
    "tiny_vit_legacy17": ["Conv2d", "Tokens", "ClassToken", "AddConstant"] + BLOCK[:-2] + ["Add", "LayerNorm",
                                                                                        "SelectRow", "Linear"],
    "mha_block_legacy17": ["LayerNorm", "Linear", "Linear", "Linear", "Attention", "Linear", "Add"],  # nn.MultiheadAttention
    "mha_block_dynamo18": ["LayerNorm", "Linear", "Linear", "Linear", "Attention", "Linear", "Add"],
    "brevitas_qmlp": ["Linear", "ReLU", "Linear"],  # QONNX, power-of-two quantizers (Quant after ReLU folded)
    **ZOO,
}


def test_every_checked_in_export_is_listed_and_small():
    assert {p.stem for p in DATA.glob("*.onnx")} == set(EXPORTS) | {"brevitas_qcnn"}
    assert all(p.stat().st_size < 100_000 for p in DATA.glob("*.onnx") if p.stem not in ZOO)
    assert all((DATA / f"{name}.onnx").stat().st_size < 1_000_000 for name in ZOO)  # the issue allows 2 MB


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_imports_and_equals_onnxruntime_and_torch(name):
    path = DATA / f"{name}.onnx"
    data = np.load(DATA / f"{name}.npz")
    model = load_onnx(path)
    graph = model.graph
    assert [n.op for n in graph.nodes] == EXPORTS[name]
    got = run_float(graph, {graph.inputs[0]: data["x"][0].astype(np.float64)})[graph.outputs[0]]
    assert macs(model) > 0 and len(graph.nodes) == len(EXPORTS[name])  # the op count and MACs `hwgen models` reports
    if name.startswith("brevitas"):  # onnxruntime cannot run QONNX's Quant; the float graph's quantizers are gone
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for want in (session.run(None, {"x": data["x"]})[0][0], data["y"][0]):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_zoo_exports_report_their_macs_and_compile_or_are_refused_in_one_line(capsys):
    """The timm and torchvision models: their MACs and op count as ``hwgen models`` lists them; the timm
    ViTs (patch embedding, class token, position embedding, attention on the attention engine the build
    adds) and torchvision's ResNet (its stem's padded 3×3/2 MaxPool2d as pairwise-maximum CONVs) compile,
    isa_sim equals the golden model and the logits are close to onnxruntime's; MobileNetV2 is refused in one
    line naming its ReLU6 (Clip), which the accelerator does not run yet."""
    from hwgen.cli import main

    assert main(["models", str(DATA / "timm_vit_legacy17.onnx"), str(DATA / "tv_resnet18_w8_legacy17.onnx")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:5] == ["timm_vit_legacy17", "x", "3x32x32", "1,942,400", "31"]
    assert out[2].split()[:5] == ["tv_resnet18_w8_legacy17", "x", "3x32x32", "842,368", "49"]
    want_macs = {"timm_vit_legacy17": 1_942_400, "timm_vit_dynamo18": 1_942_400, "tv_resnet18_w8_legacy17": 842_368,
                 "tv_mobilenet_v2_legacy17_nofold": 1_210_368, "tv_mobilenet_v2_dynamo18": 1_210_368}
    for name in ZOO:
        model = load_onnx(DATA / f"{name}.onnx")
        assert macs(model) == want_macs[name], name
        if name.startswith(("timm_vit", "tv_resnet")):
            compiled = compile_for(DATA / f"{name}.onnx", HwParams())
            assert compiled.hw.has_attention == name.startswith("timm")
            assert compiled.reference.data == compiled.expected
            # 8-bit weights and 16-bit activations on these small exports with random weights
            assert [row.name for row in compiled.onnxruntime] == ["y"] and compiled.onnxruntime[0].sqnr_db > 25
            continue
        with pytest.raises(ValueError, match=r"^op Clip is not supported yet$"):  # MobileNetV2's ReLU6
            compile_for(DATA / f"{name}.onnx", HwParams())


@pytest.mark.parametrize("name", ["mlp_block_legacy17", "mlp_block_legacy14", "mlp_block_tanh_dynamo18",
                                  "cnn_legacy17_nofold", "cnn_dynamo18"])
def test_exports_the_accelerator_runs_compile_bit_exactly(name):
    compiled = compile_for(DATA / f"{name}.onnx", HwParams())
    assert compiled.reference.data == compiled.expected  # isa_sim = golden, byte for byte
    assert all(row.sqnr_db > 30 for row in compiled.accuracy)
    assert [row.name for row in compiled.onnxruntime] == ["y"] and compiled.onnxruntime[0].sqnr_db > 30


def test_without_onnxruntime_the_sqnr_against_it_is_not_computed(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    compiled = compile_for(DATA / "mlp_block_legacy14.onnx", HwParams())
    assert compiled.onnxruntime == "onnxruntime is not installed"
    assert compiled.reference.data == compiled.expected


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("name", ["mlp_block_legacy17", "mlp_block_tanh_dynamo18", "brevitas_qmlp", "cnn_dynamo18",
                                  "brevitas_qcnn", "tv_resnet18_w8_legacy17"])
def test_exports_build_and_run_bit_exactly_on_isa_rtl_and_hls(name, full_board, tmp_path):
    """``hwgen build --model x.onnx --board B`` then ``hwgen sim --backend isa|rtl|hls``, as a user does:
    a legacy and a dynamo float export, the Brevitas QONNX MLP and CNN (MaxPool2d, and a Linear on a flattened
    4×4 map lowered to a whole-map Conv2d) and torchvision's ResNet, on ultra96 (every board with ``--full``).
    The RTL core is the board's default geometry, the same Verilog as tests/test_build.py's build, so
    its Yosys estimate and Verilator model come from the content-keyed cache; the HLS core is compiled by g++."""
    from hwgen.build import build_project
    from hwgen.sim import simulate

    result = build_project(DATA / f"{name}.onnx", full_board, tmp_path / "out", flow="both")
    report = json.loads((result.out / "report.json").read_text())
    ort, markdown = report["accuracy_onnxruntime"], (result.out / "report.md").read_text()
    if name.startswith("brevitas"):  # onnxruntime has no QONNX Quant
        assert ort == {"computed": False, "reason": "onnxruntime cannot run QONNX's quantizer nodes", "outputs": []}
        assert "SQNR against onnxruntime: not computed (onnxruntime cannot run QONNX's quantizer nodes)." in markdown
    else:
        assert ort["computed"] and [row["output"] for row in ort["outputs"]] == ["y"]
        assert 25 < ort["outputs"][0]["sqnr_db"] < 80  # quantized against float32: close, not exact
        assert abs(ort["outputs"][0]["sqnr_db"] - report["accuracy"][0]["sqnr_db"]) < 0.5  # float64 ≈ float32 reference
        assert "Against onnxruntime's float32 output" in markdown
    for backend in ("isa", "rtl", "hls"):
        sim = simulate(result.out, backend)
        assert sim.equal and not sim.mismatches, f"{name} ({backend}): {sim.mismatches}"


def test_brevitas_qonnx_golden_equals_the_qonnx_graph_at_every_quant():
    """Brevitas QuantIdentity → QuantLinear (Int32Bias) → QuantReLU → QuantLinear → QuantIdentity, po2 scales.

    The QONNX graph is executed in NumPy as QONNX defines it (Quant clamps, rounds half to even, rescales);
    the golden model's integers at every activation Quant equal it, and the output equals Brevitas' own.
    """
    import re

    import onnx
    from onnx import helper, numpy_helper
    from onnx_graphs import quant_reference

    from hwgen.golden import run

    path = DATA / "brevitas_qmlp.onnx"
    data = np.load(DATA / "brevitas_qmlp.npz")
    compiled = compile_for(path, HwParams())
    assert compiled.reference.data == compiled.expected
    qgraph = compiled.qgraph
    proto = onnx.load(str(path))
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    values = {proto.graph.input[0].name: data["x"].astype(np.float64)}
    quants = []
    for node in proto.graph.node:
        args = [values[n] if n in values else consts[n] for n in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Quant":
            out = quant_reference(args[0], args[1].item(), int(args[3].item()), attrs["signed"], attrs["narrow"],
                                  attrs["rounding_mode"].decode())
            if node.input[0] not in consts:
                quants.append(node)
        elif node.op_type == "Gemm":
            assert attrs == {"alpha": 1.0, "beta": 1.0, "transB": 1}
            out = args[0] @ args[1].T + args[2]
        elif node.op_type == "Relu":
            out = np.maximum(args[0], 0)
        else:
            raise AssertionError(f"unexpected op {node.op_type}")
        values[node.output[0]] = out
    assert len(quants) == 3
    raw_in = qgraph.tensor(qgraph.inputs[0]).fmt.quantize(data["x"][0].astype(np.float64))
    got = run(qgraph, raw_in)

    def ir_name(name):
        return re.sub(r"[^A-Za-z0-9_.]+", "_", re.sub(r"_output_0$", "", name)).strip("_.")  # as the import names

    for node in quants:
        name = ir_name(node.output[0]) if qgraph.has_tensor(ir_name(node.output[0])) else ir_name(node.input[0])
        fmt = qgraph.tensor(name).fmt
        want = values[node.output[0]][0] / fmt.lsb
        assert np.all(want == np.round(want)) and np.array_equal(got[name], want.astype(np.int64)), node.name
    out_fmt = qgraph.tensor(qgraph.outputs[0]).fmt
    assert np.array_equal(got[qgraph.outputs[0]] * out_fmt.lsb, data["y"][0].astype(np.float64))


def test_brevitas_qcnn_imports_with_its_exact_formats(caplog):
    """QuantConv2d (BatchNorm kept by Brevitas, folded here), QuantReLU, MaxPool, Flatten, QuantLinear."""
    path = DATA / "brevitas_qcnn.onnx"
    data = np.load(DATA / "brevitas_qcnn.npz")
    model = load_onnx(path)
    graph = model.graph
    assert [n.op for n in graph.nodes] == ["Conv2d", "ReLU", "Requantize", "MaxPool2d", "Flatten", "Linear"]
    formats = dict(model.formats)
    assert formats[graph.inputs[0]].signed and formats[graph.inputs[0]].width == 8
    relu_q = graph.nodes[2].outputs[0]
    assert not formats[relu_q].signed and formats[relu_q].width == 8
    conv, fc = graph.nodes[0], graph.nodes[-1]
    assert conv.inputs[1] not in formats and "folded into a quantized Conv" in caplog.text  # BN changed the weights
    assert formats[fc.inputs[1]].overflow == "SAT_SYM" and formats[fc.inputs[1]].width == 8
    # The float reference does not quantize activations: close to Brevitas' quantized output, not equal.
    got = run_float(graph, {graph.inputs[0]: data["x"][0].astype(np.float64)})[graph.outputs[0]]
    assert np.abs(got - data["y"][0]).max() <= 0.05 * np.abs(data["y"]).max()
