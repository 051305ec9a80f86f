# SPDX-License-Identifier: Apache-2.0
"""The ONNX / QONNX front end: every fused pattern against onnxruntime, QONNX Quant as exact formats,
every refusal as one line, and the CLI (``import``, ``models``, ``build --model x.onnx``).

Graphs are built with onnx.helper (tests/onnx_graphs.py). Float comparisons use a tolerance
(onnxruntime computes in float32); quantized comparisons are integer equality.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import G, mlp_block, quant_reference

from hwgen.cli import main
from hwgen.frontend import load_spec
from hwgen.frontend.onnx import OnnxImportError, load_onnx, to_spec
from hwgen.golden import run, run_float
from hwgen.pipeline import run_passes
from hwgen.qfx import QFmt
from hwgen.quant import QuantConfig


def save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def ort_run(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.astype(np.float32)})[0]


def check_float(path, *, seed=1, scale=1.0):
    """Import ``path``, run the float executor and onnxruntime on one input; return the model."""
    model = load_onnx(path)
    graph = model.graph
    shape = onnx.load(str(path)).graph.input[0].type.tensor_type.shape
    x = np.random.default_rng(seed).uniform(-scale, scale, [d.dim_value for d in shape.dim]).astype(np.float32)
    want = ort_run(path, x)[0]
    got = run_float(graph, {graph.inputs[0]: x[0].astype(np.float64)})[graph.outputs[0]]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max()), np.abs(got - want).max()
    return model


def ops(model):
    return [n.op for n in model.graph.nodes]


# ------------------------------------------------------------------------------------- patterns


MLP_OPS = ["LayerNorm", "Linear", "GELU", "Linear", "Add", "Softmax"]


@pytest.mark.parametrize("opset, kwargs", [
    (17, {}),
    (17, {"decomposed_ln": True}),
    (18, {"decomposed_ln": True}),  # ReduceMean takes its axes as an input from opset 18
    (13, {"decomposed_ln": True}),
    (17, {"gelu": "dynamo"}),        # Mul(x, 0.5) · (1 + erf)
    (20, {"gelu": "op"}),            # the Gelu op
    (17, {"gelu": "tanh"}),          # Pow(x, 3)
    (17, {"gelu": "tanh-mul"}),      # Mul(Mul(x, x), x)
    (21, {}),
])
def test_mlp_block_patterns_equal_onnxruntime(tmp_path, opset, kwargs):
    model = check_float(save(mlp_block(opset=opset, **kwargs), tmp_path))
    assert ops(model) == MLP_OPS
    gelu = model.graph.nodes[2]
    assert gelu.attr("approximate") == ("tanh" if kwargs.get("gelu", "").startswith("tanh") else "erf")


def test_gemm_transb_relu_clip(tmp_path):
    g = G((1, 12), seed=3)
    h = g.op("Relu", g.gemm("x", 12, 20))
    h = g.op("Clip", g.gemm(h, 20, 8), g.const(0.0))
    h = g.op("Gemm", h, g.weight(8, 6), g.const(np.zeros(6)), alpha=0.5, beta=2.0)  # transB = 0, alpha and beta folded
    model = check_float(save(g.model(h), tmp_path))
    assert ops(model) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model.graph.tensor(model.graph.nodes[0].inputs[1]).shape == (12, 20)  # (K, N): B transposed


def test_constant_folding_of_shape_arithmetic(tmp_path):
    """Shape → Gather → Unsqueeze → Concat → Reshape (what legacy exports write) folds to constants."""
    g = G((1, 4, 6), seed=4)
    shape = g.op("Shape", "x")
    dim = g.op("Unsqueeze", g.op("Gather", shape, g.const(2, np.int64), axis=0), g.const([0], np.int64))
    target = g.op("Concat", g.const([1, 4], np.int64), dim, axis=0)
    h = g.op("Reshape", g.linear("x", 6, 6), target)
    h = g.op("Identity", g.op("Add", h, "x"))
    model = check_float(save(g.model(h), tmp_path))
    assert ops(model) == ["Linear", "Add"]


def test_conv_batchnorm_folded(tmp_path):
    g = G((1, 3, 8, 8), seed=5)
    c = 4
    h = g.op("Conv", "x", g.weight(c, 3, 3, 3), g.const(np.zeros(c)), pads=[1, 1, 1, 1], strides=[1, 1])
    h = g.op("BatchNormalization", h, g.const(g.rng.uniform(0.5, 1.5, c)), g.const(g.rng.uniform(-0.2, 0.2, c)),
             g.const(g.rng.uniform(-0.1, 0.1, c)), g.const(g.rng.uniform(0.5, 2.0, c)), epsilon=1e-5)
    h = g.op("Relu", h)
    model = check_float(save(g.model(h), tmp_path))
    assert ops(model) == ["Conv2d", "ReLU"]


def test_patch_embedding_conv_kernel_equals_stride(tmp_path):
    g = G((1, 3, 8, 8), seed=6)
    h = g.op("Conv", "x", g.weight(8, 3, 4, 4), g.const(np.zeros(8)), strides=[4, 4], kernel_shape=[4, 4])
    model = check_float(save(g.model(h), tmp_path))
    assert ops(model) == ["Conv2d"] and model.graph.tensor(model.graph.outputs[0]).shape == (8, 2, 2)


# ------------------------------------------------------------------------------------- QONNX


def qonnx_mlp(signed=1, narrow=0, mode="ROUND", act_scale=2.0**-4, bits=6, relu=False):
    """x → Quant → MatMul(Quant(W)) + Quant(b) → Quant(act) [→ Relu → Quant(unsigned)]."""
    g = G((1, 4, 8), seed=11)
    xq = g.quant("x", 2.0**-5, 8)
    w = g.quant(g.weight(8, 6), 2.0**-6, 6, narrow=1)
    b = g.quant(g.const(g.rng.uniform(-0.3, 0.3, 6)), 2.0**-11, 16)
    h = g.quant(g.op("Add", g.op("MatMul", xq, w), b), act_scale, bits, signed=signed, narrow=narrow, mode=mode)
    if relu:
        h = g.quant(g.op("Relu", h), 2.0**-3, 4, signed=0)
    return g.model(h)


def test_quant_formats_are_exact_ap_fixed_formats(tmp_path):
    model = load_onnx(save(qonnx_mlp(), tmp_path))
    formats = dict(model.formats)
    graph = model.graph
    linear = graph.nodes[0]
    assert ops(model) == ["Linear"]
    assert formats[graph.inputs[0]] == QFmt(8, 3, True, "RND_CONV", "SAT")
    assert formats[linear.inputs[1]] == QFmt(6, 0, True, "RND_CONV", "SAT_SYM")
    assert formats[linear.inputs[2]] == QFmt(16, 5, True, "RND_CONV", "SAT")
    assert formats[linear.outputs[0]] == QFmt(6, 2, True, "RND_CONV", "SAT")


@pytest.mark.parametrize("signed, narrow, mode", [
    (1, 0, "ROUND"), (1, 1, "ROUND"), (0, 0, "ROUND"), (1, 0, "FLOOR"), (1, 0, "DOWN"), (1, 0, "HALF_UP"),
    (1, 0, "HALF_DOWN"),
])
def test_golden_equals_qonnx_at_every_quant_output(tmp_path, signed, narrow, mode):
    path = save(qonnx_mlp(signed, narrow, mode, relu=signed == 1 and mode == "ROUND"), tmp_path)
    model = load_onnx(path)
    qgraph = run_passes(model.graph, QuantConfig(formats=model.formats))
    onnx_model = onnx.load(str(path))
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx_model.graph.initializer}
    nodes = {n.output[0]: n for n in onnx_model.graph.node}

    def quant(node, x):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return quant_reference(x, float(consts[node.input[1]]), int(consts[node.input[3]]), attrs["signed"],
                               attrs["narrow"], attrs["rounding_mode"].decode())

    # Inputs on ties and beyond the range: every rounding and saturation decision is exercised.
    rng = np.random.default_rng(2)
    x = np.round(rng.uniform(-5, 5, (1, 4, 8)) * 64) / 64
    x.flat[:6] = [0.5 / 32, 1.5 / 32, -2.5 / 32, 9.0, -9.0, 3.96875]
    # The QONNX graph in float64, node by node (its own semantics, no hwgen code).
    values = {"x": x}
    for node in onnx_model.graph.node:
        args = [values.get(n, consts.get(n)) for n in node.input]
        if node.op_type == "Quant":
            values[node.output[0]] = quant(node, args[0])
        elif node.op_type == "MatMul":
            values[node.output[0]] = args[0] @ args[1]
        elif node.op_type == "Add":
            values[node.output[0]] = args[0] + args[1]
        elif node.op_type == "Relu":
            values[node.output[0]] = np.maximum(args[0], 0)
    graph_in = qgraph.inputs[0]
    raw_in = qgraph.tensor(graph_in).fmt.quantize(x[0])
    got = run(qgraph, raw_in)
    # The IR tensor at each activation Quant output: the input, the Linear's output, the final output.
    quants = [n.output[0] for n in onnx_model.graph.node if n.op_type == "Quant" and n.input[0] not in consts]
    at = [graph_in, model.graph.nodes[0].outputs[0]] + ([qgraph.outputs[0]] if len(quants) == 3 else [])
    assert len(quants) == len(at)
    for out, name in zip(quants, at):
        fmt = qgraph.tensor(name).fmt
        assert fmt == dict(model.formats)[name] or name == qgraph.outputs[0]
        want = values[out][0] / fmt.lsb
        assert np.all(want == np.round(want))  # QONNX's values lie on the format's grid
        assert got[name].dtype == np.int64 and np.array_equal(got[name], want.astype(np.int64)), (out, name)
    assert len(at) == (3 if signed == 1 and mode == "ROUND" else 2)


def test_non_power_of_two_scale_is_refused_or_rounded_and_noted(tmp_path):
    g = G((1, 8), seed=1)
    h = g.quant("x", 0.2217, 8)
    path = save(g.model(g.gemm(h, 8, 4)), tmp_path)
    with pytest.raises(OnnxImportError) as info:
        load_onnx(path)
    message = str(info.value)
    assert "\n" not in message and "/Quant_" in message and "power of two" in message and "0.2217" in message
    model = load_onnx(path, round_scales=True)
    assert dict(model.formats)[model.graph.inputs[0]] == QFmt(8, 6, True, "RND_CONV", "SAT")
    assert len(model.notes) == 1 and "0.2217" in model.notes[0] and "2^-2" in model.notes[0]


@pytest.mark.parametrize("change, problem", [
    ({"zeropt": 1.0}, "zero point must be 0"),
    ({"signed": 0, "narrow": 1}, "narrow must be 0 for an unsigned Quant"),
    ({"mode": "CEIL"}, "rounding_mode must be one of"),
])
def test_quant_refusals_name_the_node(tmp_path, change, problem):
    g = G((1, 8), seed=1)
    h = g.quant("x", 0.25, 8, **change)
    with pytest.raises(OnnxImportError) as info:
        load_onnx(save(g.model(g.gemm(h, 8, 4)), tmp_path))
    assert problem in str(info.value) and "/Quant_" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------- errors


def test_unsupported_nodes_are_all_named_in_one_report(tmp_path):
    g = G((1, 4, 8), seed=1)
    h = g.op("Sigmoid", g.linear("x", 8, 8))
    h = g.op("Mul", h, h)  # a square outside any pattern
    h = g.op("Tanh", h)
    with pytest.raises(OnnxImportError) as info:
        load_onnx(save(g.model(h), tmp_path))
    message = str(info.value)
    assert message.startswith("m.onnx: 3 nodes cannot be imported") and "\n" not in message
    for name, op in (("/Sigmoid_", "Sigmoid"), ("/Mul_", "Mul"), ("/Tanh_", "Tanh")):
        assert name in message and f"({op})" in message
    assert "tanh-GELU pattern" in message


def _dynamic(tmp_path):
    model = mlp_block()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "tokens"
    return save(model, tmp_path)


def _batch2(tmp_path):
    model = mlp_block()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    return save(model, tmp_path)


def _external_missing(tmp_path):
    model = mlp_block()
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    (tmp_path / "m.onnx.data").unlink()
    return tmp_path / "m.onnx"


def _garbage(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    return path


def _old_opset(tmp_path):
    g = G((1, 8), opset=12)
    return save(g.model(g.op("Relu", "x")), tmp_path)


@pytest.mark.parametrize("make, problem", [
    (_dynamic, "must have a static shape, not the dynamic dimension 'tokens'"),
    (_batch2, "must have batch dimension 1, not shape (2, 5, 16)"),
    (_external_missing, "external data file 'm.onnx.data'"),
    (_garbage, "not a readable ONNX file"),
    (_old_opset, "ai.onnx opset must be 13 to 21, not 12"),
])
def test_bad_files_are_one_line_and_cli_exits_2_writing_nothing(tmp_path, capsys, make, problem):
    path = make(tmp_path)
    with pytest.raises(OnnxImportError) as info:
        load_onnx(path)
    assert problem in str(info.value) and "\n" not in str(info.value)
    out = tmp_path / "out"
    assert main(["import", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err and not out.exists()
    assert main(["build", "--model", str(path), "--board", "ultra96", "--out", str(out), "--quiet"]) == 2
    assert problem in capsys.readouterr().err and not out.exists()


def test_missing_file_is_one_line(tmp_path, capsys):
    assert main(["models", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- CLI


def test_import_writes_a_spec_that_builds_the_same_graph_deterministically(tmp_path, capsys):
    path = save(qonnx_mlp(relu=True), tmp_path)
    assert main(["import", str(path), "-o", str(tmp_path / "a")]) == 0
    assert main(["import", str(path), "-o", str(tmp_path / "b")]) == 0
    for name in ("model.yaml", "model.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    spec = load_spec(tmp_path / "a" / "model.yaml")
    model = load_onnx(path)
    assert spec.graph == model.graph and dict(spec.formats) == dict(model.formats)
    x = {model.graph.inputs[0]: np.random.default_rng(0).uniform(-1, 1, (4, 8))}
    a, b = run_float(spec.graph, x), run_float(model.graph, x)
    assert all(np.array_equal(a[n], b[n]) for n in model.graph.outputs)
    document, arrays = to_spec(model)
    assert set(arrays) == {t.name for t in model.graph.constants}
    capsys.readouterr()
    assert main(["models", str(path)]) == 0
    out = capsys.readouterr().out
    assert "x 4x8" in out and f"{4 * 8 * 6:,}" in out


def test_help_explains_the_onnx_options(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--calibration" in text and "--round-scales" in text and ".onnx" in text
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    assert "model.yaml" in capsys.readouterr().out


def test_compile_onnx_for_the_accelerator_isa_sim_equals_golden(tmp_path):
    """The build's core without Yosys: quantize, compile, isa_sim bit-exact against golden (compile_for checks)."""
    from hwgen.build import compile_for
    from hwgen.hwparams import HwParams

    path = save(mlp_block(tokens=4, dim=16, hidden=32, gelu="tanh"), tmp_path, "mlp.onnx")
    compiled = compile_for(path, HwParams())
    assert compiled.reference.data == compiled.expected
    assert compiled.calibration == "seeded random inputs"
    assert [n.op for n in compiled.qgraph.nodes if n.op != "Requantize"] == MLP_OPS
    assert all(row.sqnr_db > 30 for row in compiled.accuracy)


