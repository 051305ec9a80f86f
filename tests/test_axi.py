# SPDX-License-Identifier: Apache-2.0
"""AXI signatures, the burst read/write engines (cocotb against AxiMemory) and the register slave."""

import json

import pytest
from amaranth import Module, unsigned
from amaranth.back import verilog
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwgen import toolchain
from hwgen.rtl import axi


class AXI4Copier(wiring.Component):
    """Test harness: copies ``beats`` words from ``src`` to ``dst`` through the two engines."""

    def __init__(self, data_width):
        self.data_width = data_width
        layout = data.StructLayout({"src": unsigned(32), "dst": unsigned(32), "beats": unsigned(20)})
        super().__init__({
            "cmd": In(stream.Signature(layout)),
            "strb": In(data_width // 8),
            "m_axi": Out(axi.AXI4Signature(data_width=data_width)),
            "busy": Out(1),
            "read_error": Out(1),
            "write_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = axi.AXI4Reader(data_width=self.data_width)
        m.submodules.writer = writer = axi.AXI4Writer(data_width=self.data_width)
        axi.connect_axi4(m, self.m_axi, reader.bus)
        axi.connect_axi4(m, self.m_axi, writer.bus)
        both_ready = reader.cmd.ready & writer.cmd.ready
        m.d.comb += [
            reader.cmd.payload.addr.eq(self.cmd.payload.src),
            reader.cmd.payload.beats.eq(self.cmd.payload.beats),
            writer.cmd.payload.addr.eq(self.cmd.payload.dst),
            writer.cmd.payload.beats.eq(self.cmd.payload.beats),
            reader.cmd.valid.eq(self.cmd.valid & both_ready),
            writer.cmd.valid.eq(self.cmd.valid & both_ready),
            self.cmd.ready.eq(both_ready),
            writer.data.payload.data.eq(reader.data.payload.data),
            writer.data.payload.strb.eq(self.strb),
            writer.data.valid.eq(reader.data.valid),
            reader.data.ready.eq(writer.data.ready),
            self.busy.eq(reader.busy | writer.busy),
            self.read_error.eq(reader.error),
            self.write_error.eq(writer.error),
        ]
        return m


def test_signatures_have_flat_axi_names():
    sig = axi.AXI4Signature(data_width=128)
    names = set(sig.members.keys())
    assert {"araddr", "arlen", "rdata", "rlast", "awaddr", "wstrb", "wlast", "bresp"} <= names
    assert sig.members["rdata"].shape == 128 and sig.members["wstrb"].shape == 16
    assert sig.members["rdata"].flow == In and sig.members["araddr"].flow == Out
    text = verilog.convert(AXI4Copier(64), name="copier")
    for port in ("m_axi__araddr", "m_axi__rvalid", "m_axi__wlast", "m_axi__bready", "cmd__valid"):
        assert port in text


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match=r"^AXI data width must be one of 32, 64, 128, 256, not 96$"):
        axi.AXI4Signature(data_width=96)
    with pytest.raises(ValueError, match=r"^AXI address width must be an integer from 13 to 64, not 8$"):
        axi.AXI4Reader(addr_width=8)
    with pytest.raises(ValueError, match=r"^max_outstanding must be a positive integer, not 0$"):
        axi.AXI4Writer(max_outstanding=0)
    with pytest.raises(ValueError, match=r"^fingerprint must be a 32-bit unsigned integer, not -1$"):
        axi.AXILiteRegisters(fingerprint=-1, params=0)


def _copy_config(data_width, copies, *, stall_prob, idle_prob=0.0, max_cycles=None, strb=None, seed=1):
    return {
        "mem_size": 1 << 16, "read_latency": 64, "stall_prob": stall_prob, "idle_prob": idle_prob,
        "seed": seed, "copies": copies, "timeout": 100_000, "max_cycles": max_cycles,
        "strb": (1 << data_width // 8) - 1 if strb is None else strb,
    }


@pytest.mark.cosim
@pytest.mark.parametrize("data_width", [64, 128])
def test_engines_copy_with_random_stalls(tmp_path, data_width):
    """Copies of 1 to 700 beats, unaligned to 4 KiB, under random stalls on every channel.

    At 64 bits the memory also holds AWREADY until it has seen the burst's W data, which AXI
    allows a slave to do: the write engine must not wait for AW before offering W.
    """
    nbytes = data_width // 8
    copies, dst = [], 0x8000
    for i, beats in enumerate([1, 3, 256, 257, 700, 17, 2, 129]):
        src = 0x0400 + i * 0x0850 // nbytes * nbytes
        copies.append([src, dst, beats])
        dst += beats * nbytes + 3 * nbytes
    cfg = _copy_config(data_width, copies, stall_prob=0.3, idle_prob=0.3, strb=0b1011_0111 % (1 << nbytes))
    cfg["aw_after_w"] = data_width == 64  # a legal slave that takes AW only after seeing W data
    toolchain.run_cocotb(verilog.convert(AXI4Copier(data_width), name="copier"), "copier", "cocotb_axi",
                         work_dir=tmp_path, extra_env={"AXI_COPY_CONFIG": json.dumps(cfg)})


@pytest.mark.cosim
def test_engines_hide_read_latency(tmp_path):
    """Without stalls a 2,000-beat copy streams at one beat per cycle: the 64-cycle latency is paid once."""
    beats = 2000
    cfg = _copy_config(128, [[0x0100, 0x8000, beats]], stall_prob=0.0, max_cycles=beats + 64 + 16 + 10)
    toolchain.run_cocotb(verilog.convert(AXI4Copier(128), name="copier"), "copier", "cocotb_axi",
                         work_dir=tmp_path, extra_env={"AXI_COPY_CONFIG": json.dumps(cfg)})


@pytest.mark.cosim
def test_copy_bench_detects_a_wrong_copy(tmp_path):
    """The bench's comparison can fail: one flipped byte in the expected memory is reported."""
    cfg = _copy_config(64, [[0x0100, 0x8000, 40]], stall_prob=0.0, max_cycles=None)
    cfg["corrupt_expected"] = 0x8000 + 77
    with pytest.raises(toolchain.ToolError, match="memory differs first at byte 0x804d"):
        toolchain.run_cocotb(verilog.convert(AXI4Copier(64), name="copier"), "copier", "cocotb_axi",
                             work_dir=tmp_path, extra_env={"AXI_COPY_CONFIG": json.dumps(cfg)})


# ------------------------------------------------------------------ register slave (Amaranth sim)


async def _lite_write(ctx, bus, addr, value, strb=0xF):
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, value)
    ctx.set(bus.wstrb, strb)
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.wvalid, 1)
    ctx.set(bus.bready, 1)
    while not ctx.get(bus.awready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.wvalid, 0)
    while not ctx.get(bus.bvalid):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.bready, 0)


