# SPDX-License-Identifier: Apache-2.0
"""The HLS core's CONV (docs/isa.md §3.9, the LINEAR engine gathering each row from a window's kernel rows),
C-simulated with g++, equals isa_sim byte for byte.

The convolution shapes of ``tests/test_conv.py`` (RGB pixels padded or packed, 8-channel pixels whose
kernel rows no lane count divides, rectangular kernels and strides, a CONV over a CONV's output, fused
constant residual, Add and ReLU) at the shipped geometries and 8×8/AXI64; vit-tiny (patch embedding,
class token, position embedding, two encoder blocks, final LayerNorm on the class token, head) at
16×16/AXI128, 8×8/AXI64, 16×8/AXI64 and 32×32/AXI128 with the attention engine; deit-tiny once at
16×16/AXI128 (about 13 s of C-simulation). MaxPool2d's pairwise-maximum CONVs (tests/test_conv.py's MAXPOOL_SPEC) at
the same geometries. A corrupted expected byte of the patch embedding fails the comparison. The CONV refusal cases are part of ``refusals.refusal_cases``,
which ``tests/test_accelerator_hls.py::test_refusal_table`` runs.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

from hwgen import golden, zoo
from hwgen.compiler import compile_graph
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.isa import Opcode
from hwgen.pipeline import build, run_passes
from hwgen.quant import QuantConfig

from test_accelerator_hls import assert_same_image, image_regions, run_and_compare
from test_attention_hls import GEOMETRIES as ATTENTION_GEOMETRIES
from test_conv import CONV_SPEC, MAXPOOL_SPEC

#: The shipped boards' geometries and 8×8/AXI64, without the attention engine (CONV is in every core).
GEOMETRIES = {name: dataclasses.replace(hw, acc_bits=32, has_attention=False) for name, hw in ATTENTION_GEOMETRIES.items()}


@pytest.mark.cosim
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("spec,convs", [(CONV_SPEC, 6), (MAXPOOL_SPEC, 13)], ids=["conv", "maxpool"])
def test_convolutions_csim_equal_isa_sim(name, spec, convs):
    hw = GEOMETRIES[name]
    model = parse_spec(spec)
    qgraph = run_passes(model.graph, QuantConfig.for_hw(hw))
    program, image = compile_graph(qgraph, hw)
    assert sum(d.opcode == Opcode.CONV for d in program.descriptors) == convs
    for seed, scale in ((1, 1.0), (2, 3.0)):
        data = image.write_all(golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=scale))).data
        run_and_compare(hw, program, data, image_regions(image))


@functools.cache
def vit_tiny(name: str):
    """vit-tiny's Program and seeded image for geometry ``name``, C-simulated and compared with isa_sim."""
    hw = ATTENTION_GEOMETRIES[name]
    result = build(zoo.load_model("vit-tiny"), hw)
    image = result.image.write_all(golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1)))
    after = run_and_compare(hw, result.program, image.data, image_regions(image))
    return result.program, image, after


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("name", ATTENTION_GEOMETRIES)
def test_vit_tiny_csim_equals_isa_sim(name):
    program, image, after = vit_tiny(name)
    assert program.descriptors[0].opcode == Opcode.CONV
    for region in ("patch", "cls", "pos", "cls_token", "head"):
        r = image.region(region)
        assert after[r.offset : r.offset + r.size] != image.data[r.offset : r.offset + r.size], region  # written


@pytest.mark.cosim
@pytest.mark.full_model
def test_corrupted_expected_patch_embedding_fails_the_comparison():
    _, image, after = vit_tiny("8x8-axi64")
    r = image.region("patch")
    want = bytearray(after)
    want[r.offset + 3 * r.row_stride + 2] ^= 0x08
    # "patch" comes first among the regions holding those bytes (tokens and cls view them too).
    with pytest.raises(AssertionError, match=r"^region (patch|tokens|cls): 1 byte\(s\) differ"):
        assert_same_image(after, bytes(want), image_regions(image))


@pytest.mark.cosim
@pytest.mark.full_model
def test_deit_tiny_csim_equals_isa_sim():
    hw = ATTENTION_GEOMETRIES["16x16-axi128"]
    result = build(zoo.load_model("deit-tiny"), hw)
    image = result.image.write_all(golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1)))
    run_and_compare(hw, result.program, image.data, image_regions(image))
