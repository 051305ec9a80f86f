# SPDX-License-Identifier: Apache-2.0
"""The Vivado half of a board build: block design, constraints and bitstream as Tcl text.

One template per processing-system type (``boards/templates/<ps>.tcl.j2``, both extending
``vivado_bd.tcl.j2``) builds, for any board of that type: the project for the board's part and
board part, the block design (PS with the board preset and :attr:`Board.ps_settings`, PL clock
and reset, the accelerator, a SmartConnect from the PS master to the accelerator's AXI-Lite
registers and one from its AXI4 master(s) to the HP0 port, the address map), validation, the
wrapper, constraints, synthesis and implementation to ``write_bitstream``, and the ``.xsa`` /
``.hwh`` exports. The accelerator enters either as RTL — the ``hwgen_accel`` Verilog module
wrapped by :func:`rtl_accelerator` in a small module whose ports carry Vivado interface
attributes, then used as a module reference — or as the IP that Vitis HLS exports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwgen.board import Board
from hwgen.project.templates import render, stamp, tcl_word

__all__ = [
    "BdAccelerator",
    "VIVADO_HOOKS",
    "XDC_HOOKS",
    "FLOWS",
    "rtl_accelerator",
    "vivado_script",
    "xdc_constraints",
    "build_script",
]

#: Override points of the Vivado script, in the order they run.
VIVADO_HOOKS = (
    "script_before_project",  # before create_project, e.g. set_param board.repoPaths
    "script_after_project",   # sources are in, block design not yet started
    "script_after_ps",        # PS configured, nothing connected yet: extra CONFIG.* here
    "script_after_bd",        # everything connected and addressed, before validate_bd_design
    "synth_opts",             # extra synth_design options (STEPS.SYNTH_DESIGN.ARGS.MORE OPTIONS)
    "script_after_synth",     # synthesis finished, before implementation
    "script_after_impl",      # bitstream written, before reports and exports
)
#: Override points of the constraints file.
XDC_HOOKS = ("add_constraints",)
#: Ways the accelerator enters the block design.
FLOWS = ("rtl", "hls")

RTL_MODULE = "hwgen_accel"
WRAPPER_MODULE = "hwgen_accel_bd"
CONTROL_RANGE = "64K"

# AXI4 signals with their direction seen from the manager ("o" = driven by the manager).
_AXI4 = {
    **{s: "o" for s in ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot",
                        "awqos", "awregion", "awuser", "awvalid", "wdata", "wstrb", "wlast", "wuser",
                        "wvalid", "bready", "arid", "araddr", "arlen", "arsize", "arburst", "arlock",
                        "arcache", "arprot", "arqos", "arregion", "aruser", "arvalid", "rready")},
    **{s: "i" for s in ("awready", "wready", "bid", "bresp", "buser", "bvalid", "arready", "rid", "rdata",
                        "rresp", "rlast", "ruser", "rvalid")},
}
_AXI4_LITE = {s: d for s, d in _AXI4.items() if s in {
    "awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp", "bvalid",
    "bready", "araddr", "arprot", "arvalid", "arready", "rdata", "rresp", "rvalid", "rready"}}
_INTERRUPTS = ("irq", "interrupt")

_PORT_DECL = re.compile(
    r"^\s*(input|output|inout)\s+(?:(?:wire|reg|logic|signed)\s+)*(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?"
    r"(\w+(?:\s*,\s*\w+)*)\s*[;,)]?\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class BdAccelerator:
    """How the accelerator appears as a block-design cell.

    Attributes
    ----------
    flow : str
        ``"rtl"`` (module reference) or ``"hls"`` (IP exported by Vitis HLS).
    cell : str
        Module name of the module reference, or the IP's VLNV.
    control : str
        Interface pin of the AXI-Lite register slave the PS master drives.
    masters : tuple of str
        Interface pins of the AXI4 masters that reach DDR through the HP port.
    master_spaces : tuple of str
        The address spaces of those masters (Vivado names them differently for HLS IP).
    clock, reset : str
        Clock and reset pins; ``reset_active_low`` tells which reset of ``proc_sys_reset`` drives it.
    interrupt : str or None
        The interrupt output pin, wired to the PS when present.
    sources : tuple of str
        RTL files the project reads, relative to the ``vivado/`` folder (RTL flow).
    ip_repo : str or None
        Folder of the exported HLS IP, relative to the ``vivado/`` folder (HLS flow).
    wrapper : str or None
        Verilog text of the interface wrapper, written as ``vivado/hwgen_accel_bd.v`` (RTL flow).
    """

    flow: str
    cell: str
    control: str
    masters: tuple[str, ...]
    master_spaces: tuple[str, ...]
    clock: str
    reset: str
    reset_active_low: bool
    interrupt: str | None
    sources: tuple[str, ...] = ()
    ip_repo: str | None = None
    wrapper: str | None = None


@dataclass(frozen=True)
class _Port:
    name: str
    direction: str  # "input" | "output"
    width: int


def _module_ports(verilog: str, module: str) -> list[_Port]:
    match = re.search(rf"^\s*module\s+{re.escape(module)}\b(.*?)^\s*endmodule\b", verilog, re.MULTILINE | re.DOTALL)
    if not match:
        raise ValueError(f"accelerator Verilog must define module {module}, but it does not")
    ports: dict[str, _Port] = {}
    for direction, msb, lsb, names in _PORT_DECL.findall(match.group(1)):
        if direction == "inout":
            raise ValueError(f"accelerator port {names} must be an input or output, not inout")
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        for name in re.split(r"\s*,\s*", names.strip()):
            ports[name] = _Port(name, direction, width)
    if not ports:
        raise ValueError(f"accelerator module {module} must declare ports, but none were found")
    return list(ports.values())


def rtl_accelerator(verilog: str, *, source: str = "../rtl/hwgen_accel.v", module: str = RTL_MODULE) -> BdAccelerator:
    """Describe the RTL accelerator for the block design and write its interface wrapper.

    ``verilog`` must define ``module`` (``hwgen_accel``) with ports ``clk``, ``rst`` (active
    high), an optional ``irq`` output, one AXI-Lite slave ``s_axi`` and AXI4 master(s)
    ``m_axi…``, their signals named as Amaranth flattens signatures (``m_axi__araddr``). The
    wrapper renames them to ``m_axi_araddr`` and tags each with ``X_INTERFACE_INFO``, so Vivado
    sees exactly these interfaces instead of guessing from names. ``source`` is where the
    Verilog lives relative to the ``vivado/`` folder.
    """
    tcl_word("accelerator source", source)
    ports = _module_ports(verilog, module)
    groups: dict[str, list[tuple[_Port, str]]] = {}
    clock = reset = interrupt = None
    for port in ports:
        iface, sep, signal = port.name.partition("__")
        if sep and re.fullmatch(r"[ms]_axi\w*", iface):
            groups.setdefault(iface, []).append((port, signal.replace("__", "").lower()))
        elif port.name == "clk" and port.direction == "input" and port.width == 1:
            clock = port
        elif port.name == "rst" and port.direction == "input" and port.width == 1:
            reset = port
        elif port.name in _INTERRUPTS and port.direction == "output" and port.width == 1:
            interrupt = port
        else:
            raise ValueError(
                f"accelerator port {port.name} must be clk, rst, irq or a signal of an m_axi*/s_axi* "
                f"interface, not a {port.width}-bit {port.direction}"
            )
    if clock is None or reset is None:
        raise ValueError(f"accelerator module {module} must have 1-bit inputs clk and rst, but it lacks "
                         f"{' and '.join(n for n, p in (('clk', clock), ('rst', reset)) if p is None)}")
    masters = sorted(i for i in groups if i.startswith("m_"))
    slaves = sorted(i for i in groups if i.startswith("s_"))
    if len(slaves) != 1 or not masters:
        raise ValueError(
            f"accelerator module {module} must have one AXI-Lite slave s_axi* and at least one AXI4 master "
            f"m_axi*, not slaves {slaves} and masters {masters}"
        )
    for iface, members in groups.items():
        is_master = iface.startswith("m_")
        table = _AXI4 if is_master else _AXI4_LITE
        for port, signal in members:
            if signal not in table:
                kind = "AXI4" if is_master else "AXI4-Lite"
                raise ValueError(f"accelerator port {port.name} must be an {kind} signal, not {signal!r}")
            manager_drives = table[signal] == "o"
            expected = "output" if manager_drives == is_master else "input"
            if port.direction != expected:
                raise ValueError(f"accelerator port {port.name} must be an {expected}, not an {port.direction}")
    wrapper = _wrapper_verilog(module, clock, reset, interrupt, groups)
    return BdAccelerator(
        flow="rtl",
        cell=WRAPPER_MODULE,
        control=slaves[0],
        masters=tuple(masters),
        master_spaces=tuple(masters),
        clock="clk",
        reset="rst",
        reset_active_low=False,
        interrupt=interrupt.name if interrupt else None,
        sources=(source, f"{WRAPPER_MODULE}.v"),
        wrapper=wrapper,
    )


def _wrapper_verilog(module, clock, reset, interrupt, groups) -> str:
    def decl(direction: str, width: int, name: str) -> str:
        rng = f"[{width - 1}:0] " if width > 1 else ""
        return f"{direction} wire {rng}{name}"

    busif = ":".join(sorted(groups))
    lines = [
        f"// {stamp()}",
        "//",
        f"// Block-design face of {module}: the same ports, renamed m_axi__araddr -> m_axi_araddr and tagged",
        "// with X_INTERFACE_INFO, so the module reference shows exactly these AXI interfaces, clock,",
        "// reset and interrupt instead of ones Vivado guesses from port names.",
        f"module {WRAPPER_MODULE} (",
    ]
    ports: list[str] = [
        f'  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 clk CLK", '
        f'X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF {busif}, ASSOCIATED_RESET rst" *)\n  {decl("input", 1, "clk")}',
        f'  (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 rst RST", '
        f'X_INTERFACE_PARAMETER = "POLARITY ACTIVE_HIGH" *)\n  {decl("input", 1, "rst")}',
    ]
    connections = [("clk", "clk"), ("rst", "rst")]
    if interrupt is not None:
        ports.append(
            f'  (* X_INTERFACE_INFO = "xilinx.com:signal:interrupt:1.0 {interrupt.name} INTERRUPT", '
            f'X_INTERFACE_PARAMETER = "SENSITIVITY LEVEL_HIGH" *)\n  {decl("output", 1, interrupt.name)}'
        )
        connections.append((interrupt.name, interrupt.name))
    for iface in sorted(groups):
        members = sorted(groups[iface], key=lambda m: m[1])
        signals = {s for _, s in members}
        protocol = "AXI4" if iface.startswith("m_") and {"arlen", "awlen"} & signals else "AXI4LITE"
        for k, (port, signal) in enumerate(members):
            outer = f"{iface}_{signal}"
            attr = f'X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 {iface} {signal.upper()}"'
            if k == 0:
                attr += f', X_INTERFACE_PARAMETER = "XIL_INTERFACENAME {iface}, PROTOCOL {protocol}"'
            ports.append(f"  (* {attr} *)\n  {decl(port.direction, port.width, outer)}")
            connections.append((port.name, outer))
    lines.append(",\n".join(ports))
    lines.append(");")
    lines.append(f"  {module} core (")
    lines.append(",\n".join(f"    .{inner}({outer})" for inner, outer in connections))
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _control_base(board: Board) -> str:
    # Start of the PL window of the PS master port the template uses (HPM0_FPD / M_AXI_GP0).
    return {"zynq_ultra_ps_e": "0xA0000000", "processing_system7": "0x40000000"}[board.ps]


def vivado_script(
    board: Board,
    accel: BdAccelerator,
    *,
    clock_mhz: float | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """``vivado/build_<flow>.tcl``: project, block design and bitstream for ``accel`` on ``board``."""
    if accel.flow not in FLOWS:
        raise ValueError(f"accelerator flow must be one of {', '.join(FLOWS)}, not {accel.flow!r}")
    for what, value in (("accelerator cell", accel.cell), ("accelerator control", accel.control),
                        ("accelerator clock", accel.clock), ("accelerator reset", accel.reset),
                        *(("accelerator master", m) for m in accel.masters),
                        *(("accelerator address space", s) for s in accel.master_spaces),
                        *(("accelerator source", s) for s in accel.sources)):
        tcl_word(what, value)
    if accel.interrupt is not None:
        tcl_word("accelerator interrupt", accel.interrupt)
    if accel.ip_repo is not None:
        tcl_word("accelerator ip_repo", accel.ip_repo)
    if accel.flow == "rtl" and not accel.sources:
        raise ValueError("an RTL accelerator must name its Verilog sources, not none")
    if accel.flow == "hls" and accel.ip_repo is None:
        raise ValueError("an HLS accelerator must name its IP repository, not None")
    mhz = board.clock_mhz(clock_mhz)
    settings = {**board.ps_settings, **board.derived_ps_settings(mhz)}
    return render(
        f"{board.ps}.tcl.j2",
        VIVADO_HOOKS,
        overrides,
        board=board,
        accel=accel,
        flow=accel.flow,
        clock_mhz=f"{mhz:g}",
        ps_settings=settings,
        control_base=_control_base(board),
        control_range=CONTROL_RANGE,
        script=f"build_{accel.flow}.tcl",
    )


def xdc_constraints(board: Board, *, overrides: Mapping[str, str] | None = None) -> str:
    """``vivado/hwgen.xdc``: the design has no PL pins, so this sets bitstream options only."""
    return render("hwgen.xdc.j2", XDC_HOOKS, overrides, board=board)


def build_script(flows: Sequence[str]) -> str:
    """``build.sh``: Vitis HLS (for the HLS flow) then Vivado for each flow, in that order."""
    flows = list(flows)
    if not flows or any(f not in FLOWS for f in flows) or len(set(flows)) != len(flows):
        raise ValueError(f"flows must be distinct items of {', '.join(FLOWS)}, not {flows!r}")
    return render("build.sh.j2", (), None, flows=[f for f in FLOWS if f in flows])
