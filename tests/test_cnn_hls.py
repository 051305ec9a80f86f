# SPDX-License-Identifier: Apache-2.0
"""The HLS core runs the CNN zoo models (docs/isa.md §3.9: padded convolutions reading zero-bordered feature
maps, writing and reading the interiors of bordered maps through out_skip/res_skip; grouped convolutions as
block-diagonal weights; the global average pool as a B_ROWMAJOR LINEAR), C-simulated with g++, byte for byte
as isa_sim: resnet8 and mobilenet-block at 8×8/AXI64, 16×8/AXI64 (pynq-z2's core for a CNN) and
16×16/AXI128; hybrid (conv stages, then attention blocks on the last map's pixels) on the attention cores
at 8×8/AXI64 and 16×16/AXI128. The CONV refusal cases of the skips are in ``refusals.refusal_cases``, which
``tests/test_accelerator_hls.py::test_refusal_table`` runs.
"""

from __future__ import annotations

import pytest

from hwgen import golden, zoo
from hwgen.board import load_board
from hwgen.isa import Opcode
from hwgen.pipeline import build

from test_accelerator_hls import image_regions, run_and_compare
from test_conv_hls import GEOMETRIES as CONV_GEOMETRIES

#: The geometries of the issue: the CONV tests' 8×8/AXI64 and 16×16/AXI128 cores (the same g++ builds) and
#: pynq-z2's core for a CNN (16×8/AXI64).
GEOMETRIES = {
    "8x8-axi64": CONV_GEOMETRIES["8x8-axi64"],
    "16x8-axi64": load_board("pynq-z2").core_for(zoo.load_model("resnet8").graph),
    "16x16-axi128": CONV_GEOMETRIES["16x16-axi128"],
}


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("model", ["resnet8", "mobilenet-block"])
@pytest.mark.parametrize("name", GEOMETRIES)
def test_cnn_csim_equals_isa_sim(model, name):
    hw = GEOMETRIES[name]
    result = build(zoo.load_model(model), hw)
    skips = [d for d in result.program.descriptors if d.opcode == Opcode.CONV and (d.out_skip or d.res_skip)]
    assert skips, "the model writes or reads a bordered feature map"
    image = result.image.write_all(golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1)))
    run_and_compare(hw, result.program, image.data, image_regions(image))


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("name", ["8x8-axi64", "16x16-axi128"])
def test_hybrid_csim_equals_isa_sim(name):
    """hybrid's conv stages hand their last map over as tokens to the attention blocks, on the attention cores."""
    from test_attention_hls import GEOMETRIES as ATTENTION_GEOMETRIES

    hw = ATTENTION_GEOMETRIES[name]
    result = build(zoo.load_model("hybrid"), hw)
    image = result.image.write_all(golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1)))
    run_and_compare(hw, result.program, image.data, image_regions(image))
