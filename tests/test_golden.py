# SPDX-License-Identifier: Apache-2.0
"""The golden model against independent Python-integer arithmetic, and the float reference per op."""

import math

import numpy as np
import pytest

from hwgen import golden, qfx, zoo
from hwgen.golden import exact_matmul
from hwgen.ir import Graph, Node, Tensor
from hwgen.pipeline import run_passes
from hwgen.qfx import QFmt
from hwgen.quant import QuantConfig


def test_exact_matmul_equals_python_integers_on_both_paths():
    rng = np.random.default_rng(0)
    for low, high in ((-(2**15), 2**15), (-(2**28), 2**28)):  # float64 path, then int64 path
        a = rng.integers(low, high, size=(5, 9))
        b = rng.integers(low, high, size=(9, 4))
        want = [[sum(int(a[i, k]) * int(b[k, j]) for k in range(9)) for j in range(4)] for i in range(5)]
        assert exact_matmul(a, b).tolist() == want
    big = np.full((1, 4), 2**31)
    with pytest.raises(ValueError, match=r"^matrix product must stay below 2\*\*63 in magnitude, not reach \d+$"):
        exact_matmul(big, big.T)


@pytest.fixture(scope="module")
def odd():
    return run_passes(zoo.load_model("mlp-odd").graph, QuantConfig())


def test_linear_and_requantize_equal_python_integer_arithmetic(odd):
    """fc1 computed element by element with qfx.mul products summed as Python ints, then cast."""
    x = golden.quantize_inputs(odd, golden.sample_inputs(odd, seed=4))
    values = golden.run(odd, x)
    x_fmt = odd.tensor("x").fmt
    w = odd.tensor("fc1.weight")
    b = odd.tensor("fc1.bias")
    acc_fmt = odd.tensor("fc1.acc").fmt
    rows, cols = [0, 17, 49], [0, 5, 36]
    for i in rows:
        products, product_fmt = qfx.mul(x["x"][i][:, None], x_fmt, w.raw, w.fmt)
        assert product_fmt.frac_bits == acc_fmt.frac_bits
        for j in cols:
            total = sum(int(p) for p in products[:, j]) + (int(b.raw[j]) << (acc_fmt.frac_bits - b.fmt.frac_bits))
            assert values["fc1.acc"][i, j] == total
    assert np.array_equal(values["fc1"], odd.tensor("fc1").fmt.cast(values["fc1.acc"], acc_fmt))
    assert np.array_equal(values["relu1"], np.maximum(values["fc1"], 0))
    total, sum_fmt = qfx.add(values["fc2"], odd.tensor("fc2").fmt, values["x"], x_fmt)
    assert sum_fmt == odd.tensor("out.sum").fmt and np.array_equal(values["out.sum"], total)
    # The float value of every tensor is close to the float reference, so the raw codes mean what their formats say.
    reference = golden.run_float(odd, golden.sample_inputs(odd, seed=4))
    assert np.abs(odd.tensor("out").fmt.to_float(values["out"]) - reference["out"]).max() < 0.05


def test_run_refuses_bad_inputs_and_unsupported_ops(odd):
    x = golden.quantize_inputs(odd, golden.sample_inputs(odd, seed=0))["x"]
    assert np.array_equal(golden.run(odd, x)["out"], golden.run(odd, {"x": x})["out"])
    with pytest.raises(ValueError, match=r"^input 'x' must have shape \(50, 100\), not \(50, 99\)$"):
        golden.run(odd, x[:, :99])
    with pytest.raises(ValueError, match=r"^input 'x' of fixed<16,4,RND_CONV,SAT> must lie in -32768..32767, not 40000$"):
        golden.run(odd, np.full_like(x, 40000))
    with pytest.raises(ValueError, match=r"^graph must be quantized .*, not a float graph$"):
        golden.run(zoo.load_model("mlp-odd").graph, x)
    fmt = QFmt(16, 4)
    tensors = (Tensor("x", (2, 3), fmt), Tensor("v", (2, 3), fmt))
    clip = Graph("s", ("x",), ("v",), tensors, (Node("t", "Clip", ("x",), ("v",), {"min": 0.0, "max": 1.0}),))
    with pytest.raises(ValueError, match=r"^op Clip is not supported yet$"):
        golden.run(clip, np.zeros((2, 3), dtype=np.int64))


