# SPDX-License-Identifier: Apache-2.0
"""GELU, LayerNorm and Softmax through the flow: quantizer, golden model, compiler and isa_sim.

The units are generated for fixed formats (``HwParams.unit_formats()``), so the quantizer must give
their tensors exactly those formats (inserting a Requantize where the input comes from an op whose
format cannot be chosen) and the compiler must refuse graphs quantized for other formats. The zoo
models ``vit-mlp-block`` and ``softmax-rows`` run in isa_sim equal to golden, bit for bit, at three
lane shapes and several seeds, and stay close to the float model.
"""

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import Flag, compile_graph, isa_sim
from hwgen.isa import OPCODE_LAYERNORM, OPCODE_SOFTMAX, RowDescriptor
from hwgen.frontend import parse_spec
from hwgen.golden import nonlinear
from hwgen.golden import nonlinear_float as nf
from hwgen.hwparams import HwParams
from hwgen.pipeline import build, run_passes
from hwgen.qfx import QFmt
from hwgen.quant import QuantConfig

from test_isa_sim import _check_against_golden

LANES = [(8, 8), (16, 16), (8, 32)]


def _quantized(model, hw, seed=0, **changes):
    return run_passes(model.graph, QuantConfig.for_hw(hw, seed=seed, formats=model.formats, **changes))


@pytest.mark.parametrize("model_name", ["vit-mlp-block", "softmax-rows"])
def test_unit_models_isa_sim_equals_golden(model_name):
    for seed in range(3):
        model = zoo.load_model(model_name, seed=seed)
        qgraph = _quantized(model, HwParams(), seed)
        scale = 3.0 if seed == 2 else 1.0  # seed 2 drives saturation of every unit's input
        inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=700 + seed, scale=scale))
        for lanes_in, lanes_out in LANES:
            _check_against_golden(qgraph, HwParams(lanes_in=lanes_in, lanes_out=lanes_out), inputs)


def test_vit_mlp_block_compiles_to_three_descriptors_with_gelu_fused():
    result = build(zoo.load_model("vit-mlp-block"), HwParams())
    descriptors = result.program.descriptors
    assert [type(d).__name__ for d in descriptors] == ["RowDescriptor", "LinearDescriptor", "LinearDescriptor"]
    assert descriptors[0].opcode == OPCODE_LAYERNORM and (descriptors[0].m, descriptors[0].n) == (129, 192)
    assert descriptors[1].flags & Flag.GELU and not descriptors[1].flags & Flag.RELU1
    assert descriptors[2].flags & Flag.RESIDUAL
    # ε = 1e-6 on the 2^-20 grid of x² (fixed<16,6>: 10 fraction bits), times N².
    assert descriptors[0].d_offset == 192 * 192 * round(1e-6 * 2**20)
    kinds = {r.name: r.kind for r in result.image.regions}
    assert kinds["ln.gamma"] == kinds["ln.beta"] == "params"
    assert "#0   LAYERNORM M=129 N=192  ; ln\n" in result.program.listing(result.image.labels)


def test_softmax_rows_compiles_to_a_softmax_descriptor():
    result = build(zoo.load_model("softmax-rows"), HwParams())
    softmax = result.program.descriptors[-1]
    assert isinstance(softmax, RowDescriptor) and softmax.opcode == OPCODE_SOFTMAX
    assert (softmax.m, softmax.n, softmax.gamma_addr, softmax.beta_addr, softmax.d_offset) == (129, 129, 0, 0, 0)
    assert result.qgraph.tensor("probs").fmt == QFmt.parse("ufixed<16,1,RND_CONV,SAT>")


@pytest.mark.parametrize("model_name, tensor, floor_db", [("vit-mlp-block", "out", 45.0), ("softmax-rows", "probs", 40.0)])
def test_unit_models_stay_close_to_float(model_name, tensor, floor_db):
    qgraph = _quantized(zoo.load_model(model_name), HwParams())
    x = golden.sample_inputs(qgraph, seed=11)
    raw = golden.run(qgraph, golden.quantize_inputs(qgraph, x))
    rows = {r.name: r for r in golden.accuracy_report(qgraph, golden.run_float(qgraph, x), raw)}
    assert rows[tensor].sqnr_db >= floor_db


