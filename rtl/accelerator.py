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

from amaranth import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen import stamp
from hwgen.hwparams import HwParams

from ._errors import refuse
from .axi import AXI4LiteSignature, AXI4Reader, AXI4Signature, AXI4Writer, AXILiteRegisters, connect_axi4
from .compute_unit import ComputeUnit, Geometry
from .controller import BEATS_WIDTH, Controller
from .descriptor import OPCODE_LINEAR, TAG_WIDTH, VERSION, Tag
from .row_unit import RowUnit

__all__ = ["Accelerator", "CORE_NAME", "core_verilog", "params_word"]

REGISTER_ADDR_WIDTH = 8


def params_word(hw: HwParams) -> int:
    """The PARAMS register: ISA version, AXI bytes, lanes_out, lanes_in (one byte each, high to low)."""
    return VERSION << 24 | (hw.axi_bytes & 0xFF) << 16 | (hw.lanes_out & 0xFF) << 8 | (hw.lanes_in & 0xFF)


class Accelerator(wiring.Component):
    """The whole core: registers, controller, AXI read/write engines, the compute unit and the row unit.

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
            problem = "has_attention must be false: the RTL core has no attention engine (QK_SOFTMAX_STATS, AV) yet"
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
        m.submodules.unit = unit = ComputeUnit(hw)
        # Without a row unit (RowGeometry.problem) the controller refuses LAYERNORM/SOFTMAX as BAD_OPCODE.
        has_rows = controller.has_rows
        if has_rows:
            m.submodules.rows = rows = RowUnit(hw)
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
            registers.stall.eq(~unit.issuing),
            controller.writer_busy.eq(writer.busy),
            controller.read_error.eq(reader.error),
            controller.write_error.eq(writer.error),
            unit.desc.eq(controller.desc),
            unit.start.eq(controller.unit_start),
            controller.unit_done.eq(unit.done),
            controller.row_released.eq(unit.row_released),
            controller.chunk_released.eq(unit.chunk_released),
            controller.residual_released.eq(unit.residual_released),
        ]
        wiring.connect(m, controller.read_cmd, reader.cmd)
        wiring.connect(m, controller.write_cmd, writer.cmd)

        # Read data by tag: descriptor words to the controller, γ/β and rows to the row unit,
        # everything else into the compute unit.
        tag = reader.data.payload.tag
        is_desc = tag == Tag.DESC
        m.d.comb += [
            controller.desc_data.payload.eq(reader.data.payload.data),
            controller.desc_data.valid.eq(reader.data.valid & is_desc),
            unit.fill.payload.eq(reader.data.payload),
        ]
        if not has_rows:
            wiring.connect(m, unit.out, writer.data)
            m.d.comb += [
                unit.fill.valid.eq(reader.data.valid & ~is_desc),
                reader.data.ready.eq(Mux(is_desc, controller.desc_data.ready, unit.fill.ready)),
            ]
            return m

        m.d.comb += [
            rows.desc.eq(controller.desc.as_value()),
            rows.start.eq(controller.row_start),
            controller.row_done.eq(rows.done),
            controller.row_beat_released.eq(rows.beat_released),
        ]
        # Write data: from the unit the current descriptor runs on.
        row_mode = controller.desc.opcode != OPCODE_LINEAR
        m.d.comb += [
            writer.data.payload.eq(Mux(row_mode, rows.out.payload.as_value(), unit.out.payload.as_value())),
            writer.data.valid.eq(Mux(row_mode, rows.out.valid, unit.out.valid)),
            unit.out.ready.eq(writer.data.ready & ~row_mode),
            rows.out.ready.eq(writer.data.ready & row_mode),
        ]
        is_row = (tag == Tag.ROW) | (tag == Tag.ROW_PARAM)
        m.d.comb += [
            unit.fill.valid.eq(reader.data.valid & ~is_desc & ~is_row),
            rows.fill.payload.eq(reader.data.payload),
            rows.fill.valid.eq(reader.data.valid & is_row),
            reader.data.ready.eq(Mux(is_desc, controller.desc_data.ready,
                                     Mux(is_row, rows.fill.ready, unit.fill.ready))),
        ]
        return m


#: Module name of the core in every Verilog hwgen writes or simulates (``hwgen build``, ``hwgen sim``, the benches).
CORE_NAME = "hwgen_accel"


@functools.lru_cache(maxsize=8)
def core_verilog(hw: HwParams) -> str:
    """Verilog of ``Accelerator(hw)`` as module ``hwgen_accel``, stamped, without source paths.

    The same text for ``hwgen build`` and every bench, so Verilator builds each core once (its cache
    is keyed by the text); ``emit_src=False`` because source paths would differ between checkouts.
    """
    from amaranth.back import verilog

    text = verilog.convert(Accelerator(hw), name=CORE_NAME, emit_src=False)
    header = (f"// {stamp()}\n// hwgen accelerator core: {hw}; hardware fingerprint {hw.fingerprint():#010x}.\n"
              "// Register map and run sequence: docs/isa.md section 8.\n")
    return header + text
