# SPDX-License-Identifier: Apache-2.0
"""exp(x) for x ≤ 0 as a shift times a table of 2^f, exactly as ``hwgen.golden.nonlinear.exp``.

Per lane, five register stages (:data:`EXP_LATENCY`)::

    1  clamp x to [clamp, 0], multiply by log2(e)          (one constant multiplier)
    2  round to y, split y = n + f; read the table at f's top bits   (ROM stage)
    3  base + slope·(f's low bits) >> interp_bits          (interpolation multiplier)
    4  shift right by −n (+ the fixed table/output offset), clamped
    5  ap_fixed assignment of the shifted value to out_fmt (``requantize_lane``)

The ROM holds (2^f, slope to the next entry) pairs so one read port per lane serves the
interpolation; its contents come from :func:`hwgen.golden.nonlinear.exp_table`.  :func:`exp_lane`
is the datapath alone, for units that embed exps (the softmax).
"""

from __future__ import annotations

from amaranth import Mux, signed, unsigned
from amaranth.lib.memory import Memory

from hwgen.golden import nonlinear as nl
from hwgen.rtl.lane_unit import LaneUnit
from hwgen.rtl.pipeline import Pipeline
from hwgen.rtl.requantize import lane_shape, requantize_lane

__all__ = ["EXP_LATENCY", "ExpTable", "exp_lane", "Exp"]

EXP_LATENCY = 5


class ExpTable:
    """The ROM of one :class:`~hwgen.golden.nonlinear.ExpConfig`: ``base | slope << base_bits``."""

    def __init__(self, cfg: nl.ExpConfig):
        table = [int(v) for v in nl.exp_table(cfg)]
        self.base_bits = cfg.table_frac_bits + 2
        bases = table[:-1]
        slopes = [b - a for a, b in zip(table, table[1:])] if cfg.interpolate else [0] * len(bases)
        self.slope_bits = max(1, max(slopes).bit_length())
        self.words = [base | slope << self.base_bits for base, slope in zip(bases, slopes)]

    def memory(self) -> Memory:
        return Memory(shape=unsigned(self.base_bits + self.slope_bits), depth=len(self.words), init=self.words)


def exp_lane(pipe: Pipeline, cfg: nl.ExpConfig, table: ExpTable, port, x):
    """The exp datapath of one lane: raw ``cfg.in_fmt`` ``x`` in, raw ``cfg.out_fmt`` out after
    :data:`EXP_LATENCY` stages of ``pipe``; ``port`` is a synchronous read port of ``table``."""
    m = pipe.m
    # 1: clamp (positive → 0; far below the underflow point → clamp_raw), multiply by log2(e).
    clamped = pipe.wire(signed(cfg.clamped_bits), Mux(x > 0, 0, Mux(x < cfg.clamp_raw, cfg.clamp_raw, x)))
    product = pipe.reg(clamped * cfg.log2e_raw, shape=signed(cfg.product_bits))

    # 2: y = round(product) with y_frac_bits fraction bits; n = ⌊y⌋ ≤ 0; the table index.
    y_bits = cfg.product_bits - cfg.y_shift + 1
    if cfg.y_shift > 0:
        y = pipe.wire(signed(y_bits), (product + (1 << (cfg.y_shift - 1))) >> cfg.y_shift)
    else:
        y = pipe.wire(signed(y_bits), product << -cfg.y_shift)
    n = pipe.wire(signed(max(1, y_bits - cfg.y_frac_bits)), y >> cfg.y_frac_bits)
    fraction = y.as_unsigned()[: cfg.y_frac_bits]
    m.d.comb += [port.en.eq(pipe.advance), port.addr.eq(fraction[cfg.interp_bits:])]
    n = pipe.reg(n)
    weight = pipe.reg(fraction[: cfg.interp_bits]) if cfg.interp_bits else None

    # 3: interpolate between the entry and the next one.
    base = port.data[: table.base_bits]
    if weight is not None:
        slope = port.data[table.base_bits:]
        mantissa = pipe.reg(base + ((slope * weight) >> cfg.interp_bits), shape=unsigned(table.base_bits))
    else:
        mantissa = pipe.reg(base, shape=unsigned(table.base_bits))
    n = pipe.reg(n)

    # 4: scale by 2^n: a right shift by −n plus the fixed offset between table and output bits.
    wide_frac = cfg.wide_fmt.frac_bits
    if cfg.table_frac_bits >= wide_frac:
        offset, value, limit = cfg.table_frac_bits - wide_frac, mantissa, cfg.table_frac_bits + 2
    else:
        offset, value, limit = 0, mantissa << (wide_frac - cfg.table_frac_bits), wide_frac + 2
    amount = pipe.wire(unsigned(len(n) + offset.bit_length() + 1), offset - n)
    amount = Mux(amount > limit, limit, amount)
    wide = pipe.reg(value >> amount, shape=unsigned(cfg.wide_fmt.width))

    # 5: the ap_fixed assignment to out_fmt.
    return pipe.reg(requantize_lane(wide, cfg.wide_fmt, cfg.out_fmt), shape=lane_shape(cfg.out_fmt))


class Exp(LaneUnit):
    """exp of ``lanes`` values per beat, one beat per cycle, :data:`EXP_LATENCY` cycles of latency.

    Parameters
    ----------
    cfg : ExpConfig
        Formats, table and precisions; the golden model :func:`hwgen.golden.nonlinear.exp`
        defines the result.
    lanes : int
        Values per beat (each lane has its own read port on one shared ROM).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(lane_shape(cfg.in_fmt), lanes)))
        Raw inputs (positive values are taken as 0).
    o : Out(stream.Signature(ArrayLayout(lane_shape(cfg.out_fmt), lanes)))
        Raw exp results, in order.
    """

    CONFIGS = (nl.ExpConfig,)
    CONFIG_NAME = "an ExpConfig"
    NAME = "exp"

    @staticmethod
    def unit_latency(cfg) -> int:
        return EXP_LATENCY

    def rom(self):
        self.table = ExpTable(self.cfg)
        return self.table.memory()

    def lane(self, pipe, port, x):
        return exp_lane(pipe, self.cfg, self.table, port, x)