def test_softmax_rows_probabilities_sum_to_one():
    qgraph = _quantized(zoo.load_model("softmax-rows"), HwParams())
    raw = golden.run(qgraph, golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=5)))
    sums = qgraph.tensor("probs").fmt.to_float(raw["probs"]).sum(axis=-1)
    assert np.abs(sums - 1).max() < 129 * 2.0**-15  # each probability within one LSB
    assert raw["probs"].max() > 0.5 * 2**15  # peaked rows, not a near-uniform smear


def _spec(layers, outputs, inputs=None, formats=None):
    spec = {"name": "units", "inputs": inputs or {"x": {"shape": [6, 24]}}, "layers": layers, "outputs": outputs}
    if formats:
        spec["formats"] = formats
    return parse_spec(spec)


def test_quantizer_gives_unit_tensors_the_hardware_formats():
    hw = HwParams(gelu_int_bits=4, layernorm_int_bits=5, layernorm_out_int_bits=3, softmax_int_bits=7)
    model = _spec(
        [{"name": "n", "op": "LayerNorm", "input": "x"}, {"name": "g", "op": "GELU", "input": "n"},
         {"name": "s", "op": "Softmax", "input": "g"}],
        ["s"],
    )
    qgraph = _quantized(model, hw)
    units = hw.unit_formats()
    fmt = {t.name: t.fmt for t in qgraph.tensors}
    assert fmt["x"] == units.layernorm_in and fmt["n"] == units.layernorm_out
    assert fmt["n.gamma"] == fmt["n.beta"] == units.layernorm_param
    # n and g are unit outputs: a Requantize casts each into the next unit's input format.
    assert fmt["n.to_g"] == units.gelu and fmt["g"] == units.gelu
    assert fmt["g.to_s"] == units.softmax_in and fmt["s"] == units.softmax_out
    program, _ = compile_graph(qgraph, hw)
    assert [getattr(d, "opcode", 1) for d in program.descriptors] == [OPCODE_LAYERNORM, 1, 1, OPCODE_SOFTMAX]
    assert program.descriptors[1].flags & Flag.GELU and program.descriptors[1].flags & Flag.BYPASS
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=2, scale=2.0))
    _check_against_golden(qgraph, hw, inputs)


def test_quantizer_refuses_formats_the_units_cannot_take():
    gelu = _spec([{"name": "g", "op": "GELU", "input": "x"}], ["g"], formats={"x": "fixed<16,3>"})
    with pytest.raises(ValueError, match=r"^format of 'x' must be fixed<16,5,RND_CONV,SAT> \(the input format of the unit"
                                         r" reading it\), not fixed<16,3>$"):
        _quantized(gelu, HwParams())
    both = _spec([{"name": "g", "op": "GELU", "input": "x"}, {"name": "s", "op": "Softmax", "input": "x"}], ["g", "s"])
    with pytest.raises(ValueError, match=r"^format of 'x' must be one unit input format, not both .* and .*$"):
        _quantized(both, HwParams())
    axis = _spec([{"name": "s", "op": "Softmax", "input": "x", "axis": 0}], ["s"])
    with pytest.raises(ValueError, match=r"^Softmax 's' must be along the last axis, not axis 0$"):
        _quantized(axis, HwParams())
    model = _spec([{"name": "n", "op": "LayerNorm", "input": "x"}], ["n"])
    graph = model.graph
    big = next(t for t in graph.tensors if t.name == "n.gamma").replace(value=np.full(24, 40.0))
    graph = graph.replace(tensors=tuple(big if t.name == "n.gamma" else t for t in graph.tensors))
    with pytest.raises(ValueError, match=r"^'n.gamma' of LayerNorm 'n' must fit the unit's fixed<16,4,RND_CONV,SAT>"
                                         r" \(\|value\| ≤ 7.99976\), not reach 40$"):
        run_passes(graph, QuantConfig.for_hw(HwParams()))


