# SPDX-License-Identifier: Apache-2.0
"""LayerNorm from one pass of exact integer sums, as ``hwgen.golden.nonlinear.layernorm``.

- :class:`LayerNormStats` — a row streams in as beats of ``lanes`` elements (``last`` ends it,
  ``mask`` says which lanes hold elements, so a row need not be a whole number of beats);
  S1 = Σx and S2 = Σx² accumulate exactly, then per row D = n·S2 − S1² + n²·eps_raw, the
  rsqrt mantissa/exponent of D (leading-one normalization, seed table, Newton steps), and the
  row's two products with the mantissa r: n·r and S1·r.
- :class:`LayerNormApply` — per element, U·r = x·(n·r) − S1·r, norm = round(U·r·2^-shift) into
  norm_fmt (saturating), then y = norm·γ + β assigned to out_fmt.
- :class:`LayerNorm` — the two with a row buffer and a statistics FIFO; γ and β arrive on their
  own stream, one beat per output beat (the controller replays them for every row).

No division by n is needed: (x − μ)·rstd = U/√D exactly, U = n·x − S1. The sums are exact
integers, so neither the lanes nor the beat boundaries change a bit of the result: the unit at
any ``lanes`` equals :func:`hwgen.golden.nonlinear.layernorm`. Per element the multipliers are x²,
x·(n·r) (16 × 41 bits at 16-bit activations) and norm·γ; U·r itself (28 × 30 bits) is never
formed per element: the row's S1·r is one product per row, so a lane costs about 4 DSPs, not 7.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hwgen import qfx
from hwgen.golden import nonlinear as nl
from hwgen.rtl._errors import refuse
from hwgen.rtl.pipeline import Pipeline
from hwgen.rtl.requantize import lane_shape, requantize_lane
from hwgen.rtl.rsqrt import rsqrt_core, rsqrt_core_latency, rsqrt_memory

__all__ = ["LayerNormStats", "LayerNormApply", "LayerNorm", "row_layout", "affine_layout", "output_layout",
           "stats_layout"]

STATS_FIFO_DEPTH = 4


def row_layout(cfg: nl.LayerNormConfig, lanes: int) -> data.StructLayout:
    """A beat of a row: ``lanes`` elements, ``last`` on the row's final beat, ``mask`` bit k set
    when lane k holds an element (the others enter no sum and give y = 0)."""
    return data.StructLayout({"x": data.ArrayLayout(lane_shape(cfg.in_fmt), lanes), "last": 1, "mask": lanes})


def affine_layout(cfg: nl.LayerNormConfig, lanes: int) -> data.StructLayout:
    return data.StructLayout({
        "gamma": data.ArrayLayout(lane_shape(cfg.gamma_fmt), lanes),
        "beta": data.ArrayLayout(lane_shape(cfg.beta_fmt), lanes),
    })


def output_layout(cfg: nl.LayerNormConfig, lanes: int) -> data.StructLayout:
    return data.StructLayout({"y": data.ArrayLayout(lane_shape(cfg.out_fmt), lanes), "last": 1})


def _half_bits(cfg: nl.LayerNormConfig) -> int:
    return max(2, (cfg.d_bits // 2).bit_length() + 2)


def _rstd_bits(cfg: nl.LayerNormConfig) -> int:
    return cfg.rsqrt.work_bits + 2


def stats_layout(cfg: nl.LayerNormConfig) -> data.StructLayout:
    """Per-row statistics, with 1/√D ≈ r·2^-(work_bits + half): ``scale`` = n·r, ``offset`` = S1·r,
    ``half``, and ``zero`` when D = 0 (the row normalizes to 0)."""
    return data.StructLayout({
        "scale": unsigned(cfg.count_bits + _rstd_bits(cfg)),
        "offset": signed(cfg.sum_bits + _rstd_bits(cfg)),
        "half": signed(_half_bits(cfg)),
        "zero": 1,
    })


def _check(component, cfg, lanes):
    if not isinstance(cfg, nl.LayerNormConfig):
        refuse(component, f"cfg must be a LayerNormConfig, not {cfg!r}")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        refuse(component, f"lanes must be a positive integer, not {lanes!r}")


class LayerNormStats(wiring.Component):
    """Per-row n·r, S1·r and the exponent of rsqrt(D) of rows streamed ``lanes`` elements per beat.

    Parameters
    ----------
    cfg : LayerNormConfig
        Formats, ε and the rsqrt scheme.
    lanes : int
        Elements per beat.
    runtime_d_offset : bool
        Take the n²·eps_raw term of D from the ``d_offset`` port (the accelerator's LAYERNORM
        descriptor carries it) instead of from ``cfg.eps``.

    Attributes
    ----------
    i : In(stream.Signature(row_layout(cfg, lanes)))
        Row elements; ``last`` on a row's final beat, ``mask`` the lanes that hold elements.
    o : Out(stream.Signature(stats_layout(cfg)))
        One beat per row.
    d_offset : In(unsigned(cfg.d_bits))
        Only with ``runtime_d_offset``: the n²·eps_raw term of D, held stable while rows stream.
    """

    def __init__(self, cfg: nl.LayerNormConfig, lanes: int = 1, runtime_d_offset: bool = False):
        _check(self, cfg, lanes)
        self.cfg, self.lanes, self.runtime_d_offset = cfg, lanes, bool(runtime_d_offset)
        self.latency = 4 + rsqrt_core_latency(cfg.rsqrt)
        members = {
            "i": In(stream.Signature(row_layout(cfg, lanes))),
            "o": Out(stream.Signature(stats_layout(cfg))),
        }
        if self.runtime_d_offset:
            members["d_offset"] = In(unsigned(cfg.d_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.lanes
        pipe = Pipeline(m, "lnstats")
        m.submodules.seeds = seeds = rsqrt_memory(cfg.rsqrt)
        chain = pipe.valid_chain(self.i.valid, self.latency)
        mask = self.i.payload.mask
        kept = [Mux(mask[k], self.i.payload.x[k], 0) for k in range(lanes)]
        # 1: this beat's Σx, Σx² and element count (masked lanes add 0).
        beat_s1 = pipe.reg(sum(kept), shape=signed(cfg.sum_bits))
        beat_s2 = pipe.reg(sum(x * x for x in kept), shape=unsigned(cfg.square_sum_bits))
        beat_n = pipe.reg(sum(mask[k] for k in range(lanes)), shape=unsigned(lanes.bit_length()))
        last = pipe.reg(self.i.payload.last)
        # 2: the running sums (loop-carried adds); a row's first beat restarts them.
        first = Signal(init=1)
        s1, s2 = Signal(signed(cfg.sum_bits)), Signal(unsigned(cfg.square_sum_bits))
        n = Signal(unsigned(cfg.count_bits))
        new_s1 = pipe.wire(signed(cfg.sum_bits), Mux(first, 0, s1) + beat_s1)
        new_s2 = pipe.wire(unsigned(cfg.square_sum_bits), Mux(first, 0, s2) + beat_s2)
        new_n = pipe.wire(n.shape(), Mux(first, 0, n) + beat_n)
        with m.If(chain[1] & pipe.advance):
            m.d.sync += [s1.eq(new_s1), s2.eq(new_s2), n.eq(new_n), first.eq(last)]
        s1_row, s2_row, count = pipe.reg(new_s1), pipe.reg(new_s2), pipe.reg(new_n)
        last = pipe.reg(last)
        # 3: D = n·S2 − S1² + n²·eps_raw (exact, ≥ 0).
        d_shape = unsigned(cfg.d_bits)
        offset = self.d_offset if self.runtime_d_offset else count * count * cfg.eps_raw
        d = pipe.reg(count * s2_row - s1_row * s1_row + offset, shape=d_shape)
        s1_row, count, last = pipe.reg(s1_row), pipe.reg(count), pipe.reg(last)
        zero = pipe.wire(1, d == 0)
        # rsqrt of D as a mantissa r and a half exponent (D = 0 is replaced by 1 and flagged).
        rstd, half = rsqrt_core(pipe, cfg.rsqrt, seeds.read_port(domain="sync"),
                                pipe.wire(d_shape, Mux(zero, 1, d)), cfg.d_bits, 0)
        stages = rsqrt_core_latency(cfg.rsqrt)
        # 4: the row's products with r, so that a lane computes U·r = x·(n·r) − S1·r with one
        # narrow multiply instead of n·x and then a 28 × 30-bit U·r.
        layout = stats_layout(cfg)
        scale = pipe.reg(pipe.delay(count, stages) * rstd, shape=layout.members["scale"])
        offset = pipe.reg(pipe.delay(s1_row, stages) * rstd, shape=layout.members["offset"])
        payload = self.o.payload
        m.d.comb += [
            payload.scale.eq(scale),
            payload.offset.eq(offset),
            payload.half.eq(pipe.reg(half)),
            payload.zero.eq(pipe.delay(zero, stages + 1)),
        ]
        pipe.handshake(self.i.ready, self.o.valid, self.o.ready, chain[-1], keep=pipe.delay(last, stages + 1))
        return m


class LayerNormApply(wiring.Component):
    """y = round(U·rsqrt(D))·γ + β for ``lanes`` elements per beat, one beat per cycle.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout x, gamma, beta (arrays of lanes), stats, last, mask))
        Elements with their γ, β and their row's statistics.
    o : Out(stream.Signature(output_layout(cfg, lanes)))
        The normalized elements, with ``last``; 0 in the lanes outside ``mask``.
    """

    latency = 5

    def __init__(self, cfg: nl.LayerNormConfig, lanes: int = 1):
        _check(self, cfg, lanes)
        self.cfg, self.lanes = cfg, lanes
        layout = data.StructLayout({
            "x": data.ArrayLayout(lane_shape(cfg.in_fmt), lanes),
            "gamma": data.ArrayLayout(lane_shape(cfg.gamma_fmt), lanes),
            "beta": data.ArrayLayout(lane_shape(cfg.beta_fmt), lanes),
            "stats": stats_layout(cfg),
            "last": 1,
            "mask": lanes,
        })
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(output_layout(cfg, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pipe = Pipeline(m, "lnapply")
        payload = self.i.payload
        stats = payload.stats
        P, norm = cfg.rsqrt.work_bits, cfg.norm_fmt
        product_shape = signed(cfg.u_bits + P + 3)  # U·r: |U| < 2^(u_bits − 1), r < 2^(P + 2)
        product_fmt = qfx.result_fmt_mul(norm, cfg.gamma_fmt)
        total_fmt = qfx.result_fmt_add(product_fmt, cfg.beta_fmt)
        half_max = (cfg.d_bits - 1) // 2
        shift_bits = (P + half_max - norm.frac_bits).bit_length()
        # Shared per beat: the row's statistics travel with the elements.
        offset = pipe.delay(stats.offset, 1)
        shift = pipe.delay(pipe.wire(unsigned(shift_bits), P - norm.frac_bits + stats.half), 2)
        round_at = pipe.delay(pipe.wire(unsigned(shift_bits), P - norm.frac_bits - 1 + stats.half), 2)
        zero = pipe.delay(stats.zero, 2)
        mask = pipe.delay(payload.mask, 4)
        for lane in range(self.lanes):
            # 1: x·(n·r).
            scaled = pipe.reg(payload.x[lane] * stats.scale, shape=product_shape)
            # 2: U·r = x·(n·r) − S1·r, exactly the golden U·y.
            product = pipe.reg(scaled - offset, shape=product_shape)
            # 3: round to norm_fmt's fraction bits (ties up), saturate; D = 0 gives 0.
            rounded = pipe.wire(product_shape, (product + (Const(1, 1) << round_at)) >> shift)
            clamped = Mux(rounded > norm.max_raw, norm.max_raw, Mux(rounded < norm.min_raw, norm.min_raw, rounded))
            value = pipe.reg(Mux(zero, 0, clamped), shape=lane_shape(norm))
            # 4: norm·γ + β, exact.
            gamma = pipe.delay(payload.gamma[lane], 3)
            beta = pipe.delay(payload.beta[lane], 3)
            aligned = beta << (total_fmt.frac_bits - cfg.beta_fmt.frac_bits)
            total = pipe.reg(value * gamma + aligned, shape=lane_shape(total_fmt))
            # 5: the ap_fixed assignment; a lane without an element gives 0, not β.
            y = pipe.reg(Mux(mask[lane], requantize_lane(total, total_fmt, cfg.out_fmt), 0),
                         shape=lane_shape(cfg.out_fmt))
            m.d.comb += self.o.payload.y[lane].eq(y)
        m.d.comb += self.o.payload.last.eq(pipe.delay(payload.last, self.latency))
        pipe.connect(self.i.valid, self.i.ready, self.o.valid, self.o.ready, self.latency)
        return m


class LayerNorm(wiring.Component):
    """LayerNorm of rows streamed ``lanes`` elements per beat, one beat per cycle in steady state.

    Parameters
    ----------
    cfg : LayerNormConfig
        :func:`hwgen.golden.nonlinear.layernorm` defines the result.
    lanes : int
        Elements per beat; rows of at most ``cfg.max_channels`` elements, their last beat possibly
        partial (``mask``).
    runtime_d_offset : bool
        Add a ``d_offset`` port for the n²·eps_raw term of D (see :class:`LayerNormStats`).

    Attributes
    ----------
    i : In(stream.Signature(row_layout(cfg, lanes)))
        Row elements, ``last`` on a row's final beat, ``mask`` the lanes that hold elements.
    affine : In(stream.Signature(affine_layout(cfg, lanes)))
        γ and β of the channels of each output beat, in order (replayed for every row).
    o : Out(stream.Signature(output_layout(cfg, lanes)))
        The normalized rows in order, ``last`` on each row's final beat; 0 in lanes outside ``mask``.
    d_offset : In(unsigned(cfg.d_bits))
        Only with ``runtime_d_offset``: the n²·eps_raw term of D, held stable while rows stream.
    """

    def __init__(self, cfg: nl.LayerNormConfig, lanes: int = 1, runtime_d_offset: bool = False):
        _check(self, cfg, lanes)
        self.cfg, self.lanes, self.runtime_d_offset = cfg, lanes, bool(runtime_d_offset)
        self.stats = LayerNormStats(cfg, lanes, runtime_d_offset)
        self.apply = LayerNormApply(cfg, lanes)
        #: Row buffer depth in beats: the longest row, plus the beats arriving while its statistics finish.
        self.buffer_depth = -(-cfg.max_channels // lanes) + self.stats.latency + 4
        #: Pipeline cycles of the statistics, the buffers and the normalization; a row's first
        #: output also waits for the whole row to arrive.
        self.latency = self.stats.latency + 1 + self.apply.latency
        members = {
            "i": In(stream.Signature(row_layout(cfg, lanes))),
            "affine": In(stream.Signature(affine_layout(cfg, lanes))),
            "o": Out(stream.Signature(output_layout(cfg, lanes))),
        }
        if self.runtime_d_offset:
            members["d_offset"] = In(unsigned(cfg.d_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.lanes
        m.submodules.stats = stats = self.stats
        m.submodules.apply = apply = self.apply
        if self.runtime_d_offset:
            m.d.comb += stats.d_offset.eq(self.d_offset)
        row_width = len(self.i.payload.as_value())
        m.submodules.rows = rows = SyncFIFOBuffered(width=row_width, depth=self.buffer_depth)
        m.submodules.row_stats = row_stats = SyncFIFOBuffered(
            width=len(stats.o.payload.as_value()), depth=STATS_FIFO_DEPTH)
        m.d.comb += [
            stats.i.payload.eq(self.i.payload),
            rows.w_data.eq(self.i.payload.as_value()),
            stats.i.valid.eq(self.i.valid & rows.w_rdy),
            rows.w_en.eq(self.i.valid & stats.i.ready),
            self.i.ready.eq(stats.i.ready & rows.w_rdy),
            row_stats.w_data.eq(stats.o.payload.as_value()),
            row_stats.w_en.eq(stats.o.valid),
            stats.o.ready.eq(row_stats.w_rdy),
        ]
        element = data.View(row_layout(cfg, lanes), rows.r_data)
        ready_all = rows.r_rdy & row_stats.r_rdy & self.affine.valid
        moves = ready_all & apply.i.ready
        m.d.comb += [
            apply.i.payload.x.eq(element.x),
            apply.i.payload.last.eq(element.last),
            apply.i.payload.mask.eq(element.mask),
            apply.i.payload.stats.eq(row_stats.r_data),
            apply.i.payload.gamma.eq(self.affine.payload.gamma),
            apply.i.payload.beta.eq(self.affine.payload.beta),
            apply.i.valid.eq(ready_all),
            rows.r_en.eq(moves),
            self.affine.ready.eq(moves),
            row_stats.r_en.eq(moves & element.last),
        ]
        wiring.connect(m, apply.o, wiring.flipped(self.o))
        return m
