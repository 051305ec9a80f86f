# SPDX-License-Identifier: Apache-2.0
"""``hwgen build``, ``hwgen sim`` and ``hwgen report`` from the command line.

Bad input (fast): every user error is one line ``hwgen: error: …`` with exit code 2, raised before
any expensive step, and nothing is written — not the folder, not a temporary sibling. Then, on one
ultra96 build made through the CLI (cosim): ``--json`` and ``report`` print what the folder holds;
``sim`` passes on the isa, hls and rtl backends and exits 1 on each when ``golden.npz`` is
corrupted; a board over budget is refused after the Yosys estimate, naming the resource and by how
much, and ``--force`` writes it with the report marked; a user's YAML spec builds like a zoo name.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwgen.board import load_board
from hwgen.build import DEFAULT_MODEL, golden_npz, parse_lanes
from hwgen.cli import main
from hwgen.zoo import ZOO_DIR


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _board_file(tmp_path, **budget):
    """ultra96 under another name and budget (same accelerator, so the same Verilog)."""
    text = load_board("ultra96").path.read_text()
    document = yaml.safe_load(text)
    document["name"] = "tight96"
    document["budget"].update(budget)
    path = tmp_path / "tight96.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _bad_model(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nlayers: [\n  {name: fc1, op: Linear\n")
    return path


def _bad_board(tmp_path):
    path = tmp_path / "broken-board.yaml"
    path.write_text("name: [ultra96\n")
    return path


def _full_out(tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    return out


def _file(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("a file\n")
    return path


BAD = {
    "unknown board": (lambda t: ["--board", "ultra69", "--out", t / "o"], "board must be one of"),
    "unknown model": (lambda t: ["--board", "ultra96", "--model", "resnet999", "--out", t / "o"],
                      "model must be a zoo name"),
    "malformed model YAML": (lambda t: ["--board", "ultra96", "--model", _bad_model(t), "--out", t / "o"],
                             "broken.yaml: not valid YAML"),
    "malformed board YAML": (lambda t: ["--board", _bad_board(t), "--out", t / "o"], "must be valid YAML"),
    "non-empty out": (lambda t: ["--board", "ultra96", "--out", _full_out(t)], "must be empty (or use --force"),
    "out under a file": (lambda t: ["--board", "ultra96", "--out", _file(t) / "sub"], "must be in a writable folder"),
    "out is a file": (lambda t: ["--board", "ultra96", "--out", _file(t)], "out must be a folder"),
    "lanes over budget": (lambda t: ["--board", "ultra96", "--lanes", "64x64", "--out", t / "o"],
                          "lanes 64x64 need about 4,096 DSP (one per MAC) of 360 (+3,736)"),
    "lanes syntax": (lambda t: ["--board", "ultra96", "--lanes", "16by16", "--out", t / "o"],
                     "lanes must be INxOUT with positive integers, e.g. 16x16, not '16by16'"),
    "lanes the RTL cannot build": (lambda t: ["--board", "ultra96", "--lanes", "4x4", "--out", t / "o"],
                                   "lanes 4x4 on ultra96: lanes_in × act_bits must be a multiple of the AXI data width"),
    "sim without the RTL flow": (lambda t: ["--board", "ultra96", "--flow", "hls", "--sim", "--out", t / "o"],
                                 "--sim measures the RTL core in Verilator, so flow must be rtl or both, not hls"),
    "clock": (lambda t: ["--board", "ultra96", "--clock-mhz", "900", "--out", t / "o"],
              "clock_mhz must be a number from 10 to 500, not 900.0"),
    "a MoE model on the RTL flow": (lambda t: ["--board", "ultra96", "--model", "moe-tiny", "--out", t / "o"],
                                    "flow must be hls for moe-tiny: it needs the MoE engine, which the RTL core does "
                                    "not have yet, not both"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_build_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    make_args, message = BAD[case]
    argv = ["build", *make_args(tmp_path)]
    before = snapshot(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert err.startswith("hwgen: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err
    assert out == ""
    assert snapshot(tmp_path) == before  # no folder, no temporary sibling, the full folder untouched


@pytest.mark.parametrize("command", ["sim", "report"])
def test_sim_and_report_refuse_a_folder_hwgen_did_not_write(tmp_path, capsys, command):
    code, _, err = run(capsys, command, tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("hwgen: error: folder must be one hwgen build wrote")


def test_help_lists_build_sim_and_report(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("build", "sim", "report"):
        assert f"    {command} " in out
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    for option in ("--board", "--model", "--out", "--flow", "--lanes", "--clock-mhz", "--sim", "--force", "--quiet",
                   "--json"):
        assert option in out


@pytest.mark.parametrize("text, lanes", [("16x16", (16, 16)), ("8X32", (8, 32)), (" 4x4 ", (4, 4))])
def test_parse_lanes(text, lanes):
    assert parse_lanes(text) == lanes


# ------------------------------------------------------------------------------- on a real build


@pytest.fixture(scope="module")
def ultra96(tmp_path_factory):
    """The folder of ``hwgen build --board ultra96 --json``, after checking what it printed."""
    out = tmp_path_factory.mktemp("cli") / "ultra96"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["build", "--board", "ultra96", "--out", str(out), "--json"])
    assert code == 0
    result = json.loads(printed.getvalue())
    assert result["out"] == str(out) and result["report"] == json.loads((out / "report.json").read_text())
    return out


@pytest.fixture(scope="module")
def corrupted(ultra96, tmp_path_factory):
    """A copy of the build whose golden.npz says out[0, 0] is one code more than it is."""
    copy = tmp_path_factory.mktemp("corrupted") / "ultra96"
    shutil.copytree(ultra96, copy)
    with np.load(copy / "golden.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["out"] = arrays["out"].copy()
    arrays["out"][0, 0] += 1
    (copy / "golden.npz").write_bytes(golden_npz(arrays))
    return copy


@pytest.mark.cosim
def test_build_json_and_report_print_what_the_folder_holds(ultra96, capsys):
    code, out, _ = run(capsys, "report", ultra96)
    assert code == 0 and out == (ultra96 / "report.md").read_text()
    code, out, _ = run(capsys, "report", ultra96, "--json")
    assert code == 0 and json.loads(out) == json.loads((ultra96 / "report.json").read_text())
    # The summary a person sees after a build (text mode) names the cycles, budget use and report.
    code, out, err = run(capsys, "build", "--board", "ultra96", "--out", ultra96, "--force", "--quiet")
    assert code == 0 and err == ""
    report = json.loads((ultra96 / "report.json").read_text())
    assert f"{report['performance']['analytical']['cycles']:,} cycles (analytical)" in out
    assert f"DSP {report['resources']['used']['DSP']:,}/360" in out and "report.md" in out


@pytest.mark.cosim
@pytest.mark.parametrize("backend", ["isa", "hls", "rtl"])
def test_sim_passes_on_every_backend(ultra96, capsys, backend):
    code, out, err = run(capsys, "sim", ultra96, "--backend", backend, "--json")
    result = json.loads(out)
    assert code == 0, result
    assert result["equal"] and result["mismatches"] == [] and result["backend"] == backend
    report = json.loads((ultra96 / "report.json").read_text())
    analytical = report["performance"]["analytical"]["cycles"]
    assert result["analytical_cycles"] == analytical
    if backend == "rtl":
        # Measured: at least one cycle per tile step, and of the analytical model's order.
        assert report["performance"]["ideal_cycles"] <= result["cycles"] < 2 * analytical
        print(f"\nultra96 {DEFAULT_MODEL}: {result['cycles']} cycles in Verilator, {analytical} analytical")
    else:
        assert result["cycles"] == analytical


@pytest.mark.cosim
@pytest.mark.parametrize("backend", ["isa", "hls", "rtl"])
def test_sim_exits_1_when_golden_is_corrupted(corrupted, capsys, backend):
    code, out, _ = run(capsys, "sim", corrupted, "--backend", backend)
    assert code == 1
    assert "NOT equal to golden.npz" in out
    if backend == "rtl":
        assert "region 'out' at element (0, 0)" in out
    else:
        assert "out: 1 of 24768 codes differ, first [0, 0]" in out  # 129 × 192 outputs


@pytest.mark.cosim
def test_over_budget_is_refused_after_yosys_and_forced_marks_the_report(ultra96, tmp_path, capsys):
    board = _board_file(tmp_path, LUT=1000, FF=2000)
    used = json.loads((ultra96 / "report.json").read_text())["resources"]["used"]
    out = tmp_path / "tight"
    code, _, err = run(capsys, "build", "--board", board, "--out", out)
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert (f"hwgen: error: design must fit tight96's budget, but the Yosys estimate is over on "
            f"LUT {used['LUT']:,} of 1,000 (+{used['LUT'] - 1000:,}), FF {used['FF']:,} of 2,000 "
            f"(+{used['FF'] - 2000:,})") in err

    code, stdout, _ = run(capsys, "build", "--board", board, "--out", out, "--force", "--quiet")
    assert code == 0 and "OVER BUDGET" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["resources"]["forced"] and [o.split()[0] for o in report["resources"]["over_budget"]] == ["LUT", "FF"]
    assert "**Over budget** — written with `--force`" in (out / "report.md").read_text()
    config = yaml.safe_load((out / "hwgen.yaml").read_text())
    assert config["board"] == "board/tight96.yaml" and config["over_budget_forced"] is True
    assert (out / "board/tight96.yaml").read_bytes() == board.read_bytes()


@pytest.mark.cosim
def test_a_yaml_spec_builds_like_a_zoo_name(tmp_path, capsys):
    spec = tmp_path / "specs" / "odd.yaml"
    spec.parent.mkdir()
    spec.write_text((ZOO_DIR / "mlp-odd.yaml").read_text().replace("name: mlp-odd", "name: odd"))
    out = tmp_path / "odd"
    # 4x4 lanes: a geometry the RTL core refuses (tested above) is no obstacle to an HLS-only build.
    code, _, err = run(capsys, "build", "--board", "ultra96", "--model", spec, "--flow", "hls", "--lanes", "4x4",
                       "--out", out, "--quiet")
    assert code == 0, err
    assert not (out / "rtl").exists() and not (out / "vivado/build_rtl.tcl").exists()
    assert (out / "hls/vitis_hls.tcl").is_file() and (out / "vivado/build_hls.tcl").is_file()
    assert (out / "model/odd.yaml").read_bytes() == spec.read_bytes()
    assert yaml.safe_load((out / "hwgen.yaml").read_text())["model"] == {"spec": "model/odd.yaml"}
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "odd" and report["accelerator"]["lanes_in"] == 4
    # No Yosys figures of an RTL core this folder does not hold.
    assert report["resources"]["used"] is None and "No estimate: none for an HLS-only build" in (
        out / "report.md").read_text()
    code, _, _ = run(capsys, "sim", out, "--backend", "isa")
    assert code == 0
    code, _, err = run(capsys, "sim", out, "--backend", "hls")
    assert code == 0, err
    # No Verilog in an HLS-only folder: the rtl backend says so.
    code, _, err = run(capsys, "sim", out, "--backend", "rtl")
    assert code == 2 and "folder must hold rtl/hwgen_accel.v for the rtl backend" in err


def test_golden_npz_is_deterministic_and_loads():
    arrays = {"b": np.arange(6, dtype=np.int64).reshape(2, 3), "a": np.array([-(2**40), 7], dtype=np.int64)}
    data = golden_npz(arrays)
    assert data == golden_npz(dict(reversed(list(arrays.items()))))
    with np.load(io.BytesIO(data)) as archive:
        assert sorted(archive.files) == ["a", "b"]
        assert all(np.array_equal(archive[k], v) for k, v in arrays.items())
    assert {i.date_time for i in zipfile.ZipFile(io.BytesIO(data)).infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_moe_model_builds_for_hls_and_sim_takes_the_task(tmp_path, capsys):
    """moe-tiny with --flow hls: golden.npz for task 0 and golden_task1.npz; ``hwgen sim --task`` runs isa_sim
    with that TASK register against that task's codes, and a task the model does not have is one line."""
    out = tmp_path / "moe"
    code, _, err = run(capsys, "build", "--board", "ultra96", "--model", "moe-tiny", "--flow", "hls", "--out", out,
                       "--quiet")
    assert code == 0, err
    assert (out / "golden.npz").is_file() and (out / "golden_task1.npz").is_file()
    assert yaml.safe_load((out / "hwgen.yaml").read_text())["accelerator"]["has_moe"] is True
    for task in (0, 1):
        code, text, _ = run(capsys, "sim", out, "--task", task, "--quiet")
        golden = "golden.npz" if task == 0 else "golden_task1.npz"
        assert code == 0 and text.startswith(f"isa: equal to {golden}"), text
    # The board driver on its isa_sim device: the TASK register, compared with that task's codes.
    from hwgen.driver import DriverError, HwgenDriver, IsaSimDevice
    from hwgen.hwparams import HwParams

    hw = HwParams.from_dict(yaml.safe_load((out / "hwgen.yaml").read_text())["accelerator"])
    for task in (0, 1):
        result = HwgenDriver(out, IsaSimDevice(hw)).run(task=task)
        assert result.passed and result.status == 0, result.summary()
    with pytest.raises(DriverError, match=r"^task must be in 0\.\.1 for this build, not 2$"):
        HwgenDriver(out, IsaSimDevice(hw)).run(task=2)
    # Task 1's image against task 0's codes: not equal.
    shutil.copy(out / "golden_task1.npz", out / "golden.npz")
    assert not HwgenDriver(out, IsaSimDevice(hw)).run(task=0).passed
    code, text, _ = run(capsys, "sim", out, "--quiet")
    assert code == 1 and "NOT equal" in text, text
    code, _, err = run(capsys, "sim", out, "--task", 2)
    assert code == 2 and err.strip() == "hwgen: error: task must be in 0..1 for this build, not 2"
