# SPDX-License-Identifier: Apache-2.0
"""Config structs and C-sim kernels for the nonlinear HLS units (``hls_templates/<unit>.h``).

Each ``*_config`` function renders one self-contained header declaring ``struct <name>``: the
ap_fixed types, every width and constant the kernel needs, and the tables — all computed here
from the same config objects and table functions as the golden model and the RTL, so the three
cannot drift apart.  Each ``*_kernel`` wraps a config into a :class:`~hwgen.hls.kernel.Kernel`
for :class:`~hwgen.hls.csim.CSim`.
"""

from __future__ import annotations

from collections.abc import Sequence

from hwgen.golden import nonlinear as nl
from hwgen.hls.emit import render
from hwgen.hls.kernel import Kernel, KernelPort

__all__ = [
    "exp_config",
    "exp_kernel",
    "reciprocal_config",
    "reciprocal_kernel",
    "rsqrt_config",
    "rsqrt_kernel",
    "gelu_config",
    "gelu_kernel",
    "softmax_config",
    "softmax_kernels",
    "layernorm_config",
    "layernorm_kernels",
]


def _table(name: str, values: Sequence[int], signed: bool = False) -> dict:
    values = [int(v) for v in values]
    ctype = "long long" if signed or min(values, default=0) < 0 else "unsigned long long"
    return {"name": name, "ctype": ctype, "values": values, "suffix": "LL" if ctype == "long long" else "ULL"}


def _header(name: str, description: str, headers, types, constants, tables=()) -> str:
    return render(
        "nonlinear_config.h.j2",
        name=name,
        description=description,
        headers=list(headers),
        types=list(types),
        constants=[(key, int(value)) for key, value in constants],
        tables=list(tables),
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"config name must be a C identifier, not {name!r}")


# ================================================================================================ exp


def exp_constants(cfg: nl.ExpConfig) -> list[tuple[str, int]]:
    """The widths and constants of ``exp.h`` for ``cfg`` (shared by the softmax config)."""
    wide_frac = cfg.wide_fmt.frac_bits
    lift = max(0, wide_frac - cfg.table_frac_bits)
    y_bits = cfg.product_bits - cfg.y_shift + 1
    return [
        ("in_width", cfg.in_fmt.width),
        ("clamped_bits", cfg.clamped_bits),
        ("clamp_raw", cfg.clamp_raw),
        ("product_bits", cfg.product_bits),
        ("log2e_raw", cfg.log2e_raw),
        ("log2e_bits", cfg.log2e_raw.bit_length()),
        ("y_shift", cfg.y_shift),
        ("y_half", 1 << (cfg.y_shift - 1) if cfg.y_shift > 0 else 0),
        ("y_bits", y_bits),
        ("y_frac_bits", cfg.y_frac_bits),
        ("n_bits", max(1, y_bits - cfg.y_frac_bits)),
        ("interp_bits", cfg.interp_bits),
        ("interp_mask", (1 << cfg.interp_bits) - 1),
        ("base_bits", cfg.table_frac_bits + 2),
        ("lift", lift),
        ("value_bits", cfg.table_frac_bits + 2 + lift),
        ("offset", max(0, cfg.table_frac_bits - wide_frac)),
        ("limit", cfg.table_frac_bits + 2 if cfg.table_frac_bits >= wide_frac else wide_frac + 2),
    ]


def exp_config(name: str, cfg: nl.ExpConfig, lanes: int = 1) -> str:
    """Header declaring ``struct <name>`` for ``hwgen::exp_lane`` / ``hwgen::exp_lanes``."""
    _check_name(name)
    return _header(
        name,
        f"exp: {cfg.out_fmt} <- {cfg.in_fmt}, {cfg.segments} segments, {lanes} lane(s).",
        ["exp.h"],
        [("in_t", cfg.in_fmt.cpp_type()), ("out_t", cfg.out_fmt.cpp_type()), ("wide_t", cfg.wide_fmt.cpp_type())],
        [("lanes", lanes), *exp_constants(cfg)],
        [_table("table", nl.exp_table(cfg))],
    )


def exp_kernel(name: str, cfg: nl.ExpConfig, lanes: int = 1) -> Kernel:
    """``hwgen::exp_lanes`` on one beat of ``lanes`` values, for :class:`~hwgen.hls.csim.CSim`."""
    config = f"{name}_config"
    return Kernel(
        name=name,
        declarations=exp_config(config, cfg, lanes),
        call=f"hwgen::exp_lanes<{config}>(in, out)",
        inputs=(KernelPort("in", cfg.in_fmt, lanes),),
        outputs=(KernelPort("out", cfg.out_fmt, lanes),),
    )


