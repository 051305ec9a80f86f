# SPDX-License-Identifier: Apache-2.0
"""The HLS attention engine (QK_SOFTMAX_STATS, AV; docs/isa.md §3.8), C-simulated with g++, equals isa_sim.

vit-block (one DeiT-tiny encoder block: LayerNorm, Q/K/V projections, 3-head attention over 197
tokens, projection, residual, LayerNorm, GELU MLP, residual) compiled for hardware with the attention
engine runs in the HLS C-simulation and leaves the image isa_sim leaves, byte for byte, every region
(the scores and the row statistics scratch included), at 16×16/AXI128, 8×8/AXI64, 16×8/AXI64 and
32×32/AXI128 (the shipped boards' geometries with the engine and 48-bit accumulators); a corrupted
expected score, statistics or output byte fails the comparison; the attention refusal table of
``tests/refusals.py`` gives isa_sim's status, descriptors completed and image. (The RTL core's
engine: tests/test_attention_rtl.py.)
"""

from __future__ import annotations

import dataclasses
import functools

import pytest

from hwgen import golden, zoo
from hwgen.board import load_board
from hwgen.compiler import Refused, isa_sim
from hwgen.hls.accelerator import CONFIG_HEADER, accelerator_context, accelerator_sources
from hwgen.hwparams import HwParams
from hwgen.isa import OPCODE_AV, OPCODE_QK_SOFTMAX_STATS, Status
from hwgen.pipeline import build
from hwgen.rtl.accelerator import Accelerator

from refusals import attention_refusal_cases
from test_accelerator_hls import assert_same_image, csim, image_regions, run_and_compare


def shipped_attention_core(board: str) -> HwParams:
    """The core ``hwgen build --board BOARD`` gives a model with attention (``Board.core_for``)."""
    return load_board(board).core_for(zoo.load_model("vit-block").graph)


#: The shipped attention cores, by geometry: kv260 16×16/AXI128, pynq-z2 8×8/AXI64 and ultra96
#: 16×8/AXI128 (their attention_lanes), zcu102 32×32/AXI128; the same parameters as the builds', so
#: the same Verilator and g++ builds.
GEOMETRIES = {
    "16x16-axi128": shipped_attention_core("kv260"),
    "8x8-axi64": shipped_attention_core("pynq-z2"),
    "16x8-axi128": shipped_attention_core("ultra96"),
    "32x32-axi128": shipped_attention_core("zcu102"),
}


def compiled_vit_block(hw: HwParams):
    """vit-block's Program (one QK_SOFTMAX_STATS/AV pair) and seeded image for ``hw`` (the HLS and RTL benches')."""
    result = build(zoo.load_model("vit-block", seed=1), hw)
    inputs = golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1))
    image = result.image.write_all(inputs)
    opcodes = [d.opcode for d in result.program.descriptors]
    assert opcodes.count(OPCODE_QK_SOFTMAX_STATS) == opcodes.count(OPCODE_AV) == 1
    return result.program, image


@functools.cache
def vit_block(name: str):
    """vit-block's Program and seeded image for geometry ``name``, C-simulated and compared with isa_sim."""
    hw = GEOMETRIES[name]
    program, image = compiled_vit_block(hw)
    after = run_and_compare(hw, program, image.data, image_regions(image))
    return program, image, after


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("name", GEOMETRIES)
def test_vit_block_csim_equals_isa_sim(name):
    # run_and_compare: status OK after every descriptor, one array step per ideal cycle (attention's
    # heads·M·k_tiles·n_tiles included), and the whole image equal to isa_sim's.
    _, image, after = vit_block(name)
    for region in ("attn.scores", "attn.stats", "attn", "out"):
        r = image.region(region)
        assert after[r.offset : r.offset + r.size] != image.data[r.offset : r.offset + r.size], region  # written


@pytest.mark.cosim
@pytest.mark.full_model
def test_corrupted_expected_score_statistics_or_output_fails_the_comparison():
    program, image, after = vit_block("8x8-axi64")
    for region in ("attn.scores", "attn.stats", "attn", "out"):
        r = image.region(region)
        want = bytearray(after)
        want[r.offset + r.size // 2 - 1] ^= 0x04
        with pytest.raises(AssertionError, match=rf"^region {region}: 1 byte\(s\) differ"):
            assert_same_image(after, bytes(want), image_regions(image))


@pytest.mark.cosim
@pytest.mark.parametrize("name", GEOMETRIES)
def test_attention_refusal_table(name):
    # tests/refusals.py's attention table: the HLS core reports the table's status after the table's
    # number of descriptors, leaving the image isa_sim leaves. The case on the same geometry without
    # the engine (another g++ build) runs at 8x8-axi64 only.
    cases = [c for c in attention_refusal_cases(GEOMETRIES[name]) if c.hw.has_attention or name == "8x8-axi64"]
    assert {c.status for c in cases} >= {Status.OK, Status.BAD_DESCRIPTOR, Status.DOES_NOT_FIT, Status.MISALIGNED,
                                         Status.OUT_OF_BOUNDS}
    for case in cases:
        run = csim(case.hw).run(case.image)
        assert (run.status, run.executed) == (case.status, case.executed), case.name
        if case.status == Status.OK:
            want = isa_sim(case.image, case.image, case.hw).data
        else:
            with pytest.raises(Refused) as caught:
                isa_sim(case.image, case.image, case.hw)
            want = caught.value.data
        assert run.data == want, case.name


def test_the_config_says_whether_the_engine_exists():
    hw = GEOMETRIES["16x16-axi128"]
    assert accelerator_context(hw)["has_attention"]
    assert "static const bool has_attention = true;" in accelerator_sources(hw)[CONFIG_HEADER]
    for without in (dataclasses.replace(hw, has_attention=False), HwParams()):
        assert "static const bool has_attention = false;" in accelerator_sources(without)[CONFIG_HEADER]
    # 32-bit activations: no softmax unit, so no attention engine either (hwgen.units.attention_problem).
    rowless = HwParams(lanes_in=4, lanes_out=4, act_bits=32, acc_bits=48, has_attention=True)
    assert not accelerator_context(rowless)["has_attention"]
    with pytest.raises(ValueError, match="the attention engine needs the softmax unit's numerics"):
        Accelerator(rowless)  # the RTL generator refuses it too