@pytest.mark.cosim  # runs Yosys for the resource estimate (cached by content after the first build)
def test_build_onnx_then_sim_isa_bit_exact(tmp_path, capsys):
    path = save(mlp_block(tokens=4, dim=16, hidden=32), tmp_path, "mlp.onnx")
    calibration = tmp_path / "inputs.npy"
    np.save(calibration, np.random.default_rng(5).uniform(-1, 1, (3, 1, 4, 16)).astype(np.float32))
    out = tmp_path / "build"
    code = main(["build", "--model", str(path), "--board", "ultra96", "--out", str(out), "--flow", "rtl", "--quiet",
                 "--calibration", str(calibration)])
    assert code == 0, capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "calibrated on inputs.npy" in report
    assert (out / "model" / "mlp.onnx").read_bytes() == path.read_bytes()
    assert (out / "model" / "inputs.npy").read_bytes() == calibration.read_bytes()
    assert "--calibration model/inputs.npy" in (out / "hwgen.yaml").read_text()
    capsys.readouterr()
    assert main(["sim", str(out), "--backend", "isa"]) == 0
    assert "equal to golden.npz" in capsys.readouterr().out


@pytest.mark.parametrize("select, scale", [("split", "q"), ("slice", "both"), ("gather", "scores")])
def test_timm_attention_becomes_q_k_v_linears_and_attention(tmp_path, select, scale):
    from onnx_graphs import attention_block

    model = check_float(save(attention_block(select=select, scale=scale), tmp_path))
    assert ops(model) == ["Linear", "Linear", "Linear", "Attention", "Linear", "Add"]
    assert model.graph.nodes[3].attr("heads") == 2


