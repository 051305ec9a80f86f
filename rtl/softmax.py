# SPDX-License-Identifier: Apache-2.0
"""Single-pass softmax: running-max/running-sum statistics, normalization, and both together.

- :class:`SoftmaxStats` — rows stream in once (``last`` marks a row's end); per element and lane
  the running max m and the running sum l are updated as in
  :func:`hwgen.golden.nonlinear.softmax_stats`: m' = max(m, x), l ← ⌊l·e(m − m')⌋ + e(x − m').
  The two exps are pipelined ahead of the sum, so the only loop-carried path is the sum's
  multiply-add (and the max's compare) — one element per cycle per lane.  At a row's end it emits
  (max, 1/sum): the statistics an attention datapath needs to fuse the normalization into A·V
  (Σ e(s − max)·v, then one multiply by 1/sum).
- :class:`SoftmaxNormalize` — p = e2(x − max)·(1/sum) assigned to out_fmt, element-wise.
- :class:`Softmax` — the two with a row buffer (a FIFO of max_row + latency beats) and a small
  statistics FIFO, so a row is normalized while the next one is being summed.

Lanes are independent rows in lockstep: every beat carries one element of each of ``lanes``
rows, and ``last`` ends all of them.

A row takes one element per cycle, never several: the running sum is truncated each time the
running max grows, in element order (the golden's definition, which no hardware width may change),
so summing a group of elements first and rescaling once changes bits. The row unit therefore
feeds SOFTMAX rows element by element even where LayerNorm takes a whole AXI beat per cycle.
docs/isa.md §3.6 gives the multi-element form that would keep every bit (a step per raise of the
max) and why it is not built: a data-dependent rate and about 8 DSPs per extra element, for a
softmax that ViTs run in the attention engine anyway.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hwgen import qfx
from hwgen.golden import nonlinear as nl
from hwgen.rtl._errors import refuse
from hwgen.rtl.exp import EXP_LATENCY, ExpTable, exp_lane
from hwgen.rtl.pipeline import Pipeline
from hwgen.rtl.reciprocal import reciprocal_lane, reciprocal_latency, reciprocal_memory
from hwgen.rtl.requantize import lane_shape, requantize_lane

__all__ = ["SoftmaxStats", "SoftmaxNormalize", "Softmax", "row_layout", "stats_layout", "probability_layout"]

STATS_FIFO_DEPTH = 4


def row_layout(cfg: nl.SoftmaxConfig, lanes: int) -> data.StructLayout:
    """One element of each of ``lanes`` rows, and whether it is the rows' last."""
    return data.StructLayout({"x": data.ArrayLayout(lane_shape(cfg.in_fmt), lanes), "last": 1})


def stats_layout(cfg: nl.SoftmaxConfig, lanes: int) -> data.StructLayout:
    """Per-row statistics: the max (in_fmt) and 1/sum (inv_fmt) of each lane's row."""
    return data.StructLayout({
        "max": data.ArrayLayout(lane_shape(cfg.in_fmt), lanes),
        "inv_sum": data.ArrayLayout(lane_shape(cfg.inv_fmt), lanes),
    })


def probability_layout(cfg: nl.SoftmaxConfig, lanes: int) -> data.StructLayout:
    """Probabilities (out_fmt) of one element of each row, and whether it is the rows' last."""
    return data.StructLayout({"p": data.ArrayLayout(lane_shape(cfg.out_fmt), lanes), "last": 1})


def _check(component, cfg, lanes):
    if not isinstance(cfg, nl.SoftmaxConfig):
        refuse(component, f"cfg must be a SoftmaxConfig, not {cfg!r}")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        refuse(component, f"lanes must be a positive integer, not {lanes!r}")


