# SPDX-License-Identifier: Apache-2.0
"""The accelerator top: one AXI4 master to DDR, one AXI-Lite register slave, one interrupt.

Everything is generated from the :class:`~hwgen.hwparams.HwParams` the compiler used, and the
parameters' fingerprint is both readable in the FINGERPRINT register and checked by the controller
against every Program header, so a Program built for another configuration never runs.

One master port is enough for the utilization target: reads (Program, weights, rows of ``x`` and
``r``) and writes (outputs) use the independent read and write channels of the same port, and a
LINEAR descriptor's read traffic per chunk stays below its compute time whenever the weight chunk
is reused over enough rows (see docs/isa.md "Register map and RTL core").
"""

import functools
from pathlib import Path

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen import stamp, toolchain
from hwgen.hwparams import HwParams

from ._errors import refuse
from .axi import AXI4LiteSignature, AXI4Reader, AXI4Signature, AXI4Writer, AXILiteRegisters, connect_axi4
from .controller import Controller
from .descriptor import TAG_WIDTH, VERSION
from .engine import BEATS_WIDTH
from .geometry import Geometry

__all__ = ["Accelerator", "CORE_NAME", "core_verilog", "params_word"]

REGISTER_ADDR_WIDTH = 8


def params_word(hw: HwParams) -> int:
    """The PARAMS register: ISA version, AXI bytes, lanes_out, lanes_in (one byte each, high to low)."""
    return VERSION << 24 | (hw.axi_bytes & 0xFF) << 16 | (hw.lanes_out & 0xFF) << 8 | (hw.lanes_in & 0xFF)


class Accelerator(wiring.Component):
    """The whole core: registers, the controller (with its engines) and the AXI read/write engines.

    Ports
    -----
    m_axi : Out(AXI4Signature)
        Master port to DDR (``axi_data_width`` bits, 32-bit addresses).
    s_axi : In(AXI4LiteSignature)
        Register port (docs/isa.md, "Register map").
    irq : Out(1)
        Interrupt: a run finished while enabled.
    """

    def __init__(self, hw: HwParams):
        problem = Geometry.problem(hw)
        if not problem and hw.has_attention:
            from .attention_engine import AttentionEngine

            problem = AttentionEngine.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=hw.axi_data_width)),
            "s_axi": In(AXI4LiteSignature(addr_width=REGISTER_ADDR_WIDTH)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        m.submodules.registers = registers = AXILiteRegisters(
            fingerprint=hw.fingerprint(), params=params_word(hw), addr_width=REGISTER_ADDR_WIDTH)
        m.submodules.controller = controller = Controller(hw)
        m.submodules.reader = reader = AXI4Reader(
            data_width=hw.axi_data_width, beats_width=BEATS_WIDTH, tag_width=TAG_WIDTH)
        m.submodules.writer = writer = AXI4Writer(data_width=hw.axi_data_width, beats_width=BEATS_WIDTH)

        wiring.connect(m, wiring.flipped(self.s_axi), registers.s_axi)
        connect_axi4(m, self.m_axi, reader.bus)
        connect_axi4(m, self.m_axi, writer.bus)
        m.d.comb += [
            self.irq.eq(registers.irq),
            controller.start.eq(registers.start),
            controller.program_addr.eq(registers.program_addr),
            controller.image_base.eq(registers.image_base),
            registers.done.eq(controller.done),
            registers.status.eq(controller.status),
            registers.descriptors_done.eq(controller.descriptors_done),
            registers.stall.eq(~controller.issuing),
            controller.writer_busy.eq(writer.busy),
            controller.read_error.eq(reader.error),
            controller.write_error.eq(writer.error),
        ]
        wiring.connect(m, controller.read_cmd, reader.cmd)
        wiring.connect(m, reader.data, controller.read_data)
        wiring.connect(m, controller.write_cmd, writer.cmd)
        wiring.connect(m, controller.write_data, writer.data)
        return m


#: Module name of the core in every Verilog hwgen writes or simulates (``hwgen build``, ``hwgen sim``, the benches).
CORE_NAME = "hwgen_accel"


@functools.lru_cache(maxsize=8)
def core_verilog(hw: HwParams) -> str:
    """Verilog of ``Accelerator(hw)`` as module ``hwgen_accel``, stamped, without source paths.

    The same text for ``hwgen build`` and every bench, so Verilator builds each core once (its cache
    is keyed by the text); ``emit_src=False`` because source paths would differ between checkouts.
    Converting a large core takes Amaranth a minute, so the text is cached on disk too, keyed by the
    parameters and every source file of hwgen and its RTL (``toolchain.sources_digest``): test workers and later
    runs convert each core once.
    """
    def convert() -> str:
        from amaranth.back import verilog

        text = verilog.convert(Accelerator(hw), name=CORE_NAME, emit_src=False)
        header = (f"// {stamp()}\n// hwgen accelerator core: {hw}; hardware fingerprint {hw.fingerprint():#010x}.\n"
                  "// Register map and run sequence: docs/isa.md section 8.\n")
        return header + text

    sources = toolchain.sources_digest(Path(toolchain.__file__).parent, Path(__file__).parent)  # hwgen/, rtl/
    return toolchain.cached_text("verilog", (repr(hw), stamp(), sources,
                                             toolchain.release("amaranth")), convert)
