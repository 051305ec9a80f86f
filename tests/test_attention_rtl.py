# SPDX-License-Identifier: Apache-2.0
"""The RTL attention engine (QK_SOFTMAX_STATS, AV; docs/isa.md §3.8), in Verilator, equals isa_sim.

vit-block (one DeiT-tiny encoder block: LayerNorm, Q/K/V projections, 3-head attention over 197
tokens, projection, residual, LayerNorm, GELU MLP, residual) compiled for hardware with the attention
engine and 48-bit accumulators runs on the RTL core and leaves the image isa_sim leaves, byte for
byte, every region (the scores and the row statistics scratch included): at 8×8/AXI64 with random
stalls (0.3 on every AXI channel) and at 16×16/AXI128; a corrupted expected byte fails the bench. The
attention refusal table of ``tests/refusals.py`` gives isa_sim's status, descriptors completed and
image. At 16×16/AXI128 the QK_SOFTMAX_STATS and AV descriptors run alone, and their cycles are
printed beside ``hwgen.compiler.engines.attention.estimate`` and the array's ideal.
"""

from __future__ import annotations

import functools

import pytest
from amaranth.hdl import Fragment

from hwgen import toolchain
from hwgen.board import load_board
from hwgen.compiler import Program, isa_sim
from hwgen.cosim import tb_accelerator as tb
from hwgen.isa import OPCODE_AV, OPCODE_QK_SOFTMAX_STATS, Status
from hwgen.rtl.attention_engine import AttentionEngine, stats_units
from hwgen.rtl.controller import Controller

from refusals import attention_refusal_cases
from test_accelerator_rtl import _shared_refusal_runs, _signature_only
from test_attention_hls import GEOMETRIES as ATTENTION_CORES
from test_attention_hls import compiled_vit_block

#: The refusal tables run on the shipped attention cores at 8×8/AXI64 (pynq-z2's) and 16×16/AXI128 (kv260's) ...
GEOMETRIES = {name: ATTENTION_CORES[name] for name in ("8x8-axi64", "16x16-axi128")}
#: ... and vit-block on every shipped attention core (ultra96's 16×8/AXI128 and zcu102's 32×32/AXI128 too).
WHOLE_BLOCK = ATTENTION_CORES
STALLS = {"8x8-axi64": 0.3, "16x16-axi128": 0.0, "16x8-axi128": 0.3, "32x32-axi128": 0.3}


@functools.cache
def vit_block(name: str):
    """vit-block's Program and seeded image for geometry ``name``, and isa_sim's image after it."""
    hw = WHOLE_BLOCK[name]
    program, image = compiled_vit_block(hw)
    return program, image, isa_sim(program, image, hw).data


def _regions(image):
    """The regions the bench names mismatches in (a mismatch in the scratch is named by its image byte)."""
    return image.regions


