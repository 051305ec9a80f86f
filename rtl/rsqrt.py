# SPDX-License-Identifier: Apache-2.0
"""1/√x by normalization to m·2^(2e), a seed table and Newton steps, as ``hwgen.golden.nonlinear.rsqrt``.

Per lane: the zero test (1 stage); normalization by the leading one, exponent parity and half
exponent (1); the seed ROM, indexed by parity and mantissa (1); ``newton_steps`` steps of
y ← y·(3 − m·y²)/2 (3 each); scaling by 2^-e with saturation (1); the ap_fixed assignment to
out_fmt (1).  :func:`rsqrt_core` is the mantissa/exponent part alone, for LayerNorm.
"""

from __future__ import annotations

from amaranth import Mux, signed, unsigned

from hwgen.golden import nonlinear as nl
from hwgen.rtl.lane_unit import LaneUnit
from hwgen.rtl.newton import normalize, rsqrt_newton, scale_result, seed_memory
from hwgen.rtl.pipeline import Pipeline

__all__ = ["rsqrt_core_latency", "rsqrt_latency", "rsqrt_memory", "rsqrt_core", "rsqrt_lane", "Rsqrt"]


def rsqrt_core_latency(cfg: nl.RsqrtConfig) -> int:
    """Stages of :func:`rsqrt_core`: normalization, seed ROM, Newton."""
    return 2 + 3 * cfg.newton_steps


def rsqrt_latency(cfg: nl.RsqrtConfig) -> int:
    return 1 + rsqrt_core_latency(cfg) + 2


def rsqrt_memory(cfg: nl.RsqrtConfig):
    return seed_memory(nl.rsqrt_seed_table(cfg))


def rsqrt_core(pipe: Pipeline, cfg: nl.RsqrtConfig, port, magnitude, width: int, frac_bits: int):
    """(y, half_exponent) with 1/√x ≈ y·2^-(work_bits + half_exponent), for the unsigned
    ``width``-bit ``magnitude`` ≥ 1 of x = magnitude·2^-frac_bits, after :func:`rsqrt_core_latency`."""
    m = pipe.m
    P, half_bits = cfg.work_bits, cfg.table_bits - 1
    p, mantissa = normalize(pipe, magnitude, width, P)
    # exponent = p − frac_bits; its parity and half: x = m·2^odd·4^half.
    exponent_bits = max(width.bit_length(), abs(frac_bits).bit_length()) + 2
    exponent = pipe.wire(signed(exponent_bits), p - frac_bits)
    odd = exponent[0]
    half = pipe.wire(signed(exponent_bits), (exponent - odd) >> 1)
    mantissa, odd, half = pipe.reg(mantissa), pipe.reg(odd), pipe.reg(half)

    m.d.comb += [port.en.eq(pipe.advance), port.addr.eq(Mux(odd, 1 << half_bits, 0) | mantissa[P - half_bits: P])]
    scaled = pipe.reg(Mux(odd, mantissa << 1, mantissa), shape=unsigned(P + 2))
    half = pipe.reg(half)

    y = rsqrt_newton(pipe, cfg, port.data, scaled)
    return y, pipe.delay(half, 3 * cfg.newton_steps)


def rsqrt_lane(pipe: Pipeline, cfg: nl.RsqrtConfig, port, x):
    """Raw ``cfg.in_fmt`` ``x`` in, raw ``cfg.out_fmt`` 1/√x out after :func:`rsqrt_latency` stages."""
    width = cfg.magnitude_bits
    zero = pipe.reg(x <= 0) if cfg.in_fmt.signed else pipe.reg(x == 0)
    magnitude = pipe.reg(Mux(x > 0, x, 1), shape=unsigned(width))
    y, half = rsqrt_core(pipe, cfg, port, magnitude, width, cfg.in_fmt.frac_bits)
    zero = pipe.delay(zero, rsqrt_core_latency(cfg))
    base = cfg.wide_fmt.frac_bits - cfg.work_bits
    shift = base - half
    low_half = (0 - cfg.in_fmt.frac_bits - 1) >> 1
    high_half = (width - 1 - cfg.in_fmt.frac_bits) >> 1
    return scale_result(pipe, cfg, y, shift, (base - high_half, base - low_half), 0, zero)


class Rsqrt(LaneUnit):
    """1/√x of ``lanes`` values per beat, one beat per cycle.

    Parameters
    ----------
    cfg : RsqrtConfig
        Formats, seed table and Newton steps; :func:`hwgen.golden.nonlinear.rsqrt` defines the
        result.
    lanes : int
        Values per beat (each lane has its own read port on one shared seed ROM).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(lane_shape(cfg.in_fmt), lanes)))
        Raw inputs.
    o : Out(stream.Signature(ArrayLayout(lane_shape(cfg.out_fmt), lanes)))
        Raw results (x ≤ 0 gives out_fmt's largest code), in order.
    """

    CONFIGS = (nl.RsqrtConfig,)
    CONFIG_NAME = "an RsqrtConfig"
    NAME = "rsqrt"

    @staticmethod
    def unit_latency(cfg) -> int:
        return rsqrt_latency(cfg)

    def rom(self):
        return rsqrt_memory(self.cfg)

    def lane(self, pipe, port, x):
        return rsqrt_lane(pipe, self.cfg, port, x)
