# SPDX-License-Identifier: Apache-2.0
"""The hwgen command line: help, the fixed-point commands, and one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from hwgen.cli import main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("formats", "quantize"):
        assert command in out


def test_formats_explains_the_notation(capsys):
    assert main(["formats", "ufixed<4,2,RND,SAT>"]) == 0
    out = capsys.readouterr().out
    assert "RND_CONV" in out and "WRAP_SM" in out
    assert "ufixed<4,2,RND,SAT>" in out and "range [0, 3.75]" in out and "step 0.25" in out


def test_quantize_matches_ap_fixed_assignment(capsys):
    # 3.14159 · 2^5 = 100.53 rounds to 101; 100 saturates to the max code 127.
    assert main(["quantize", "3.14159", "100", "--to", "fixed<8,3,RND,SAT>"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("raw 101 = 3.15625")
    assert lines[1].endswith("raw 127 = 3.96875")


def test_quantize_then_cast(capsys):
    # 0.3 in fixed<16,4> is 4916·2^-14; into 4 fraction bits: 4916/1024 = 4.8 rounds to 5.
    assert main(["quantize", "0.3", "--from", "fixed<16,4,RND_CONV,SAT>", "--to", "fixed<6,2,RND_CONV>"]) == 0
    assert capsys.readouterr().out.strip().endswith("raw 5 = 0.3125")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["quantize", "1", "--to", "fixd<8,3>"], "format must look like"),
        (["quantize", "1", "--to", "fixed<0,3>"], "width must be a positive integer, not 0"),
        (["quantize", "one", "--to", "fixed<8,3>"], "value must be a number, not 'one'"),
        (["quantize", "nan", "--to", "fixed<8,3>"], "finite"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwgen: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "hwgen", "quantize", "1.5", "--to", "int<4>"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "raw 1 = 1.0" in proc.stdout
