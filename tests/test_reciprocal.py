# SPDX-License-Identifier: Apache-2.0
"""reciprocal unit: golden within 1 LSB of float; RTL (Verilator) and HLS (g++) equal to golden."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.golden import nonlinear as nl
from hwgen.golden import nonlinear_float as nf
from hwgen.qfx import QFmt
from nonlinear_vectors import unary_inputs

CASES = [
    ("ufixed<8,4>", "ufixed<8,4,RND,SAT>"),
    ("ufixed<16,8>", "ufixed<16,8,RND,SAT>"),
    ("fixed<16,6>", "fixed<16,6,RND,SAT>"),
    ("fixed<32,10>", "fixed<32,10,RND,SAT>"),
]


def _config(in_text: str, out_text: str, **kw) -> nl.ReciprocalConfig:
    return nl.ReciprocalConfig.for_formats(QFmt.parse(in_text), QFmt.parse(out_text), **kw)


def _errors(cfg, x):
    got = nl.reciprocal(cfg, x)
    nonzero = x != 0
    want = nf.correctly_rounded(cfg.out_fmt, nf.reciprocal(cfg.in_fmt.to_float(x[nonzero])))
    return got[nonzero] - want


@pytest.mark.parametrize("in_text,out_text", CASES)
def test_reciprocal_is_within_one_lsb_of_float(in_text, out_text):
    cfg = _config(in_text, out_text)
    x = unary_inputs(cfg.in_fmt, seed=11)
    assert np.abs(_errors(cfg, x)).max() <= 1


def test_reciprocal_of_zero_is_the_largest_code_and_signs_follow_the_input():
    cfg = _config("fixed<16,6>", "fixed<16,6,RND,SAT>")
    x = np.array([0, 1, -1, 64, -64, cfg.in_fmt.min_raw])
    y = nl.reciprocal(cfg, x)
    assert y[0] == cfg.out_fmt.max_raw
    assert y[1] == cfg.out_fmt.max_raw and y[2] == cfg.out_fmt.min_raw  # ±1024 saturates
    assert y[3] == 1 << 14 and y[4] == -(1 << 14)  # 1/(±1/16) = ±16 exactly
    assert y[5] == cfg.out_fmt.quantize(-1 / 32)


def test_newton_steps_are_what_makes_the_bound():
    cfg = _config("ufixed<16,8>", "ufixed<16,8,RND,SAT>")
    fewer = nl.ReciprocalConfig(cfg.in_fmt, cfg.out_fmt, cfg.table_bits, cfg.seed_frac_bits, 1,
                                cfg.work_bits, cfg.guard_bits)
    x = unary_inputs(cfg.in_fmt, seed=12)
    assert np.abs(_errors(fewer, x)).max() > 1
    assert np.abs(_errors(cfg, x)).max() <= 1


def test_seed_table_holds_midpoint_reciprocals():
    cfg = _config("ufixed<16,8>", "ufixed<16,8,RND,SAT>")
    table = nl.reciprocal_seed_table(cfg)
    assert len(table) == 1 << cfg.table_bits
    assert (np.diff(table) < 0).all()
    mids = 1 + (np.arange(len(table)) + 0.5) / len(table)
    assert np.abs(table * 2.0 ** -cfg.seed_frac_bits - 1 / mids).max() <= 2.0 ** -(cfg.seed_frac_bits + 1)


def test_reciprocal_config_validation():
    i, o = QFmt.parse("ufixed<16,8>"), QFmt.parse("ufixed<16,8>")
    with pytest.raises(ValueError, match="^newton_steps must be an integer ≥ 0, not -1$"):
        nl.ReciprocalConfig(i, o, 6, 9, -1, 19, 3)
    with pytest.raises(ValueError, match="^work_bits must be at least table_bits and seed_frac_bits, not 5$"):
        nl.ReciprocalConfig(i, o, 6, 9, 2, 5, 3)
    cfg = _config("fixed<32,10>", "fixed<32,10,RND,SAT>")
    assert nl.config_from_dict(nl.config_to_dict(cfg)) == cfg


@pytest.mark.cosim
def test_reciprocal_rtl_equals_golden(tmp_path):
    from nonlinear_cosim import run_rtl

    run_rtl(tmp_path, "reciprocal")


@pytest.mark.cosim
def test_reciprocal_hls_equals_golden():
    from nonlinear_cosim import run_hls

    run_hls("reciprocal")