def test_accuracy_report_formula(odd):
    x = golden.sample_inputs(odd, seed=1)
    raw = golden.run(odd, golden.quantize_inputs(odd, x))
    reference = golden.run_float(odd, x)
    rows = {r.name: r for r in golden.accuracy_report(odd, reference, raw)}
    fmt = odd.tensor("out").fmt
    error = fmt.to_float(raw["out"]) - reference["out"]
    assert rows["out"].sqnr_db == pytest.approx(10 * math.log10(np.sum(reference["out"] ** 2) / np.sum(error**2)), rel=1e-12)
    assert rows["out"].max_abs_error == np.abs(error).max()
    same = golden.accuracy_report(odd, {"x": odd.tensor("x").fmt.to_float(raw["x"])}, raw)
    assert same[0].sqnr_db == math.inf


# The float reference of the ops later issues implement, against direct loop implementations.


def test_float_conv2d_matches_loops():
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(4, 7, 6)), rng.normal(size=(6, 2, 3, 2)), rng.normal(size=6)
    (y,) = golden.FLOAT_OPS["Conv2d"]([x, w, b], {"stride": (2, 1), "padding": (1, 0), "groups": 2})
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    want = np.zeros((6, 4, 5))
    for o in range(6):
        g = o // 3
        for i in range(4):
            for j in range(5):
                want[o, i, j] = b[o] + np.sum(padded[2 * g : 2 * g + 2, 2 * i : 2 * i + 3, j : j + 2] * w[o])
    assert np.allclose(y, want, rtol=0, atol=1e-12)


def test_float_attention_topk_and_experts_match_loops():
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(5, 6)), rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    (out,) = golden.FLOAT_OPS["Attention"]([q, k, v], {"heads": 3})
    for t in range(5):
        for h in range(3):
            s = [q[t, 2 * h : 2 * h + 2] @ k[j, 2 * h : 2 * h + 2] / math.sqrt(2) for j in range(4)]
            p = np.exp(np.array(s) - max(s))
            p /= p.sum()
            assert np.allclose(out[t, 2 * h : 2 * h + 2], p @ v[:, 2 * h : 2 * h + 2], atol=1e-12)
    values, indices = golden.FLOAT_OPS["TopK"]([np.array([[1.0, 3.0, 3.0, 2.0]])], {"k": 2})
    assert values.tolist() == [[3.0, 3.0]] and indices.tolist() == [[1.0, 2.0]]  # ties to the lower index
    x = rng.normal(size=(3, 4))
    w1, b1, w2, b2 = rng.normal(size=(5, 4, 2)), rng.normal(size=(5, 2)), rng.normal(size=(5, 2, 4)), rng.normal(size=(5, 4))
    scores, idx = np.array([[0.6, 0.3]] * 3), np.array([[4, 0], [1, 2], [3, 3]], dtype=float)
    (y,) = golden.FLOAT_OPS["Expert"]([x, scores, idx, w1, b1, w2, b2], {"activation": "relu"})
    for t in range(3):
        want = sum(scores[t, j] * (np.maximum(x[t] @ w1[int(idx[t, j])] + b1[int(idx[t, j])], 0) @ w2[int(idx[t, j])] + b2[int(idx[t, j])]) for j in range(2))
        assert np.allclose(y[t], want, atol=1e-12)


def test_float_normalization_ops():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 8)) * 3 + 1
    (ln,) = golden.FLOAT_OPS["LayerNorm"]([x, np.ones(8), np.zeros(8)], {"eps": 1e-5})
    assert np.allclose(ln.mean(axis=-1), 0, atol=1e-12) and np.allclose(ln.var(axis=-1), 1, atol=1e-3)
    (sm,) = golden.FLOAT_OPS["Softmax"]([x], {"axis": -1})
    assert np.allclose(sm.sum(axis=-1), 1) and (sm > 0).all()
    (erf,) = golden.FLOAT_OPS["GELU"]([x], {"approximate": "erf"})
    (tanh,) = golden.FLOAT_OPS["GELU"]([x], {"approximate": "tanh"})
    assert erf[0, 0] == pytest.approx(x[0, 0] * 0.5 * (1 + math.erf(x[0, 0] / math.sqrt(2))), rel=1e-15)
    assert np.abs(erf - tanh).max() < 2e-3
