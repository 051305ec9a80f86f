# SPDX-License-Identifier: Apache-2.0
"""The handshake between the controller and an engine, the one thing every opcode family implements.

The controller fetches a descriptor, checks it (with the checks the engine states, :class:`Checks`)
and starts the engine that runs its opcode; the engine then issues its own read and write commands,
takes its read data and sends its write data, and pulses ``done`` when the last output word has left.
The controller arbitrates the engines' command streams onto the one read and one write engine
(:func:`arbitrate`) and routes read data to an engine by the tags it declares.

Adding an opcode family is one engine (a :class:`wiring.Component` with :func:`engine_signature`,
``OPCODES``, ``TAGS``, ``problem`` and ``checks``) and its entry in ``rtl/controller.py``'s ``ENGINES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Cat, Const, Mux, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .descriptor import DESCRIPTOR_LAYOUT, TAG_WIDTH

__all__ = [
    "BEATS_WIDTH", "read_cmd_layout", "write_cmd_layout", "fill_layout", "out_layout", "engine_signature",
    "array_engine_signature",
    "Checks", "misaligned", "hold", "issue", "arbitrate",
]

#: Width of a command's beat count.
BEATS_WIDTH = 20


def read_cmd_layout() -> data.StructLayout:
    """A read command: byte ``addr``, ``beats`` AXI words, and the ``tag`` its data comes back with."""
    return data.StructLayout({"addr": unsigned(32), "beats": unsigned(BEATS_WIDTH), "tag": unsigned(TAG_WIDTH)})


def write_cmd_layout() -> data.StructLayout:
    """A write command: byte ``addr`` and ``beats`` AXI words."""
    return data.StructLayout({"addr": unsigned(32), "beats": unsigned(BEATS_WIDTH)})


def fill_layout(axi_bits: int) -> data.StructLayout:
    """A read-data beat: one AXI word, its command's ``tag``, and ``last`` (final word of the command)."""
    return data.StructLayout({"data": unsigned(axi_bits), "tag": unsigned(TAG_WIDTH), "last": unsigned(1)})


def out_layout(axi_bits: int) -> data.StructLayout:
    """A write-data beat: one AXI word and its byte strobes."""
    return data.StructLayout({"data": unsigned(axi_bits), "strb": unsigned(axi_bits // 8)})


def engine_signature(axi_bits: int) -> wiring.Signature:
    """The members of every engine, seen from the engine.

    Members
    -------
    start : In(1)
        Pulse: run ``desc`` (already checked by the controller).
    desc : In(DESCRIPTOR_LAYOUT)
        The descriptor's 512 bits, held stable from ``start`` to ``done``; each engine views them in its layout.
    base : In(32)
        Byte address every descriptor address is relative to.
    done : Out(1)
        Pulse: the descriptor's last output word has left on ``write_data`` (so every write command was taken).
    status : Out(8)
        With ``done``: 0, or the :class:`~hwgen.isa.spec.Status` code the engine stopped the run with.
    issuing : Out(1)
        The engine issues a MAC-array step this cycle (the STALLS register counts the cycles no engine does).
    read_cmd : Out(stream)
        The engine's read commands (:func:`read_cmd_layout`).
    read_data : In(stream)
        Read data carrying one of the engine's tags (:func:`fill_layout`).
    write_cmd : Out(stream)
        The engine's write commands (:func:`write_cmd_layout`).
    write_data : Out(stream)
        The engine's output words, in the order of its write commands (:func:`out_layout`).
    """
    return wiring.Signature({
        "start": In(1),
        "desc": In(DESCRIPTOR_LAYOUT),
        "base": In(32),
        "done": Out(1),
        "status": Out(8),
        "issuing": Out(1),
        "read_cmd": Out(stream.Signature(read_cmd_layout())),
        "read_data": In(stream.Signature(fill_layout(axi_bits))),
        "write_cmd": Out(stream.Signature(write_cmd_layout())),
        "write_data": Out(stream.Signature(out_layout(axi_bits))),
    })


def array_engine_signature(hw, unit: wiring.Signature) -> wiring.Signature:
    """:func:`engine_signature` and ``unit``: an engine that runs on the shared MAC array drives the
    compute unit's inputs and sees its outputs (``unit`` is the unit's own signature). The controller
    holds the one compute unit and connects it to the engine of the running opcode."""
    return wiring.Signature({**engine_signature(hw.axi_data_width).members, "unit": In(unit)})


@dataclass
class Checks:
    """Why a descriptor of an engine's family cannot run (docs/isa.md §8.3), as combinational conditions.

    ``bad`` (BAD_DESCRIPTOR), ``too_big`` (DOES_NOT_FIT), ``misaligned`` (MISALIGNED) are tested in that
    order; ``terms`` are the operand extents ``(enable, addr, rows, stride, tail)`` for the bounds checker.

    Checks that need a few cycles (CONV's ``K mod kh`` and products, :class:`~hwgen.rtl.conv_geometry.ConvGeometry`)
    name their ``units`` (submodules of the controller, by name), the ``connections`` that drive them from
    the words, and ``ready``: the controller starts the bounds walk, and reads the conditions, only once
    ``ready`` holds for the fetched descriptor.
    """

    bad: object
    too_big: object
    misaligned: object
    terms: list
    ready: object = 1
    units: dict = field(default_factory=dict)
    connections: list = field(default_factory=list)


def misaligned(axi_bytes: int, *values):
    """Some of ``values`` is not a multiple of ``axi_bytes``."""
    shift = axi_bytes.bit_length() - 1
    return Cat(*(v[:shift] for v in values)).any() if shift else Const(0)


def hold(m, cmd):
    """A command register on stream ``cmd``: the command stays until taken. Returns "free" (a command may be
    written this cycle)."""
    with m.If(cmd.valid & cmd.ready):
        m.d.sync += cmd.valid.eq(0)
    return ~cmd.valid | cmd.ready


def issue(cmd, **fields):
    """Assignments that put a command with ``fields`` into the register of stream ``cmd``."""
    return [cmd.valid.eq(1), *(getattr(cmd.payload, name).eq(value) for name, value in fields.items())]


def arbitrate(m, sources, sink):
    """Forward the first valid of the command streams ``sources`` to ``sink`` (fixed priority)."""
    chosen = Const(0)
    for source in sources:
        m.d.comb += source.ready.eq(sink.ready & source.valid & ~chosen)
        chosen = chosen | source.valid
    payload = Const(0, len(sink.payload.as_value()))
    for source in reversed(sources):
        payload = Mux(source.valid, source.payload.as_value(), payload)
    m.d.comb += [sink.valid.eq(chosen), sink.payload.eq(payload)]
