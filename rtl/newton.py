# SPDX-License-Identifier: Apache-2.0
"""Datapath pieces shared by the reciprocal and rsqrt units (and by the softmax and LayerNorm).

Both units normalize their input by its leading one, seed the mantissa's inverse (square root)
from a table, refine it with Newton steps in ``work_bits``-bit fixed point and scale the result
back by the exponent, exactly as ``hwgen.golden.nonlinear`` does.  The functions here add
their logic to a :class:`~hwgen.rtl.pipeline.Pipeline` and return the values of their last
stage.
"""

from __future__ import annotations

from amaranth import Mux, unsigned
from amaranth.lib.memory import Memory

from hwgen.golden import nonlinear as nl
from hwgen.rtl.pipeline import Pipeline
from hwgen.rtl.requantize import lane_shape, requantize_lane

__all__ = ["seed_memory", "leading_one", "normalize", "reciprocal_newton", "rsqrt_newton", "scale_result"]


def seed_memory(values) -> Memory:
    """A ROM of the seed table ``values`` (raw, unsigned)."""
    words = [int(v) for v in values]
    return Memory(shape=unsigned(max(1, max(words).bit_length())), depth=len(words), init=words)


def leading_one(pipe: Pipeline, value, width: int):
    """Position of the highest set bit of the ``width``-bit ``value`` (0 when it is 0): a priority encoder."""
    position = pipe.wire(unsigned(max(1, (width - 1).bit_length())), 0)
    for bit in range(width):  # a later assignment wins: the highest set bit
        with pipe.m.If(value[bit]):
            pipe.m.d.comb += position.eq(bit)
    return position


def normalize(pipe: Pipeline, magnitude, width: int, work_bits: int):
    """(p, mantissa): the leading one's position and the magnitude shifted so that this one lands
    on bit ``work_bits``, low bits truncated — combinational."""
    p = leading_one(pipe, magnitude, width)
    amount = pipe.wire(unsigned(max(1, (width - 1).bit_length())), (width - 1) - p)
    aligned = pipe.wire(unsigned(width), magnitude << amount)  # leading one at bit width − 1
    if width - 1 >= work_bits:
        mantissa = aligned[width - 1 - work_bits:]
    else:
        mantissa = aligned << (work_bits - (width - 1))
    return p, pipe.wire(unsigned(work_bits + 1), mantissa)


def reciprocal_newton(pipe: Pipeline, cfg: nl._NewtonConfig, seed, mantissa):
    """y ≈ 1/m after ``cfg.newton_steps`` steps y ← y·(2 − m·y), two stages each.

    ``seed`` (``seed_frac_bits`` fraction bits) and ``mantissa`` (``work_bits``) are this stage's
    values; returns (y, the mantissa delayed alongside)."""
    P = cfg.work_bits
    y = pipe.wire(unsigned(P + 2), seed << (P - cfg.seed_frac_bits))
    for _ in range(cfg.newton_steps):
        error = pipe.reg((mantissa * y) >> P, shape=unsigned(P + 3))
        y, mantissa = pipe.reg(y), pipe.reg(mantissa)
        y = pipe.reg((y * ((2 << P) - error)) >> P, shape=unsigned(P + 2))
        mantissa = pipe.reg(mantissa)
    return y, mantissa


def rsqrt_newton(pipe: Pipeline, cfg: nl._NewtonConfig, seed, scaled):
    """y ≈ 1/√s after ``cfg.newton_steps`` steps y ← y·(3 − s·y²)/2, three stages each.

    ``scaled`` is s = m·2^odd with ``work_bits`` fraction bits; returns y."""
    P = cfg.work_bits
    y = pipe.wire(unsigned(P + 2), seed << (P - cfg.seed_frac_bits))
    for _ in range(cfg.newton_steps):
        square = pipe.reg((y * y) >> P, shape=unsigned(P + 3))
        y, scaled = pipe.reg(y), pipe.reg(scaled)
        error = pipe.reg((scaled * square) >> P, shape=unsigned(P + 4))
        y, scaled = pipe.reg(y), pipe.reg(scaled)
        y = pipe.reg((y * ((3 << P) - error)) >> (P + 1), shape=unsigned(P + 2))
        scaled = pipe.reg(scaled)
    return y


def scale_result(pipe: Pipeline, cfg: nl._NewtonConfig, y, shift, shift_range: tuple[int, int],
                 negative, zero):
    """Two stages: y·2^shift (floor) saturated to wide_fmt's magnitude, then the sign and the
    ap_fixed assignment to out_fmt; ``zero`` gives out_fmt's largest code.

    ``shift`` is a signed value within ``shift_range`` (inclusive)."""
    wide = cfg.wide_fmt
    limit = (1 << (wide.width - 1)) - 1 if wide.signed else (1 << wide.width) - 1
    low, high = shift_range
    y_bits = cfg.work_bits + 2
    max_left = max(0, high)
    left = pipe.wire(unsigned(max(1, max_left.bit_length())), Mux(shift > 0, shift, 0)) if max_left else 0
    max_right = max(0, -low)
    right = pipe.wire(unsigned(max(1, max_right.bit_length())), Mux(shift < 0, -shift, 0)) if max_right else 0
    lifted = pipe.wire(unsigned(y_bits + max_left), y << left)
    scaled = pipe.wire(unsigned(y_bits + max_left), lifted >> right)
    magnitude = pipe.reg(Mux(scaled > limit, limit, scaled), shape=unsigned(wide.width))
    negative, zero = pipe.reg(negative), pipe.reg(zero)
    value = pipe.wire(lane_shape(wide), Mux(negative, -magnitude, magnitude))
    result = Mux(zero, cfg.out_fmt.max_raw, requantize_lane(value, wide, cfg.out_fmt))
    return pipe.reg(result, shape=lane_shape(cfg.out_fmt))
