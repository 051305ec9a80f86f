# SPDX-License-Identifier: Apache-2.0
"""The controller: fetches the Program from DDR, decodes and checks each descriptor, and dispatches
it to the engine of its opcode family.

Every engine (``rtl/engine.py``) has the same members: ``start``, the descriptor, ``done`` and
``status``, and its own read and write command streams, read data and write data. The controller
arbitrates the engines' commands, and its own descriptor fetches, onto the one read and one write
engine, routes read data by tag (``DESC`` to itself, the rest to the engine that declares the tag)
and passes the running engine's write data on. Adding an opcode family is one engine file and its
entry in :data:`ENGINES`.

A Program whose header has the wrong magic, version or hardware fingerprint, or a descriptor this
core cannot run (the engine's :class:`~hwgen.rtl.engine.Checks` and the operand extents through the
bounds checker), sets STATUS and stops the run before anything is computed or written.
"""

from functools import reduce
from operator import or_

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.hwparams import HwParams

from ._errors import refuse
from .attention_engine import AttentionEngine
from .checker import BoundsChecker
from .compute_unit import ComputeUnit
from .descriptor import (
    DESCRIPTOR_BYTES, DESCRIPTOR_LAYOUT, HEADER_BYTES, HEADER_LAYOUT, MAGIC, VERSION, Status, Tag,
)
from .engine import arbitrate, fill_layout, hold, issue, misaligned, out_layout, read_cmd_layout, write_cmd_layout
from .geometry import Geometry
from .linear_engine import LinearEngine
from .row_engine import RowEngine

__all__ = ["ENGINES", "CHECK_SLOTS", "CHECK_CYCLES", "Controller"]

#: The engines, one per opcode family; an engine whose ``problem(hw)`` is not ``None`` is left out
#: (its opcodes are then refused as reserved ones).
ENGINES = (LinearEngine, RowEngine, AttentionEngine)

#: Operand extents the bounds checker walks per descriptor (LINEAR: x, out, r, B or weight tiles, bias).
CHECK_SLOTS = 5
#: Cycles the checks add to every descriptor: the bounds checker's walk (docs/isa.md §5 ``fetch``).
CHECK_CYCLES = CHECK_SLOTS + 1


def _any(values):
    return reduce(or_, values, Const(0))


def _lend_compute_unit(m, hw, engines, running):
    """One :class:`ComputeUnit` (MAC array, weight banks, activation buffer, post lanes) for every engine
    with a ``unit`` member: its inputs come from the engine whose opcode runs, its outputs go to all of
    them, the pulses and valids gated to the running one."""
    borrowers = [(engine, selected) for engine, selected in zip(engines, running) if hasattr(engine, "unit")]
    if not borrowers:
        return
    m.submodules.unit = unit = ComputeUnit(hw)
    gated = {("done",), ("issuing",), ("row_released",), ("chunk_released",), ("residual_released",),
             ("out", "valid")}
    for path, member in unit.signature.members.flatten():
        if member.is_signature:
            continue
        target = unit
        for name in path:
            target = getattr(target, name)

        def of(engine, path=path):
            value = engine.unit
            for name in path:
                value = getattr(value, name)
            return value

        if member.flow == In:
            value = Const(0, len(Value.cast(target)))
            for engine, selected in borrowers:
                value = Mux(selected, Value.cast(of(engine)), value)
            m.d.comb += Value.cast(target).eq(value)
        else:
            for engine, selected in borrowers:
                source = Value.cast(target)
                m.d.comb += Value.cast(of(engine)).eq(source & selected if path in gated else source)


