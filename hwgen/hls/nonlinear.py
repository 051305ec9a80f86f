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

import numpy as np

from hwgen.golden import nonlinear as nl
from hwgen.hls.emit import render
from hwgen.hls.kernel import Kernel, KernelPort
from hwgen.qfx import QFmt

__all__ = [
    "exp_config",
    "exp_kernel",
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
