# SPDX-License-Identifier: Apache-2.0
"""Vendor projects as data: a :class:`BuildPlan` of files, and the Vivado / Vitis HLS scripts in it.

- :mod:`hwgen.project.plan` — :class:`BuildPlan`: files in memory, written atomically.
- :mod:`hwgen.project.vivado` — block design + bitstream Tcl (one template per PS type), the
  constraints and ``build.sh``; :func:`rtl_accelerator` wraps the RTL for the block design.
- :mod:`hwgen.project.vitis_hls` — :class:`HlsDesign` and ``vitis_hls.tcl``.
- :func:`add_board_project` puts all of it into a plan that already holds the RTL / HLS sources.

Nothing here runs a vendor tool; ``build.sh`` in the written folder does.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from hwgen.board import Board
from hwgen.project.plan import BuildPlan, PlanFile
from hwgen.project.vitis_hls import HLS_HOOKS, HlsDesign, hls_accelerator, vitis_hls_script
from hwgen.project.vivado import (
    VIVADO_HOOKS,
    XDC_HOOKS,
    BdAccelerator,
    build_script,
    rtl_accelerator,
    vivado_script,
    xdc_constraints,
)

__all__ = [
    "BuildPlan",
    "PlanFile",
    "BdAccelerator",
    "HlsDesign",
    "HOOKS",
    "RTL_PATH",
    "add_board_project",
    "rtl_accelerator",
    "hls_accelerator",
    "vivado_script",
    "vitis_hls_script",
    "xdc_constraints",
    "build_script",
]

#: Every override hook of a board project, across its Vivado, constraints and Vitis HLS scripts.
HOOKS = VIVADO_HOOKS + XDC_HOOKS + HLS_HOOKS
#: Where the plan holds the accelerator's Verilog (module ``hwgen_accel``).
RTL_PATH = "rtl/hwgen_accel.v"


def add_board_project(
    plan: BuildPlan,
    board: Board,
    *,
    rtl: bool = True,
    hls: HlsDesign | None = None,
    clock_mhz: float | None = None,
    overrides: Mapping[str, str] | None = None,
) -> None:
    """Add the vendor scripts for ``board`` to ``plan``, which already holds the sources they read.

    With ``rtl`` the plan must hold the Verilog at :data:`RTL_PATH`; this adds its block-design
    wrapper and ``vivado/build_rtl.tcl``. With ``hls`` the plan must hold every file of the design
    under ``hls/``; this adds ``hls/vitis_hls.tcl`` and ``vivado/build_hls.tcl``. Always adds
    ``vivado/hwgen.xdc`` and ``build.sh``. ``overrides`` maps any of :data:`HOOKS` to Tcl.
    """
    overrides = dict(overrides or {})
    for name in overrides:
        if name not in HOOKS:
            raise ValueError(f"override must be one of {', '.join(HOOKS)}, not {name!r}")
    pick = lambda hooks: {k: v for k, v in overrides.items() if k in hooks}  # noqa: E731
    flows = []
    if rtl:
        if RTL_PATH not in plan:
            raise ValueError(f"the plan must hold the accelerator Verilog at {RTL_PATH} before the RTL project, but it does not")
        accel = rtl_accelerator(plan[RTL_PATH].decode("utf-8"), source=f"../{RTL_PATH}")
        plan.add_file(f"vivado/{accel.sources[-1]}", accel.wrapper)
        plan.add_file("vivado/build_rtl.tcl", vivado_script(board, accel, clock_mhz=clock_mhz, overrides=pick(VIVADO_HOOKS)))
        flows.append("rtl")
    if hls is not None:
        for path in hls.sources + hls.testbench + hls.tb_data:
            in_plan = posixpath.normpath(posixpath.join("hls", path))
            if in_plan not in plan:
                raise ValueError(f"the plan must hold HLS file {in_plan} before the HLS project, but it does not")
        plan.add_file("hls/vitis_hls.tcl", vitis_hls_script(board, hls, clock_mhz=clock_mhz, overrides=pick(HLS_HOOKS)))
        plan.add_file(
            "vivado/build_hls.tcl",
            vivado_script(board, hls_accelerator(hls), clock_mhz=clock_mhz, overrides=pick(VIVADO_HOOKS)),
        )
        flows.append("hls")
    if not flows:
        raise ValueError("a board project must build the RTL, an HLS design or both, not neither")
    plan.add_file("vivado/hwgen.xdc", xdc_constraints(board, overrides=pick(XDC_HOOKS)))
    plan.add_file("build.sh", build_script(flows), executable=True)
