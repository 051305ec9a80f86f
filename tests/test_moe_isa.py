# SPDX-License-Identifier: Apache-2.0
"""The MoE engine's Programs on isa_sim equal the golden model (docs/isa.md §3.10, docs/moe.md): integer equality.

moe-tiny and moe-block, both tasks, at 8×8/AXI64 and 16×16/AXI128: every tensor of the image
(``probs``, ``top``, ``top.indices``, ``moe``/``out`` and the others) equals ``golden.run`` with that
task, and the whole image equals the golden image (the scratch lists and counts aside); m3vit-tiny at
16×16 (task 0 here, task 1 in the full tier). A corrupted expected value fails. The EXPERT_FFN with
its hidden rows in DDR, ReLU experts, expert-count skew in the cycle estimate, and the compiler's
one-line refusals are checked too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import compile_graph, estimate_cycles, isa_sim
from hwgen.compiler.engines import moe as moe_engine
from hwgen.compiler.layout import RegionKind, with_scratch
from hwgen.frontend import parse_spec
from hwgen.golden import moe
from hwgen.hwparams import HwParams
from hwgen.isa import ExpertFfnDescriptor, GateTopkDescriptor, MoeFlag, Opcode, Program
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig
from hwgen.units import core_for

GEOMETRIES = {
    "8x8-axi64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64),
    "16x16-axi128": HwParams(lanes_in=16, lanes_out=16, axi_data_width=128),
}


def _compiled(name: str, hw: HwParams, seed: int = 5, **spec_changes):
    model = zoo.load_model(name)
    hw = core_for(model.graph, hw)
    qgraph = run_passes(model.graph, QuantConfig.for_hw(hw, formats=model.formats))
    program, image = compile_graph(qgraph, hw)
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed))
    return qgraph, hw, program, image.write_all(inputs), inputs


def _golden_image(image, values, after: bytes) -> bytes:
    """The image after a correct run: golden codes in every tensor, isa_sim's bytes in the scratch only."""
    want = image.with_values({r.name: values[r.name] for r in image.regions if r.kind.holds_tensor}).data
    return with_scratch(want, after, image.regions)


def _check(qgraph, hw, program, image, inputs, task: int):
    values = golden.run(qgraph, inputs, task=task)
    result = isa_sim(program, image, hw, task=task)
    after = image.with_data(result.data)
    for region in image.regions:
        if region.kind.holds_tensor:
            got, want = after.read(region.name), values[region.name]
            bad = np.argwhere(got != want)
            assert not bad.size, f"{region.name} task {task}: first mismatch at {tuple(bad[0])}"
    assert result.data == _golden_image(image, values, result.data)
    return result, values


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", ["moe-tiny", "moe-block"])
def test_isa_sim_equals_golden_for_both_tasks(name, geometry):
    qgraph, hw, program, image, inputs = _compiled(name, GEOMETRIES[geometry])
    assert hw.has_moe and [d.opcode for d in program.descriptors][-2:] == [Opcode.GATE_TOPK, Opcode.EXPERT_FFN]
    ffn = program.descriptors[-1]
    assert ffn.flags == MoeFlag.RESIDUAL and not ffn.flags & MoeFlag.HIDDEN_DDR
    tops = []
    for task in (0, 1):
        _, values = _check(qgraph, hw, program, image, inputs, task)
        for tensor in ("probs", "top", "top.indices", "moe.acc"):
            assert tensor in values
        tops.append(values["top.indices"])
    assert not np.array_equal(*tops), "the two tasks' gates choose differently"


def test_a_corrupted_expected_value_fails():
    qgraph, hw, program, image, inputs = _compiled("moe-tiny", GEOMETRIES["8x8-axi64"])
    values = golden.run(qgraph, inputs, task=1)
    result = isa_sim(program, image, hw, task=1)
    assert result.data == _golden_image(image, values, result.data)
    for tensor in ("top.indices", "out", "probs"):
        wrong = dict(values)
        wrong[tensor] = values[tensor].copy()
        wrong[tensor].flat[3] ^= 1
        assert result.data != _golden_image(image, wrong, result.data), tensor
    # The other task's golden codes are not this run's.
    assert result.data != _golden_image(image, golden.run(qgraph, inputs, task=0), result.data)


def test_lists_and_counts_are_the_golden_dispatch():
    qgraph, hw, program, image, inputs = _compiled("moe-tiny", GEOMETRIES["16x16-axi128"])
    gate = program.descriptors[1]
    assert isinstance(gate, GateTopkDescriptor)
    memory = np.frombuffer(isa_sim(program, image, hw, task=1).data, dtype=np.uint8).copy()
    values = golden.run(qgraph, inputs, task=1)
    lists = moe.dispatch(values["top.indices"], gate.experts)
    assert moe_engine.read_counts(memory, gate).tolist() == [len(t) for t, _ in lists]
    ffn = program.descriptors[2]
    for e, (tokens, slots) in enumerate(lists):
        got_tokens, got_scores = moe_engine.read_list(memory, ffn, hw, e, len(tokens))
        assert got_tokens.tolist() == tokens.tolist()
        assert got_scores.tolist() == values["top"][tokens, slots].tolist()
    regions = {r.name: r for r in image.regions if r.kind is RegionKind.SCRATCH}
    assert set(regions) == {"moe.lists", "moe.counts"}


def test_m3vit_tiny_at_16x16_task_0():
    qgraph, hw, program, image, inputs = _compiled("m3vit-tiny", GEOMETRIES["16x16-axi128"])
    ops = [d.opcode for d in program.descriptors]
    assert ops.count(Opcode.GATE_TOPK) == ops.count(Opcode.EXPERT_FFN) == 6
    result, _ = _check(qgraph, hw, program, image, inputs, 0)
    assert 3.3e6 < result.total_cycles < 3.9e6, result.total_cycles


