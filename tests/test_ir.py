# SPDX-License-Identifier: Apache-2.0
"""The IR: verify rejects every kind of malformed graph with a clear one-line message, accepts every
op of the table, graphs are immutable, and save -> load round-trips byte-identically."""

import dataclasses

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.frontend import parse_spec
from hwgen.ir import OPS, Graph, InputDistribution, Node, Tensor, load_graph, save_graph, verify
from hwgen.pipeline import run_passes
from hwgen.qfx import QFmt
from hwgen.quant import QuantConfig


def _mlp() -> Graph:
    """x(4,6) -> Linear(6->3) -> ReLU -> out."""
    rng = np.random.default_rng(0)
    return Graph(
        name="t",
        inputs=("x",),
        outputs=("r",),
        tensors=(
            Tensor("x", (4, 6)),
            Tensor("w", (6, 3), value=rng.uniform(-1, 1, (6, 3))),
            Tensor("b", (3,), value=rng.uniform(-1, 1, 3)),
            Tensor("y", (4, 3)),
            Tensor("r", (4, 3)),
        ),
        nodes=(Node("fc", "Linear", ("x", "w", "b"), ("y",)), Node("relu", "ReLU", ("y",), ("r",))),
    )


def _with_node(graph: Graph, index: int, **changes) -> Graph:
    nodes = list(graph.nodes)
    nodes[index] = nodes[index].replace(**changes)
    return graph.replace(nodes=tuple(nodes))


def _with_tensor(graph: Graph, name: str, **changes) -> Graph:
    return graph.replace(tensors=tuple(t.replace(**changes) if t.name == name else t for t in graph.tensors))


