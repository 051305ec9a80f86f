# SPDX-License-Identifier: Apache-2.0
"""1/x by leading-one normalization, a seed table and Newton steps, as ``hwgen.golden.nonlinear.reciprocal``.

Per lane: |x| and its sign (1 stage); normalization by the leading one (1); the seed ROM (1);
``newton_steps`` steps of y ← y·(2 − m·y) (2 each); scaling by the exponent with saturation (1);
the sign and the ap_fixed assignment to out_fmt (1).  :func:`reciprocal_lane` is the datapath
alone, for units that embed a reciprocal (the softmax's 1/sum).
"""

from __future__ import annotations

from amaranth import Mux, unsigned

from hwgen.golden import nonlinear as nl
from hwgen.rtl.lane_unit import LaneUnit
from hwgen.rtl.newton import normalize, reciprocal_newton, scale_result, seed_memory
from hwgen.rtl.pipeline import Pipeline

__all__ = ["reciprocal_latency", "reciprocal_lane", "reciprocal_memory", "Reciprocal"]


def reciprocal_latency(cfg: nl.ReciprocalConfig) -> int:
    return 5 + 2 * cfg.newton_steps


def reciprocal_memory(cfg: nl.ReciprocalConfig):
    return seed_memory(nl.reciprocal_seed_table(cfg))


def reciprocal_lane(pipe: Pipeline, cfg: nl.ReciprocalConfig, port, x):
    """Raw ``cfg.in_fmt`` ``x`` in, raw ``cfg.out_fmt`` 1/x out after :func:`reciprocal_latency`
    stages; ``port`` is a synchronous read port of :func:`reciprocal_memory`."""
    m = pipe.m
    width, P, T = cfg.magnitude_bits, cfg.work_bits, cfg.table_bits
    in_fmt = cfg.in_fmt
    negative = (x < 0) if in_fmt.signed else 0
    magnitude = pipe.reg(Mux(negative, -x, x), shape=unsigned(width))
    negative, zero = pipe.reg(negative, shape=1), pipe.reg(x == 0)

    p, mantissa = normalize(pipe, magnitude, width, P)
    p, mantissa = pipe.reg(p), pipe.reg(mantissa)
    negative, zero = pipe.reg(negative), pipe.reg(zero)

    m.d.comb += [port.en.eq(pipe.advance), port.addr.eq(mantissa[P - T: P])]
    p, mantissa = pipe.reg(p), pipe.reg(mantissa)
    negative, zero = pipe.reg(negative), pipe.reg(zero)

    y, _ = reciprocal_newton(pipe, cfg, port.data, mantissa)
    stages = 2 * cfg.newton_steps
    p, negative, zero = pipe.delay(p, stages), pipe.delay(negative, stages), pipe.delay(zero, stages)

    # 1/x = (1/m)·2^(F_in − p): y (work_bits fraction bits) shifted into wide_fmt's fraction bits.
    base = in_fmt.frac_bits + cfg.wide_fmt.frac_bits - P
    shift = base - p
    return scale_result(pipe, cfg, y, shift, (base - (width - 1), base), negative, zero)


class Reciprocal(LaneUnit):
    """1/x of ``lanes`` values per beat, one beat per cycle.

    Parameters
    ----------
    cfg : ReciprocalConfig
        Formats, seed table and Newton steps; :func:`hwgen.golden.nonlinear.reciprocal` defines
        the result.
    lanes : int
        Values per beat (each lane has its own read port on one shared seed ROM).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(lane_shape(cfg.in_fmt), lanes)))
        Raw inputs.
    o : Out(stream.Signature(ArrayLayout(lane_shape(cfg.out_fmt), lanes)))
        Raw reciprocals (0 gives out_fmt's largest code), in order.
    """

    CONFIGS = (nl.ReciprocalConfig,)
    CONFIG_NAME = "a ReciprocalConfig"
    NAME = "recip"

    @staticmethod
    def unit_latency(cfg) -> int:
        return reciprocal_latency(cfg)

    def rom(self):
        return reciprocal_memory(self.cfg)

    def lane(self, pipe, port, x):
        return reciprocal_lane(pipe, self.cfg, port, x)
