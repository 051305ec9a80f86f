# SPDX-License-Identifier: Apache-2.0
"""The post-processing lanes: one AXI word of accumulators per cycle through bias, requantize (RQ1),
ReLU, GELU, the residual add, requantize (RQ2) and ReLU, out as a write beat (docs/isa.md §3.3).

The lanes are a pipeline that moves whenever its output register is free or taken (``i.ready``);
every word goes through every stage, so the latency does not depend on the operations chosen.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .descriptor import DESCRIPTOR_LAYOUT, RQ_LAYOUT
from .engine import out_layout
from .gelu import GeluTable, gelu_lane, gelu_latency
from .geometry import Geometry, extend
from .pipeline import Pipeline
from .runtime_requantize import RESULT_SHAPE, cut_layout, requantize_cut, requantize_fit

__all__ = ["OPS_LAYOUT", "PostLane", "PostLanes"]

#: The operations of the lanes, as the LINEAR descriptor names them (docs/isa.md §3.3).
OPS_LAYOUT = data.StructLayout({
    "bias": unsigned(1),
    "relu1": unsigned(1),
    "gelu": unsigned(1),
    "residual": unsigned(1),
    "relu2": unsigned(1),
    "r_unsigned": unsigned(1),
    "rq1": RQ_LAYOUT,
    "rq2": RQ_LAYOUT,
    "y_shift": DESCRIPTOR_LAYOUT["y_shift"].shape,
    "r_shift": DESCRIPTOR_LAYOUT["r_shift"].shape,
    "scale": unsigned(16),  # RQ1 reads (acc + bias)·scale: 1 for LINEAR, the attention engine's Q·Kᵀ scale
})

#: Bits ``scale`` widens RQ1's source by (hardware with the attention engine only).
SCALE_BITS = 16


class PostLane(wiring.Component):
    """One lane of :class:`PostLanes`: one accumulator through every stage to an ``act_bits`` result.

    Holds no lane index, so the lanes of a word are equal modules for Yosys. Its registers load
    at ``advance``; ``y`` leaves ``lane_latency`` advances after ``acc`` was taken.

    Ports
    -----
    ops : In(OPS_LAYOUT)
        The operations; held stable while words are in the lane.
    advance : In(1)
        Every stage loads: the lane moves one step.
    acc : In(signed(acc_bits))
        The lane's accumulator, taken at ``advance``.
    residual : In(act_bits)
        The lane's element of the residual word, taken with ``acc``.
    bias : In(bias_bits)
        The lane's bias entry, valid the cycle after ``acc`` was taken.
    y : Out(act_bits)
        The result, combinational from the last stage's registers.
    """

    def __init__(self, geometry: Geometry):
        self.geometry = geo = geometry
        hw = geo.hw
        self.gelu_config = hw.unit_formats().gelu_config()
        super().__init__({
            "ops": In(OPS_LAYOUT),
            "advance": In(1),
            "acc": In(signed(hw.acc_bits)),
            "residual": In(hw.act_bits),
            "bias": In(geo.bias_bits),
            "y": Out(hw.act_bits),
        })

    @staticmethod
    def latency(geometry: Geometry) -> int:
        """Register stages from ``acc`` to ``y``."""
        return 6 + gelu_latency(geometry.hw.unit_formats().gelu_config())

    def elaborate(self, platform):
        m = Module()
        hw = self.geometry.hw
        ops, acc_bits, act_bits = self.ops, hw.acc_bits, hw.act_bits
        pipe = Pipeline(m, "lane")
        m.d.comb += pipe.advance.eq(self.advance)

        def carry(reg, index):
            return pipe.reg(reg, name=f"{reg.name}_s{index}")

        # Stage 1: the accumulator and residual element (the bias arrives from memory).
        acc = pipe.reg(self.acc, name="acc")
        res1 = pipe.reg(self.residual, name="res1")

        # Stage 2: + bias (exact: the compiler sized acc_bits for the biased sum). With the attention
        # engine, times ``scale`` too (exact in acc_bits + 16 bits: QK's acc·scale, docs/isa.md §3.8).
        scaled = hw.has_attention
        total = (acc + Mux(ops.bias, self.bias.as_signed(), 0))[:acc_bits].as_signed()
        if scaled:
            total = total * Cat(ops.scale, 0).as_signed()
        biased = pipe.reg(total, name="biased", shape=signed(acc_bits + (SCALE_BITS + 1 if scaled else 0)))
        res2 = carry(res1, 2)

        # Stages 3-4: RQ1, ReLU1.
        cut1 = pipe.reg(requantize_cut(m, biased, ops.rq1, name="rq1"), name="cut1", shape=cut_layout(len(biased)))
        res3 = carry(res2, 3)
        fitted = requantize_fit(m, cut1, ops.rq1, name="rq1")
        y1 = pipe.reg(Mux(ops.relu1 & fitted[-1], 0, fitted), name="y1", shape=RESULT_SHAPE)
        res4 = carry(res3, 4)

        # Stages 4a-4d: GELU of the low act_bits of y1, sign-extended (docs/isa.md §3.3, flag GELU).
        # Every word goes through these stages, so the pipeline's latency does not depend on the flag.
        gelu_stages = gelu_latency(self.gelu_config)
        gelu_table = GeluTable(self.gelu_config)
        m.submodules.gelu_table = rom = gelu_table.rom()
        gelu = gelu_lane(pipe, self.gelu_config, gelu_table, rom.read, y1[:act_bits].as_signed())
        y1 = pipe.wire(RESULT_SHAPE, Mux(ops.gelu, gelu, pipe.delay(y1, gelu_stages, name="y1_g")), name="y1g")
        res4 = pipe.delay(res4, gelu_stages, name="res4_g")

        # Stage 5: residual sum s = (y1 << y_shift) + (r << r_shift), exact in acc_bits.
        y_shift = Mux(ops.y_shift > 63, 63, ops.y_shift)[:6]
        r_shift = Mux(ops.r_shift > 63, 63, ops.r_shift)[:6]
        r = extend(res4, ops.r_unsigned)
        total = ((y1 << y_shift)[:acc_bits] + (r << r_shift)[:acc_bits])[:acc_bits].as_signed()
        s = pipe.reg(total, name="sum", shape=signed(acc_bits))
        y1_5 = carry(y1, 5)

        # Stages 6-7: RQ2, ReLU2, choose.
        cut2 = pipe.reg(requantize_cut(m, s, ops.rq2, name="rq2"), name="cut2", shape=cut_layout(acc_bits))
        y1_6 = carry(y1_5, 6)
        fitted = requantize_fit(m, cut2, ops.rq2, name="rq2")
        y2 = Mux(ops.relu2 & fitted[-1], 0, fitted)
        m.d.comb += self.y.eq(Mux(ops.residual, y2, y1_6)[:act_bits])
        return m


class PostLanes(wiring.Component):
    """``post_lanes`` outputs per cycle from accumulators to an output word.

    Ports
    -----
    ops : In(OPS_LAYOUT)
        The operations; held stable while words are in the lanes.
    i : In(stream)
        A word to process: ``acc`` (the lanes' accumulators), ``residual`` (an AXI word of ``r``, used
        with ``ops.residual``) and ``strb`` (the output word's byte strobes). ``ready``: the lanes advance.
    bias : In(post_lanes · bias_bits)
        Bias entries of the word taken at the previous advance (a memory read issued with that take).
    out : Out(stream)
        Output words: ``data`` and byte strobes ``strb``.
    busy : Out(1)
        A word is in the lanes or waiting on ``out``.
    """

    def __init__(self, geometry: Geometry):
        self.geometry = geo = geometry
        hw = geo.hw
        self.in_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(hw.acc_bits), geo.post_lanes),
            "residual": unsigned(geo.axi_bits),
            "strb": unsigned(geo.axi_bytes),
        })
        super().__init__({
            "ops": In(OPS_LAYOUT),
            "i": In(stream.Signature(self.in_layout)),
            "bias": In(geo.post_lanes * geo.bias_bits),
            "out": Out(stream.Signature(out_layout(geo.axi_bits))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        post_lanes, act_bits, bias_bits = geo.post_lanes, geo.hw.act_bits, geo.bias_bits
        out = self.out
        pipe = Pipeline(m, "post")
        m.d.comb += [pipe.advance.eq(~out.valid | out.ready), self.i.ready.eq(pipe.advance)]

        # Every lane holds its own stages; here only the valid bits and strobes travel alongside.
        latency = PostLane.latency(geo)
        valid_p = pipe.valid_chain(self.i.valid, latency)[1:]
        strb = pipe.delay(self.i.payload.strb, latency, name="strb")
        outputs = []
        for e in range(post_lanes):
            m.submodules[f"lane{e}"] = lane = PostLane(geo)
            m.d.comb += [
                lane.ops.eq(self.ops),
                lane.advance.eq(pipe.advance),
                lane.acc.eq(self.i.payload.acc[e]),
                lane.residual.eq(self.i.payload.residual[e * act_bits:(e + 1) * act_bits]),
                lane.bias.eq(self.bias[e * bias_bits:(e + 1) * bias_bits]),
            ]
            outputs.append(lane.y)
        with m.If(pipe.advance):
            m.d.sync += [
                out.valid.eq(valid_p[-1]),
                out.payload.data.eq(Cat(*outputs)),
                out.payload.strb.eq(strb),
            ]
        m.d.comb += self.busy.eq(Cat(*valid_p).any() | out.valid)
        return m