class SoftmaxStats(wiring.Component):
    """Per-row (max, 1/sum) of ``lanes`` rows streamed in lockstep, one element per cycle per lane.

    Parameters
    ----------
    cfg : SoftmaxConfig
        Formats, exp and reciprocal configurations; :func:`hwgen.golden.nonlinear.softmax_stats`
        defines the statistics.
    lanes : int
        Rows processed side by side.

    Attributes
    ----------
    i : In(stream.Signature(row_layout(cfg, lanes)))
        Row elements in order; ``last`` on each row's final element (rows of at most max_row).
    o : Out(stream.Signature(stats_layout(cfg, lanes)))
        One beat per row: its max and 1/sum per lane.
    """

    def __init__(self, cfg: nl.SoftmaxConfig, lanes: int = 1):
        _check(self, cfg, lanes)
        self.cfg, self.lanes = cfg, lanes
        #: Cycles from a row's last element in to its statistics out.
        self.latency = EXP_LATENCY + 1 + reciprocal_latency(cfg.recip)
        super().__init__({
            "i": In(stream.Signature(row_layout(cfg, lanes))),
            "o": Out(stream.Signature(stats_layout(cfg, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pipe = Pipeline(m, "stats")
        table = ExpTable(cfg.stats_exp)
        m.submodules.exp_table = exp_rom = table.memory()
        m.submodules.seeds = seed_rom = reciprocal_memory(cfg.recip)
        chain = pipe.valid_chain(self.i.valid, self.latency)
        accepted = self.i.valid & pipe.advance
        # `first`: the next element starts a row.
        first = Signal(init=1)
        with m.If(accepted):
            m.d.sync += first.eq(self.i.payload.last)
        frac = cfg.sum_frac_bits
        sum_shape = unsigned(cfg.sum_fmt.width)
        diff_shape = signed(cfg.diff_fmt.width)
        last = pipe.delay(self.i.payload.last, EXP_LATENCY)
        starts = pipe.delay(first, EXP_LATENCY)
        summing = chain[EXP_LATENCY] & pipe.advance  # an element moves past the running sum
        for lane in range(self.lanes):
            x = self.i.payload.x[lane]
            running_max = Signal(lane_shape(cfg.in_fmt), name=f"running_max{lane}")
            previous = pipe.wire(lane_shape(cfg.in_fmt), Mux(first, x, running_max))
            new_max = pipe.wire(lane_shape(cfg.in_fmt), Mux(x > previous, x, previous))
            with m.If(accepted):
                m.d.sync += running_max.eq(new_max)
            scale = exp_lane(pipe, cfg.stats_exp, table, exp_rom.read_port(domain="sync"),
                             pipe.wire(diff_shape, previous - new_max))
            term = exp_lane(pipe, cfg.stats_exp, table, exp_rom.read_port(domain="sync"),
                            pipe.wire(diff_shape, x - new_max))
            top = pipe.delay(new_max, EXP_LATENCY)
            # The loop-carried multiply-add: l ← ⌊l·scale⌋ + term (l ← term on a row's first element).
            running_sum = Signal(sum_shape, name=f"running_sum{lane}")
            rescaled = pipe.wire(sum_shape, (running_sum * scale) >> frac)
            updated = pipe.wire(sum_shape, Mux(starts, 0, rescaled) + term)
            with m.If(summing):
                m.d.sync += running_sum.eq(updated)
            total = pipe.reg(updated)
            top = pipe.reg(top)
            inv_sum = reciprocal_lane(pipe, cfg.recip, seed_rom.read_port(domain="sync"), total)
            top = pipe.delay(top, reciprocal_latency(cfg.recip))
            m.d.comb += [self.o.payload.max[lane].eq(top), self.o.payload.inv_sum[lane].eq(inv_sum)]
        last = pipe.delay(last, 1 + reciprocal_latency(cfg.recip))
        pipe.handshake(self.i.ready, self.o.valid, self.o.ready, chain[-1], keep=last)
        return m


class SoftmaxNormalize(wiring.Component):
    """p = e2(x − max)·inv_sum for ``lanes`` elements per beat, one beat per cycle.

    Parameters
    ----------
    cfg : SoftmaxConfig
        :func:`hwgen.golden.nonlinear.softmax_normalize` defines the result.
    lanes : int
        Elements per beat.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout x, max, inv_sum (arrays of lanes), last))
        An element of each row with its row's statistics; ``last`` passes through.
    o : Out(stream.Signature(probability_layout(cfg, lanes)))
        The probabilities, in order, with ``last``.
    """

    def __init__(self, cfg: nl.SoftmaxConfig, lanes: int = 1):
        _check(self, cfg, lanes)
        self.cfg, self.lanes = cfg, lanes
        self.latency = EXP_LATENCY + 2
        layout = data.StructLayout({
            "x": data.ArrayLayout(lane_shape(cfg.in_fmt), lanes),
            "max": data.ArrayLayout(lane_shape(cfg.in_fmt), lanes),
            "inv_sum": data.ArrayLayout(lane_shape(cfg.inv_fmt), lanes),
            "last": 1,
        })
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(probability_layout(cfg, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pipe = Pipeline(m, "norm")
        table = ExpTable(cfg.norm_exp)
        m.submodules.exp_table = rom = table.memory()
        product_fmt = qfx.result_fmt_mul(cfg.norm_exp.out_fmt, cfg.inv_fmt)
        for lane in range(self.lanes):
            payload = self.i.payload
            difference = pipe.wire(signed(cfg.diff_fmt.width), payload.x[lane] - payload.max[lane])
            e2 = exp_lane(pipe, cfg.norm_exp, table, rom.read_port(domain="sync"), difference)
            inv = pipe.delay(payload.inv_sum[lane], EXP_LATENCY)
            product = pipe.reg(e2 * inv, shape=lane_shape(product_fmt))
            p = pipe.reg(requantize_lane(product, product_fmt, cfg.out_fmt), shape=lane_shape(cfg.out_fmt))
            m.d.comb += self.o.payload.p[lane].eq(p)
        m.d.comb += self.o.payload.last.eq(pipe.delay(self.i.payload.last, self.latency))
        pipe.connect(self.i.valid, self.i.ready, self.o.valid, self.o.ready, self.latency)
        return m


class Softmax(wiring.Component):
    """Softmax of ``lanes`` rows in lockstep: statistics while the row streams in, then the
    row again from a buffer through the normalization.  One element per cycle per lane in steady
    state for rows up to ``cfg.max_row`` elements.

    Parameters
    ----------
    cfg : SoftmaxConfig
        :func:`hwgen.golden.nonlinear.softmax` defines the result.
    lanes : int
        Rows processed side by side.

    Attributes
    ----------
    i : In(stream.Signature(row_layout(cfg, lanes)))
        Row elements in order, ``last`` on each row's final element.
    o : Out(stream.Signature(probability_layout(cfg, lanes)))
        The probabilities in the same order, ``last`` on each row's final element.
    """

    def __init__(self, cfg: nl.SoftmaxConfig, lanes: int = 1):
        _check(self, cfg, lanes)
        self.cfg, self.lanes = cfg, lanes
        self.stats = SoftmaxStats(cfg, lanes)
        self.normalize = SoftmaxNormalize(cfg, lanes)
        #: Row buffer depth: a whole row, plus the beats arriving while its statistics finish.
        self.buffer_depth = cfg.max_row + self.stats.latency + 4
        #: Pipeline cycles of the statistics, the buffers and the normalization; a row's first
        #: probability also waits for the whole row to arrive.
        self.latency = self.stats.latency + 1 + self.normalize.latency
        super().__init__({
            "i": In(stream.Signature(row_layout(cfg, lanes))),
            "o": Out(stream.Signature(probability_layout(cfg, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.lanes
        m.submodules.stats = stats = self.stats
        m.submodules.normalize = normalize = self.normalize
        row_width = len(self.i.payload.as_value())
        stats_width = len(stats.o.payload.as_value())
        m.submodules.rows = rows = SyncFIFOBuffered(width=row_width, depth=self.buffer_depth)
        m.submodules.row_stats = row_stats = SyncFIFOBuffered(width=stats_width, depth=STATS_FIFO_DEPTH)

        # Fork: an element enters the statistics and the row buffer together.
        m.d.comb += [
            stats.i.payload.eq(self.i.payload),
            rows.w_data.eq(self.i.payload.as_value()),
            stats.i.valid.eq(self.i.valid & rows.w_rdy),
            rows.w_en.eq(self.i.valid & stats.i.ready),
            self.i.ready.eq(stats.i.ready & rows.w_rdy),
        ]
        # Statistics queue up per row.
        m.d.comb += [
            row_stats.w_data.eq(stats.o.payload.as_value()),
            row_stats.w_en.eq(stats.o.valid),
            stats.o.ready.eq(row_stats.w_rdy),
        ]
        # Join: a buffered element goes with its row's statistics; the row's last one retires them.
        element = data.View(row_layout(cfg, lanes), rows.r_data)
        head = data.View(stats_layout(cfg, lanes), row_stats.r_data)
        both = rows.r_rdy & row_stats.r_rdy
        for lane in range(lanes):
            m.d.comb += [
                normalize.i.payload.x[lane].eq(element.x[lane]),
                normalize.i.payload.max[lane].eq(head.max[lane]),
                normalize.i.payload.inv_sum[lane].eq(head.inv_sum[lane]),
            ]
        m.d.comb += [
            normalize.i.payload.last.eq(element.last),
            normalize.i.valid.eq(both),
            rows.r_en.eq(both & normalize.i.ready),
            row_stats.r_en.eq(both & normalize.i.ready & element.last),
        ]
        wiring.connect(m, normalize.o, wiring.flipped(self.o))
        return m
