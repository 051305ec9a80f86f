# SPDX-License-Identifier: Apache-2.0
"""The vendor scripts of every board: they render, parse in tclsh, and build against a recording stub.

``eda_stub.tcl`` stands in for Vivado and Vitis HLS: ``build.sh`` runs as a user would run it,
with ``vivado`` and ``vitis_hls`` on PATH being the stub, which logs every command and models
which PS ports exist, the interfaces of the module reference and of the exported HLS IP, the IP
catalog and the files each step writes. The checks below read that log back as a block design
and require the part, the clock, the files read, the cells, the nets, the interface connections
and the address map of each flow.
"""

import os
import re
import subprocess
from collections import defaultdict, deque
from functools import cache
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen import toolchain
from hwgen.board import board_names, load_board
from hwgen.hls.emit import stamp
from hwgen.project import HOOKS, RTL_PATH, BuildPlan, HlsDesign, add_board_project, rtl_accelerator
from hwgen.rtl.axi import AXI4LiteSignature, AXI4Signature

STUB = Path(__file__).with_name("eda_stub.tcl")
BOARDS = board_names()


# ------------------------------------------------------------------------------------- fixtures


class _AccelPorts(wiring.Component):
    """The accelerator's boundary as the RTL defines it, with placeholder logic behind it."""

    def __init__(self, data_width):
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=32, data_width=data_width)),
            "s_axi": In(AXI4LiteSignature(addr_width=12)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.m_axi.araddr.eq(self.m_axi.araddr + self.s_axi.awaddr)
        m.d.comb += [self.irq.eq(self.m_axi.rvalid), self.m_axi.arvalid.eq(self.s_axi.wvalid)]
        return m


@cache
def accel_verilog(data_width):
    return verilog.convert(_AccelPorts(data_width), name="hwgen_accel")


HLS_TOP = """\
// HLS top with the interfaces the exported IP must have.
#include "kernel.h"
void hwgen_accel_hls(const ap_uint<128> *mem, unsigned program) {
#pragma HLS INTERFACE mode=m_axi port=mem bundle=gmem offset=slave
#pragma HLS INTERFACE mode=s_axilite port=program bundle=control
#pragma HLS INTERFACE mode=s_axilite port=return bundle=control
}
"""
HLS_DESIGN = HlsDesign(
    top="hwgen_accel_hls",
    sources=("hwgen_accel_hls.cpp",),
    testbench=("tb.cpp",),
    tb_data=("../memory.bin",),
    cflags=("-I.",),
    csim_argv=("../memory.bin",),
)


def board_plan(board, *, clock_mhz=None, overrides=None, hls=True):
    plan = BuildPlan()
    plan.add_file(RTL_PATH, accel_verilog(board.hp_width))
    plan.add_file("hls/hwgen_accel_hls.cpp", HLS_TOP)
    plan.add_file("hls/kernel.h", "#include <ap_int.h>\n")
    plan.add_file("hls/tb.cpp", "int main(int argc, char **argv) { return 0; }\n")
    plan.add_file("memory.bin", bytes(range(64)))
    add_board_project(plan, board, hls=HLS_DESIGN if hls else None, clock_mhz=clock_mhz, overrides=overrides)
    return plan


GENERATED = ("build.sh", "hls/vitis_hls.tcl", "vivado/build_hls.tcl", "vivado/build_rtl.tcl",
             "vivado/hwgen.xdc", "vivado/hwgen_accel_bd.v")


# --------------------------------------------------------------------------------- running the stub


def run_build(folder, work, *, board_parts, flows=()):
    """Run ``folder/build.sh`` with the stub as ``vivado`` and ``vitis_hls``; (process, log records)."""
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("vivado", "vitis_hls"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{toolchain.tclsh()}" "{STUB}" {tool} "$HWGEN_STUB_LOG" "$@"\n')
        wrapper.chmod(0o755)
    log = work / "stub.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HWGEN_STUB_LOG": str(log),
           "HWGEN_STUB_BOARD_PARTS": board_parts}
    proc = subprocess.run(["bash", str(folder / "build.sh"), *flows], env=env, capture_output=True, text=True)
    records = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    return proc, records


def tool_runs(records):
    """Split the log into one list of records per tool invocation: [(tool, script, records)]."""
    runs = []
    for record in records:
        if record[0] == "TOOL":
            runs.append((record[1], Path(record[2]), []))
        runs[-1][2].append(record)
    return runs


class BlockDesign:
    """What one Vivado run built, read back from the stub's records."""

    def __init__(self, records):
        self.records = records
        self.kinds = [r[0] for r in records]
        self.cells = {r[1]: (r[2], r[3]) for r in records if r[0] == "CELL"}
        self.props = {(r[1], r[2]): r[3] for r in records if r[0] == "PROP"}
        self.reads = [Path(r[1]) for r in records if r[0] == "READ"]
        self.addresses = [tuple(r[1:]) for r in records if r[0] == "ADDR"]
        self.intf_pins = {r[1]: set(r[2:]) for r in records if r[0] == "INTF_PINS"}
        self.pins = {r[1]: set(r[2:]) for r in records if r[0] == "PINS"}
        # Nets: connect_bd_net joins all its pins into one net; a pin in two calls merges them.
        self._parent = {}
        for r in records:
            if r[0] == "NET":
                for pin in r[2:]:
                    self._union(r[1], pin)
        # Interface connections, plus each SmartConnect passing any slave port to any master port.
        self.intf_graph = defaultdict(set)
        for r in records:
            if r[0] == "INTF_NET":
                self.intf_graph[r[1]].add(r[2])
                self.intf_graph[r[2]].add(r[1])
        for cell, (kind, _) in self.cells.items():
            if kind == "smartconnect":
                ports = self.intf_pins[cell]
                for s in (p for p in ports if p.startswith("S")):
                    for m in (p for p in ports if p.startswith("M")):
                        self.intf_graph[f"{cell}/{s}"].add(f"{cell}/{m}")
                        self.intf_graph[f"{cell}/{m}"].add(f"{cell}/{s}")

    def _find(self, pin):
        self._parent.setdefault(pin, pin)
        while self._parent[pin] != pin:
            pin = self._parent[pin]
        return pin

    def _union(self, a, b):
        self._parent[self._find(a)] = self._find(b)

    def net(self, pin):
        """Every pin on the same net as ``pin`` (just ``pin`` when unconnected)."""
        root = self._find(pin)
        return {p for p in self._parent if self._find(p) == root}

    def connected(self, a, b):
        """Whether interface pins ``a`` and ``b`` are joined through connections and SmartConnects."""
        seen, todo = {a}, deque([a])
        while todo:
            for nxt in self.intf_graph[todo.popleft()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return b in seen

    def index(self, kind):
        return self.kinds.index(kind)


PS_PINS = {
    "zynq_ultra_ps_e": dict(master="M_AXI_HPM0_FPD", hp="S_AXI_HP0_FPD", reset="pl_resetn0", irq="pl_ps_irq0",
                            ddr="/ps/SAXIGP2/HP0_DDR_LOW", control_base=0xA0000000,
                            freq="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ", width="PSU__SAXIGP2__DATA_WIDTH"),
    "processing_system7": dict(master="M_AXI_GP0", hp="S_AXI_HP0", reset="FCLK_RESET0_N", irq="IRQ_F2P",
                               ddr="/ps/S_AXI_HP0/HP0_DDR_LOWOCM", control_base=0x40000000,
                               freq="PCW_FPGA0_PERIPHERAL_FREQMHZ", width="PCW_S_AXI_HP0_DATA_WIDTH"),
}


def check_block_design(bd, board, flow, folder, clock_mhz):
    """Assert that ``bd`` is the complete design of ``flow`` on ``board`` (raises AssertionError)."""
    pins = PS_PINS[board.ps]
    # Project for the board's part and board part.
    (project,) = [r for r in bd.records if r[0] == "PROJECT"]
    assert project[1:] == [f"hwgen_{flow}", str(folder / "vivado" / flow / "project"), board.part]
    assert bd.props[(f"hwgen_{flow}", "board_part")] == board.board_part
    # Every file read lies in the folder; the sources of this flow and the constraints among them.
    assert all(path.is_relative_to(folder) for path in bd.reads), bd.reads
    expected_reads = {folder / "vivado/hwgen.xdc"}
    if flow == "rtl":
        expected_reads |= {folder / RTL_PATH, folder / "vivado/hwgen_accel_bd.v"}
    else:
        expected_reads |= {folder / "hls" / HLS_DESIGN.ip_dir}
    assert expected_reads <= set(bd.reads)

    # The cells: the newest PS IP in the catalog, the accelerator, two SmartConnects, the reset.
    assert bd.cells["/ps"][1].startswith(f"xilinx.com:ip:{board.ps}:")
    if board.ps == "zynq_ultra_ps_e":
        assert bd.cells["/ps"][1] == "xilinx.com:ip:zynq_ultra_ps_e:3.5"
    assert bd.cells["/accel"] == (("module", "hwgen_accel_bd") if flow == "rtl" else ("hls", HLS_DESIGN.vlnv))
    assert bd.cells["/axi_control"][0] == bd.cells["/axi_memory"][0] == "smartconnect"
    assert bd.cells["/rst_pl"][0] == "reset"
    # The PS: the board preset, then every board setting, the requested clock and the HP width.
    automation = next(r for r in bd.records if r[0] == "AUTOMATION")
    first_ps_setting = next(i for i, r in enumerate(bd.records) if r[:2] == ["PROP", "/ps"])
    assert automation[1] == f"xilinx.com:bd_rule:{board.ps}" and bd.index("AUTOMATION") < first_ps_setting
    settings = {key: value for (obj, key), value in bd.props.items() if obj == "/ps"}
    for key, value in board.ps_settings.items():
        assert settings[f"CONFIG.{key}"] == value
    assert float(settings[f"CONFIG.{pins['freq']}"]) == clock_mhz
    assert settings[f"CONFIG.{pins['width']}"] == str(board.hp_width)
    if board.ps == "processing_system7":
        assert ["EXTERNAL", "/ps", "DDR", "FIXED_IO"] in bd.records

    # Interfaces: PS master -> accelerator registers; every accelerator master -> HP port.
    accel_intf = bd.intf_pins["/accel"]
    control = "s_axi" if flow == "rtl" else "s_axi_control"
    masters = {"m_axi"} if flow == "rtl" else {"m_axi_gmem"}
    assert accel_intf == {control} | masters
    assert bd.connected(f"/ps/{pins['master']}", f"/accel/{control}")
    for master in masters:
        assert bd.connected(f"/accel/{master}", f"/ps/{pins['hp']}")
    assert not bd.connected(f"/ps/{pins['master']}", f"/ps/{pins['hp']}")
    for cell in ("/axi_control", "/axi_memory"):
        for port in bd.intf_pins[cell]:
            assert bd.intf_graph[f"{cell}/{port}"], f"{cell}/{port} is unconnected"

    # One clock: the board's PL clock reaches the accelerator, the SmartConnects, the reset block
    # and every clock input of an enabled PS port (an unclocked port fails validation).
    clock = bd.net(f"/ps/{board.pl_clock.source}")
    accel_clock, accel_reset = ("/accel/clk", "/accel/rst") if flow == "rtl" else ("/accel/ap_clk", "/accel/ap_rst_n")
    port_clocks = {f"/ps/{p}" for p in bd.pins["/ps"] if p.lower().endswith("_aclk")}
    assert port_clocks, "the PS has no port clock pin"
    assert {accel_clock, "/axi_control/aclk", "/axi_memory/aclk", "/rst_pl/slowest_sync_clk"} | port_clocks <= clock
    assert not {p for p in clock if p.startswith("/ps/") and "clk" in p.lower() and not p.lower().endswith("aclk")} - {
        f"/ps/{board.pl_clock.source}"}
    # Resets: PS reset into the synchroniser; its outputs into the interconnect and the accelerator.
    assert bd.net(f"/ps/{pins['reset']}") == {f"/ps/{pins['reset']}", "/rst_pl/ext_reset_in"}
    assert bd.net("/rst_pl/interconnect_aresetn") == {"/rst_pl/interconnect_aresetn", "/axi_control/aresetn",
                                                      "/axi_memory/aresetn"}
    accel_rst_source = "/rst_pl/peripheral_reset" if flow == "rtl" else "/rst_pl/peripheral_aresetn"
    assert bd.net(accel_reset) == {accel_rst_source, accel_reset}
    accel_irq = "/accel/irq" if flow == "rtl" else "/accel/interrupt"
    assert bd.net(accel_irq) == {accel_irq, f"/ps/{pins['irq']}"}
    for pin in bd.pins["/accel"]:
        assert len(bd.net(f"/accel/{pin}")) > 1, f"accelerator pin {pin} is unconnected"

    # Address map: registers in the PS master's PL window, DDR behind the HP port for each master.
    control_seg = f"/accel/{control}/" + ("reg0" if flow == "rtl" else "Reg")
    (reg,) = [a for a in bd.addresses if a[1] == control_seg]
    assert reg[0] == "/ps/Data" and int(reg[2], 0) == pins["control_base"] and reg[3] == "64K"
    spaces = {"/accel/m_axi"} if flow == "rtl" else {"/accel/Data_m_axi_gmem"}
    assert {(a[0], a[1]) for a in bd.addresses if a[1] == pins["ddr"]} == {(s, pins["ddr"]) for s in spaces}

    # Order: everything connected and addressed before validation; wrapper; synth; impl; exports.
    last_edit = max(i for i, k in enumerate(bd.kinds) if k in {"NET", "INTF_NET", "ADDR", "CELL"})
    assert last_edit < bd.index("VALIDATE") < bd.index("WRAPPER")
    assert bd.props[("sources_1", "top")] == "hwgen_bd_wrapper"
    runs = [r[1:] for r in bd.records if r[0] == "RUN"]
    assert runs == [["synth_1", "end"], ["impl_1", "write_bitstream"]]
    assert bd.index("RUN") > bd.index("WRAPPER")
    for product in ("hwgen.bit", "hwgen.hwh", "hwgen.xsa", "utilization.rpt", "timing.rpt"):
        assert (folder / "vivado" / flow / product).is_file(), product
    assert bd.kinds[-1] == "END"


def check_hls(records, board, folder, clock_mhz):
    kinds = [r[0] for r in records]
    get = lambda kind: [r[1:] for r in records if r[0] == kind]  # noqa: E731
    assert get("HLS_PROJECT") == [[str(folder / "hls" / HLS_DESIGN.project)]]
    assert get("HLS_TOP") == [[HLS_DESIGN.top]]
    assert get("HLS_PART") == [[board.part]]
    assert float(get("HLS_CLOCK")[0][0]) == pytest.approx(1000.0 / clock_mhz, abs=5e-4)
    assert get("HLS_SOLUTION") == [[HLS_DESIGN.solution, "vivado"]]
    assert get("HLS_SOURCE") == [[str(folder / "hls" / HLS_DESIGN.sources[0]), "-I."]]
    assert {r[0] for r in get("HLS_TB")} == {str(folder / "hls/tb.cpp"), str(folder / "memory.bin")}
    assert all(Path(r[0]).is_relative_to(folder) for r in get("READ"))
    steps = [r[0] for r in get("HLS_STEP")]
    assert steps == ["csim_design", "csynth_design", "cosim_design"]
    assert get("HLS_STEP")[0] == ["csim_design", "-argv", "../memory.bin"]
    assert kinds.index("HLS_PART") < kinds.index("HLS_STEP") and kinds.index("HLS_CLOCK") < kinds.index("HLS_STEP")
    assert get("EXPORT") == [[HLS_DESIGN.vlnv, str(folder / "hls" / HLS_DESIGN.ip_dir)]]
    assert kinds.index("EXPORT") > max(i for i, k in enumerate(kinds) if k == "HLS_STEP")
    assert kinds[-1] == "END"


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", BOARDS)
def test_board_scripts_parse_and_carry_the_stamp(name, tmp_path):
    board = load_board(name)
    folder = board_plan(board).write(tmp_path / "out")
    for path in GENERATED:
        text = (folder / path).read_text()
        assert stamp() in text.splitlines()[1 if path == "build.sh" else 0], path
    assert os.access(folder / "build.sh", os.X_OK)
    tcl = [folder / p for p in GENERATED if p.endswith((".tcl", ".xdc"))]
    checker = tmp_path / "complete.tcl"
    checker.write_text(
        "foreach path $argv {\n"
        "    set f [open $path]; set text [read $f]; close $f\n"
        "    if {![info complete $text]} { puts \"INCOMPLETE $path\"; exit 1 }\n"
        "    puts \"COMPLETE $path\"\n"
        "}\n"
    )
    out = toolchain.run_tcl(checker, tcl)
    assert out.split() == [w for p in tcl for w in ("COMPLETE", str(p))]
    syntax = subprocess.run(["bash", "-n", str(folder / "build.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.parametrize("name", BOARDS)
def test_build_runs_both_flows_against_the_recording_stub(name, tmp_path):
    board = load_board(name)
    folder = board_plan(board).write(tmp_path / "out")
    proc, records = run_build(folder, tmp_path, board_parts=board.board_part)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    runs = tool_runs(records)
    # HLS first (its IP feeds the HLS block design), then Vivado for each flow.
    assert [(tool, script) for tool, script, _ in runs] == [
        ("vitis_hls", folder / "hls/vitis_hls.tcl"),
        ("vivado", folder / "vivado/build_rtl.tcl"),
        ("vivado", folder / "vivado/build_hls.tcl"),
    ]
    check_hls(runs[0][2], board, folder, board.pl_clock.default_mhz)
    check_block_design(BlockDesign(runs[1][2]), board, "rtl", folder, board.pl_clock.default_mhz)
    check_block_design(BlockDesign(runs[2][2]), board, "hls", folder, board.pl_clock.default_mhz)


def test_clock_override_reaches_the_ps_and_hls(tmp_path):
    board = load_board("ultra96")
    folder = board_plan(board, clock_mhz=125).write(tmp_path / "out")
    proc, records = run_build(folder, tmp_path, board_parts=board.board_part)
    assert proc.returncode == 0, proc.stderr
    runs = tool_runs(records)
    check_hls(runs[0][2], board, folder, 125.0)
    for (_, _, run), flow in zip(runs[1:], ("rtl", "hls")):
        check_block_design(BlockDesign(run), board, flow, folder, 125.0)


def test_build_sh_runs_one_flow_and_refuses_unknown_ones(tmp_path):
    board = load_board("pynq-z2")
    folder = board_plan(board).write(tmp_path / "out")
    proc, records = run_build(folder, tmp_path, board_parts=board.board_part, flows=["rtl"])
    assert proc.returncode == 0, proc.stderr
    assert [(tool, script.name) for tool, script, _ in tool_runs(records)] == [("vivado", "build_rtl.tcl")]
    proc, _ = run_build(folder, tmp_path, board_parts=board.board_part, flows=["gates"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == "build.sh: flow must be one of rtl, hls, not 'gates'"


def test_rtl_only_project_has_no_hls_step(tmp_path):
    board = load_board("kv260")
    plan = board_plan(board, hls=False)
    assert "hls/vitis_hls.tcl" not in plan and "vivado/build_hls.tcl" not in plan
    folder = plan.write(tmp_path / "out")
    proc, records = run_build(folder, tmp_path, board_parts=board.board_part)
    assert proc.returncode == 0, proc.stderr
    runs = tool_runs(records)
    assert [tool for tool, _, _ in runs] == ["vivado"]
    check_block_design(BlockDesign(runs[0][2]), board, "rtl", folder, board.pl_clock.default_mhz)


def test_board_part_falls_back_to_an_installed_version_or_fails_with_the_url(tmp_path):
    board = load_board("ultra96")
    folder = board_plan(board, hls=False).write(tmp_path / "out")
    older = board.board_part.rsplit(":", 1)[0] + ":1.0"
    proc, records = run_build(folder, tmp_path, board_parts=f"{older} xilinx.com:zcu102:part0:3.4")
    assert proc.returncode == 0, proc.stderr
    assert ["PROP", "hwgen_rtl", "board_part", older] in records
    assert f"WARNING: hwgen: board part {board.board_part} is not installed, using {older}" in proc.stdout
    proc, records = run_build(folder, tmp_path, board_parts="xilinx.com:zcu102:part0:3.4")
    assert proc.returncode != 0
    assert board.board_files_url in proc.stderr
    assert not any(r[0] == "CELL" for r in records)


def test_checks_catch_a_ps_port_left_unclocked(tmp_path):
    # Enabling another HP port (S_AXI_HP1_FPD) adds a PS port clock nothing drives.
    board = load_board("ultra96")
    overrides = {"script_after_ps": "set_property CONFIG.PSU__USE__S_AXI_GP3 {1} $ps"}
    folder = board_plan(board, overrides=overrides, hls=False).write(tmp_path / "out")
    proc, records = run_build(folder, tmp_path, board_parts=board.board_part)
    assert proc.returncode == 0, proc.stderr
    bd = BlockDesign(tool_runs(records)[0][2])
    assert "saxihp1_fpd_aclk" in bd.pins["/ps"] and bd.net("/ps/saxihp1_fpd_aclk") == {"/ps/saxihp1_fpd_aclk"}
    with pytest.raises(AssertionError, match="saxihp1_fpd_aclk"):
        check_block_design(bd, board, "rtl", folder, board.pl_clock.default_mhz)


@pytest.mark.parametrize("broken, fault", [
    ("S_AXI_HP0_FPD", "connect_bd_intf_net needs two existing interface pins"),  # HP1 is not enabled
    ("connect_bd_net [get_bd_pins ps/pl_clk0]", "unknown command: connect_bd_nets"),
    ("hwgen_accel_bd.v]]", "hwgen_accel_bx.v, which does not exist"),
])
def test_stub_rejects_broken_scripts(tmp_path, broken, fault):
    board = load_board("ultra96")
    folder = board_plan(board, hls=False).write(tmp_path / "out")
    script = folder / "vivado/build_rtl.tcl"
    text = script.read_text()
    assert broken in text
    mutated = {
        "S_AXI_HP0_FPD": lambda t: t.replace("ps/S_AXI_HP0_FPD]", "ps/S_AXI_HP1_FPD]"),
        "connect_bd_net [get_bd_pins ps/pl_clk0]": lambda t: t.replace(broken, "connect_bd_nets [get_bd_pins ps/pl_clk0]"),
        "hwgen_accel_bd.v]]": lambda t: t.replace(broken, "hwgen_accel_bx.v]]"),
    }[broken](text)
    script.write_text(mutated)
    proc, records = run_build(folder, tmp_path, board_parts=board.board_part)
    assert proc.returncode != 0
    assert fault in proc.stderr
    assert records[-1][0] != "END"


def test_overrides_land_where_their_hook_is(tmp_path):
    board = load_board("zcu102")
    overrides = {name: f"puts hwgen-hook-{name}" for name in HOOKS}
    plan = board_plan(board, overrides=overrides)
    homes = {"add_constraints": ["vivado/hwgen.xdc"], "hls_config": ["hls/vitis_hls.tcl"],
             "script_after_csynth": ["hls/vitis_hls.tcl"], "cosim_opts": ["hls/vitis_hls.tcl"]}
    for name in HOOKS:
        marker = f"puts hwgen-hook-{name}"
        where = [p for p in GENERATED if marker in plan[p].decode()]
        assert where == homes.get(name, ["vivado/build_hls.tcl", "vivado/build_rtl.tcl"]), name
    text = plan["vivado/build_rtl.tcl"].decode()
    assert text.index("hwgen-hook-script_after_bd") < text.index("validate_bd_design")
    assert text.index("hwgen-hook-script_before_project") < text.index("create_project")
    assert "-value {puts hwgen-hook-synth_opts}" in text
    with pytest.raises(ValueError) as err:
        board_plan(board, overrides={"script_after_dinner": "x"})
    assert str(err.value) == f"override must be one of {', '.join(HOOKS)}, not 'script_after_dinner'"


def test_rendering_twice_is_byte_identical(tmp_path):
    for name in BOARDS:
        board = load_board(name)
        first, second = board_plan(board), board_plan(board)
        assert first.digest() == second.digest()
        assert [first[p] for p in first] == [second[p] for p in second]
    a = board_plan(load_board("ultra96")).write(tmp_path / "a")
    b = board_plan(load_board("ultra96")).write(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # Only the chosen board changes the scripts: another board gives other bytes.
    assert board_plan(load_board("kv260")).digest() != board_plan(load_board("ultra96")).digest()


def test_wrapper_exposes_the_accelerator_ports_and_synthesizes():
    source = accel_verilog(128)
    accel = rtl_accelerator(source)
    assert (accel.control, accel.masters, accel.interrupt) == ("s_axi", ("m_axi",), "irq")
    # Same ports, directions and widths, renamed m_axi__araddr -> m_axi_araddr.
    port = r"(input|output)\s+(?:wire )?(?:\[(\d+):0\]\s*)?(\w+)"
    inner = {n.replace("__", "_"): (d, w) for d, w, n in re.findall(rf"^\s*{port};", source, re.MULTILINE)}
    wrapper = accel.wrapper
    outer = {n: (d, w) for d, w, n in re.findall(rf"^\s*{port},?$", wrapper, re.MULTILINE)}
    assert outer == inner and {"clk", "rst", "irq", "m_axi_araddr", "s_axi_wdata"} < set(outer)
    for name in outer:
        if name.startswith(("m_axi_", "s_axi_")):
            iface, signal = name.split("_", 2)[0] + "_axi", name.split("_", 2)[2]
            assert f'aximm:1.0 {iface} {signal.upper()}"' in wrapper
    assert "PROTOCOL AXI4," in wrapper or "PROTOCOL AXI4\"" in wrapper
    assert "XIL_INTERFACENAME s_axi, PROTOCOL AXI4LITE" in wrapper
    # Yosys elaborates the wrapper around the real module: every port it connects exists.
    resources = toolchain.yosys_resources(source + wrapper, "hwgen_accel_bd", family="xcup")
    assert resources["FF"] > 0


def _ports_verilog(ports):
    decls = "\n".join(f"  {d} {'[%d:0] ' % (w - 1) if w > 1 else ''}{n};" for d, w, n in ports)
    return f"module hwgen_accel({', '.join(n for _, _, n in ports)});\n{decls}\nendmodule\n"


AXI_OK = [("input", 1, "clk"), ("input", 1, "rst"), ("output", 32, "m_axi__araddr"), ("input", 1, "m_axi__arready"),
          ("output", 1, "m_axi__arvalid"), ("input", 12, "s_axi__araddr"), ("output", 1, "s_axi__arready")]


@pytest.mark.parametrize("ports, message", [
    ([p for p in AXI_OK if p[2] != "clk"], "accelerator module hwgen_accel must have 1-bit inputs clk and rst, but it lacks clk"),
    (AXI_OK + [("output", 8, "leds")],
     "accelerator port leds must be clk, rst, irq or a signal of an m_axi*/s_axi* interface, not a 8-bit output"),
    ([p for p in AXI_OK if not p[2].startswith("s_")],
     "accelerator module hwgen_accel must have one AXI-Lite slave s_axi* and at least one AXI4 master m_axi*, "
     "not slaves [] and masters ['m_axi']"),
    (AXI_OK + [("output", 4, "s_axi__arlen")], "accelerator port s_axi__arlen must be an AXI4-Lite signal, not 'arlen'"),
    (AXI_OK + [("input", 1, "m_axi__rready")], "accelerator port m_axi__rready must be an output, not an input"),
])
def test_rtl_accelerator_refuses_ports_it_cannot_place(ports, message):
    with pytest.raises(ValueError) as err:
        rtl_accelerator(_ports_verilog(ports))
    assert str(err.value) == message
    with pytest.raises(ValueError, match=r"^accelerator Verilog must define module hwgen_accel, but it does not$"):
        rtl_accelerator("module other(input clk);\nendmodule\n")


def test_project_needs_its_sources_in_the_plan():
    board = load_board("ultra96")
    with pytest.raises(ValueError, match=rf"^the plan must hold the accelerator Verilog at {RTL_PATH} before"):
        add_board_project(BuildPlan(), board)
    plan = BuildPlan()
    plan.add_file(RTL_PATH, accel_verilog(128))
    with pytest.raises(ValueError, match=r"^the plan must hold HLS file hls/hwgen_accel_hls.cpp before the HLS project"):
        add_board_project(plan, board, hls=HLS_DESIGN)
    with pytest.raises(ValueError, match=r"^a board project must build the RTL, an HLS design or both, not neither$"):
        add_board_project(BuildPlan(), board, rtl=False)
    with pytest.raises(ValueError, match=r"^HLS design sources item must be letters, digits and _\.:/\+- only, not 'my file\.cpp'$"):
        HlsDesign(top="t", sources=("my file.cpp",))