def test_compiler_refuses_graphs_quantized_for_other_units_and_long_rows():
    model = _spec([{"name": "g", "op": "GELU", "input": "x"}], ["g"])
    qgraph = _quantized(model, HwParams())
    with pytest.raises(ValueError, match=r"^input 'x' of GELU 'g' must have the hardware's format fixed<16,4,RND_CONV,SAT>"
                                         r" \(HwParams.gelu_int_bits\), not fixed<16,5,RND_CONV,SAT>$"):
        compile_graph(qgraph, HwParams(gelu_int_bits=4))
    wide = _spec([{"name": "s", "op": "Softmax", "input": "x"}], ["s"], inputs={"x": {"shape": [2, 1025]}})
    with pytest.raises(ValueError, match=r"^rows of Softmax 's' must have at most 1024 elements, not 1025$"):
        compile_graph(_quantized(wide, HwParams()), HwParams())


def test_layernorm_descriptor_carries_epsilon():
    hw = HwParams()
    x = np.full((3, 16), 700, dtype=np.int64)  # constant rows: D = d_offset alone, so ε decides the output
    results = []
    for eps in (1e-2, 1e-4):
        model = _spec([{"name": "n", "op": "LayerNorm", "input": "x", "eps": eps}], ["n"], inputs={"x": {"shape": [3, 16]}})
        qgraph = _quantized(model, hw)
        program, image = compile_graph(qgraph, hw)
        assert program.descriptors[0].d_offset == 16 * 16 * round(eps * 2**20)
        _check_against_golden(qgraph, hw, {"x": x})
        results.append(golden.run(qgraph, {"x": x})["n"])
    # A constant row normalizes to β whatever ε is: the test checks the path, the values must agree.
    assert np.array_equal(results[0], results[1])


def test_hardware_without_row_units_refuses_layernorm_and_softmax():
    hw = HwParams(lanes_in=4, lanes_out=4, act_bits=32, acc_bits=48, weight_bits=16)
    model = _spec([{"name": "n", "op": "LayerNorm", "input": "x"}], ["n"])
    qgraph = _quantized(model, hw)
    with pytest.raises(ValueError, match=r"^LayerNorm 'n' needs the LayerNorm unit, which this hardware does not have:"
                                         r" 32-bit activations leave no room for their internal precision \(.*\)$"):
        compile_graph(qgraph, hw)
    program, image = compile_graph(_quantized(model, HwParams()), HwParams())
    wide = type(program)(hw.fingerprint(), program.image_bytes, program.descriptors)
    with pytest.raises(ValueError, match=r"^descriptor 0: LAYERNORM needs the row unit, which this hardware does not have"):
        isa_sim(wide, image, hw)
    # GELU lanes exist at every width.
    gelu = _quantized(_spec([{"name": "g", "op": "GELU", "input": "x"}], ["g"]), hw)
    inputs = golden.quantize_inputs(gelu, golden.sample_inputs(gelu, seed=4, scale=4.0))
    _check_against_golden(gelu, hw, inputs)


@pytest.mark.parametrize("act_bits, gelu_int_bits, kind", [(8, 5, "GeluTableConfig"), (16, 5, "GeluTableConfig"),
                                                           (16, 1, "GeluPolyConfig"), (32, 5, "GeluPolyConfig")])
def test_hardware_gelu_is_within_one_lsb_of_float(act_bits, gelu_int_bits, kind):
    """Edge-MoE's table where it is good to an LSB (≤ 13 fraction bits), piecewise quadratics beyond."""
    lanes = 16 // (act_bits // 8) if act_bits < 32 else 4
    hw = HwParams(lanes_in=lanes, lanes_out=lanes, act_bits=act_bits, gelu_int_bits=gelu_int_bits)
    cfg = hw.unit_formats().gelu_config()
    assert type(cfg).__name__ == kind
    fmt = cfg.in_fmt
    if act_bits <= 16:
        x = np.arange(fmt.min_raw, fmt.max_raw + 1)
    else:
        x = np.random.default_rng(3).integers(fmt.min_raw, fmt.max_raw, 100_000, endpoint=True)
    want = nf.correctly_rounded(cfg.out_fmt, nf.gelu(fmt.to_float(x)))
    assert np.abs(nonlinear.gelu(cfg, x) - want).max() <= 1