# ===================================================================================== reciprocal, rsqrt


def _newton_constants(cfg: nl._NewtonConfig, shift_base: int, max_left: int) -> list[tuple[str, int]]:
    wide = cfg.wide_fmt
    return [
        ("magnitude_bits", cfg.magnitude_bits),
        ("in_frac_bits", cfg.in_fmt.frac_bits),
        ("work_bits", cfg.work_bits),
        ("table_bits", cfg.table_bits),
        ("seed_frac_bits", cfg.seed_frac_bits),
        ("newton_steps", cfg.newton_steps),
        ("two", 2 << cfg.work_bits),
        ("three", 3 << cfg.work_bits),
        ("wide_width", wide.width),
        ("limit", (1 << (wide.width - 1)) - 1 if wide.signed else (1 << wide.width) - 1),
        ("shift_base", shift_base),
        ("max_left", max(0, max_left)),
        ("out_max_raw", cfg.out_fmt.max_raw),
    ]


def reciprocal_constants(cfg: nl.ReciprocalConfig) -> list[tuple[str, int]]:
    """The widths and constants of ``reciprocal.h`` for ``cfg`` (shared by the softmax config)."""
    base = cfg.in_fmt.frac_bits + cfg.wide_fmt.frac_bits - cfg.work_bits
    return _newton_constants(cfg, base, base)


def _newton_types(cfg: nl._NewtonConfig) -> list[tuple[str, str]]:
    return [("in_t", cfg.in_fmt.cpp_type()), ("out_t", cfg.out_fmt.cpp_type()), ("wide_t", cfg.wide_fmt.cpp_type())]


def reciprocal_config(name: str, cfg: nl.ReciprocalConfig, lanes: int = 1) -> str:
    """Header declaring ``struct <name>`` for ``hwgen::reciprocal_lane`` / ``reciprocal_lanes``."""
    _check_name(name)
    return _header(
        name,
        f"reciprocal: {cfg.out_fmt} <- {cfg.in_fmt}, {1 << cfg.table_bits} seeds, "
        f"{cfg.newton_steps} Newton steps, {lanes} lane(s).",
        ["reciprocal.h"],
        _newton_types(cfg),
        [("lanes", lanes), *reciprocal_constants(cfg)],
        [_table("seeds", nl.reciprocal_seed_table(cfg))],
    )


def reciprocal_kernel(name: str, cfg: nl.ReciprocalConfig, lanes: int = 1) -> Kernel:
    """``hwgen::reciprocal_lanes`` on one beat of ``lanes`` values."""
    config = f"{name}_config"
    return Kernel(
        name=name,
        declarations=reciprocal_config(config, cfg, lanes),
        call=f"hwgen::reciprocal_lanes<{config}>(in, out)",
        inputs=(KernelPort("in", cfg.in_fmt, lanes),),
        outputs=(KernelPort("out", cfg.out_fmt, lanes),),
    )


def rsqrt_constants(cfg: nl.RsqrtConfig) -> list[tuple[str, int]]:
    """The widths and constants of ``rsqrt.h`` for ``cfg`` (shared by the LayerNorm config)."""
    base = cfg.wide_fmt.frac_bits - cfg.work_bits
    lowest_half = (0 - cfg.in_fmt.frac_bits - 1) >> 1
    return _newton_constants(cfg, base, base - lowest_half)


def rsqrt_config(name: str, cfg: nl.RsqrtConfig, lanes: int = 1) -> str:
    """Header declaring ``struct <name>`` for ``hwgen::rsqrt_lane`` / ``rsqrt_lanes``."""
    _check_name(name)
    return _header(
        name,
        f"rsqrt: {cfg.out_fmt} <- {cfg.in_fmt}, {1 << cfg.table_bits} seeds, "
        f"{cfg.newton_steps} Newton steps, {lanes} lane(s).",
        ["rsqrt.h"],
        _newton_types(cfg),
        [("lanes", lanes), *rsqrt_constants(cfg)],
        [_table("seeds", nl.rsqrt_seed_table(cfg))],
    )