def test_attention_with_a_wrong_scale_is_not_fused_and_is_reported(tmp_path):
    from onnx_graphs import attention_block

    model = attention_block(scale="q")
    scales = [i for i in model.graph.initializer if i.dims == [] and abs(numpy_helper.to_array(i) - 8**-0.5) < 1e-6]
    assert len(scales) == 1
    scales[0].CopyFrom(numpy_helper.from_array(np.array(0.3, np.float32), scales[0].name))
    with pytest.raises(OnnxImportError, match="cannot be imported") as info:
        load_onnx(save(model, tmp_path))
    assert "(Softmax)" not in str(info.value) and "(MatMul)" in str(info.value)


@pytest.mark.parametrize("flatten", ["reshape", "shape-arithmetic"])
def test_tiny_vit_patch_embedding_class_token_position_embedding_head(tmp_path, flatten):
    from onnx_graphs import tiny_vit

    model = check_float(save(tiny_vit(flatten=flatten), tmp_path))
    assert ops(model) == ["Conv2d", "Tokens", "ClassToken", "AddConstant", "LayerNorm", "SelectRow", "Linear"]


@pytest.mark.parametrize("opset, dynamo", [(17, False), (17, True), (18, True)])
def test_tiny_cnn_pooling_and_flatten(tmp_path, opset, dynamo):
    from onnx_graphs import tiny_cnn

    model = check_float(save(tiny_cnn(opset, dynamo=dynamo), tmp_path))
    assert ops(model) == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "AvgPool2d", "GlobalAvgPool", "Flatten",
                          "Linear"]