MALFORMED = {
    "unknown op": (lambda g: _with_node(g, 1, op="Sigmoid"),
                   r"^node 'relu': op must be one of Linear, MatMul, .*, not 'Sigmoid'$"),
    "duplicate tensor": (lambda g: g.replace(tensors=g.tensors + (Tensor("y", (4, 3)),)),
                         r"^tensor names must be unique, but 'y' appears twice$"),
    "duplicate node": (lambda g: _with_node(g, 1, name="fc"), r"^node names must be unique, but 'fc' appears twice$"),
    "missing input tensor": (lambda g: _with_node(g, 1, inputs=("nope",)),
                             r"^node 'relu' \(ReLU\): input 'nope' is not a tensor of the graph$"),
    "two producers": (lambda g: _with_node(g, 1, outputs=("y",)),
                      r"^node 'relu' \(ReLU\): output 'y' already has a producer \(one producer per tensor\)$"),
    "not topological": (lambda g: g.replace(nodes=g.nodes[::-1]),
                        r"^node 'relu' \(ReLU\): reads 'y' before the node producing it \(nodes must be in topological order\)$"),
    "wrong output shape": (lambda g: _with_tensor(g, "r", shape=(4, 4)),
                           r"^node 'relu' \(ReLU\): output 'r' must have shape \(4, 3\), not \(4, 4\)$"),
    "shape rule": (lambda g: _with_tensor(g, "b", shape=(4,), value=np.zeros(4)),
                   r"^node 'fc' \(Linear\): bias must have shape \(3,\), not \(4,\)$"),
    "arity": (lambda g: _with_node(g, 1, inputs=("y", "y")),
              r"^node 'relu' \(ReLU\): needs 1 inputs \(input\), not 2$"),
    "output arity": (lambda g: _with_node(g, 1, outputs=("r", "y")),
                     r"^node 'relu' \(ReLU\): needs 1 outputs \(output\), not 2$"),
    "unknown attribute": (lambda g: _with_node(g, 1, attrs={"alpha": 0.1}),
                          r"^node 'relu' \(ReLU\): attribute must be one of none, not 'alpha'$"),
    "constant operand": (lambda g: _with_node(g, 0, inputs=("x", "x", "b")),
                         r"^node 'fc' \(Linear\): weight 'x' must be a constant$"),
    "output not produced": (lambda g: g.replace(outputs=("w",)),
                            r"^graph output 'w' must be produced by a node or be a graph input$"),
    "orphan tensor": (lambda g: g.replace(tensors=g.tensors + (Tensor("lost", (2,)),)),
                      r"^tensor 'lost' must be a graph input, a constant or a node's output$"),
    "constant input": (lambda g: g.replace(inputs=("w",)), r"^graph input 'w' must be an activation, not a constant$"),
    "writes an input": (lambda g: _with_node(g, 1, outputs=("x",)),
                        r"^node 'relu' \(ReLU\): output 'x' must not be a graph input or a constant$"),
    "no inputs": (lambda g: g.replace(inputs=()), r"^a graph must have at least one input$"),
    "unknown graph input": (lambda g: g.replace(inputs=("z",)), r"^graph input 'z' must be a tensor of the graph$"),
    "bad dimension": (lambda g: _with_tensor(g, "x", shape=(4, 0)),
                      r"^tensor 'x' must have a non-empty shape of positive sizes, not \(4, 0\)$"),
    "value shape": (lambda g: _with_tensor(g, "b", value=np.zeros(5)),
                    r"^constant 'b' must hold values of shape \(3,\), not \(5,\)$"),
    "distribution": (lambda g: g.replace(input_distributions=(InputDistribution("x", "cauchy"),)),
                     r"^distribution of 'x' must be one of uniform, normal, not 'cauchy'$"),
    "partial formats": (lambda g: _with_tensor(g, "x", fmt=QFmt(8, 3)),
                        r"^tensor 'w' must have a format: a quantized graph formats every tensor$"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_verify_rejects_malformed_graphs(case):
    verify(_mlp())
    mutate, message = MALFORMED[case]
    with pytest.raises(ValueError, match=message) as info:
        verify(mutate(_mlp()))
    assert "\n" not in str(info.value)


def test_verify_attribute_rules():
    graph = Graph("a", ("x",), ("y", "y.indices"), (Tensor("x", (2, 5)), Tensor("y", (2, 2)), Tensor("y.indices", (2, 2))),
                  (Node("top", "TopK", ("x",), ("y", "y.indices"), {"k": 2}),))
    verify(graph)
    with pytest.raises(ValueError, match=r"^node 'top' \(TopK\): attribute 'k' is required$"):
        verify(_with_node(graph, 0, attrs={}))
    with pytest.raises(ValueError, match=r"^node 'top' \(TopK\): attribute 'k' must be int, not '2'$"):
        verify(_with_node(graph, 0, attrs={"k": "2"}))
    with pytest.raises(ValueError, match=r"^node 'top' \(TopK\): k must be in 1..5, not 6$"):
        verify(_with_node(graph, 0, attrs={"k": 6}))


@pytest.fixture(scope="module")
def quantized():
    return run_passes(zoo.load_model("mlp-odd").graph, QuantConfig())


def test_verify_checks_quantized_formats(quantized):
    verify(quantized)
    fc1 = quantized.tensor("fc1.acc").fmt
    narrow = _with_tensor(quantized, "fc1.acc", fmt=QFmt(fc1.width - 1, fc1.int_bits - 1))
    with pytest.raises(ValueError, match=r"^node 'fc1' \(Linear\): accumulator format must hold every sum \(a 29-bit signed format\), not fixed<28,6>$"):
        verify(narrow)
    shifted = _with_tensor(quantized, "fc1.acc", fmt=QFmt(fc1.width, fc1.int_bits + 1))
    with pytest.raises(ValueError, match=r"^node 'fc1' \(Linear\): accumulator format must keep the products' 22 fraction bits exactly"):
        verify(shifted)
    with pytest.raises(ValueError, match=r"^node 'out' \(Add\): output format must be the exact sum format fixed<19,5>, not fixed<18,5>$"):
        verify(_with_tensor(quantized, "out.sum", fmt=QFmt(18, 5)))
    with pytest.raises(ValueError, match=r"^node 'relu1' \(ReLU\): output format must be the input's fixed<16,3,RND_CONV,SAT>, not fixed<16,2>$"):
        verify(_with_tensor(quantized, "relu1", fmt=QFmt(16, 2)))
    weight = quantized.tensor("fc1.weight")
    with pytest.raises(ValueError, match=r"^raw codes of 'fc1.weight' of fixed<8,-2,RND_CONV,SAT> must lie in -128..127, not 300$"):
        verify(_with_tensor(quantized, "fc1.weight", raw=np.full(weight.shape, 300)))
    with pytest.raises(ValueError, match=r"^constant 'fc1.weight' must carry raw codes in a quantized graph$"):
        verify(_with_tensor(quantized, "fc1.weight", raw=None))


ALL_OPS_SPEC = {
    "name": "every-op",
    "inputs": {"img": {"shape": [3, 8, 8]}, "x": {"shape": [6, 8]}},
    "layers": [
        {"name": "conv", "op": "Conv2d", "input": "img", "channels": 4, "kernel": 3, "stride": 2, "padding": 1},
        {"name": "ln", "op": "LayerNorm", "input": "x"},
        {"name": "q", "op": "Linear", "input": "ln", "features": 8},
        {"name": "k", "op": "MatMul", "input": "ln", "features": 8},
        {"name": "att", "op": "Attention", "inputs": ["q", "k", "ln"], "heads": 2},
        {"name": "g", "op": "GELU", "input": "att"},
        {"name": "gate", "op": "MoEGate", "input": "g", "experts": 4},
        {"name": "p", "op": "Softmax", "input": "gate"},
        {"name": "top", "op": "TopK", "input": "p", "k": 2},
        {"name": "moe", "op": "Expert", "inputs": ["g", "top", "top.indices"], "experts": 4, "hidden": 5},
        {"name": "res", "op": "Add", "inputs": ["moe", "x"]},
        {"name": "act", "op": "ReLU", "input": "res"},
        {"name": "clip", "op": "Clip", "input": "act", "min": 0.0, "max": 6.0},
        {"name": "rq", "op": "Requantize", "input": "clip"},
        {"name": "mp", "op": "MaxPool2d", "input": "conv", "kernel": 3, "stride": 2, "padding": 1},
        {"name": "bn", "op": "BatchNorm2d", "input": "conv"},
        {"name": "ap", "op": "AvgPool2d", "input": "conv", "kernel": [2, 2]},
        {"name": "gap", "op": "GlobalAvgPool", "input": "conv"},
        {"name": "flat", "op": "Flatten", "input": "gap"},
        {"name": "tok", "op": "Tokens", "input": "conv"},
        {"name": "cls", "op": "ClassToken", "input": "tok"},
        {"name": "pos", "op": "AddConstant", "input": "cls"},
        {"name": "row", "op": "SelectRow", "input": "pos", "index": 0},
    ],
    "outputs": ["rq", "conv", "mp", "ap", "flat", "row", "bn"],
}


def test_every_op_of_the_table_is_accepted_and_has_a_float_definition():
    model = parse_spec(ALL_OPS_SPEC)
    assert {n.op for n in model.graph.nodes} == set(OPS)
    verify(model.graph)
    values = golden.run_float(model.graph, golden.sample_inputs(model.graph, seed=0))
    assert values["conv"].shape == (4, 4, 4) and values["rq"].shape == (6, 8)
    assert np.isfinite(values["rq"]).all()
    conv = values["conv"]
    assert values["mp"].shape == (4, 2, 2) and values["mp"][:, 0, 0].tolist() == conv[:, :2, :2].max(axis=(1, 2)).tolist()
    assert values["ap"].shape == (4, 3, 3) and np.allclose(values["ap"][:, 1, 2], conv[:, 1:3, 2:4].mean(axis=(1, 2)))
    assert values["flat"].tolist() == conv.mean(axis=(1, 2)).tolist()
    mean, var, gamma, beta = (model.graph.tensor(f"bn.{n}").value for n in ("mean", "var", "gamma", "beta"))
    assert np.allclose(values["bn"][:, 2, 1], (conv[:, 2, 1] - mean) / np.sqrt(var + 1e-5) * gamma + beta)
    assert values["tok"].shape == (16, 4) and values["tok"][5].tolist() == conv[:, 1, 1].tolist()
    assert values["cls"][0].tolist() == model.graph.tensor("cls.token").value[0].tolist()
    assert values["row"].tolist() == values["pos"][0].tolist()


def test_graphs_are_immutable():
    graph = _mlp()
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.name = "other"
    with pytest.raises(ValueError, match="read-only"):
        graph.tensor("w").value[0, 0] = 1.0
    source = np.ones((6, 3))
    tensor = Tensor("w", (6, 3), value=source)
    source[0, 0] = 5.0  # the tensor holds its own copy
    assert tensor.value[0, 0] == 1.0
    assert isinstance(graph.nodes, tuple) and isinstance(graph.tensors, tuple)


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("which", ["float", "quantized", "every-op"])
def test_save_load_round_trips_byte_identically(tmp_path, quantized, which):
    graph = {"float": zoo.load_model("mlp-tiny").graph, "quantized": quantized,
             "every-op": parse_spec(ALL_OPS_SPEC).graph}[which]
    save_graph(graph, tmp_path / "a")
    loaded = verify(load_graph(tmp_path / "a"))
    save_graph(loaded, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert loaded == graph  # structure, shapes, formats
    for before, after in zip(graph.tensors, loaded.tensors):
        for field in ("value", "raw"):
            a, b = getattr(before, field), getattr(after, field)
            assert (a is None and b is None) or (np.array_equal(a, b) and a.dtype == b.dtype)
    with np.load(tmp_path / "a" / "graph.npz", allow_pickle=False) as data:
        assert data.files  # a plain .npz NumPy reads