def rsqrt_kernel(name: str, cfg: nl.RsqrtConfig, lanes: int = 1) -> Kernel:
    """``hwgen::rsqrt_lanes`` on one beat of ``lanes`` values."""
    config = f"{name}_config"
    return Kernel(
        name=name,
        declarations=rsqrt_config(config, cfg, lanes),
        call=f"hwgen::rsqrt_lanes<{config}>(in, out)",
        inputs=(KernelPort("in", cfg.in_fmt, lanes),),
        outputs=(KernelPort("out", cfg.out_fmt, lanes),),
    )


# =============================================================================================== GELU


def gelu_config(name: str, cfg, lanes: int = 1) -> str:
    """Header declaring ``struct <name>`` for ``hwgen::gelu_table_lane`` or ``gelu_poly_lane``."""
    _check_name(name)
    poly = isinstance(cfg, nl.GeluPolyConfig)
    step_log2 = cfg.segment_log2 if poly else cfg.step_log2
    frac = cfg.fraction_bits
    result = cfg.result_fmt
    if poly:
        table = _table("coefficients", nl.gelu_poly_coefficients(cfg).reshape(-1), signed=True)
        delta_frac, delta_bits = cfg.coef_fmt.frac_bits, cfg.coef_fmt.width + 3
        extra = [("coef_bits", cfg.coef_fmt.width)]
        what = f"{cfg.segments} quadratic segments of 2^-{step_log2}"
    else:
        table = _table("table", nl.gelu_table(cfg))
        delta_frac, delta_bits = cfg.table_fmt.frac_bits + frac, cfg.table_fmt.width + frac + 2
        extra = []
        what = f"{cfg.segments + 1} entries every 2^-{step_log2}"
    constants = [
        ("polynomial", int(poly)),
        ("lanes", lanes),
        ("in_width", cfg.in_fmt.width),
        ("segments", cfg.segments),
        ("fraction_bits", frac),
        ("fraction_mask", (1 << frac) - 1),
        ("index_lift", max(0, step_log2 - cfg.in_fmt.frac_bits)),
        ("delta_bits", delta_bits),
        ("result_width", result.width),
        ("relu_shift", result.frac_bits - cfg.in_fmt.frac_bits),
        ("delta_shift", result.frac_bits - delta_frac),
        *extra,
    ]
    return _header(
        name,
        f"GELU: {cfg.out_fmt} <- {cfg.in_fmt}, {what}, {lanes} lane(s).",
        ["gelu.h"],
        [("in_t", cfg.in_fmt.cpp_type()), ("out_t", cfg.out_fmt.cpp_type()), ("result_t", result.cpp_type())],
        constants,
        [table],
    )


def gelu_kernel(name: str, cfg, lanes: int = 1) -> Kernel:
    """``hwgen::gelu_table_lanes`` or ``gelu_poly_lanes`` on one beat of ``lanes`` values."""
    config = f"{name}_config"
    function = "gelu_poly_lanes" if isinstance(cfg, nl.GeluPolyConfig) else "gelu_table_lanes"
    return Kernel(
        name=name,
        declarations=gelu_config(config, cfg, lanes),
        call=f"hwgen::{function}<{config}>(in, out)",
        inputs=(KernelPort("in", cfg.in_fmt, lanes),),
        outputs=(KernelPort("out", cfg.out_fmt, lanes),),
    )


# ============================================================================================ softmax


def softmax_config(name: str, cfg: nl.SoftmaxConfig) -> str:
    """Headers declaring ``struct <name>`` (and its exp and reciprocal configs) for ``softmax.h``."""
    _check_name(name)
    parts = [
        exp_config(f"{name}_stats_exp", cfg.stats_exp),
        exp_config(f"{name}_norm_exp", cfg.norm_exp),
        reciprocal_config(f"{name}_recip", cfg.recip),
    ]
    parts.append(_header(
        name,
        f"softmax: {cfg.out_fmt} <- {cfg.in_fmt}, rows of up to {cfg.max_row}, statistics in {cfg.inv_fmt}.",
        ["softmax.h"],
        [
            ("in_t", cfg.in_fmt.cpp_type()),
            ("out_t", cfg.out_fmt.cpp_type()),
            ("diff_t", cfg.diff_fmt.cpp_type()),
            ("sum_t", cfg.sum_fmt.cpp_type()),
            ("inv_t", cfg.inv_fmt.cpp_type()),
            ("stats_exp", f"{name}_stats_exp"),
            ("norm_exp", f"{name}_norm_exp"),
            ("recip", f"{name}_recip"),
        ],
        [
            ("in_width", cfg.in_fmt.width),
            ("exp_width", cfg.stats_exp.out_fmt.width),
            ("sum_width", cfg.sum_fmt.width),
            ("sum_frac_bits", cfg.sum_frac_bits),
            ("max_row", cfg.max_row),
        ],
    ))
    return "\n".join(parts)


