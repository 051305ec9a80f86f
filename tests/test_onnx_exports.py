# SPDX-License-Identifier: Apache-2.0
"""Real exporter output: tiny models exported by torch 2.13 (legacy and dynamo exporters) and Brevitas
0.13.4 (QONNX), checked in under tests/data/onnx/ with the script that made them (make_exports.py,
not run in CI).

Each imports into the expected IR ops; its float executor equals onnxruntime and torch's own output
(saved next to it) within 1e-4 of the output's magnitude; the models the accelerator runs compile
and isa_sim equals the golden model bit for bit.
"""

from __future__ import annotations

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
    "brevitas_qmlp": ["Linear", "ReLU", "Linear"],  # QONNX, power-of-two quantizers (Quant after ReLU folded)
}


def test_every_checked_in_export_is_listed_and_small():
    assert {p.stem for p in DATA.glob("*.onnx")} == set(EXPORTS)
    assert all(p.stat().st_size < 100_000 for p in DATA.glob("*.onnx"))


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_imports_and_equals_onnxruntime_and_torch(name):
    path = DATA / f"{name}.onnx"
    data = np.load(DATA / f"{name}.npz")
    model = load_onnx(path)
    graph = model.graph
    assert [n.op for n in graph.nodes] == EXPORTS[name]
    got = run_float(graph, {graph.inputs[0]: data["x"][0].astype(np.float64)})[graph.outputs[0]]
    assert macs(model) > 0
    if name.startswith("brevitas"):  # onnxruntime cannot run QONNX's Quant; the float graph's quantizers are gone
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for want in (session.run(None, {"x": data["x"]})[0][0], data["y"][0]):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("name", ["mlp_block_legacy17", "mlp_block_legacy14", "mlp_block_tanh_dynamo18"])
def test_exports_the_accelerator_runs_compile_bit_exactly(name):
    compiled = compile_for(DATA / f"{name}.onnx", HwParams())
    assert compiled.reference.data == compiled.expected  # isa_sim = golden, byte for byte
    assert all(row.sqnr_db > 30 for row in compiled.accuracy)


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
        return re.sub(r"[^A-Za-z0-9_.]+", "_", name).strip("_.")

    for node in quants:
        name = ir_name(node.output[0]) if qgraph.has_tensor(ir_name(node.output[0])) else ir_name(node.input[0])
        fmt = qgraph.tensor(name).fmt
        want = values[node.output[0]][0] / fmt.lsb
        assert np.all(want == np.round(want)) and np.array_equal(got[name], want.astype(np.int64)), node.name
    out_fmt = qgraph.tensor(qgraph.outputs[0]).fmt
    assert np.array_equal(got[qgraph.outputs[0]] * out_fmt.lsb, data["y"][0].astype(np.float64))
