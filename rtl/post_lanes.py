# SPDX-License-Identifier: Apache-2.0
"""The post-processing lanes: one AXI word of accumulators per cycle through bias, requantize (RQ1),
ReLU, GELU, the residual add, requantize (RQ2) and ReLU, out as a write beat (docs/isa.md §3.3).

The lanes are a pipeline that moves whenever its output register is free or taken (``i.ready``);
every word goes through every stage, so the latency does not depend on the operations chosen.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .descriptor import DESCRIPTOR_LAYOUT, RQ_LAYOUT
from .engine import out_layout
from .gelu import GeluTable, gelu_lane, gelu_latency
from .geometry import Geometry, extend
from .pipeline import Pipeline
from .runtime_requantize import RESULT_SHAPE, cut_layout, requantize_cut, requantize_fit

__all__ = ["OPS_LAYOUT", "PostLanes"]

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
        self.gelu_config = hw.unit_formats().gelu_config()
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
        hw = geo.hw
        ops, post_lanes, acc_bits, act_bits = self.ops, geo.post_lanes, hw.acc_bits, hw.act_bits
        out = self.out
        advance = ~out.valid | out.ready
        m.d.comb += self.i.ready.eq(advance)

        def stage(name, shape, value):
            """A pipeline register: moves only when the pipeline advances."""
            reg = Signal(shape, name=name)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        def carry(reg, index):
            return stage(f"{reg.name}_s{index}", reg.shape(), reg)

        # Stage 1: the word's accumulators, residual word and strobes (bias arrives from memory).
        gelu_stages = gelu_latency(self.gelu_config)
        valid_p = [Signal(name=f"post_valid{s}") for s in range(1, 7 + gelu_stages)]
        lane_acc = [stage(f"post_acc_{e}", signed(acc_bits), self.i.payload.acc[e]) for e in range(post_lanes)]
        res1 = stage("res1", geo.axi_bits, self.i.payload.residual)
        strb1 = stage("strb1", geo.axi_bytes, self.i.payload.strb)
        with m.If(advance):
            m.d.sync += valid_p[0].eq(self.i.valid)
            m.d.sync += [valid_p[i + 1].eq(valid_p[i]) for i in range(len(valid_p) - 1)]

        # Stage 2: + bias (exact: the compiler sized acc_bits for the biased sum). With the attention
        # engine, times ``scale`` too (exact in acc_bits + 16 bits: QK's acc·scale, docs/isa.md §3.8).
        biased = []
        scaled = hw.has_attention
        for e in range(post_lanes):
            bias_value = self.bias[e * geo.bias_bits:(e + 1) * geo.bias_bits].as_signed()
            total = (lane_acc[e] + Mux(ops.bias, bias_value, 0))[:acc_bits].as_signed()
            if scaled:
                total = total * Cat(ops.scale, 0).as_signed()
            width = acc_bits + (SCALE_BITS + 1 if scaled else 0)
            biased.append(stage(f"biased_{e}", signed(width), total))
        res2, strb2 = carry(res1, 2), carry(strb1, 2)

        # Stages 3-4: RQ1, ReLU1.
        cut1 = [stage(f"cut1_{e}", cut_layout(len(biased[e])), requantize_cut(m, biased[e], ops.rq1, name=f"rq1_{e}"))
                for e in range(post_lanes)]
        res3, strb3 = carry(res2, 3), carry(strb2, 3)
        y1 = []
        for e in range(post_lanes):
            fitted = requantize_fit(m, cut1[e], ops.rq1, name=f"rq1_{e}")
            y1.append(stage(f"y1_{e}", RESULT_SHAPE, Mux(ops.relu1 & fitted[-1], 0, fitted)))
        res4, strb4 = carry(res3, 4), carry(strb3, 4)

        # Stages 4a-4d: GELU of the low act_bits of y1, sign-extended (docs/isa.md §3.3, flag GELU).
        # Every word goes through these stages, so the pipeline's latency does not depend on the flag.
        gelu_pipe = Pipeline(m, "gelu")
        m.d.comb += gelu_pipe.advance.eq(advance)
        gelu_table = GeluTable(self.gelu_config)
        gelu_out = []
        for e in range(post_lanes):
            m.submodules[f"gelu_table{e}"] = rom = gelu_table.rom()  # one ROM per lane: one read port each
            gelu_out.append(gelu_lane(gelu_pipe, self.gelu_config, gelu_table, rom.read,
                                      y1[e][:act_bits].as_signed()))
        y1 = [gelu_pipe.wire(RESULT_SHAPE, Mux(ops.gelu, g, gelu_pipe.delay(v, gelu_stages, name=f"y1_{e}_g")),
                             name=f"y1g_{e}")
              for e, (g, v) in enumerate(zip(gelu_out, y1))]
        res4 = gelu_pipe.delay(res4, gelu_stages, name="res4_g")
        strb4 = gelu_pipe.delay(strb4, gelu_stages, name="strb4_g")

        # Stage 5: residual sum s = (y1 << y_shift) + (r << r_shift), exact in acc_bits.
        y_shift = Mux(ops.y_shift > 63, 63, ops.y_shift)[:6]
        r_shift = Mux(ops.r_shift > 63, 63, ops.r_shift)[:6]
        sums = []
        for e in range(post_lanes):
            r = extend(res4[e * act_bits:(e + 1) * act_bits], ops.r_unsigned)
            total = ((y1[e] << y_shift)[:acc_bits] + (r << r_shift)[:acc_bits])[:acc_bits].as_signed()
            sums.append(stage(f"sum_{e}", signed(acc_bits), total))
        y1_5 = [carry(v, 5) for v in y1]
        strb5 = carry(strb4, 5)

        # Stages 6-7: RQ2, ReLU2, choose, pack the output word.
        cut2 = [stage(f"cut2_{e}", cut_layout(acc_bits), requantize_cut(m, sums[e], ops.rq2, name=f"rq2_{e}"))
                for e in range(post_lanes)]
        y1_6 = [carry(v, 6) for v in y1_5]
        strb6 = carry(strb5, 6)
        outputs = []
        for e in range(post_lanes):
            fitted = requantize_fit(m, cut2[e], ops.rq2, name=f"rq2_{e}")
            y2 = Mux(ops.relu2 & fitted[-1], 0, fitted)
            outputs.append(Mux(ops.residual, y2, y1_6[e])[:act_bits])
        with m.If(advance):
            m.d.sync += [
                out.valid.eq(valid_p[-1]),
                out.payload.data.eq(Cat(*outputs)),
                out.payload.strb.eq(strb6),
            ]
        m.d.comb += self.busy.eq(Cat(*valid_p).any() | out.valid)
        return m
