# SPDX-License-Identifier: Apache-2.0
"""A pipeline that advances as a whole, for streaming datapaths with one beat per cycle.

Every register of a :class:`Pipeline` loads when :attr:`Pipeline.advance` is high: when the
output stage is empty or its beat is being taken.  A full pipeline whose output is not taken
holds every stage, so no beat is lost or repeated, and an unstalled pipeline accepts a beat
every cycle: N beats leave N + latency cycles after the first enters.  Synchronous memory read
ports enabled by ``advance`` act as one more register stage (the table look-ups of the
nonlinear units).  Datapath helpers register their values with :meth:`Pipeline.reg` and the
component closes the loop with :meth:`Pipeline.connect`, which counts the stages for ``valid``.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.lib import data

__all__ = ["Pipeline"]


class Pipeline:
    """Stage registers sharing one load enable, and the valid bits that travel with them."""

    def __init__(self, m: Module, name: str = "pipe"):
        self.m = m
        self.name = name
        #: High when every stage moves one step (the last stage is empty or taken).
        self.advance = Signal(name=f"{name}_advance")
        self._count = 0

    def reg(self, value, name: str | None = None, shape=None):
        """A register loading ``value`` when the pipeline advances (one stage of delay)."""
        if shape is None:
            shape = value.shape() if isinstance(value, (Value, data.View)) else Value.cast(value).shape()
        self._count += 1
        reg = Signal(shape, name=name or f"{self.name}_r{self._count}")
        with self.m.If(self.advance):
            self.m.d.sync += reg.eq(value)
        return reg

    def wire(self, shape, value, name: str | None = None) -> Signal:
        """A combinational signal of an explicit ``shape`` carrying ``value`` (truncated or extended)."""
        self._count += 1
        sig = Signal(shape, name=name or f"{self.name}_w{self._count}")
        self.m.d.comb += sig.eq(value)
        return sig

    def delay(self, value, stages: int, name: str | None = None):
        """``value`` after ``stages`` registers (``value`` itself for 0)."""
        for _ in range(stages):
            value = self.reg(value, name)
        return value

    def valid_chain(self, in_valid, latency: int) -> list:
        """The valid bit after 0..``latency`` stages (element 0 is ``in_valid`` itself)."""
        chain = [in_valid]
        for stage in range(latency):
            nxt = Signal(name=f"{self.name}_valid{stage + 1}")
            with self.m.If(self.advance):
                self.m.d.sync += nxt.eq(chain[-1])
            chain.append(nxt)
        return chain

    def handshake(self, in_ready, out_valid, out_ready, valid, keep=1) -> None:
        """Drive the handshakes from the last stage's ``valid``; beats whose ``keep`` is low
        are dropped at the output (a filter: one output per row, say)."""
        leaving = Signal(name=f"{self.name}_leaving")
        self.m.d.comb += [
            leaving.eq(valid & keep),
            out_valid.eq(leaving),
            self.advance.eq(~leaving | out_ready),
            in_ready.eq(self.advance),
        ]

    def connect(self, in_valid, in_ready, out_valid, out_ready, latency: int) -> None:
        """Tie the handshakes: ``latency`` register stages between input and output."""
        chain = self.valid_chain(in_valid, latency)
        self.handshake(in_ready, out_valid, out_ready, chain[-1])
