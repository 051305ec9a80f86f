# SPDX-License-Identifier: Apache-2.0
"""The AXI memory in HDL (cosim/axi_memory.v, the fast path of whole-Program runs) agrees with the cocotb model.

Fast tier: the ``$readmemh``/``$writememh`` text round-trips any bytes, and the wrapper refuses a
core without an AXI4 master of the stated width.

Cosim tier: the same Programs and images through the core with the Python ``AxiMemory`` and with
the HDL memory give the same image after every run, byte for byte, and — without stalls — the same
CYCLES, STALLS, beats and bursts (integers, equal), at 8x8/AXI64 and 16x16/AXI128: mlp-odd, and
mlp-odd with a descriptor reading and one writing outside the memory (DECERR: READ_ERROR and
WRITE_ERROR on both). With random stalls on every channel the HDL memory still gives the same
bytes, in more cycles.
"""

import dataclasses
import random

import pytest

from hwgen import golden, zoo
from hwgen.compiler import Program, compile_graph, isa_sim
from hwgen.cosim import tb_accelerator as tb
from hwgen.cosim.hdl_memory import from_hex, sim_top, to_hex
from hwgen.hwparams import HwParams
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig
from hwgen.isa import Status

HW_SMALL = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
HW_LARGE = HwParams(lanes_in=16, lanes_out=16, axi_data_width=128)
COUNTS = ("cycles", "stalls", "status", "descriptors_done", "read_beats", "write_beats", "read_bursts",
          "write_bursts", "max_reads_in_flight")


@pytest.mark.parametrize("word_bytes", [8, 16, 32])
def test_hex_round_trip(word_bytes):
    rng = random.Random(word_bytes)
    data = bytes(rng.getrandbits(8) for _ in range(7 * word_bytes))
    text = to_hex(data, word_bytes)
    assert len(text.splitlines()) == 7 and all(len(line) == 2 * word_bytes for line in text.splitlines())
    # Little-endian words: byte 0 is the last two hex digits of line 0.
    assert text.splitlines()[0][-2:] == f"{data[0]:02x}"
    assert from_hex(text, word_bytes) == data
    assert from_hex(to_hex(data[:-3], word_bytes), word_bytes) == data[:-3] + bytes(3)


def test_sim_top_checks_the_core():
    core = tb.accelerator_verilog(HW_SMALL)
    top = sim_top(core, tb.TOPLEVEL, 64)
    assert "module hwgen_sim_top(" in top and "hwgen_axi_memory #(.DATA_WIDTH(64)" in top
    assert "assign core__rdata = mem_external ? m_axi__rdata : hdl__rdata;" in top
    with pytest.raises(ValueError, match=r"^data_width must be the core's m_axi width 64, not 128$"):
        sim_top(core, tb.TOPLEVEL, 128)
    with pytest.raises(ValueError, match=r"^core Verilog must define module 'nope', but it does not$"):
        sim_top(core, "nope", 64)


def _mlp_odd(hw, seed=1):
    model = zoo.load_model("mlp-odd", seed=seed)
    qgraph = run_passes(model.graph, QuantConfig.for_hw(hw, formats=model.formats))
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=3.0))
    program, image = compile_graph(qgraph, hw)
    return program, image.write_all(inputs)


def _relocated(program, image, index, field, address):
    """The Program with descriptor ``index``'s ``field`` moved to ``address`` (past the memory: DECERR).

    The header claims an image reaching past ``address``, so the controller's bounds check (docs/isa.md
    §3.7) lets the access through and the memory answers it with DECERR."""
    descriptors = list(program.descriptors)
    descriptors[index] = dataclasses.replace(descriptors[index], **{field: address})
    program = Program(program.fingerprint, address + (1 << 16), tuple(descriptors))
    encoded = program.to_bytes()
    return image.with_data(encoded + image.data[len(encoded):])


def _runs(hw):
    program, image = _mlp_odd(hw)
    runs = [tb.Run(image.data, isa_sim(program, image, hw).data, image.regions, label="mlp-odd")]
    outside = hw.align(len(image.data) + (1 << 20))  # 1 MiB past the image: outside either memory
    for label, field, bit in (("read outside", "x_addr", "READ_ERROR"), ("write outside", "out_addr", "WRITE_ERROR")):
        bad = _relocated(program, image, 0, field, outside)
        # No expected image: what the core leaves after a DECERR is compared between the models only.
        runs.append(tb.Run(bad.data, None, bad.regions, expect_status=Status[bit], label=label))
    return runs


def _after(work_dir, count):
    return [(work_dir / f"after{i}.bin").read_bytes() for i in range(count)]


@pytest.mark.cosim
@pytest.mark.parametrize("hw", [HW_SMALL, HW_LARGE], ids=["8x8-axi64", "16x16-axi128"])
def test_hdl_memory_equals_python_memory(tmp_path, hw):
    """Same Programs, both memory models, no stalls: equal bytes after every run, equal counts."""
    runs = _runs(hw)
    results, after = {}, {}
    for memory in ("python", "hdl"):
        results[memory] = tb.run_bench(tmp_path / memory, hw, runs, memory=memory)
        after[memory] = _after(tmp_path / memory, len(runs))
    assert [r["memory"] for r in results["hdl"]] == ["hdl"] * len(runs)
    for index, run in enumerate(runs):
        python, hdl = results["python"][index], results["hdl"][index]
        assert after["hdl"][index] == after["python"][index], f"{run.label}: the images after the run differ"
        assert {k: hdl[k] for k in COUNTS} == {k: python[k] for k in COUNTS}, run.label
    mlp, read_out, write_out = results["hdl"]
    assert mlp["status"] == 0 and mlp["cycles"] > 0 and mlp["write_beats"] > 0
    assert read_out["status"] == Status.READ_ERROR
    assert write_out["status"] == Status.WRITE_ERROR and write_out["write_beats"] > 0


@pytest.mark.cosim
def test_hdl_memory_stalls_change_timing_not_bytes(tmp_path):
    """Random stalls on every channel of the HDL memory: isa_sim's bytes (checked by the bench), more cycles,
    and a different seed gives a different schedule."""
    hw = HW_SMALL
    program, image = _mlp_odd(hw, seed=2)
    run = tb.Run(image.data, isa_sim(program, image, hw).data, image.regions, label="mlp-odd")
    cycles = {}
    for label, stall_prob, seed in (("none", 0.0, 1), ("stalls", 0.3, 1), ("stalls, other seed", 0.3, 5)):
        (result,) = tb.run_bench(tmp_path / label.replace(" ", "_").replace(",", ""), hw, [run],
                                 stall_prob=stall_prob, seed=seed)
        assert result["status"] == 0 and result["descriptors_done"] == len(program.descriptors)
        cycles[label] = result["cycles"]
    assert cycles["stalls"] > 1.1 * cycles["none"]  # measured: 8,905 against 7,596
    assert cycles["stalls, other seed"] != cycles["stalls"]
