# SPDX-License-Identifier: Apache-2.0
"""The shape every element-wise nonlinear unit shares: lanes of one pipelined datapath around one ROM.

:class:`LaneUnit` holds the stream signature, the parameter checks and the elaboration; a unit
(:class:`~hwgen.rtl.exp.Exp`, :class:`~hwgen.rtl.reciprocal.Reciprocal`,
:class:`~hwgen.rtl.rsqrt.Rsqrt`, :class:`~hwgen.rtl.gelu.Gelu`) says which config it takes, its
latency, its ROM and its per-lane datapath. Every lane has its own read port on the shared ROM,
and the pipeline advances as a whole (:class:`~hwgen.rtl.pipeline.Pipeline`), so the unit takes
one beat of ``lanes`` values per cycle.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwgen.rtl._errors import refuse
from hwgen.rtl.pipeline import Pipeline
from hwgen.rtl.requantize import lane_shape

__all__ = ["LaneUnit"]


class LaneUnit(wiring.Component):
    """``lanes`` raw ``cfg.in_fmt`` values per beat in, their raw ``cfg.out_fmt`` results out, in order.

    Subclasses set :attr:`CONFIGS` (accepted config classes), :attr:`CONFIG_NAME` (how errors name
    them) and :attr:`NAME` (signal prefix), and implement :meth:`unit_latency`, :meth:`rom` and
    :meth:`lane`.
    """

    CONFIGS: tuple[type, ...] = ()
    CONFIG_NAME = ""
    NAME = "unit"

    def __init__(self, cfg, lanes: int = 1):
        if not isinstance(cfg, self.CONFIGS):
            refuse(self, f"cfg must be {self.CONFIG_NAME}, not {cfg!r}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            refuse(self, f"lanes must be a positive integer, not {lanes!r}")
        self.cfg, self.lanes = cfg, lanes
        self.latency = self.unit_latency(cfg)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(lane_shape(cfg.in_fmt), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(lane_shape(cfg.out_fmt), lanes))),
        })

    @staticmethod
    def unit_latency(cfg) -> int:
        """Register stages from an input beat to its output beat."""
        raise NotImplementedError

    def rom(self):
        """The ROM every lane reads (a :class:`~amaranth.lib.memory.Memory`)."""
        raise NotImplementedError

    def lane(self, pipe: Pipeline, port, x):
        """One lane's datapath: raw input ``x`` to its raw result after :attr:`latency` stages."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        pipe = Pipeline(m, self.NAME)
        m.submodules.table = rom = self.rom()
        for lane in range(self.lanes):
            m.d.comb += self.o.payload[lane].eq(self.lane(pipe, rom.read_port(domain="sync"), self.i.payload[lane]))
        pipe.connect(self.i.valid, self.i.ready, self.o.valid, self.o.ready, self.latency)
        return m
