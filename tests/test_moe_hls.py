# SPDX-License-Identifier: Apache-2.0
"""The HLS MoE engine (GATE_TOPK, EXPERT_FFN; docs/isa.md §3.10), C-simulated with g++, equals isa_sim.

Covered, at 8×8/AXI64 and 16×16/AXI128 (cores with ``has_moe``):

- the compiler's Programs for moe-tiny and moe-block, both tasks: status OK, one array step per ideal
  cycle, and the whole image equal to isa_sim's byte for byte (probs, top, indices, the token lists and
  counts, the output; the two tasks' images differ); m3vit-tiny once at 16×16 (task 1; about 45 s);
- hand-assembled GATE_TOPK + EXPERT_FFN Programs (also at 3×5 lanes, AXI64) on images filled with random bytes (so a byte written
  where it should not be shows), for what the compiled models do not reach: ties (an all-zero gate:
  equal probabilities, the lower index first, experts without tokens skipped), ``RELU``, ``HIDDEN_DDR``,
  no residual, several weight chunks per FC, shapes that fill no tile, one token and one expert;
- the run-time refusals: ``BAD_TASK`` (TASK not below ``tasks``), ``BAD_COUNT`` (a count above M, counts
  not summing to M·k, a listed token ≥ M), each leaving the image as isa_sim leaves it, and the MoE
  table of ``tests/refusals.py``;
- a corrupted expected byte of any MoE region fails the comparison;
- ``hwgen build --flow hls`` and ``hwgen sim --backend hls --task N`` (the testbench's TASK argument);
- the config: the engine, its array sizes and the ``task`` port only with ``has_moe``.
"""

from __future__ import annotations

import dataclasses
import functools
import struct

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.cli import main
from hwgen.compiler import Refused, isa_sim
from hwgen.compiler.layout import pack_rows, pack_tiles, pack_vector
from hwgen.hls.accelerator import CONFIG_HEADER, TOP_SOURCE, accelerator_context, accelerator_sources
from hwgen.hwparams import HwParams
from hwgen.isa import (
    DESCRIPTOR_BYTES, HEADER_BYTES, ExpertFfnDescriptor, GateTopkDescriptor, MoeFlag, Opcode, Program, Requant, Status,
)
from hwgen.isa.rules import Limits
from hwgen.pipeline import build
from hwgen.sim import load_folder, simulate
from hwgen.units import core_for

from refusals import moe_refusal_cases
from test_accelerator_hls import assert_same_image, csim, image_regions

#: The two bench geometries, with the MoE engine.
GEOMETRIES = {
    "8x8-axi64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64, has_moe=True),
    "16x16-axi128": HwParams(has_moe=True),
}
TASKS = (0, 1)
#: The hand-assembled Programs also run on lanes that divide nothing (tiles sharing AXI words, chunks
#: starting inside words), 16-bit weights and 48-bit accumulators.
HAND_GEOMETRIES = {**GEOMETRIES, "3x5-axi64": HwParams(lanes_in=3, lanes_out=5, weight_bits=16, acc_bits=48,
                                                         axi_data_width=64, has_moe=True)}


def run_task(hw: HwParams, program: Program, data: bytes, regions, task: int) -> bytes:
    """C-sim and isa_sim on the same image with TASK = ``task``: status OK, every descriptor, one array
    step per ideal cycle, the same bytes everywhere."""
    want = isa_sim(program, data, hw, task=task)
    got = csim(hw).run(data, task=task)
    assert (got.status, got.executed) == (Status.OK, len(program.descriptors))
    assert got.array_steps == sum(c.ideal for c in want.cycles)
    assert_same_image(got.data, want.data, regions)
    return got.data


# ------------------------------------------------------------------------------ compiled models


def model_core(name: str, geometry: str) -> HwParams:
    """The core ``hwgen build`` gives model ``name`` on a geometry (``core_for``: the MoE engine, and the
    attention engine with its accumulators for moe-block)."""
    return core_for(zoo.load_model(name).graph, GEOMETRIES[geometry])


