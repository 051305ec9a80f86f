# SPDX-License-Identifier: Apache-2.0
"""Attention (docs/isa.md §3.8): golden model, the QK_SOFTMAX_STATS/AV pair in isa_sim, cycles, refusals.

vit-block (one DeiT-tiny encoder block) compiled for hardware with the attention engine runs in
isa_sim bit-exactly equal to the golden model at five array sizes; the golden model is within the
accuracy target of the float reference; corrupted scores, statistics or weights are noticed.
Hardware without the engine (every shipped core) refuses the opcodes and the layer.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import CycleModel, Refused, compile_graph, isa_sim
from hwgen.compiler.engines import attention as engine
from hwgen.golden import attention as ga
from hwgen.golden.exact import attention_formats
from hwgen.hwparams import HwParams
from hwgen.isa import (
    ATTENTION_FIELDS, OPCODE_AV, OPCODE_QK_SOFTMAX_STATS, AttentionDescriptor, Program, Status, check_descriptor,
    decode_descriptor, pack, unpack,
)
from hwgen.pipeline import build, run_passes
from hwgen.quant import QuantConfig

LANES = [(8, 8), (16, 8), (16, 16), (32, 16), (32, 32)]


def attention_hw(lanes_in: int = 16, lanes_out: int = 16, **changes) -> HwParams:
    return HwParams(lanes_in=lanes_in, lanes_out=lanes_out, acc_bits=48, has_attention=True, **changes)


@pytest.fixture(scope="module")
def vit():
    """vit-block quantized for 48-bit accumulators, one seeded input and its golden values."""
    hw = attention_hw()
    qgraph = run_passes(zoo.load_model("vit-block").graph, QuantConfig.for_hw(hw))
    floats = golden.sample_inputs(qgraph, seed=3)
    raw = golden.quantize_inputs(qgraph, floats)
    start = time.perf_counter()
    values = golden.run(qgraph, raw)
    elapsed = time.perf_counter() - start
    return qgraph, floats, raw, values, elapsed


def _sqnr(reference: np.ndarray, approx: np.ndarray) -> float:
    return 10 * math.log10(float((reference**2).sum()) / float(((reference - approx) ** 2).sum()))


def test_score_scale():
    assert ga.score_scale(64) == (1, 3) and ga.score_scale(16) == (1, 2) and ga.score_scale(1) == (1, 0)
    for d in (2, 8, 32, 48, 96):
        mul, frac = ga.score_scale(d)
        assert 1 << (ga.SCALE_BITS - 1) <= mul <= 1 << ga.SCALE_BITS
        assert abs(mul / 2**frac * math.sqrt(d) - 1) < 2.0**-ga.SCALE_BITS


def test_golden_is_fast_and_accurate(vit):
    qgraph, floats, raw, values, elapsed = vit
    assert elapsed < 5.0, f"golden of vit-block took {elapsed:.2f} s"
    reference = golden.run_float(qgraph, floats)
    for name, target in (("attn", 30.0), ("out", 30.0)):
        approx = values[name] * qgraph.tensor(name).fmt.lsb
        assert _sqnr(reference[name], approx) >= target, name


def test_probabilities_within_one_lsb_of_float_softmax_of_the_scores(vit):
    """The fused normalization is the softmax unit's: within one LSB of float on 197-long rows."""
    qgraph, _, raw, values, _ = vit
    node = next(n for n in qgraph.nodes if n.op == "Attention")
    q, k, v = (values[name] for name in node.inputs)
    f = attention_formats(node, [qgraph.tensor(n).fmt for n in node.inputs], qgraph.tensor("attn").fmt,
                          q.shape[1], k.shape[0])
    parts = ga.attention_parts(f, q, k, v)
    assert np.array_equal(parts["out"], values["attn"])
    s = parts["scores"] * f.score.lsb
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    exact = e / e.sum(axis=-1, keepdims=True)
    assert parts["scores"].shape == (3, 197, 197)
    assert np.abs(parts["p"] * f.prob.lsb - exact).max() <= f.prob.lsb