async def _lite_read(ctx, bus, addr):
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.rready, 1)
    while not ctx.get(bus.arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.arvalid, 0)
    while not ctx.get(bus.rvalid):
        await ctx.tick()
    value = ctx.get(bus.rdata)
    await ctx.tick()
    ctx.set(bus.rready, 0)
    return value


def test_register_slave():
    regs = axi.AXILiteRegisters(fingerprint=0xDEADBEEF, params=0x01101010)
    r = axi.REGISTER_MAP
    seen = {}

    async def bench(ctx):
        bus = regs.s_axi
        assert await _lite_read(ctx, bus, r["FINGERPRINT"]) == 0xDEADBEEF
        assert await _lite_read(ctx, bus, r["PARAMS"]) == 0x01101010
        assert await _lite_read(ctx, bus, r["CONTROL"]) == 1 << axi.CONTROL_IDLE
        await _lite_write(ctx, bus, r["PROGRAM_ADDR"], 0x12345678)
        await _lite_write(ctx, bus, r["PROGRAM_ADDR"], 0x0000AB00, strb=0b0010)  # byte 1 only
        assert await _lite_read(ctx, bus, r["PROGRAM_ADDR"]) == 0x1234AB78
        assert ctx.get(regs.program_addr) == 0x1234AB78
        await _lite_write(ctx, bus, r["GIE"], 1)
        await _lite_write(ctx, bus, r["IER"], 1)
        # Start: one pulse, then the core runs with 3 of its cycles stalled.
        ctx.set(bus.awaddr, r["CONTROL"])
        ctx.set(bus.wdata, 1)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.bready, 1)
        starts = 0
        for _ in range(3):
            starts += ctx.get(regs.start)
            await ctx.tick()
            ctx.set(bus.awvalid, 0)
            ctx.set(bus.wvalid, 0)
        assert starts == 1
        control = await _lite_read(ctx, bus, r["CONTROL"])
        assert control & 1 << axi.CONTROL_START and not control & 1 << axi.CONTROL_IDLE
        await _lite_write(ctx, bus, r["CONTROL"], 1)  # ignored while running
        for i in range(10):
            ctx.set(regs.stall, i % 3 == 0)
            await ctx.tick()
        ctx.set(regs.stall, 0)
        ctx.set(regs.status, axi.STATUS_CODES["BAD_OPCODE"])
        ctx.set(regs.descriptors_done, 7)
        ctx.set(regs.done, 1)
        await ctx.tick()
        ctx.set(regs.done, 0)
        assert ctx.get(regs.irq) == 1
        seen["cycles"] = await _lite_read(ctx, bus, r["CYCLES"])
        seen["stalls"] = await _lite_read(ctx, bus, r["STALLS"])
        control = await _lite_read(ctx, bus, r["CONTROL"])
        assert control == (1 << axi.CONTROL_DONE | 1 << axi.CONTROL_IDLE | 1 << axi.CONTROL_ERROR)
        assert await _lite_read(ctx, bus, r["STATUS"]) == axi.STATUS_CODES["BAD_OPCODE"]
        assert await _lite_read(ctx, bus, r["DESCRIPTORS_DONE"]) == 7
        assert await _lite_read(ctx, bus, r["ISR"]) == 1
        await _lite_write(ctx, bus, r["ISR"], 1)
        assert await _lite_read(ctx, bus, r["ISR"]) == 0
        assert ctx.get(regs.irq) == 0
        assert await _lite_read(ctx, bus, 0xFC) == 0  # unmapped

    sim = Simulator(regs)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # The register counted every running cycle (the start write's tail, the ignored write, the 10
    # driven cycles) and exactly the 4 stalled ones (i = 0, 3, 6, 9).
    assert seen["stalls"] == 4
    assert 10 < seen["cycles"] < 40
