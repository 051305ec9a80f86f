# SPDX-License-Identifier: Apache-2.0
"""Model specs: the zoo, .npz and seeded weights, and one-line errors for every kind of bad spec."""

import copy

import numpy as np
import pytest
import yaml

from hwgen import cli, zoo
from hwgen.frontend import load_spec, parse_spec

BASE = {
    "name": "m",
    "inputs": {"x": {"shape": [5, 6]}},
    "layers": [
        {"name": "fc", "op": "Linear", "input": "x", "features": 4},
        {"name": "act", "op": "ReLU", "input": "fc"},
    ],
    "outputs": ["act"],
}


def _spec(**changes):
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


def _layers(*extra):
    return BASE["layers"] + list(extra)


BAD_SPECS = {
    "unknown op": (_spec(layers=_layers({"name": "s", "op": "Sigmoid", "input": "act"})),
                   r"^spec: layer 3 \(s\): op must be one of Linear, MatMul, Add, .*, not 'Sigmoid'$"),
    "bad shape": (_spec(inputs={"x": {"shape": [5, -6]}}),
                  r"^spec: input 'x': shape must be a non-empty list of positive integers, not \[5, -6\]$"),
    "shape mismatch": (_spec(layers=_layers({"name": "s", "op": "Add", "inputs": ["act", "x"]})),
                       r"^spec: layer 3 \(s\): inputs must have the same shape, not \(5, 4\) and \(5, 6\)$"),
    "unknown key": (_spec(layers=[{"name": "fc", "op": "Linear", "input": "x", "featurs": 4}]),
                    r"^spec: layer 1 \(fc\): Linear layer key must be one of name, op, input, inputs, features, bias, not 'featurs'$"),
    "missing features": (_spec(layers=[{"name": "fc", "op": "Linear", "input": "x"}]),
                         r"^spec: layer 1 \(fc\): features must be a positive integer, not None$"),
    "unknown input": (_spec(layers=[{"name": "fc", "op": "Linear", "input": "y", "features": 4}]),
                      r"^spec: layer 1 \(fc\): input 'y' must name a model input or an earlier layer$"),
    "duplicate name": (_spec(layers=_layers({"name": "fc", "op": "ReLU", "input": "act"})),
                       r"^spec: layer 3 \(fc\): name 'fc' is already used by another input, layer or weight$"),
    "wrong arity": (_spec(layers=_layers({"name": "s", "op": "Add", "input": "act"})),
                    r"^spec: layer 3 \(s\): Add takes 2 inputs, not 1$"),
    "missing attribute": (_spec(layers=_layers({"name": "t", "op": "TopK", "input": "act"})),
                          r"^spec: layer 3 \(t\): attribute 'k' is required$"),
    "bad output": (_spec(outputs=["nothing"]), r"^spec: output 'nothing' must name a model input or a layer$"),
    "missing key": ({"name": "m", "inputs": BASE["inputs"], "outputs": ["x"]}, r"^spec: key 'layers' is required$"),
    "top-level key": (_spec(model="x"), r"^spec: top-level key must be one of name, description, seed, weights, inputs, layers, outputs, formats, not 'model'$"),
    "bad format": (_spec(formats={"fc": "fixd<8,3>"}),
                   r"^spec: formats: fc: format must look like fixed<W,I\[,Q\[,O\]\]>, ufixed<…>, int<N> or uint<N>, not 'fixd<8,3>'$"),
    "format of unknown tensor": (_spec(formats={"nope": "fixed<8,3>"}),
                                 r"^spec: formats: tensor name must be an input, layer or weight of the model, not 'nope'$"),
    "bad distribution": (_spec(inputs={"x": {"shape": [5, 6], "distribution": "cauchy"}}),
                         r"^spec: input 'x': distribution must be one of uniform, normal, not 'cauchy'$"),
    "not a mapping": ([1, 2], r"^spec: a model spec must be a mapping, not list$"),
    "negative seed": (_spec(seed=-1), r"^spec: seed must be a non-negative integer, not -1$"),
    "conv kernel": (_spec(inputs={"img": {"shape": [3, 8, 8]}}, outputs=["c"],
                          layers=[{"name": "c", "op": "Conv2d", "input": "img", "channels": 4}]),
                    r"^spec: layer 1 \(c\): kernel must be a positive integer or a list of two, not None$"),
    "conv stride": (_spec(inputs={"img": {"shape": [3, 8, 8]}}, outputs=["c"],
                          layers=[{"name": "c", "op": "Conv2d", "input": "img", "channels": 4, "kernel": 3, "stride": 0}]),
                    r"^spec: layer 1 \(c\): stride must be an integer ≥ 1 or a pair of them, not 0$"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_give_one_line_errors(case):
    spec, message = BAD_SPECS[case]
    with pytest.raises(ValueError, match=message) as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


def _write(tmp_path, spec, arrays=None):
    path = tmp_path / "model.yaml"
    if arrays is not None:
        np.savez(tmp_path / "w.npz", **arrays)
        spec = {**spec, "weights": "w.npz"}
    path.write_text(yaml.safe_dump(spec))
    return path


def _good_arrays():
    rng = np.random.default_rng(5)
    return {"fc.weight": rng.normal(size=(6, 4)), "fc.bias": rng.normal(size=4).astype(np.float32)}


def test_weights_come_from_an_npz_next_to_the_spec(tmp_path):
    arrays = _good_arrays()
    model = load_spec(_write(tmp_path, BASE, arrays))
    assert np.array_equal(model.graph.tensor("fc.weight").value, arrays["fc.weight"])
    assert np.array_equal(model.graph.tensor("fc.bias").value, arrays["fc.bias"].astype(np.float64))
    assert model.graph.tensor("fc.bias").value.dtype == np.float64


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.pop("fc.bias"), r"^model.yaml: layer 1 \(fc\): weight 'fc.bias' is missing from w.npz$"),
        (lambda a: a.update({"fc.weight": np.ones((6, 4), dtype=np.int32)}),
         r"^model.yaml: layer 1 \(fc\): weight 'fc.weight' must be a float array, not int32$"),
        (lambda a: a.update({"fc.weight": np.ones((4, 6))}),
         r"^model.yaml: layer 1 \(fc\): weight 'fc.weight' must have shape \(6, 4\), not \(4, 6\)$"),
        (lambda a: a.update({"fc.weight": np.full((6, 4), np.nan)}),
         r"^model.yaml: layer 1 \(fc\): weight 'fc.weight' must be finite, not contain NaN or infinity$"),
        (lambda a: a.update({"extra": np.ones(3)}),
         r"^model.yaml: weights file 'w.npz' must hold only the model's weights, not extra$"),
    ],
    ids=["missing", "dtype", "shape", "nan", "extra"],
)
def test_bad_weight_files_give_one_line_errors(tmp_path, edit, message):
    arrays = _good_arrays()
    edit(arrays)
    with pytest.raises(ValueError, match=message):
        load_spec(_write(tmp_path, BASE, arrays))