@pytest.mark.parametrize("lanes", LANES, ids=lambda lanes: f"{lanes[0]}x{lanes[1]}")
def test_vit_block_isa_sim_equals_golden(vit, lanes):
    qgraph, _, raw, values, _ = vit
    hw = attention_hw(*lanes)
    program, image = compile_graph(qgraph, hw)
    opcodes = [d.opcode for d in program.descriptors]
    assert opcodes.count(OPCODE_QK_SOFTMAX_STATS) == 1 and opcodes.count(OPCODE_AV) == 1
    result = isa_sim(program, image.write_all(raw), hw)
    after = image.with_data(result.data)
    for region in image.regions:
        if region.kind.holds_tensor:
            assert np.array_equal(after.read(region.name), values[region.name]), region.name


def _run_split(program: Program, image: bytes, hw: HwParams, split: int, corrupt) -> bytes:
    """Run descriptors ``[:split]``, apply ``corrupt`` to the image, then run the rest."""
    first = isa_sim(Program(program.fingerprint, program.image_bytes, program.descriptors[:split]), image, hw)
    memory = bytearray(first.data)
    corrupt(memory)
    rest = Program(program.fingerprint, program.image_bytes, program.descriptors[split:])
    return isa_sim(rest, bytes(memory), hw).data


def test_corrupted_scores_stats_or_weights_fail_the_comparison(vit):
    qgraph, _, raw, values, _ = vit
    hw = attention_hw()
    program, image = compile_graph(qgraph, hw)
    start = image.write_all(raw).data
    av_index = [d.opcode for d in program.descriptors].index(OPCODE_AV)
    scores, stats = image.region("attn.scores"), image.region("attn.stats")

    def output(data: bytes) -> np.ndarray:
        return image.with_data(data).read("attn")

    assert np.array_equal(output(_run_split(program, start, hw, av_index, lambda m: None)), values["attn"])
    row = 5 * scores.row_stride  # head 0, query 5
    top = int.from_bytes(_run_split(program, start, hw, av_index, lambda m: None)[stats.offset + 40:
                                                                                 stats.offset + 42], "little")
    assert top  # the max of row 5
    cases = {
        "score": lambda m: m.__setitem__(scores.offset + row + 2 * 7 + 1, m[scores.offset + row + 2 * 7 + 1] ^ 0x10),
        "stat max": lambda m: m.__setitem__(stats.offset + 40, m[stats.offset + 40] ^ 0x40),
        "stat inv": lambda m: m.__setitem__(stats.offset + 45, m[stats.offset + 45] ^ 0x08),
    }
    for name, corrupt in cases.items():
        got = output(_run_split(program, start, hw, av_index, corrupt))
        assert not np.array_equal(got, values["attn"]), name
    weights = next(r for r in image.regions if r.kind == "weights")
    memory = bytearray(start)
    memory[weights.offset + 3] ^= 0x21
    got = image.with_data(isa_sim(program, bytes(memory), hw).data).read("out")
    assert not np.array_equal(got, values["out"])


def test_attention_cycles_at_16x16_use_the_full_array(vit):
    qgraph, _, _, _, _ = vit
    hw = attention_hw()
    program, _ = compile_graph(qgraph, hw)
    pair = [d for d in program.descriptors if isinstance(d, AttentionDescriptor)]
    macs = 3 * 197 * 197 * 64
    for desc in pair:
        estimate = engine.estimate(desc, hw, CycleModel())
        assert estimate.ideal == 3 * 197 * 4 * 13
        assert estimate.utilization >= 0.8
        assert macs / hw.macs_per_cycle / estimate.cycles >= 0.8
    qk, av = pair
    read_qk, written_qk = engine.ddr_bytes(qk, hw)
    read_av, written_av = engine.ddr_bytes(av, hw)
    act = hw.act_bytes
    # Q and K once per head, scores and stats written once; the scores, stats and V read once, the output written once.
    assert read_qk == 2 * 197 * 192 * act
    assert written_qk == 3 * 197 * (hw.align(197 * act) + hw.axi_bytes)
    assert read_av == 3 * 197 * hw.align(197 * act) + 3 * hw.align(197 * 8) + 197 * 192 * act
    assert written_av == 197 * 192 * act