def softmax_kernels(name: str, cfg: nl.SoftmaxConfig, lengths) -> list[Kernel]:
    """For each row length n: ``<name>_rows<n>`` (``hwgen::softmax``, a row in, probabilities out)
    and ``<name>_stats<n>`` (``hwgen::softmax_stats``, a row in, max and 1/sum out).  The config is
    declared once, by the first kernel."""
    config = f"{name}_config"
    declarations = softmax_config(config, cfg)
    kernels = []
    for n in lengths:
        kernels.append(Kernel(
            name=f"{name}_rows{n}",
            declarations=declarations if not kernels else "",
            call=f"hwgen::softmax<{config}>(in, out, {n})",
            inputs=(KernelPort("in", cfg.in_fmt, n),),
            outputs=(KernelPort("out", cfg.out_fmt, n),),
        ))
        kernels.append(Kernel(
            name=f"{name}_stats{n}",
            declarations="",
            call=f"hwgen::softmax_stats<{config}>(in, {n}, row_max[0], inv_sum[0])",
            inputs=(KernelPort("in", cfg.in_fmt, n),),
            outputs=(KernelPort("row_max", cfg.in_fmt, 1), KernelPort("inv_sum", cfg.inv_fmt, 1)),
        ))
    return kernels


# ========================================================================================== LayerNorm


def layernorm_config(name: str, cfg: nl.LayerNormConfig) -> str:
    """Headers declaring ``struct <name>`` (and its rsqrt config) for ``layernorm.h``."""
    _check_name(name)
    main = _header(
        name,
        f"LayerNorm: {cfg.out_fmt} <- {cfg.in_fmt}, gamma {cfg.gamma_fmt}, beta {cfg.beta_fmt}, "
        f"up to {cfg.max_channels} channels, eps {cfg.eps}.",
        ["layernorm.h"],
        [
            ("in_t", cfg.in_fmt.cpp_type()),
            ("gamma_t", cfg.gamma_fmt.cpp_type()),
            ("beta_t", cfg.beta_fmt.cpp_type()),
            ("out_t", cfg.out_fmt.cpp_type()),
            ("norm_t", cfg.norm_fmt.cpp_type()),
            ("rsqrt", f"{name}_rsqrt"),
        ],
        [
            ("in_width", cfg.in_fmt.width),
            ("max_channels", cfg.max_channels),
            ("sum_bits", cfg.sum_bits),
            ("square_sum_bits", cfg.square_sum_bits),
            ("count_bits", cfg.count_bits),
            ("d_bits", cfg.d_bits),
            ("u_bits", cfg.u_bits),
            ("eps_raw", cfg.eps_raw),
            ("work_bits", cfg.rsqrt.work_bits),
            ("norm_frac_bits", cfg.norm_fmt.frac_bits),
            ("norm_min_raw", cfg.norm_fmt.min_raw),
            ("norm_max_raw", cfg.norm_fmt.max_raw),
        ],
    )
    return rsqrt_config(f"{name}_rsqrt", cfg.rsqrt) + "\n" + main


def layernorm_kernels(name: str, cfg: nl.LayerNormConfig, lengths, lanes: int = 1) -> list[Kernel]:
    """``<name>_rows<n>`` for each row length n: x, γ, β in, the normalized row out, ``lanes``
    elements per beat (``layernorm.h``'s LANES)."""
    config = f"{name}_config"
    kernels = []
    for n in lengths:
        kernels.append(Kernel(
            name=f"{name}_rows{n}",
            declarations="" if kernels else layernorm_config(config, cfg),
            call=f"hwgen::layernorm<{config}, {lanes}>(x, gamma, beta, out, {n})",
            inputs=(KernelPort("x", cfg.in_fmt, n), KernelPort("gamma", cfg.gamma_fmt, n),
                    KernelPort("beta", cfg.beta_fmt, n)),
            outputs=(KernelPort("out", cfg.out_fmt, n),),
        ))
    return kernels