class Controller(wiring.Component):
    """Program fetch, checks and dispatch to the engines.

    Ports
    -----
    start : In(1)
        Pulse: run the Program at ``program_addr``.
    program_addr : In(32)
        Byte address of the Program header.
    image_base : In(32)
        Byte address every descriptor address is relative to.
    done : Out(1)
        Pulse: the run ended (all descriptors done, or stopped by an error in ``status``).
    status : Out(32)
        Status code (:class:`Status`: 0, or why the run stopped; the first error wins), cleared by ``start``.
    descriptors_done : Out(32)
        Descriptors completed in this run.
    read_cmd : Out(stream)
        Commands for the read engine: ``addr``, ``beats``, ``tag``.
    read_data : In(stream)
        Read data: ``data``, ``tag``, ``last``.
    write_cmd : Out(stream)
        Commands for the write engine: ``addr``, ``beats``.
    write_data : Out(stream)
        Data for the write engine: ``data`` and byte strobes ``strb``.
    writer_busy : In(1)
        The write engine has writes not yet acknowledged.
    read_error : In(1)
        Sticky read-response error from the read engine.
    write_error : In(1)
        Sticky write-response error from the write engine.
    issuing : Out(1)
        An engine issues a MAC-array step this cycle.
    """

    def __init__(self, hw: HwParams):
        problem = Geometry.problem(hw)
        if problem:
            refuse(self, problem)
        self.hw = hw
        self.engine_classes = tuple(cls for cls in ENGINES if cls.problem(hw) is None)
        self.has_rows = RowEngine in self.engine_classes
        axi_bits = hw.axi_data_width
        super().__init__({
            "start": In(1),
            "program_addr": In(32),
            "image_base": In(32),
            "done": Out(1),
            "status": Out(32),
            "descriptors_done": Out(32),
            "read_cmd": Out(stream.Signature(read_cmd_layout())),
            "read_data": In(stream.Signature(fill_layout(axi_bits))),
            "write_cmd": Out(stream.Signature(write_cmd_layout())),
            "write_data": Out(stream.Signature(out_layout(axi_bits))),
            "writer_busy": In(1),
            "read_error": In(1),
            "write_error": In(1),
            "issuing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self.hw
        axi_bits, axi_bytes = hw.axi_data_width, hw.axi_bytes
        engines = []
        for cls in self.engine_classes:
            m.submodules[cls.__name__] = engine = cls(hw)
            engines.append(engine)

        # ------------------------------------------------------------------ fetch: 64 bytes at a time
        fetch = stream.Signature(read_cmd_layout()).create(path=("fetch",))
        fetch_free = hold(m, fetch)
        arbitrate(m, [fetch, *(engine.read_cmd for engine in engines)], self.read_cmd)
        arbitrate(m, [engine.write_cmd for engine in engines], self.write_cmd)
        beat = self.read_data.payload
        words = Signal(8 * DESCRIPTOR_BYTES)
        beats_seen = Signal(range(DESCRIPTOR_BYTES // axi_bytes + 1))
        with m.If(self.read_data.valid & (beat.tag == Tag.DESC)):
            m.d.sync += [words.eq(Cat(words[axi_bits:], beat.data)), beats_seen.eq(beats_seen + 1)]
        fetched = beats_seen == DESCRIPTOR_BYTES // axi_bytes
        header = data.View(HEADER_LAYOUT, words)

        # ------------------------------------------------------------------ decode: the engine of the opcode
        desc = Signal(DESCRIPTOR_LAYOUT)  # the dispatched descriptor
        fetched_family = [_any(words[:8] == op for op in engine.OPCODES) for engine in engines]
        running_family = [_any(desc.opcode == op for op in engine.OPCODES) for engine in engines]
        _lend_compute_unit(m, hw, engines, running_family)
        ready = Const(1)  # DESC words are always taken
        write_valid, write_payload = Const(0), Const(0, len(self.write_data.payload.as_value()))
        for engine, selected in zip(engines, running_family):
            mine = _any(beat.tag == tag for tag in engine.TAGS)
            m.d.comb += [
                engine.desc.eq(desc), engine.base.eq(self.image_base),
                engine.read_data.payload.eq(beat), engine.read_data.valid.eq(self.read_data.valid & mine),
                engine.write_data.ready.eq(self.write_data.ready & selected),
            ]
            ready = Mux(mine, engine.read_data.ready, ready)
            write_valid = Mux(selected, engine.write_data.valid, write_valid)
            write_payload = Mux(selected, engine.write_data.payload.as_value(), write_payload)
        m.d.comb += [
            self.read_data.ready.eq(ready),
            self.write_data.valid.eq(write_valid), self.write_data.payload.eq(write_payload),
            self.issuing.eq(_any(engine.issuing for engine in engines)),
        ]

        # ------------------------------------------------------------------ checks (docs/isa.md §8.3)
        # One status code per run; the first failing check (in the order below) wins.
        status = self.status
        count = Signal(32)
        index = Signal(32)
        desc_addr = Signal(32)
        image_bytes = Signal(32)

        def fail(code):
            """Set STATUS to ``code`` unless an earlier error already set it."""
            return status.eq(Mux(status != 0, status, code))

        # Header: magic, version, fingerprint, then its size fields against the image.
        program_offset = Signal(32)
        m.d.comb += program_offset.eq(self.program_addr - self.image_base)
        header_code = Signal(8)
        with m.If(header.magic != MAGIC):
            m.d.comb += header_code.eq(Status.BAD_MAGIC)
        with m.Elif(header.version != VERSION):
            m.d.comb += header_code.eq(Status.BAD_VERSION)
        with m.Elif(header.fingerprint != hw.fingerprint()):
            m.d.comb += header_code.eq(Status.BAD_FINGERPRINT)
        with m.Elif((header.descriptor_bytes != DESCRIPTOR_BYTES)
                    | (program_offset + ((header.count + 1) << 6) > header.image_bytes)):
            m.d.comb += header_code.eq(Status.BAD_HEADER)

        # Descriptor: the engine's own checks, in the order opcode, descriptor, fit, alignment.
        checks = [engine.checks(hw, words) for engine in engines]
        for engine, check in zip(engines, checks):
            for name, unit in check.units.items():
                m.submodules[f"{type(engine).__name__}_{name}"] = unit
            m.d.comb += check.connections
        # The fetched descriptor's checks have settled (a CONV waits for its geometry; the others at once).
        checks_ready = ~_any(family & ~Value.cast(check.ready) for family, check in zip(fetched_family, checks))
        static_code = Signal(8)
        with m.If(~_any(fetched_family)):
            m.d.comb += static_code.eq(Status.BAD_OPCODE)
        for attr, code in (("bad", Status.BAD_DESCRIPTOR), ("too_big", Status.DOES_NOT_FIT),
                           ("misaligned", Status.MISALIGNED)):
            with m.Elif(_any(family & getattr(check, attr) for family, check in zip(fetched_family, checks))):
                m.d.comb += static_code.eq(code)

        # Operand extents, through the sequential bounds checker (one multiplier for all of them).
        m.submodules.checker = checker = BoundsChecker(CHECK_SLOTS)
        m.d.comb += checker.image_bytes.eq(image_bytes)
        for i, (family, check) in enumerate(zip(fetched_family, checks)):
            assert len(check.terms) <= CHECK_SLOTS, "an engine checks more operands than the bounds checker walks"
            with (m.If if i == 0 else m.Elif)(family):
                for term, (enable, addr, rows, stride, tail) in zip(checker.terms, check.terms):
                    m.d.comb += [term.enable.eq(enable), term.addr.eq(addr), term.rows.eq(rows),
                                 term.stride.eq(stride), term.tail.eq(tail)]
        desc_code = Signal(8)
        m.d.comb += desc_code.eq(Mux(static_code != 0, static_code,
                                     Mux(checker.out_of_bounds, Status.OUT_OF_BOUNDS, Status.OK)))

        # ------------------------------------------------------------------ sequencing
        done = _any(engine.done for engine in engines)
        done_status = Signal(8)
        for engine in engines:
            with m.If(engine.done):
                m.d.comb += done_status.eq(engine.status)
        engine_failed = Signal()

        def fetch_descriptor():
            return [beats_seen.eq(0), *issue(fetch, addr=desc_addr, beats=DESCRIPTOR_BYTES // axi_bytes, tag=Tag.DESC)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [status.eq(0), self.descriptors_done.eq(0), beats_seen.eq(0)]
                    with m.If(misaligned(axi_bytes, self.program_addr)):
                        m.d.sync += status.eq(Status.MISALIGNED)  # nothing is read
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += issue(fetch, addr=self.program_addr, beats=HEADER_BYTES // axi_bytes, tag=Tag.DESC)
                        m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(fetched):
                    m.d.sync += [
                        count.eq(header.count), index.eq(0), image_bytes.eq(header.image_bytes),
                        desc_addr.eq(self.program_addr + HEADER_BYTES),
                    ]
                    with m.If(header_code != 0):
                        m.d.sync += fail(header_code)
                    m.next = "CHECK_HEADER"
            with m.State("CHECK_HEADER"):
                with m.If((status != 0) | (count == 0)):
                    m.next = "FINISH"
                with m.Elif(fetch_free):
                    m.d.sync += fetch_descriptor()
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(fetched & checks_ready):
                    m.d.comb += checker.start.eq(1)
                    m.next = "CHECK"
            with m.State("CHECK"):
                # The words stay put (no descriptor read is in flight) while the checker walks the terms.
                with m.If(checker.done):
                    with m.If(desc_code != 0):
                        m.d.sync += fail(desc_code)
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += desc.eq(words)
                        m.next = "DISPATCH"
            with m.State("DISPATCH"):
                for engine, selected in zip(engines, running_family):
                    m.d.comb += engine.start.eq(selected)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(done):
                    m.d.sync += [fail(done_status), engine_failed.eq(done_status != 0)]
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                # All output words are with the write engine; wait for their B responses.
                with m.If(~self.write_cmd.valid & ~self.writer_busy):
                    with m.If(engine_failed):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += [index.eq(index + 1), desc_addr.eq(desc_addr + DESCRIPTOR_BYTES),
                                     self.descriptors_done.eq(self.descriptors_done + 1)]
                        m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(index == count):
                    m.next = "FINISH"
                with m.Elif(fetch_free):
                    m.d.sync += fetch_descriptor()
                    m.next = "FETCH"
            with m.State("FINISH"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"

        # Response errors: the first error of the run wins (READ_ERROR before WRITE_ERROR in one cycle).
        with m.If(self.read_error):
            m.d.sync += fail(Status.READ_ERROR)
        with m.Elif(self.write_error):
            m.d.sync += fail(Status.WRITE_ERROR)
        return m