def test_file_level_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^model spec must be an existing YAML file, not '.*missing.yaml'$"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match=r"^bad.yaml: not valid YAML: ") as info:
        load_spec(tmp_path / "bad.yaml")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"^model.yaml: weights file 'gone.npz' does not exist$"):
        load_spec(_write(tmp_path, {**BASE, "weights": "gone.npz"}))


def test_random_weights_are_seeded_per_tensor():
    a = parse_spec(BASE).graph
    b = parse_spec(BASE).graph
    c = parse_spec(BASE, seed=1).graph
    grown = parse_spec(_spec(layers=_layers({"name": "fc2", "op": "Linear", "input": "act", "features": 3}))).graph
    assert np.array_equal(a.tensor("fc.weight").value, b.tensor("fc.weight").value)
    assert not np.array_equal(a.tensor("fc.weight").value, c.tensor("fc.weight").value)
    # Adding a layer leaves the other layers' weights alone.
    assert np.array_equal(a.tensor("fc.weight").value, grown.tensor("fc.weight").value)
    bound = 1 / np.sqrt(6)
    assert np.abs(a.tensor("fc.weight").value).max() <= bound


def test_zoo_models_and_user_paths(tmp_path):
    assert {"mlp-tiny", "mlp-odd"} <= set(zoo.names())
    tiny = zoo.load_model("mlp-tiny")
    shapes = {t.name: t.shape for t in tiny.graph.tensors}
    assert shapes["x"] == (64, 192) and shapes["fc1.weight"] == (192, 768) and shapes["fc2.weight"] == (768, 192)
    assert [n.op for n in tiny.graph.nodes] == ["Linear", "ReLU", "Linear", "Add"]
    assert zoo.macs(tiny) == 64 * 192 * 768 + 64 * 768 * 192
    odd = zoo.load_model("mlp-odd")
    assert {t.name: t.shape for t in odd.graph.tensors}["fc1.weight"] == (100, 37)
    assert all(d % 16 for d in (50, 100, 37))
    path = _write(tmp_path, BASE)
    assert zoo.load_model(str(path)).graph == parse_spec(BASE).graph
    with pytest.raises(ValueError, match=r"^model must be a zoo name \(.*mlp-tiny.*\), a YAML spec path or an \.onnx file, not 'vit'$"):
        zoo.load_model("vit")


def test_cli_models_lists_the_zoo_and_user_specs(tmp_path, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mlp-tiny" in out and "x 64x192" in out and "18,874,368" in out and "mlp-odd" in out
    assert cli.main(["models", str(_write(tmp_path, BASE))]) == 0
    assert "m      x 5x6   120" in capsys.readouterr().out
    assert cli.main(["models", "nope"]) == 2
    assert capsys.readouterr().err.startswith("hwgen: error: model must be a zoo name")
