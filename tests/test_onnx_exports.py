# SPDX-License-Identifier: Apache-2.0
"""Real exporter output: tiny models exported by torch 2.13 (legacy and dynamo exporters) and checked
in under tests/data/onnx/ with the script that made them (make_exports.py, not run in CI).

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
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for want in (session.run(None, {"x": data["x"]})[0][0], data["y"][0]):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert macs(model) > 0


@pytest.mark.parametrize("name", ["mlp_block_legacy17", "mlp_block_legacy14", "mlp_block_tanh_dynamo18"])
def test_exports_the_accelerator_runs_compile_bit_exactly(name):
    compiled = compile_for(DATA / f"{name}.onnx", HwParams())
    assert compiled.reference.data == compiled.expected  # isa_sim = golden, byte for byte
    assert all(row.sqnr_db > 30 for row in compiled.accuracy)