def test_ops_the_accelerator_lacks_are_refused_by_build_in_one_line(tmp_path, capsys):
    from onnx_graphs import mobilenet_block

    path = save(mobilenet_block(), tmp_path)
    out = tmp_path / "out"
    assert main(["build", "--model", str(path), "--board", "ultra96", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "hwgen: error: op Clip is not supported yet\n" and not out.exists()  # ReLU6
    assert main(["import", str(path), "-o", str(out)]) == 0  # the spec still describes it
    assert load_spec(out / "model.yaml").graph == load_onnx(path).graph


def test_exact_golden_of_the_moving_ops_equals_the_float_reference_on_codes():
    """MaxPool2d, Flatten, Tokens and SelectRow only move codes: exact golden = float reference on the raw codes."""
    from hwgen.golden import EXACT_OPS, FLOAT_OPS
    from hwgen.ir import OPS, Node

    fmt = QFmt(8, 3, True, "RND_CONV", "SAT")
    raw = np.random.default_rng(3).integers(fmt.min_raw, fmt.max_raw + 1, (3, 5, 6))
    cases = [("MaxPool2d", raw, {"kernel": (3, 2), "stride": (2, 2), "padding": (1, 0)}),
             ("Flatten", raw, {}), ("Tokens", raw, {}), ("SelectRow", raw[0], {"index": 2})]
    for op, x, attrs in cases:
        node = Node("n", op, ("x",), ("y",), attrs)
        got = EXACT_OPS[op](node, [x], [fmt], [fmt])[0]
        want = FLOAT_OPS[op]([x.astype(np.float64)], {**OPS[op].attr_defaults(), **attrs})[0]
        assert got.dtype == np.int64 and np.array_equal(got, want.astype(np.int64)), op
        with pytest.raises(ValueError, match="must keep its input format"):
            EXACT_OPS[op](node, [x], [fmt], [fmt.with_(int_bits=4)])


def test_round_scales_reach_the_compiled_build_and_unit_format_conflicts_are_one_line(tmp_path):
    from hwgen.build import compile_for
    from hwgen.hwparams import HwParams

    g = G((1, 4, 8), seed=1)
    h = g.quant(g.linear(g.quant("x", 0.3, 8), 8, 8), 2.0**-4, 12)
    path = save(g.model(g.op("Relu", h)), tmp_path)
    compiled = compile_for(path, HwParams(), round_scales=True)
    assert len(compiled.notes) == 1 and "0.3 rounded to 2^-2" in compiled.notes[0]
    assert compiled.reference.data == compiled.expected

    g = G((1, 4, 8), seed=1, opset=20)
    h = g.op("Gelu", g.quant(g.linear("x", 8, 8), 2.0**-4, 12), approximate="none")
    with pytest.raises(ValueError, match="the input format of the unit reading it") as info:
        compile_for(save(g.model(h), tmp_path, "gelu.onnx"), HwParams())
    assert "\n" not in str(info.value)


def test_unsupported_node_report_from_the_cli_is_one_line_exit_2_nothing_written(tmp_path, capsys):
    g = G((1, 4, 8), seed=1)
    h = g.op("Sigmoid", g.op("Tanh", g.linear("x", 8, 8)))
    path = save(g.model(h), tmp_path)
    for argv in (["import", str(path), "-o", str(tmp_path / "out")],
                 ["build", "--model", str(path), "--board", "ultra96", "--out", str(tmp_path / "out"), "--quiet"],
                 ["models", str(path)]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and "2 nodes cannot be imported" in captured.err and not captured.out
        assert "(Tanh)" in captured.err and "(Sigmoid)" in captured.err
        assert not (tmp_path / "out").exists()


def test_more_than_one_input_and_non_float_input_are_one_line(tmp_path):
    g = G((1, 8))
    model = g.model(g.op("Add", "x", "x2"))
    model.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 8]))
    with pytest.raises(OnnxImportError, match="must have exactly one graph input, not 2"):
        load_onnx(save(model, tmp_path))
    g = G((1, 8))
    with pytest.raises(OnnxImportError, match="must be float32, not INT64"):
        load_onnx(save(g.model(g.op("Relu", "x"), input_type=TensorProto.INT64), tmp_path, "int.onnx"))


