# SPDX-License-Identifier: Apache-2.0
"""exp unit: golden model within 1 LSB of float; RTL (Verilator) and HLS (g++) equal to golden."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.golden import nonlinear as nl
from hwgen.golden import nonlinear_float as nf
from hwgen.qfx import QFmt
from nonlinear_vectors import unary_inputs

# (input format, output format): 8- and 16-bit sweeps are exhaustive, 32-bit random.
CASES = [
    ("fixed<8,3>", "ufixed<8,1,RND,SAT>"),
    ("fixed<16,6>", "ufixed<16,1,RND,SAT>"),
    ("fixed<16,4>", "ufixed<16,0,RND_CONV,SAT>"),
    ("fixed<32,10>", "fixed<32,10,RND,SAT>"),
    ("fixed<32,10>", "fixed<32,10>"),
]


def _config(in_text: str, out_text: str, **kw) -> nl.ExpConfig:
    return nl.ExpConfig.for_formats(QFmt.parse(in_text), QFmt.parse(out_text), **kw)


@pytest.mark.parametrize("in_text,out_text", CASES)
def test_exp_is_within_one_lsb_of_float(in_text, out_text):
    cfg = _config(in_text, out_text)
    x = unary_inputs(cfg.in_fmt, seed=1, focus=(-20.0, 0.0))
    got = nl.exp(cfg, x)
    want = nf.correctly_rounded(cfg.out_fmt, nf.exp(cfg.in_fmt.to_float(x)))
    assert np.abs(got - want).max() <= 1


def test_exp_without_interpolation_meets_the_bound_with_a_larger_table():
    cfg = _config("fixed<8,3>", "ufixed<8,1,RND,SAT>", interpolate=False)
    assert not cfg.interpolate and cfg.interp_bits == 0 and cfg.segments == 256
    x = unary_inputs(cfg.in_fmt, seed=2)
    want = nf.correctly_rounded(cfg.out_fmt, nf.exp(cfg.in_fmt.to_float(x)))
    assert np.abs(nl.exp(cfg, x) - want).max() <= 1


def test_a_coarse_table_breaks_the_bound():
    # The bound is not automatic: 8 segments with interpolation are too few for 16 bits.
    cfg = _config("fixed<16,6>", "ufixed<16,1,RND,SAT>", table_bits=3)
    x = unary_inputs(cfg.in_fmt, seed=3)
    want = nf.correctly_rounded(cfg.out_fmt, nf.exp(cfg.in_fmt.to_float(x)))
    assert np.abs(nl.exp(cfg, x) - want).max() > 1


def test_exp_is_monotonic_exact_at_zero_and_flat_above_it():
    cfg = _config("fixed<16,6>", "ufixed<16,1,RND,SAT>")
    x = np.arange(cfg.in_fmt.min_raw, cfg.in_fmt.max_raw + 1)
    y = nl.exp(cfg, x)
    assert (np.diff(y) >= 0).all()
    one = cfg.out_fmt.quantize(1.0)
    assert (y[x >= 0] == one).all()
    assert y[0] == 0  # exp(-32) underflows


def test_exp_table_is_increasing_with_exact_ends():
    cfg = _config("fixed<16,6>", "ufixed<16,1,RND,SAT>")
    table = nl.exp_table(cfg)
    assert len(table) == cfg.segments + 1
    assert table[0] == 1 << cfg.table_frac_bits and table[-1] == 2 << cfg.table_frac_bits
    assert (np.diff(table) > 0).all()
    assert (nl.exp_table(cfg) == table).all()


def test_exp_config_validation():
    i, o = QFmt.parse("fixed<16,6>"), QFmt.parse("ufixed<16,1>")
    with pytest.raises(ValueError, match="^interp_bits must be 0 without interpolation, not 3$"):
        nl.ExpConfig(i, o, 8, False, 18, 3, 25, 3)
    with pytest.raises(ValueError, match="^table_bits must be at most 16, not 17$"):
        nl.ExpConfig(i, o, 17, True, 18, 3, 25, 3)
    with pytest.raises(ValueError, match="^in_fmt must be a QFmt, not 'fixed<16,6>'$"):
        nl.ExpConfig.for_formats("fixed<16,6>", o)


def test_exp_config_round_trips_through_a_dict():
    cfg = _config("fixed<32,10>", "fixed<32,10,RND,SAT>")
    assert nl.config_from_dict(nl.config_to_dict(cfg)) == cfg


@pytest.mark.cosim
def test_exp_rtl_equals_golden(tmp_path):
    from nonlinear_cosim import run_rtl

    run_rtl(tmp_path, "exp")


@pytest.mark.cosim
def test_exp_hls_equals_golden():
    from nonlinear_cosim import run_hls

    run_hls("exp")


@pytest.mark.cosim
def test_a_wrong_expected_value_fails_the_bench(tmp_path):
    from nonlinear_cosim import run_rtl

    from hwgen.toolchain import ToolError

    run_rtl(tmp_path / "right", "exp", only=("exp8",))
    with pytest.raises(ToolError, match="units_match_golden"):
        run_rtl(tmp_path / "wrong", "exp", only=("exp8",), corrupt="exp8:17")