# ------------------------------------------------------------------------------------- refusals


def _pair(hw: HwParams) -> tuple[list[bytes], int]:
    qgraph = run_passes(zoo.load_model("vit-block").graph, QuantConfig.for_hw(hw))
    program, image = compile_graph(qgraph, hw)
    return [d.encode() for d in program.descriptors if isinstance(d, AttentionDescriptor)], len(image.data)


def _edit(data: bytes, **values) -> bytes:
    fields = unpack(ATTENTION_FIELDS, data)
    fields.update(values)
    return pack(ATTENTION_FIELDS, fields)


def test_hardware_without_the_engine_refuses_the_opcodes_and_the_layer():
    hw = attention_hw()
    (qk, av), image_bytes = _pair(hw)
    assert check_descriptor(qk, hw, image_bytes) is None and check_descriptor(av, hw, image_bytes) is None
    for shipped in (dataclasses.replace(hw, has_attention=False), HwParams()):
        for data in (qk, av):
            assert check_descriptor(data, shipped, image_bytes).status == Status.BAD_OPCODE
    assert dataclasses.replace(hw, has_attention=False).fingerprint() != hw.fingerprint()
    assert "has_attention" not in HwParams().canonical() and "has_attention=1" in hw.canonical()
    with pytest.raises(ValueError, match=r"^Attention 'attn' needs the attention engine: .*has_attention is false"):
        build(zoo.load_model("vit-block"), HwParams(acc_bits=48))


@pytest.mark.parametrize("opcode,edit,status", [
    ("qk", dict(reserved2=1), Status.BAD_DESCRIPTOR),
    ("qk", dict(heads=0), Status.BAD_DESCRIPTOR),
    ("qk", dict(s=1025), Status.BAD_DESCRIPTOR),
    ("qk", dict(v_addr=64), Status.BAD_DESCRIPTOR),
    ("av", dict(scale=1), Status.BAD_DESCRIPTOR),
    ("qk", dict(scale=0), Status.BAD_DESCRIPTOR),
    ("qk", dict(rq=0), Status.BAD_DESCRIPTOR),
    ("qk", dict(d_head=4096), Status.DOES_NOT_FIT),
    ("av", dict(stats_addr=8), Status.MISALIGNED),
    ("qk", dict(d_head=60, heads=3), Status.MISALIGNED),
    ("av", dict(out_addr=1 << 24), Status.OUT_OF_BOUNDS),
    ("qk", dict(stats_addr=1 << 24), Status.OUT_OF_BOUNDS),
])
def test_attention_checks_in_order(opcode, edit, status):
    hw = attention_hw()
    (qk, av), image_bytes = _pair(hw)
    data = _edit(qk if opcode == "qk" else av, **edit)
    refusal = check_descriptor(data, hw, image_bytes)
    assert refusal is not None and refusal.status == status, refusal


def test_descriptors_round_trip():
    hw = attention_hw()
    (qk, av), _ = _pair(hw)
    for data in (qk, av):
        assert decode_descriptor(data).encode() == data


def test_isa_sim_refuses_attention_on_shipped_hardware():
    hw = attention_hw()
    qgraph = run_passes(zoo.load_model("vit-block").graph, QuantConfig.for_hw(hw))
    program, image = compile_graph(qgraph, hw)
    shipped = dataclasses.replace(hw, has_attention=False)
    foreign = Program(shipped.fingerprint(), program.image_bytes, program.descriptors)
    with pytest.raises(Refused) as caught:
        isa_sim(foreign, image, shipped)
    assert caught.value.status == Status.BAD_OPCODE
    assert caught.value.executed == [d.opcode for d in program.descriptors].index(OPCODE_QK_SOFTMAX_STATS)
