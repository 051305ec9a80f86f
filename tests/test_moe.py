# SPDX-License-Identifier: Apache-2.0
"""The mixture-of-experts layer (M³ViT as Edge-MoE runs it): golden model, tasks, quantizer, zoo.

docs/moe.md defines every rounding step; hwgen.golden.moe is that definition. These tests check it
against the float reference (SQNR per task), its tie rule, that the experts' order cannot change a
bit, and the formats the quantizer gives.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.golden import moe
from hwgen.hwparams import HwParams
from hwgen.ir import verify
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig
from hwgen.frontend.spec import parse_spec

log = logging.getLogger(__name__)

#: The quantizer's settings for a model with attention (its accumulators need 48 bits, docs/isa.md §3.8).
ATTENTION_CONFIG = QuantConfig(acc_bits=48)


def _quantized(name: str, config: QuantConfig = QuantConfig()):
    model = zoo.load_model(name)
    return run_passes(model.graph, dataclasses.replace(config, formats=model.formats))


@pytest.fixture(scope="module")
def tiny():
    return _quantized("moe-tiny")


@pytest.fixture(scope="module")
def block():
    return _quantized("moe-block", ATTENTION_CONFIG)


def _sqnr(qgraph, name: str, seed: int, task: int) -> float:
    x = golden.sample_inputs(qgraph, seed=seed)
    raw = golden.run(qgraph, golden.quantize_inputs(qgraph, x), task=task)
    rows = {row.name: row for row in golden.accuracy_report(qgraph, golden.run_float(qgraph, x, task=task), raw)}
    return rows[name].sqnr_db


@pytest.mark.parametrize("task", [0, 1])
def test_moe_block_sqnr_per_task(block, task):
    sqnr = _sqnr(block, "out", seed=7, task=task)
    log.info("moe-block task %d: SQNR of the block output %.1f dB", task, sqnr)
    assert sqnr >= 30


def test_tasks_choose_different_gates(tiny):
    x = golden.quantize_inputs(tiny, golden.sample_inputs(tiny, seed=3))
    runs = [golden.run(tiny, x, task=task) for task in (0, 1)]
    assert np.array_equal(runs[0]["gate"], golden.run(tiny, x)["gate"])  # task 0 is the default
    assert not np.array_equal(runs[0]["top.indices"], runs[1]["top.indices"])
    w = tiny.tensor("gate.weight").raw
    for task, values in enumerate(runs):
        assert np.array_equal(values["gate.acc"], golden.exact_matmul(values["ln"], w[task]))


def test_task_must_name_one_of_the_models_tasks(tiny):
    x = golden.quantize_inputs(tiny, golden.sample_inputs(tiny, seed=3))
    for task in (2, -1, True, 1.0):
        with pytest.raises(ValueError, match=rf"^task must be an integer in 0..1, not {task!r}$"):
            golden.run(tiny, x, task=task)
        with pytest.raises(ValueError, match=rf"^task must be an integer in 0..1, not {task!r}$"):
            golden.run_float(tiny, golden.sample_inputs(tiny, seed=3), task=task)
    odd = zoo.load_model("mlp-odd").graph
    with pytest.raises(ValueError, match=r"^task must be an integer in 0..0, not 1$"):
        golden.run_float(odd, golden.sample_inputs(odd, seed=0), task=1)


def test_topk_ties_go_to_the_lower_index():
    values, idx = moe.topk(np.array([[5, 7, 7, 3], [4, 4, 4, 4], [1, 2, 3, 3]]), 2)
    assert idx.tolist() == [[1, 2], [0, 1], [2, 3]] and values.tolist() == [[7, 7], [4, 4], [3, 3]]
    # Edge-MoE's k-long insertion with strict > in index order (with the missing `else` of
    # edge-moe.md §2f written out) picks the same experts, on rows full of ties.
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 4, size=(500, 16))
    for row, want in zip(rows, moe.topk(rows, 2)[1]):
        best = [(-1, -1)] * 2
        for e, value in enumerate(row):
            for j in range(2):
                if value > best[j][0]:
                    best = best[:j] + [(value, e)] + best[j:-1]
                    break
        assert [e for _, e in best] == want.tolist()


def test_equal_probabilities_pick_the_lower_experts(tiny):
    # A zero gate makes every logit 0, so every token's probabilities are equal: experts 0 and 1.
    tensors = tuple(t.replace(raw=np.zeros_like(t.raw)) if t.name == "gate.weight" else t for t in tiny.tensors)
    flat = verify(tiny.replace(tensors=tensors))
    values = golden.run(flat, golden.quantize_inputs(flat, golden.sample_inputs(flat, seed=1)))
    assert (values["probs"] == values["probs"][:, :1]).all()
    assert (values["top.indices"] == [0, 1]).all() and np.array_equal(values["top"], values["probs"][:, :2])


def test_expert_order_does_not_change_a_bit(block):
    x = golden.quantize_inputs(block, golden.sample_inputs(block, seed=2))
    values = golden.run(block, x, task=1)
    node = block.node("moe")
    f = moe.expert_formats(node, [block.tensor(n).fmt for n in node.inputs], 2)
    args = [values[n] for n in node.inputs]
    want = values["moe.acc"]
    assert np.array_equal(moe.moe(f, *args), want)
    rng = np.random.default_rng(0)
    for order in [list(range(16))[::-1]] + [list(rng.permutation(16)) for _ in range(5)]:
        assert np.array_equal(moe.moe(f, *args, order=order), want)
    # Token by token, slot by slot (the order of a token-major datapath): the same integers.
    ln, scores, idx, w1, b1, w2, b2 = args
    for t in range(0, 129, 16):
        total = sum(int(scores[t, j]) * moe.expert_ffn(f, ln[t:t + 1], w1[e], b1[e], w2[e], b2[e])[0].astype(object)
                    for j, e in enumerate(idx[t]))
        assert np.array_equal(total.astype(np.int64), want[t])
    with pytest.raises(ValueError, match=r"^order must be a permutation of 0..15, not \[0, 0\]$"):
        moe.moe(f, *args, order=[0, 0])


def test_dispatch_lists_tokens_in_order():
    idx = np.array([[2, 0], [0, 1], [2, 1], [0, 2]])
    lists = moe.dispatch(idx, 4)
    assert [t.tolist() for t, _ in lists] == [[0, 1, 3], [1, 2], [0, 2, 3], []]
    assert [s.tolist() for _, s in lists] == [[1, 0, 0], [1, 1], [0, 0, 1], []]
    with pytest.raises(ValueError, match=r"^expert indices must be in 0..3, not 0..4$"):
        moe.dispatch(np.array([[0, 4]]), 4)


def test_quantizer_gives_the_units_formats(block):
    units = HwParams().unit_formats()
    assert block.tensor("gate").fmt == units.softmax_in
    assert block.tensor("probs").fmt == block.tensor("top").fmt == units.softmax_out
    assert block.tensor("top.indices").fmt == moe.index_format(16)
    node = block.node("moe")
    f = moe.expert_formats(node, [block.tensor(n).fmt for n in node.inputs], 2)
    assert f.hidden == units.gelu and f.score == units.softmax_out
    assert block.tensor("moe.acc").fmt == f.sum and f.product_bits == 32 and f.sum.width == 33
    assert block.tensor("gate.weight").shape == (2, 192, 16)
    for acc in (f.hidden_acc, f.expert_acc, block.tensor("gate.acc").fmt):
        assert acc.width <= 32  # the MAC array's accumulator at the default acc_bits
    # Calibrated over both tasks: the expert output format covers every expert of either gate.
    assert block.producer("moe").op == "Requantize" and block.tensor("moe").fmt.width == 16


def test_spec_and_verify_of_task_gates():
    base = {"name": "m", "inputs": {"x": {"shape": [3, 8]}}, "outputs": ["g"],
            "layers": [{"name": "g", "op": "MoEGate", "input": "x", "experts": 4, "tasks": 3}]}
    graph = parse_spec(base).graph
    assert graph.tensor("g.weight").shape == (3, 8, 4) and moe.graph_tasks(graph) == 3
    single = parse_spec({**base, "layers": [{**base["layers"][0], "tasks": 1}]}).graph
    assert single.tensor("g.weight").shape == (8, 4) and moe.graph_tasks(single) == 1
    with pytest.raises(ValueError, match=r"^spec: layer 1 \(g\): tasks must be a positive integer, not 0$"):
        parse_spec({**base, "layers": [{**base["layers"][0], "tasks": 0}]})
    two = {**base, "outputs": ["h"], "layers": base["layers"] + [
        {"name": "h", "op": "MoEGate", "input": "x", "experts": 4, "tasks": 2}]}
    with pytest.raises(ValueError, match=r"^spec: node 'h' \(MoEGate\): tasks must be the model's 3 \(as gate 'g'\), not 2$"):
        parse_spec(two)


def test_golden_refuses_an_unquantized_expert(tiny):
    node = tiny.node("moe")
    bare = node.replace(attrs={"activation": "gelu"})
    with pytest.raises(ValueError, match=r"^Expert 'moe' must have hidden_acc_format, hidden_format, expert_acc_format,"
                                         r" expert_format \(set by the quantizer\)$"):
        moe.expert_formats(bare, [tiny.tensor(n).fmt for n in node.inputs], 2)


def test_relu_experts_calibrate_their_hidden_format():
    spec = {"name": "r", "inputs": {"x": {"shape": [9, 16]}}, "outputs": ["out"], "layers": [
        {"name": "gate", "op": "MoEGate", "input": "x", "experts": 3},
        {"name": "p", "op": "Softmax", "input": "gate"},
        {"name": "top", "op": "TopK", "input": "p", "k": 2},
        {"name": "moe", "op": "Expert", "inputs": ["x", "top", "top.indices"], "experts": 3, "hidden": 8,
         "activation": "relu"},
        {"name": "out", "op": "Add", "inputs": ["moe", "x"]}]}
    q = run_passes(parse_spec(spec).graph, QuantConfig())
    assert q.node("moe").attr("hidden_format") != str(HwParams().unit_formats().gelu)
    assert _sqnr(q, "out", seed=4, task=0) >= 30


@pytest.mark.parametrize("task", [0, 1])
def test_m3vit_tiny_golden_per_task(task, m3vit):
    assert _sqnr(m3vit, "norm", seed=11, task=task) >= 30


@pytest.fixture(scope="module")
def m3vit():
    return _quantized("m3vit-tiny", ATTENTION_CONFIG)


def test_zoo_shapes():
    graph = zoo.load_model("m3vit-tiny").graph
    assert graph.tensor("pos").shape == (129, 192) and graph.tensor("norm").shape == (129, 192)
    experts = [n for n in graph.nodes if n.op == "Expert"]
    assert [n.name for n in experts] == [f"b{b}.moe" for b in range(1, 12, 2)]
    assert all(graph.tensor(n.inputs[3]).shape == (16, 192, 384) for n in experts)
    assert sum(n.op == "Attention" for n in graph.nodes) == 12 and moe.graph_tasks(graph) == 2
    assert round(zoo.macs(zoo.load_model("m3vit-tiny")) / 1e9, 2) == 0.78
    block = zoo.load_model("moe-block").graph
    assert block.tensor("moe.w1").shape == (16, 192, 384) and block.tensor("x").shape == (129, 192)
