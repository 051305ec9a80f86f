# SPDX-License-Identifier: Apache-2.0
"""rsqrt unit: golden within 1 LSB of float; RTL (Verilator) and HLS (g++) equal to golden."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.golden import nonlinear as nl
from hwgen.golden import nonlinear_float as nf
from hwgen.qfx import QFmt
from nonlinear_vectors import unary_inputs

CASES = [
    ("ufixed<8,4>", "ufixed<8,4,RND,SAT>"),
    ("ufixed<16,8>", "ufixed<16,4,RND,SAT>"),
    ("fixed<16,6>", "ufixed<16,6,RND,SAT>"),
    ("fixed<32,10>", "fixed<32,10,RND,SAT>"),
]


def _config(in_text: str, out_text: str, **kw) -> nl.RsqrtConfig:
    return nl.RsqrtConfig.for_formats(QFmt.parse(in_text), QFmt.parse(out_text), **kw)


def _errors(cfg, x):
    got = nl.rsqrt(cfg, x)
    positive = x > 0
    want = nf.correctly_rounded(cfg.out_fmt, nf.rsqrt(cfg.in_fmt.to_float(x[positive])))
    return got[positive] - want


@pytest.mark.parametrize("in_text,out_text", CASES)
def test_rsqrt_is_within_one_lsb_of_float(in_text, out_text):
    cfg = _config(in_text, out_text)
    x = unary_inputs(cfg.in_fmt, seed=21)
    assert np.abs(_errors(cfg, x)).max() <= 1


def test_rsqrt_of_non_positive_inputs_is_the_largest_code_and_powers_of_four_are_exact():
    cfg = _config("fixed<16,6>", "ufixed<16,6,RND,SAT>")
    y = nl.rsqrt(cfg, np.array([0, -1, cfg.in_fmt.min_raw, 4 << 10, 1 << 10, 16 << 10]))
    assert (y[:3] == cfg.out_fmt.max_raw).all()
    assert list(y[3:]) == [1 << 9, 1 << 10, 1 << 8]  # 1/√4, 1/√1, 1/√16


def test_newton_steps_are_what_makes_the_bound():
    cfg = _config("ufixed<16,8>", "ufixed<16,4,RND,SAT>")
    fewer = nl.RsqrtConfig(cfg.in_fmt, cfg.out_fmt, cfg.table_bits, cfg.seed_frac_bits, 1,
                           cfg.work_bits, cfg.guard_bits)
    x = unary_inputs(cfg.in_fmt, seed=22)
    assert np.abs(_errors(fewer, x)).max() > 1
    assert np.abs(_errors(cfg, x)).max() <= 1


def test_seed_table_covers_both_exponent_parities():
    cfg = _config("ufixed<16,8>", "ufixed<16,4,RND,SAT>")
    table = nl.rsqrt_seed_table(cfg) * 2.0 ** -cfg.seed_frac_bits
    half = len(table) // 2
    assert len(table) == 1 << cfg.table_bits
    assert 1 / np.sqrt(2) < table[half - 1] < table[0] <= 1  # m ∈ [1, 2)
    assert 0.5 < table[-1] < table[half] <= 1 / np.sqrt(2)  # m ∈ [2, 4)


def test_rsqrt_config_validation():
    i, o = QFmt.parse("ufixed<16,8>"), QFmt.parse("ufixed<16,4>")
    with pytest.raises(ValueError, match="^table_bits must be an integer ≥ 1, not 0$"):
        nl.RsqrtConfig(i, o, 0, 9, 2, 19, 3)
    with pytest.raises(ValueError, match="^table_bits must be at most 14, not 15$"):
        nl.RsqrtConfig(i, o, 15, 18, 2, 19, 3)
    cfg = _config("fixed<32,10>", "fixed<32,10,RND,SAT>")
    assert nl.config_from_dict(nl.config_to_dict(cfg)) == cfg


@pytest.mark.cosim
def test_rsqrt_rtl_equals_golden(tmp_path):
    from nonlinear_cosim import run_rtl

    run_rtl(tmp_path, "rsqrt")


@pytest.mark.cosim
def test_rsqrt_hls_equals_golden():
    from nonlinear_cosim import run_hls

    run_hls("rsqrt")
