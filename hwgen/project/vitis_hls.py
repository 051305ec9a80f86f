# SPDX-License-Identifier: Apache-2.0
"""The Vitis HLS half of a board build: ``hls/vitis_hls.tcl`` and the IP it hands to Vivado.

:class:`HlsDesign` names the HLS sources of one build (top function, kernel and testbench files,
the data the testbench reads, compiler flags, the top's AXI bundles). :func:`vitis_hls_script`
renders ``boards/templates/vitis_hls.tcl.j2`` — open the project, add the files, C simulation,
synthesis, C/RTL co-simulation, IP export for the board's part and clock — and
:func:`hls_accelerator` describes the exported IP for :func:`hwgen.project.vivado.vivado_script`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hwgen.board import Board
from hwgen.project.templates import render, tcl_word
from hwgen.project.vivado import BdAccelerator

__all__ = ["HlsDesign", "HLS_HOOKS", "vitis_hls_script", "hls_accelerator"]

#: Override points of the Vitis HLS script.
HLS_HOOKS = (
    "hls_config",           # after create_clock: config_compile, config_interface, set_directive_*
    "script_after_csynth",  # after csynth_design, before co-simulation
    "cosim_opts",           # extra cosim_design options, e.g. -trace_level all
)


@dataclass(frozen=True)
class HlsDesign:
    """The HLS sources of one build, paths relative to the ``hls/`` folder.

    Attributes
    ----------
    top : str
        The top function; also the exported IP's name.
    sources, testbench : tuple of str
        Kernel and testbench C++ files (``add_files`` and ``add_files -tb``).
    tb_data : tuple of str
        Files the testbench reads at run time (copied next to it by ``add_files -tb``).
    cflags : tuple of str
        Compiler flags of every C++ file, e.g. ``-I.``.
    csim_argv : tuple of str
        Arguments of the testbench's ``main`` in C simulation and co-simulation.
    masters, control : tuple of str, str
        The top's ``m_axi`` bundles and its ``s_axilite`` bundle, as named in its INTERFACE pragmas.
    """

    top: str
    sources: tuple[str, ...]
    testbench: tuple[str, ...] = ()
    tb_data: tuple[str, ...] = ()
    cflags: tuple[str, ...] = ()
    csim_argv: tuple[str, ...] = ()
    masters: tuple[str, ...] = ("gmem",)
    control: str = "control"
    project: str = "hwgen_hls"
    solution: str = "solution1"
    vendor: str = "hwgen"
    library: str = "hls"
    version: str = "1.0"

    def __post_init__(self) -> None:
        for field in ("sources", "testbench", "tb_data", "cflags", "csim_argv", "masters"):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, tuple):
                raise ValueError(f"HLS design {field} must be a tuple of strings, not {value!r}")
            for item in value:
                tcl_word(f"HLS design {field} item", item)
        for field in ("top", "control", "project", "solution", "vendor", "library", "version"):
            tcl_word(f"HLS design {field}", getattr(self, field))
        if not self.sources:
            raise ValueError("HLS design sources must name at least one file, not none")
        if not self.masters:
            raise ValueError("HLS design masters must name at least one m_axi bundle, not none")

    @property
    def ip_dir(self) -> str:
        """Where ``export_design`` puts the IP, relative to the ``hls/`` folder."""
        return f"{self.project}/{self.solution}/impl/ip"

    @property
    def vlnv(self) -> str:
        """The exported IP's vendor:library:name:version."""
        return f"{self.vendor}:{self.library}:{self.top}:{self.version}"


def _period_ns(mhz: float) -> str:
    return f"{1000.0 / mhz:.3f}".rstrip("0").rstrip(".")


def vitis_hls_script(
    board: Board,
    design: HlsDesign,
    *,
    clock_mhz: float | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """``hls/vitis_hls.tcl`` for ``design`` on ``board``'s part at its PL clock."""
    mhz = board.clock_mhz(clock_mhz)
    return render(
        "vitis_hls.tcl.j2",
        HLS_HOOKS,
        overrides,
        board=board,
        design=design,
        clock_mhz=f"{mhz:g}",
        period_ns=_period_ns(mhz),
        ip_repo=design.ip_dir,
        vlnv=design.vlnv,
    )


def hls_accelerator(design: HlsDesign) -> BdAccelerator:
    """The IP ``vitis_hls.tcl`` exports, as a block-design cell (seen from ``vivado/``).

    Vitis HLS names an ``m_axi`` bundle's interface ``m_axi_<bundle>`` and its address space
    ``Data_m_axi_<bundle>``, the ``s_axilite`` bundle ``s_axi_<bundle>``; the clock is ``ap_clk``,
    the active-low reset ``ap_rst_n``, and the return value's control port adds ``interrupt``.
    """
    return BdAccelerator(
        flow="hls",
        cell=design.vlnv,
        control=f"s_axi_{design.control}",
        masters=tuple(f"m_axi_{m}" for m in design.masters),
        master_spaces=tuple(f"Data_m_axi_{m}" for m in design.masters),
        clock="ap_clk",
        reset="ap_rst_n",
        reset_active_low=True,
        interrupt="interrupt",
        ip_repo=f"../hls/{design.ip_dir}",
    )
