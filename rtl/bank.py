# SPDX-License-Identifier: Apache-2.0
"""One on-chip memory as a component: a synchronous read port and, unless it is a ROM, a write port.

A buffer of N banks is N instances of the same module, so the resource estimate synthesizes one
and counts it N times (``hwgen.toolchain.hierarchy``); an ``amaranth.lib.memory.Memory`` placed
directly in a larger component would be inlined there, N times.
"""

from __future__ import annotations

from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Bank"]


class Bank(wiring.Component):
    """``depth`` words of ``width`` bits, initialised to ``init``; written in ``granularity``-bit lanes.

    Ports
    -----
    write : In(Signature(addr, data, en))
        Write port (absent when ``writable`` is false): ``data`` at ``addr`` on the next edge, for the
        lanes set in ``en`` (one bit per ``granularity`` bits).
    read : In(Signature(addr, en, data))
        Read port: ``data`` holds the word at the ``addr`` of the previous cycle in which ``en`` was set.
    """

    def __init__(self, *, width: int, depth: int, granularity: int | None = None, init=(), writable: bool = True):
        granularity = width if granularity is None else granularity
        if width % granularity:
            raise ValueError(f"granularity must divide width {width}, not {granularity}")
        self.width, self.depth, self.granularity, self.init = width, depth, granularity, list(init)
        members = {"read": In(wiring.Signature({"addr": Out(range(depth)), "en": Out(1, init=1), "data": In(width)}))}
        if writable:
            members["write"] = In(wiring.Signature({
                "addr": Out(range(depth)), "data": Out(width), "en": Out(width // granularity)}))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=unsigned(self.width), depth=self.depth, init=self.init)
        read = memory.read_port()
        m.d.comb += [read.addr.eq(self.read.addr), read.en.eq(self.read.en), self.read.data.eq(read.data)]
        if "write" in self.signature.members:
            write = memory.write_port(granularity=None if self.granularity == self.width else self.granularity)
            m.d.comb += [write.addr.eq(self.write.addr), write.data.eq(self.write.data), write.en.eq(self.write.en)]
        return m