@functools.cache
def compiled(name: str, geometry: str):
    """The compiler's Program and seeded image of zoo model ``name`` for ``geometry``."""
    hw = model_core(name, geometry)
    result = build(zoo.load_model(name, seed=1), hw)
    inputs = golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1))
    opcodes = [d.opcode for d in result.program.descriptors]
    assert Opcode.GATE_TOPK in opcodes and Opcode.EXPERT_FFN in opcodes, opcodes
    return hw, result.program, result.image.write_all(inputs)


@functools.cache
def compiled_run(name: str, geometry: str, task: int) -> bytes:
    hw, program, image = compiled(name, geometry)
    return run_task(hw, program, image.data, image_regions(image), task)


MOE_REGIONS = ("probs", "top", "top.indices", "moe", "out")


@pytest.mark.cosim
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("name", ["moe-tiny", pytest.param("moe-block", marks=pytest.mark.full_model)])
def test_compiled_moe_csim_equals_isa_sim_for_both_tasks(name, geometry):
    _, _, image = compiled(name, geometry)
    afters = [compiled_run(name, geometry, task) for task in TASKS]
    for region in MOE_REGIONS:
        if region not in {r.name for r in image.regions}:
            continue  # fused away (moe-tiny's moe into the residual add)
        r = image.region(region)
        for after in afters:
            assert after[r.offset : r.offset + r.size] != image.data[r.offset : r.offset + r.size], region  # written
    top = image.region("top.indices")
    assert afters[0][top.offset : top.offset + top.size] != afters[1][top.offset : top.offset + top.size]  # the task's gate


@pytest.mark.cosim
@pytest.mark.parametrize("board", ["pynq-z2", "zcu102"])
def test_moe_tiny_on_the_boards_hls_cores_for_both_tasks(board):
    """The core ``hwgen build --flow hls`` makes for moe-tiny on the shipped geometries GEOMETRIES lacks
    (pynq-z2 16×8/AXI64, zcu102 32×32/AXI128; ultra96 and kv260 are 16×16/AXI128): both tasks equal isa_sim."""
    from hwgen.board import load_board
    from hwgen.pipeline import build

    model = zoo.load_model("moe-tiny")
    hw = load_board(board).core_for(model.graph)
    assert hw.has_moe
    result = build(model, hw)
    image = result.image.write_all(golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=1)))
    afters = [run_task(hw, result.program, image.data, image_regions(image), task) for task in TASKS]
    top = image.region("top.indices")
    assert afters[0][top.offset : top.offset + top.size] != afters[1][top.offset : top.offset + top.size]


@pytest.mark.cosim
@pytest.mark.full_model
def test_m3vit_tiny_csim_equals_isa_sim():
    # Twelve blocks (six MoE layers) of 129 tokens, task 1: about 45 s (build, isa_sim, C simulation).
    _, program, image = compiled("m3vit-tiny", "16x16-axi128")
    assert [d.opcode for d in program.descriptors].count(Opcode.EXPERT_FFN) == 6
    after = compiled_run("m3vit-tiny", "16x16-axi128", 1)
    r = image.region("norm")
    assert after[r.offset : r.offset + r.size] != image.data[r.offset : r.offset + r.size]


@pytest.mark.cosim
def test_corrupted_expected_moe_value_fails_the_comparison():
    _, _, image = compiled("moe-tiny", "8x8-axi64")
    after = compiled_run("moe-tiny", "8x8-axi64", 0)
    regions = image_regions(image)
    names = [r.name for r in image.regions if r.name in MOE_REGIONS or r.kind.name == "SCRATCH"]
    assert {"top", "top.indices", "out"} <= set(names), names
    for name in names:
        r = image.region(name)
        want = bytearray(after)
        want[r.offset] ^= 0x01
        with pytest.raises(AssertionError, match=rf"^region {name}: 1 byte\(s\) differ"):
            assert_same_image(after, bytes(want), regions)