def test_the_engine_is_built_only_with_has_attention():
    hw = GEOMETRIES["16x16-axi128"]
    assert AttentionEngine.problem(hw) is None and stats_units(hw) == 4 and stats_units(GEOMETRIES["8x8-axi64"]) == 1
    engines = {name for _, name, _ in Fragment.get(_signature_only(Controller(hw)), None).subfragments}
    assert {"LinearEngine", "AttentionEngine", "unit"} <= engines
    plain = load_board("ultra96").hw_params()
    assert AttentionEngine.problem(plain).startswith("this hardware has no attention engine")
    engines = {name for _, name, _ in Fragment.get(_signature_only(Controller(plain)), None).subfragments}
    assert "AttentionEngine" not in engines and "unit" in engines


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("name", WHOLE_BLOCK)
def test_vit_block_rtl_equals_isa_sim(tmp_path, name):
    """The whole image after the run equals isa_sim's (the bench compares every byte); status OK; a
    corrupted expected score, statistics or output byte fails the comparison."""
    hw = WHOLE_BLOCK[name]
    program, image, after = vit_block(name)
    runs = [tb.Run(image.data, after, _regions(image), label="vit-block", expect_done=len(program.descriptors))]
    results = tb.run_bench(tmp_path, hw, runs, stall_prob=STALLS[name])
    assert results[0]["status"] == 0 and results[0]["descriptors_done"] == len(program.descriptors)
    got = (tmp_path / "after0.bin").read_bytes()
    for region in ("attn.scores", "attn.stats", "attn", "out"):
        r = image.region(region)
        assert got[r.offset:r.offset + r.size] != image.data[r.offset:r.offset + r.size], region  # written
    if name == "8x8-axi64":
        r = image.region("attn.stats")
        want = bytearray(after)
        want[r.offset + r.size // 2 - 1] ^= 0x04
        with pytest.raises(toolchain.ToolError, match="mismatch"):
            tb.run_bench(tmp_path / "corrupted", hw, [tb.Run(image.data, bytes(want), _regions(image))],
                         stall_prob=STALLS[name])


@pytest.mark.cosim
@pytest.mark.parametrize("name", GEOMETRIES)
def test_attention_refusal_table(tmp_path, name):
    """tests/refusals.py's attention table: the RTL core reports the table's status after the table's number
    of descriptors, leaving the image isa_sim leaves (the case without the engine at 8x8 only)."""
    hw = GEOMETRIES[name]
    cases = [c for c in attention_refusal_cases(hw) if c.hw == hw]
    assert {c.status for c in cases} >= {Status.OK, Status.BAD_DESCRIPTOR, Status.DOES_NOT_FIT, Status.MISALIGNED,
                                         Status.OUT_OF_BOUNDS}
    runs = _shared_refusal_runs(hw, cases)
    results = tb.run_bench(tmp_path, hw, runs, stall_prob=STALLS[name])
    assert len(results) == len(runs)
    for result, run in zip(results, runs):
        assert (result["status"], result["descriptors_done"]) == (run.expect_status, run.expect_done), run.label
    if name == "8x8-axi64":  # the table's Program on the same geometry without the engine (another build)
        (case,) = [c for c in attention_refusal_cases(hw) if c.hw != hw]
        assert case.status == Status.BAD_OPCODE and not case.hw.has_attention
        (result,) = tb.run_bench(tmp_path / "without", case.hw, _shared_refusal_runs(case.hw, [case]), stall_prob=0.3)
        assert (result["status"], result["descriptors_done"]) == (Status.BAD_OPCODE, case.executed)


def attention_alone(name: str):
    """The QK_SOFTMAX_STATS and the AV descriptor of vit-block, each as a one-descriptor Program run on the
    image isa_sim leaves after the descriptors before it: ``[(label, program, image, expected, estimate)]``."""
    hw = GEOMETRIES[name]
    program, image, _ = vit_block(name)
    runs = []
    for opcode in (OPCODE_QK_SOFTMAX_STATS, OPCODE_AV):
        index = next(i for i, d in enumerate(program.descriptors) if d.opcode == opcode)
        before = Program(program.fingerprint, program.image_bytes, program.descriptors[:index])
        state = isa_sim(before, image, hw).data if index else image.data
        alone = Program(program.fingerprint, program.image_bytes, (program.descriptors[index],))
        encoded = alone.to_bytes()
        start = image.with_data(encoded + state[len(encoded):])
        reference = isa_sim(alone, start, hw)
        (estimate,) = reference.cycles
        runs.append((opcode.name, alone, start, reference, estimate))
    return runs


@pytest.mark.cosim
@pytest.mark.full_model
def test_attention_cycles_at_16x16(tmp_path):
    """QK_SOFTMAX_STATS and AV of vit-block alone at 16×16/AXI128 (64-cycle read latency, no stalls): each
    equals isa_sim and every tile is issued once; prints Verilator's cycles beside §5's estimate and the ideal."""
    hw = GEOMETRIES["16x16-axi128"]
    cases = attention_alone("16x16-axi128")
    runs = [tb.Run(start.data, reference.data, _regions(start), label=label, expect_done=1)
            for label, _, start, reference, _ in cases]
    results = tb.run_bench(tmp_path, hw, runs)
    for (label, _, _, reference, estimate), result in zip(cases, results):
        assert result["status"] == 0 and result["descriptors_done"] == 1
        assert result["cycles"] - result["stalls"] == estimate.ideal
        print(f"{label}: {result['cycles']} cycles measured, {reference.total_cycles} estimated "
              f"({(reference.total_cycles - result['cycles']) / result['cycles']:+.1%}), ideal {estimate.ideal} "
              f"({estimate.ideal / result['cycles']:.1%} of the array)")