def test_calibration_file_is_used_and_checked(tmp_path):
    from hwgen.build import compile_for
    from hwgen.hwparams import HwParams

    g = G((1, 4, 16), seed=2)
    path = save(g.model(g.op("Relu", g.linear("x", 16, 8))), tmp_path)
    inputs = tmp_path / "inputs.npy"
    # Inputs 4x larger than the seeded ones: the input format must grow to hold them.
    np.save(inputs, np.random.default_rng(0).uniform(-4, 4, (2, 4, 16)))
    seeded = compile_for(path, HwParams())
    calibrated = compile_for(path, HwParams(), calibration=inputs)
    assert calibrated.calibration == "inputs.npy" and seeded.calibration == "seeded random inputs"
    name = seeded.qgraph.inputs[0]
    assert calibrated.qgraph.tensor(name).fmt.int_bits == seeded.qgraph.tensor(name).fmt.int_bits + 2
    np.save(inputs, np.zeros((2, 5, 16)))
    with pytest.raises(ValueError, match=r"must hold float inputs of shape \(N, 4, 16\), not float64 \(2, 5, 16\)"):
        compile_for(path, HwParams(), calibration=inputs)


def test_weight_quant_keeps_its_format_through_the_exporters_transpose(tmp_path):
    """Brevitas' MatMul form: Quant(W [N, K]) → Transpose → MatMul; the transposed weight keeps the exact format."""
    g = G((1, 4, 8), seed=7)
    w = g.op("Transpose", g.quant(g.weight(6, 8), 2.0**-6, 6, narrow=1), perm=[1, 0])
    path = save(g.model(g.op("MatMul", g.quant("x", 2.0**-5, 8), w)), tmp_path)
    model = load_onnx(path)
    linear = model.graph.nodes[0]
    assert ops(model) == ["Linear"] and model.graph.tensor(linear.inputs[1]).shape == (8, 6)
    fmt = dict(model.formats)[linear.inputs[1]]
    assert fmt == QFmt(6, 0, True, "RND_CONV", "SAT_SYM")
    weight = model.graph.tensor(linear.inputs[1]).value
    assert np.array_equal(fmt.to_float(fmt.quantize(weight)), weight)  # already on the grid


def test_a_build_carries_the_onnx_file_and_its_external_data(tmp_path):
    from hwgen.build import _model_source

    onnx.save(mlp_block(), tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.onnx.data", size_threshold=0)
    ref, files = _model_source(tmp_path / "m.onnx")
    assert ref == {"onnx": "model/m.onnx"}
    assert dict(files) == {"model/m.onnx": (tmp_path / "m.onnx").read_bytes(),
                           "model/m.onnx.data": (tmp_path / "m.onnx.data").read_bytes()}
    assert ops(load_onnx(tmp_path / "m.onnx")) == MLP_OPS  # external weights are read


def test_mobilenet_inverted_residual_depthwise_relu6(tmp_path):
    from onnx_graphs import mobilenet_block

    model = check_float(save(mobilenet_block(), tmp_path), scale=3.0)
    assert ops(model) == ["Conv2d", "Clip", "Conv2d", "Clip", "Conv2d", "Add"]
    assert model.graph.nodes[2].attr("groups") == 32 and model.graph.nodes[1].attrs == (("max", 6.0), ("min", 0.0))
