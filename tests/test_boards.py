# SPDX-License-Identifier: Apache-2.0
"""Board files: every shipped board loads, its defaults fit its budget, and bad files fail in one line."""

import re

import pytest
import yaml

from hwgen import cli, zoo
from hwgen.board import ACCELERATOR_KEYS, BUDGET_KEYS, board_names, list_boards, load_board
from hwgen.boards import BOARD_DIR
from hwgen.hwparams import HwParams

SHIPPED = ["kv260", "pynq-z2", "ultra96", "zcu102"]


def test_shipped_boards_load_sorted():
    assert board_names() == SHIPPED
    boards = list_boards()
    assert [b.name for b in boards] == SHIPPED
    for board in boards:
        assert board.path == BOARD_DIR / f"{board.name}.yaml"
        assert set(board.budget) == set(BUDGET_KEYS)
        assert set(board.accelerator) == set(ACCELERATOR_KEYS)


@pytest.mark.parametrize("name", SHIPPED)
def test_board_is_self_consistent(name):
    board = load_board(name)
    # One PS type family per synthesis family, and the HP port carries the accelerator's AXI master.
    assert (board.ps, board.family) in {("zynq_ultra_ps_e", "xcup"), ("processing_system7", "xc7")}
    assert board.accelerator["axi_data_width"] == board.hp_width
    params = board.hw_params()
    assert isinstance(params, HwParams) and params.axi_data_width == board.hp_width
    # First-order fit of the default array: one DSP per MAC, with a quarter of the DSPs left for
    # the requantizers and address arithmetic; double-buffered activation and weight buffers in at
    # most half of the on-chip memory (BRAM36 = 4 KiB of data, URAM = 32 KiB).
    assert params.macs_per_cycle <= 0.75 * board.budget["DSP"]
    on_chip = board.budget["BRAM36"] * 4096 + board.budget["URAM"] * 32768
    assert 2 * (params.act_buffer_bytes + params.weight_buffer_bytes) <= on_chip / 2
    # The clock and HP width reach the PS as the settings hwgen derives, never from the board file.
    derived = board.derived_ps_settings(None)
    assert f"{board.pl_clock.default_mhz:g}" in derived.values() and str(board.hp_width) in derived.values()
    assert not set(derived) & set(board.ps_settings)


def test_hw_params_changes_apply_on_top_of_board_defaults():
    board = load_board("ultra96")
    assert board.hw_params(lanes_in=8).lanes_in == 8
    assert board.hw_params(lanes_in=8).lanes_out == board.accelerator["lanes_out"]
    with pytest.raises(ValueError, match=r"^lanes_in must be an integer from 1 to 128, not 0$"):
        board.hw_params(lanes_in=0)


def test_clock_override_is_checked():
    board = load_board("pynq-z2")
    assert board.clock_mhz() == 100.0
    assert board.clock_mhz(125) == 125.0
    assert board.derived_ps_settings(125) == {"PCW_FPGA0_PERIPHERAL_FREQMHZ": "125", "PCW_S_AXI_HP0_DATA_WIDTH": "64"}
    with pytest.raises(ValueError, match=r"^clock_mhz must be a number from 10 to 500, not 900$"):
        board.clock_mhz(900)


def test_unknown_board_names_the_choices():
    with pytest.raises(ValueError) as err:
        load_board("ultra69")
    assert str(err.value) == (
        "board must be one of kv260, pynq-z2, ultra96, zcu102 (or a path to a .yaml), not 'ultra69'"
    )
    with pytest.raises(ValueError, match=r"\(or a path to a \.yaml\), not 'missing/board\.yaml'$"):
        load_board("missing/board.yaml")


def test_board_loads_from_a_path(tmp_path):
    data = yaml.safe_load((BOARD_DIR / "ultra96.yaml").read_text())
    data["name"] = "my-ultra96"
    path = tmp_path / "my-ultra96.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    board = load_board(str(path))
    assert board.name == "my-ultra96" and board.part == "xczu3eg-sbva484-1-i"
    assert dict(board.ps_settings) == dict(load_board("ultra96").ps_settings)