@pytest.mark.full_tier
def test_m3vit_tiny_at_16x16_task_1():
    qgraph, hw, program, image, inputs = _compiled("m3vit-tiny", GEOMETRIES["16x16-axi128"])
    _check(qgraph, hw, program, image, inputs, 1)


def test_hidden_rows_in_ddr_and_relu_experts():
    spec = {"name": "relu-moe", "inputs": {"x": {"shape": [9, 32]}}, "outputs": ["moe"], "layers": [
        {"name": "gate", "op": "MoEGate", "input": "x", "experts": 3, "tasks": 2},
        {"name": "p", "op": "Softmax", "input": "gate"},
        {"name": "top", "op": "TopK", "input": "p", "k": 2},
        {"name": "moe", "op": "Expert", "inputs": ["x", "top", "top.indices"], "experts": 3, "hidden": 40,
         "activation": "relu"}]}
    graph = parse_spec(spec).graph
    for moe_hidden_bytes, ddr in ((102400, False), (512, True)):
        hw = dataclasses.replace(core_for(graph, GEOMETRIES["8x8-axi64"]), moe_hidden_bytes=moe_hidden_bytes)
        qgraph = run_passes(graph, QuantConfig.for_hw(hw))
        program, image = compile_graph(qgraph, hw)
        ffn = program.descriptors[-1]
        assert ffn.flags == (MoeFlag.RELU | (MoeFlag.HIDDEN_DDR if ddr else 0)), ffn.flags  # no Add: no RESIDUAL
        assert ("moe.hidden" in {r.name for r in image.regions}) == ddr
        inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=3))
        image = image.write_all(inputs)
        for task in (0, 1):
            _check(qgraph, hw, program, image, inputs, task)
        # Hidden rows in DDR cost their writes and reads: more cycles for the same work.
        if ddr:
            on_chip = dataclasses.replace(ffn, flags=MoeFlag.RELU, hidden_addr=0)
            assert estimate_cycles(ffn, hw).cycles > estimate_cycles(on_chip, hw).cycles


def test_expert_cycles_follow_the_counts():
    hw = HwParams(has_moe=True)
    model = moe_engine.CycleModel()
    even = moe_engine.balanced_counts(129, 2, 16)
    assert sum(even) == 258 and max(even) - min(even) <= 1
    skewed = [86, 86] + [6] * 14 + [2]
    skewed = skewed[:16]
    skewed[-1] += 258 - sum(skewed)
    cycles = {name: moe_engine.expert_cycles(hw, model, counts, 129, 192, 384, (20, 10), True)
              for name, counts in (("even", even), ("skewed", skewed))}
    assert cycles["even"]["ideal"] == cycles["skewed"]["ideal"]  # the same MACs
    assert cycles["skewed"]["cycles"] > cycles["even"]["cycles"]  # a light expert waits for its weights
    # A skipped expert loads nothing: one load per active expert.
    one_idle = [0] + even[1:]
    one_idle[1] += even[0]
    traffic = moe_engine.expert_cycles(hw, model, one_idle, 129, 192, 384, (20, 10), True)["weight_bytes"]
    assert traffic * 16 == cycles["even"]["weight_bytes"] * 15


def test_compiler_refuses_what_the_engine_cannot_run():
    graph = zoo.load_model("moe-tiny").graph
    hw = GEOMETRIES["16x16-axi128"]
    qgraph = run_passes(graph, QuantConfig.for_hw(hw))
    with pytest.raises(ValueError, match=r"^MoEGate 'gate' needs the MoE engine: this hardware has no MoE engine "
                                         r"\(HwParams.has_moe is false\)$"):
        compile_graph(qgraph, hw)
    small = dataclasses.replace(hw, has_moe=True, moe_acc_entries=1000)
    with pytest.raises(ValueError, match=r"^Expert 'moe' needs M·D = 17·64 = 1088 weighted sums on chip, more than "
                                         r"the MoE accumulator's moe_acc_entries=1000$"):
        compile_graph(qgraph, small)
    narrow = dataclasses.replace(hw, has_moe=True, moe_acc_bits=32)
    with pytest.raises(ValueError, match=r"^Expert 'moe' needs 33-bit weighted sums, more than the MoE "
                                         r"accumulator's moe_acc_bits=32$"):
        compile_graph(qgraph, narrow)


def test_the_moe_engine_is_in_the_fingerprint_only_when_present():
    plain = HwParams()
    assert plain.fingerprint() == 346357004  # every core without the engine keeps its fingerprint
    assert dataclasses.replace(plain, moe_acc_bits=40).fingerprint() == plain.fingerprint()
    engine = dataclasses.replace(plain, has_moe=True)
    assert engine.fingerprint() != plain.fingerprint()
    assert dataclasses.replace(engine, moe_hidden_bytes=65536).fingerprint() != engine.fingerprint()
    assert "has_moe=1;moe_acc_entries=32768;moe_acc_bits=36;moe_hidden_bytes=102400" in engine.canonical()


def test_the_listing_disassembles_the_moe_descriptors():
    _, _, program, image, _ = _compiled("moe-tiny", GEOMETRIES["8x8-axi64"])
    text = Program.from_bytes(program.to_bytes()).listing(image.labels)
    assert "GATE_TOPK M=17 D=64 E=4 top 2 tasks 2" in text and "gate + gate.requantize + probs + top" in text
    assert "EXPERT_FFN M=17 D=64 H=128 E=4 top 2" in text and "flags RESIDUAL" in text
    assert isinstance(program.descriptors[2], ExpertFfnDescriptor)
