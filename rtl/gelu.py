# SPDX-License-Identifier: Apache-2.0
"""GELU as ReLU(x) − δ(|x|), δ from a table (Edge-MoE) or piecewise quadratics, as ``hwgen.golden.nonlinear.gelu``.

Table variant (:class:`~hwgen.golden.nonlinear.GeluTableConfig`), per lane: |x| splits into a
segment index and the bits below the step; the ROM returns (δ_i, δ_{i+1} − δ_i) (stage 1);
δ̂ = δ_i·2^k + slope·fraction (2); ReLU(x) − δ̂ exactly in ``result_fmt`` (3); the ap_fixed
assignment to out_fmt (4).  Polynomial variant (:class:`~hwgen.golden.nonlinear.GeluPolyConfig`):
the ROM returns (c0, c1, c2) (1); Horner's two multiply-adds (2, 3); then as above (4, 5).
"""

from __future__ import annotations

from amaranth import Cat, Mux, signed, unsigned
from amaranth.lib.memory import Memory

from hwgen.golden import nonlinear as nl
from hwgen.rtl.bank import Bank
from hwgen.rtl.lane_unit import LaneUnit
from hwgen.rtl.pipeline import Pipeline
from hwgen.rtl.requantize import lane_shape, requantize_lane

__all__ = ["gelu_latency", "GeluTable", "gelu_lane", "Gelu"]


def gelu_latency(cfg) -> int:
    return 4 if isinstance(cfg, nl.GeluTableConfig) else 5


def _twos(value: int, bits: int) -> int:
    return value & ((1 << bits) - 1)


class GeluTable:
    """ROM contents of a GELU config: (δ_i, slope) words or (c0, c1, c2) words, as fields."""

    def __init__(self, cfg):
        if isinstance(cfg, nl.GeluTableConfig):
            table = [int(v) for v in nl.gelu_table(cfg)]
            slopes = [b - a for a, b in zip(table, table[1:])]
            self.fields = [cfg.table_fmt.width, max(abs(s) for s in slopes).bit_length() + 1]
            rows = list(zip(table[:-1], slopes))
        else:
            coefficients = nl.gelu_poly_coefficients(cfg).tolist()
            self.fields = [cfg.coef_fmt.width] * 3
            rows = coefficients
        self.words = [sum(_twos(v, w) << sum(self.fields[:k]) for k, (v, w) in enumerate(zip(row, self.fields)))
                      for row in rows]

    def memory(self) -> Memory:
        return Memory(shape=unsigned(sum(self.fields)), depth=len(self.words), init=self.words)

    def rom(self) -> Bank:
        """The table as a read-only :class:`~hwgen.rtl.bank.Bank`: equal lanes' tables are one module for Yosys."""
        return Bank(width=sum(self.fields), depth=len(self.words), init=self.words, writable=False)

    def field(self, word, k: int, is_signed: bool):
        start = sum(self.fields[:k])
        bits = word[start: start + self.fields[k]]
        return bits.as_signed() if is_signed else bits


def _shift(value, amount: int):
    return value << amount if amount >= 0 else value >> -amount


def gelu_lane(pipe: Pipeline, cfg, table: GeluTable, port, x):
    """Raw ``cfg.in_fmt`` ``x`` in, raw ``cfg.out_fmt`` GELU out after :func:`gelu_latency` stages."""
    m = pipe.m
    in_fmt = cfg.in_fmt
    width = in_fmt.width
    poly = isinstance(cfg, nl.GeluPolyConfig)
    step_log2 = cfg.segment_log2 if poly else cfg.step_log2
    frac_bits = cfg.fraction_bits
    magnitude = pipe.wire(unsigned(width), Mux(x < 0, -x, x))
    if in_fmt.frac_bits >= step_log2:
        index = magnitude >> frac_bits
        fraction = magnitude[:frac_bits] if frac_bits else 0
    else:
        index, fraction = magnitude << (step_log2 - in_fmt.frac_bits), 0
    inside = pipe.wire(1, index < cfg.segments)
    m.d.comb += [port.en.eq(pipe.advance), port.addr.eq(Mux(inside, index, 0))]
    # 1: the ROM read, with what travels alongside.
    relu = pipe.reg(Mux(x > 0, x, 0), shape=unsigned(width))
    fraction = pipe.reg(fraction, shape=unsigned(max(1, frac_bits)))
    inside = pipe.reg(inside)
    result_fmt = cfg.result_fmt

    if not poly:
        base = table.field(port.data, 0, False)
        slope = table.field(port.data, 1, True)
        delta_bits = table.fields[0] + frac_bits + 2
        delta = pipe.wire(signed(delta_bits), (base << frac_bits) + slope * fraction)
        delta = pipe.reg(Mux(inside, delta, 0), shape=signed(delta_bits))
        delta_frac = cfg.table_fmt.frac_bits + frac_bits
        relu = pipe.reg(relu)
    else:
        c0, c1, c2 = (table.field(port.data, k, True) for k in range(3))
        coef_bits = cfg.coef_fmt.width
        inner = pipe.reg(((c2 * fraction) >> frac_bits) + c1, shape=signed(coef_bits + 2))
        c0, fraction = pipe.reg(c0), pipe.reg(fraction)
        relu, inside = pipe.reg(relu), pipe.reg(inside)
        delta = pipe.wire(signed(coef_bits + 3), ((inner * fraction) >> frac_bits) + c0)
        delta = pipe.reg(Mux(inside & (delta > 0), delta, 0), shape=signed(coef_bits + 3))
        delta_frac = cfg.coef_fmt.frac_bits
        relu = pipe.reg(relu)

    # ReLU(x) − δ̂, exact in result_fmt; then the ap_fixed assignment.
    relu_aligned = _shift(Cat(relu, 0).as_signed(), result_fmt.frac_bits - in_fmt.frac_bits)
    value = pipe.reg(relu_aligned - _shift(delta, result_fmt.frac_bits - delta_frac), shape=signed(result_fmt.width))
    return pipe.reg(requantize_lane(value, result_fmt, cfg.out_fmt), shape=lane_shape(cfg.out_fmt))


class Gelu(LaneUnit):
    """GELU of ``lanes`` values per beat, one beat per cycle.

    Parameters
    ----------
    cfg : GeluTableConfig or GeluPolyConfig
        The variant, its table or coefficients, and the formats; :func:`hwgen.golden.nonlinear.gelu`
        defines the result.
    lanes : int
        Values per beat (each lane has its own read port on one shared ROM).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(lane_shape(cfg.in_fmt), lanes)))
        Raw inputs.
    o : Out(stream.Signature(ArrayLayout(lane_shape(cfg.out_fmt), lanes)))
        Raw GELU results, in order.
    """

    CONFIGS = (nl.GeluTableConfig, nl.GeluPolyConfig)
    CONFIG_NAME = "a GeluTableConfig or GeluPolyConfig"
    NAME = "gelu"

    @staticmethod
    def unit_latency(cfg) -> int:
        return gelu_latency(cfg)

    def rom(self):
        self.table = GeluTable(self.cfg)
        return self.table.memory()

    def lane(self, pipe, port, x):
        return gelu_lane(pipe, self.cfg, self.table, port, x)
