# SPDX-License-Identifier: Apache-2.0
"""A cocotb bench for tests/test_toolchain.py: drives the adder and checks it, or fails on request."""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


@cocotb.test()
async def adder_adds(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    expect_wrong = os.environ.get("SMOKE_EXPECT_WRONG") == "1"
    for a, b in [(1, 2), (200, 100), (255, 255), (0, 0)]:
        dut.a.value = a
        dut.b.value = b
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        got = int(dut.y.value)
        want = a + b + (1 if expect_wrong else 0)
        assert got == want, f"{a}+{b}: got {got}, want {want}"