@pytest.mark.cosim
def test_hwgen_sim_runs_the_built_testbench_with_the_task(tmp_path, capsys):
    # hwgen build --flow hls writes tb.cpp and tb_expected.h (task 0's outputs); hwgen sim --backend hls
    # --task N passes N to the testbench's TASK argument and compares with that task's golden codes.
    out = tmp_path / "moe"
    assert main(["build", "--board", "ultra96", "--model", "moe-tiny", "--flow", "hls", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert "static const unsigned task = 0;" in (out / "hls/tb_expected.h").read_text()
    for task, verdict in ((0, "tb: PASS: every output equals the golden model"),
                          (1, "tb: the golden outputs here are another task's: not compared")):
        result = simulate(load_folder(out, task), "hls")
        assert result.equal and result.mismatches == () and result.detail == verdict, result
    # Task 1's golden codes as task 0's: the image after the run (task 0) does not match them.
    (out / "golden.npz").write_bytes((out / "golden_task1.npz").read_bytes())
    result = simulate(load_folder(out, 0), "hls")
    assert not result.equal and any(m.startswith("top.indices: ") for m in result.mismatches), result


# ------------------------------------------------------------------- hand-assembled descriptors


@dataclasses.dataclass(frozen=True)
class MoeShape:
    """One hand-assembled MoE layer: M tokens of D, E experts of hidden H, top-k, the EXPERT_FFN's flags
    and chunks; ``tie``: an all-zero gate (every probability equal)."""

    m: int = 13
    d: int = 20
    experts: int = 6
    k: int = 2
    h: int = 28
    tasks: int = 2
    flags: MoeFlag = MoeFlag.RESIDUAL
    chunk1: int = 1
    chunk2: int = 1
    tie: bool = False
    seed: int = 0


def moe_image(hw: HwParams, s: MoeShape) -> tuple[Program, bytes, list]:
    """A GATE_TOPK and an EXPERT_FFN over seeded random operands, laid out as docs/isa.md §3.10 says, in
    an image whose every other byte (padding, scratch, outputs) is random; and its regions."""
    rng = np.random.default_rng(s.seed)
    act, limits = hw.act_bytes, Limits(hw)
    tile = hw.tile_stride(hw.weight_bytes)
    regions, cursor = [], [HEADER_BYTES + 2 * DESCRIPTOR_BYTES]

    def alloc(name: str, size: int) -> int:
        addr = cursor[0]
        regions.append((name, addr, size))
        cursor[0] = hw.align(addr + size)
        return addr

    row = hw.align(s.d * act)
    k_tiles, n_tiles = -(-s.d // hw.lanes_in), -(-s.experts // hw.lanes_out)
    gate_bytes = limits.gate_bytes(k_tiles, n_tiles)
    block = limits.expert_block(s.d, s.h)
    (_, n1), (_, n2) = limits.expert_tiles(s.d, s.h)
    residual, hidden_ddr = bool(s.flags & MoeFlag.RESIDUAL), bool(s.flags & MoeFlag.HIDDEN_DDR)
    x_addr, r_addr = alloc("x", s.m * row), alloc("r", s.m * row)
    gates, experts = alloc("gates", s.tasks * gate_bytes), alloc("experts", s.experts * block.size)
    probs = alloc("probs", s.m * hw.align(s.experts * act))
    top, idx = alloc("top", s.m * hw.align(s.k * act)), alloc("idx", s.m * hw.align(s.k * act))
    lists, counts = alloc("lists", s.experts * limits.list_stride(s.m)), alloc("counts", 4 * s.experts)
    hidden = alloc("hidden", limits.moe_hidden_bytes(s.m, s.h)) if hidden_ddr else 0
    out = alloc("out", s.m * row)
    image = bytearray(rng.integers(0, 256, size=cursor[0], dtype=np.uint8).tobytes())

    def put(addr: int, data: bytes) -> None:
        image[addr : addr + len(data)] = data

    put(x_addr, pack_rows(rng.integers(-3000, 3000, (s.m, s.d)), act, row, True))
    put(r_addr, pack_rows(rng.integers(-3000, 3000, (s.m, s.d)), act, row, True))
    for task in range(s.tasks):
        weights = np.zeros((s.d, s.experts), dtype=np.int64) if s.tie else rng.integers(-127, 128, (s.d, s.experts))
        put(gates + task * gate_bytes, pack_tiles(weights, hw.lanes_in, hw.lanes_out, hw.weight_bytes, tile, True))
    for e in range(s.experts):
        base = experts + e * block.size
        put(base + block.w1, pack_tiles(rng.integers(-127, 128, (s.d, s.h)), hw.lanes_in, hw.lanes_out, hw.weight_bytes,
                                        tile, True))
        put(base + block.b1, pack_vector(rng.integers(-5000, 5000, s.h), n1 * hw.lanes_out, hw.bias_bytes))
        put(base + block.w2, pack_tiles(rng.integers(-127, 128, (s.h, s.d)), hw.lanes_in, hw.lanes_out, hw.weight_bytes,
                                        tile, True))
        put(base + block.b2, pack_vector(rng.integers(-5000, 5000, s.d), n2 * hw.lanes_out, hw.bias_bytes))
    codes = functools.partial(Requant, width=hw.act_bits, signed=True, rounding="RND_CONV", overflow="SAT")
    gate = GateTopkDescriptor(m=s.m, experts=s.experts, top_k=s.k, k=s.d, tasks=s.tasks, k_tiles=k_tiles, n_tiles=n_tiles,
                              x_addr=x_addr, w_addr=gates, task_stride=gate_bytes, probs_addr=probs, top_addr=top,
                              x_stride=row, lists_addr=lists, counts_addr=counts, idx_addr=idx,
                              rq=codes(shift=9, src_width=hw.acc_bits))
    ffn = ExpertFfnDescriptor(flags=s.flags, m=s.m, experts=s.experts, top_k=s.k, d=s.d, h=s.h, chunk1=s.chunk1,
                              chunk2=s.chunk2, x_addr=x_addr, w_addr=experts, expert_stride=block.size, lists_addr=lists,
                              counts_addr=counts, res_addr=r_addr if residual else 0, out_addr=out, hidden_addr=hidden,
                              rq_hidden=codes(shift=9, src_width=hw.acc_bits),
                              rq_expert=codes(shift=11, src_width=hw.acc_bits),
                              rq_out=codes(shift=15, src_width=2 * hw.act_bits + 2),
                              rq2=Requant(1, hw.act_bits, True, "RND", "SAT", hw.acc_bits) if residual else None,
                              y_shift=1 if residual else 0)
    program = Program(hw.fingerprint(), len(image), (gate, ffn))
    put(0, program.to_bytes())
    return program, bytes(image), regions


SHAPES = {
    "residual": MoeShape(),
    "no residual": MoeShape(flags=MoeFlag(0), seed=1),
    "hidden in DDR, two FC1 chunks": MoeShape(flags=MoeFlag.RESIDUAL | MoeFlag.HIDDEN_DDR, chunk1=2, seed=2),
    "ReLU, top-3 of 9, odd widths": MoeShape(flags=MoeFlag.RELU, m=5, experts=9, k=3, d=37, h=45, chunk1=2, chunk2=2,
                                             seed=3),
    "ReLU in DDR, one token, one expert": MoeShape(flags=MoeFlag.RELU | MoeFlag.HIDDEN_DDR, m=1, experts=1, k=1, d=3,
                                                   h=5, tasks=1, seed=4),
    "ties": MoeShape(tie=True, experts=7, k=3, seed=5),
}


def _codes(data: bytes, regions, name: str, rows: int, cols: int, stride: int, nbytes: int) -> np.ndarray:
    (addr,) = [a for n, a, _ in regions if n == name]
    dtype = f"<u{nbytes}"
    return np.array([np.frombuffer(data, dtype, cols, addr + r * stride) for r in range(rows)])


@pytest.mark.cosim
@pytest.mark.parametrize("geometry", HAND_GEOMETRIES)
def test_hand_assembled_moe_equals_isa_sim(geometry):
    hw = HAND_GEOMETRIES[geometry]
    for label, shape in SHAPES.items():
        program, data, regions = moe_image(hw, shape)
        for task in range(shape.tasks):
            after = run_task(hw, program, data, regions, task)
            count = _codes(after, regions, "counts", 1, shape.experts, 4 * shape.experts, 4)[0]
            assert count.sum() == shape.m * shape.k, label
            if shape.tie:
                # Every probability equal: each token's top-k are experts 0..k-1 in index order, the others
                # get no token (their weights are never read) and the sums still match isa_sim's.
                indices = _codes(after, regions, "idx", shape.m, shape.k, hw.align(shape.k * hw.act_bytes), hw.act_bytes)
                assert (indices == np.arange(shape.k)).all(), label
                assert count.tolist() == [shape.m] * shape.k + [0] * (shape.experts - shape.k), label


def _run_refused(hw: HwParams, program: bytes, data: bytes, task: int, status: Status, executed: int) -> None:
    """C-sim stops with ``status`` after ``executed`` descriptors, leaving the image isa_sim leaves."""
    with pytest.raises(Refused) as caught:
        isa_sim(program, data, hw, task=task)
    assert (caught.value.status, caught.value.executed) == (status, executed)
    got = csim(hw).run(data, task=task)
    assert (got.status, got.executed) == (status, executed)
    assert got.data == caught.value.data


def _expert_only(hw: HwParams, shape: MoeShape):
    """The EXPERT_FFN alone (as a Program of one descriptor) on the image its GATE_TOPK left: the lists and
    counts it reads are data an edit can corrupt."""
    program, data, regions = moe_image(hw, shape)
    after = isa_sim(program, data, hw).data
    alone = Program(program.fingerprint, program.image_bytes, program.descriptors[1:]).to_bytes()
    return program.descriptors[1], bytearray(alone + after[len(alone) :]), regions


@pytest.mark.cosim
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_run_time_refusals(geometry):
    hw = GEOMETRIES[geometry]
    shape = MoeShape()
    program, data, _ = moe_image(hw, shape)
    # BAD_TASK: TASK = tasks (and far beyond), before the gate writes anything.
    for task in (shape.tasks, 1 << 31):
        _run_refused(hw, program.to_bytes(), data, task, Status.BAD_TASK, 0)
    ffn, base, regions = _expert_only(hw, shape)
    run_task(hw, Program.from_bytes(bytes(base[: HEADER_BYTES + DESCRIPTOR_BYTES])), bytes(base), regions, 0)
    counts = [struct.unpack_from("<I", base, ffn.counts_addr + 4 * e)[0] for e in range(shape.experts)]
    busy = int(np.argmax(counts))
    stride = Limits(hw).list_stride(shape.m)
    edits = {
        "a count above M": [(ffn.counts_addr + 4 * busy, shape.m + 1)],
        "counts not summing to M·k": [(ffn.counts_addr + 4 * busy, counts[busy] - 1)],
        "counts moved between experts": [(ffn.counts_addr + 4 * busy, counts[busy] - 1),
                                         (ffn.counts_addr + 4 * ((busy + 1) % shape.experts),
                                          counts[(busy + 1) % shape.experts] + 1)],
        "a listed token = M": [(ffn.lists_addr + busy * stride + 8 * (counts[busy] - 1), shape.m)],
    }
    for label, words in edits.items():
        image = bytearray(base)
        for addr, value in words:
            struct.pack_into("<I", image, addr, value)
        if label == "counts moved between experts":
            # Valid counts naming list entries nobody wrote (random bytes): a token ≥ M among them, or not.
            try:
                isa_sim(bytes(image[: HEADER_BYTES + DESCRIPTOR_BYTES]), bytes(image), hw)
            except Refused as refused:
                _run_refused(hw, bytes(image[: HEADER_BYTES + DESCRIPTOR_BYTES]), bytes(image), 0, refused.status, 0)
                continue
            run_task(hw, Program.from_bytes(bytes(image[: HEADER_BYTES + DESCRIPTOR_BYTES])), bytes(image), regions, 0)
            continue
        _run_refused(hw, bytes(image[: HEADER_BYTES + DESCRIPTOR_BYTES]), bytes(image), 0, Status.BAD_COUNT, 0)


@pytest.mark.cosim
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_moe_refusal_table(geometry):
    # tests/refusals.py's MoE table: the HLS core reports the table's status after the table's number of
    # descriptors (BAD_TASK with the case's TASK register, BAD_COUNT from corrupted counts and lists), leaving
    # the image isa_sim leaves. The case on the same geometry without the engine (another g++ build) runs at
    # 8x8-axi64 only.
    cases = [c for c in moe_refusal_cases(GEOMETRIES[geometry]) if c.hw.has_moe or geometry == "8x8-axi64"]
    assert {c.status for c in cases} >= {Status.OK, Status.BAD_DESCRIPTOR, Status.DOES_NOT_FIT, Status.MISALIGNED,
                                         Status.OUT_OF_BOUNDS, Status.BAD_TASK, Status.BAD_COUNT}
    for case in cases:
        run = csim(case.hw).run(case.image, task=case.task)
        assert (run.status, run.executed) == (case.status, case.executed), case.name
        if case.status == Status.OK:
            want = isa_sim(case.image, case.image, case.hw, task=case.task).data
        else:
            with pytest.raises(Refused) as caught:
                isa_sim(case.image, case.image, case.hw, task=case.task)
            want = caught.value.data
        assert run.data == want, case.name


@pytest.mark.cosim
def test_moe_program_on_a_core_without_the_engine_is_bad_opcode():
    hw = GEOMETRIES["8x8-axi64"]
    program, data, _ = moe_image(hw, MoeShape())
    plain = dataclasses.replace(hw, has_moe=False)
    image = bytearray(data)
    struct.pack_into("<I", image, 8, plain.fingerprint())
    got = csim(plain).run(bytes(image))
    assert (got.status, got.executed, got.data) == (Status.BAD_OPCODE, 0, bytes(image))


def test_the_config_and_the_top_have_the_engine_only_with_has_moe():
    hw = GEOMETRIES["16x16-axi128"]
    context = accelerator_context(hw)
    assert context["has_moe"]
    sources = accelerator_sources(hw)
    for line in ("static const bool has_moe = true;", f"static const unsigned moe_acc_entries = {hw.moe_acc_entries};",
                 f"static const unsigned moe_acc_bits = {hw.moe_acc_bits};",
                 f"static const unsigned moe_hidden_bytes = {hw.moe_hidden_bytes};", "#define HWGEN_ACCEL_TASK_PORT 1"):
        assert line in sources[CONFIG_HEADER], line
    assert "ap_uint<64>& array_steps, ap_uint<32> task)" in sources[TOP_SOURCE]
    assert "#pragma HLS INTERFACE mode=s_axilite port=task bundle=control" in sources[TOP_SOURCE]
    # Without the engine (not asked for, or impossible: 32-bit activations have no softmax unit), the
    # config and the top are those of a core that never had it: no MoE line, no task port.
    rowless = HwParams(lanes_in=4, lanes_out=4, act_bits=32, acc_bits=48, has_moe=True)
    assert not accelerator_context(rowless)["has_moe"]
    for without in (dataclasses.replace(hw, has_moe=False), rowless):
        files = accelerator_sources(without)
        assert "moe" not in files[CONFIG_HEADER].lower().replace("moe engine", "")  # the description may name it
        assert "task" not in files[TOP_SOURCE].lower()