def _mutated(tmp_path, board, change):
    data = yaml.safe_load((BOARD_DIR / f"{board}.yaml").read_text())
    change(data)
    path = tmp_path / f"{board}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(*keys_value):
    *keys, value = keys_value

    def change(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _delete(*keys):
    def change(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


SCHEMA_ERRORS = [
    ("ultra96", _set("hp_width", 96), "board ultra96: hp_width must be 32, 64 or 128, not 96"),
    ("pynq-z2", _set("hp_width", 128), "board pynq-z2: hp_width must be 32 or 64 for ps processing_system7, not 128"),
    ("ultra96", _set("ps", "zynq9000"),
     "board ultra96: ps must be one of processing_system7, zynq_ultra_ps_e, not 'zynq9000'"),
    ("ultra96", _set("family", "xc7"), "board ultra96: family must be xcup for ps zynq_ultra_ps_e, not 'xc7'"),
    ("ultra96", _set("colour", "blue"),
     "board ultra96: key must be one of name, description, part, board_part, board_files_url, ps, family, "
     "pl_clock, hp_width, budget, ps_settings, accelerator, not 'colour'"),
    ("ultra96", _delete("part"), "board ultra96: part must be given, but it is missing"),
    ("ultra96", _set("name", "Ultra 96"), "board ultra96: name must be lower-case letters, digits and '-', not 'Ultra 96'"),
    ("ultra96", _set("part", "zu3eg"), "board ultra96: part must be a Xilinx part such as xczu3eg-sbva484-1-i, not 'zu3eg'"),
    ("ultra96", _set("board_part", "ultra96v2"),
     "board ultra96: board_part must be vendor:board:part0:version or null, not 'ultra96v2'"),
    ("ultra96", _set("pl_clock", "source", "FCLK_CLK0"),
     "board ultra96: pl_clock.source must be a zynq_ultra_ps_e clock pin such as pl_clk0, not 'FCLK_CLK0'"),
    ("ultra96", _set("pl_clock", "default_mhz", 0), "board ultra96: pl_clock.default_mhz must be a number from 10 to 500, not 0"),
    ("ultra96", _delete("pl_clock", "default_mhz"), "board ultra96: pl_clock.default_mhz must be given, but it is missing"),
    ("ultra96", _set("budget", "DSP", -1), "board ultra96: budget.DSP must be an integer of at least 0, not -1"),
    ("ultra96", _set("budget", "LUTS", 1), "board ultra96: budget key must be one of DSP, LUT, FF, BRAM36, URAM, not 'LUTS'"),
    ("ultra96", _set("ps_settings", "PCW_USE_S_AXI_HP0", 1),
     "board ultra96: ps_settings key must be a zynq_ultra_ps_e parameter name starting with PSU_, not 'PCW_USE_S_AXI_HP0'"),
    ("ultra96", _set("ps_settings", "PSU__USE__S_AXI_GP2", 0),
     "board ultra96: ps_settings.PSU__USE__S_AXI_GP2 must be 1 (the block design's wiring uses that port), not '0'"),
    ("pynq-z2", _delete("ps_settings", "PCW_EN_CLK0_PORT"),
     "board pynq-z2: ps_settings.PCW_EN_CLK0_PORT must be 1 (the block design's wiring uses that port), not None"),
    ("ultra96", _set("ps_settings", "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ", 200),
     "board ultra96: ps_settings key must be absent: hwgen derives it from pl_clock and hp_width, "
     "not 'PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ'"),
    ("ultra96", _set("ps_settings", "PSU__UART0__PERIPHERAL__IO", "MIO {2}"),
     "board ultra96: ps_settings.PSU__UART0__PERIPHERAL__IO must be a number or a string without braces, not 'MIO {2}'"),
    ("ultra96", _set("accelerator", "axi_data_width", 64),
     "board ultra96: accelerator.axi_data_width must be the HP port width 128, not 64"),
    ("ultra96", _set("accelerator", "act_bits", 8),
     "board ultra96: accelerator key must be one of lanes_in, lanes_out, act_buffer_bytes, weight_buffer_bytes, "
     "axi_data_width, attention_lanes, not 'act_bits'"),
    ("ultra96", _set("accelerator", "attention_lanes", 16),
     "board ultra96: accelerator.attention_lanes must be a list of two lane counts [lanes_in, lanes_out], not 16"),
    ("ultra96", _set("accelerator", "attention_lanes", [16, 0]),
     "board ultra96: accelerator.attention_lanes must be a list of two lane counts [lanes_in, lanes_out], not [16, 0]"),
    ("ultra96", _set("accelerator", "attention_lanes", [128, 256]),
     "board ultra96: accelerator: lanes_out must be an integer from 1 to 128, not 256"),
    ("ultra96", _set("accelerator", "lanes_out", 0),
     "board ultra96: accelerator: lanes_out must be an integer from 1 to 128, not 0"),
    ("ultra96", _set("budget", [1, 2]), "board ultra96: budget must be a mapping, not [1, 2]"),
]


@pytest.mark.parametrize("board, change, message", SCHEMA_ERRORS, ids=[m.split(": ", 1)[1][:40] for *_, m in SCHEMA_ERRORS])
def test_schema_errors_are_one_exact_line(tmp_path, board, change, message):
    path = _mutated(tmp_path, board, change)
    with pytest.raises(ValueError) as err:
        load_board(str(path))
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\npart: [xc7z020\nps: processing_system7\n")
    with pytest.raises(ValueError) as err:
        load_board(str(path))
    message = str(err.value)
    assert "\n" not in message
    assert re.fullmatch(rf"board file {re.escape(str(path))} must be valid YAML, not malformed at line \d+: .+", message)


def test_cli_lists_every_board(capsys):
    assert cli.main(["boards"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["board", "part", "PS", "PL"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert sorted(rows) == SHIPPED
    for board in list_boards():
        row = rows[board.name].split()
        assert row[1] == board.part and row[2] == board.ps
        assert f"{board.pl_clock.source} {board.pl_clock.default_mhz:g} MHz" in rows[board.name]
        assert [int(x) for x in row[-5:-1]] == [board.budget[k] for k in ("DSP", "LUT", "BRAM36", "URAM")]


def test_a_model_with_attention_gets_the_attention_engine_at_the_boards_attention_lanes():
    attention = zoo.load_model("vit-block").graph
    plain = zoo.load_model("vit-mlp-block").graph
    ultra96 = load_board("ultra96")
    assert ultra96.core_for(plain) == ultra96.hw_params()  # same core and fingerprint as before the engine
    core = ultra96.core_for(attention)
    assert (core.has_attention, core.acc_bits, core.lanes_in, core.lanes_out) == (True, 48, 16, 8)
    assert core.act_buffer_bytes == ultra96.hw_params().act_buffer_bytes
    given = ultra96.core_for(attention, ultra96.hw_params(lanes_in=8, lanes_out=8), lanes_given=True)
    assert (given.lanes_in, given.lanes_out, given.has_attention) == (8, 8, True)
    kv260 = load_board("kv260")  # its 16x16 core fits with the engine: no attention_lanes
    assert kv260.attention_lanes is None and kv260.core_for(attention).lanes_out == 16
