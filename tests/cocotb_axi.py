# SPDX-License-Identifier: Apache-2.0
"""cocotb bench for tests/test_axi.py: the AXI4 read and write engines copying through AxiMemory.

The DUT (``AXI4Copier`` in tests/test_axi.py) reads ``beats`` words from ``src`` with the read
engine and writes them to ``dst`` with the write engine. The reference model is a bytearray copy
with the same byte strobes; the whole memory is compared after the last B response.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hwgen.cosim.axi_memory import AxiMemory


def _config():
    return json.loads(os.environ["AXI_COPY_CONFIG"])


@cocotb.test()
async def copies_match_reference(dut):
    cfg = _config()
    rng = random.Random(cfg["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    memory = AxiMemory(dut, dut.clk, size=cfg["mem_size"], read_latency=cfg["read_latency"],
                       stall_prob=cfg["stall_prob"], seed=cfg["seed"], aw_after_w=cfg.get("aw_after_w", False))
    image = bytes(rng.getrandbits(8) for _ in range(cfg["mem_size"]))
    memory.load(image)
    expected = bytearray(image)
    nbytes = len(dut.m_axi__rdata) // 8
    strb = cfg["strb"]
    for src, dst, beats in cfg["copies"]:
        for i in range(beats * nbytes):
            if strb >> (i % nbytes) & 1:
                expected[dst + i] = expected[src + i]
    if cfg.get("corrupt_expected") is not None:
        expected[cfg["corrupt_expected"]] ^= 0xFF

    dut.rst.value = 1
    dut.cmd__valid.value = 0
    dut.strb.value = strb
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    memory.start()
    start_cycle = memory.cycle
    for src, dst, beats in cfg["copies"]:
        while cfg["idle_prob"] and rng.random() < cfg["idle_prob"]:
            await RisingEdge(dut.clk)
        dut.cmd__payload.value = src | dst << 32 | beats << 64
        dut.cmd__valid.value = 1
        while True:
            await ReadOnly()
            accepted = bool(dut.cmd__ready.value)
            await RisingEdge(dut.clk)
            if accepted:
                break
        dut.cmd__valid.value = 0
    for _ in range(cfg["timeout"]):
        await ReadOnly()
        if not dut.busy.value and memory.idle:
            break
        await RisingEdge(dut.clk)
    else:
        raise AssertionError(f"copier still busy after {cfg['timeout']} cycles")
    cycles = memory.cycle - start_cycle
    total = sum(beats for _, _, beats in cfg["copies"])
    dut._log.info("copied %d beats in %d cycles (%d bursts read, at most %d in flight)",
                  total, cycles, memory.read_bursts, memory.max_reads_in_flight)
    assert memory.read_beats == total and memory.write_beats == total, (memory.read_beats, memory.write_beats)
    assert memory.errors == 0
    assert not dut.read_error.value and not dut.write_error.value
    got = memory.dump()
    if got != bytes(expected):
        first = next(i for i in range(len(got)) if got[i] != expected[i])
        raise AssertionError(f"memory differs first at byte {first:#x}: got {got[first]:#04x}, "
                             f"want {expected[first]:#04x}")
    if cfg.get("max_cycles") is not None:
        assert cycles <= cfg["max_cycles"], f"{cycles} cycles, more than {cfg['max_cycles']}"
