# SPDX-License-Identifier: Apache-2.0
"""LayerNorm: golden within 1 LSB of float; RTL (Verilator) and HLS (g++) equal to golden at 1, 4, 8 and 16
elements per beat, rows of any length (a partial last beat), with stalls on every stream."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.golden import nonlinear as nl
from hwgen.golden import nonlinear_float as nf
from hwgen.qfx import QFmt

# (x, γ, β, out, eps)
CASES = [
    ("fixed<8,3>", "fixed<8,2>", "fixed<8,2>", "fixed<8,3,RND,SAT>", 1e-5),
    ("fixed<16,6>", "fixed<16,2>", "fixed<16,4>", "fixed<16,6,RND,SAT>", 1e-6),
    ("fixed<32,10>", "fixed<16,2>", "fixed<16,5>", "fixed<32,10>", 1e-6),  # Edge-MoE's types
]


def _config(x, g, b, o, eps, max_channels=1024) -> nl.LayerNormConfig:
    return nl.LayerNormConfig.for_formats(*map(QFmt.parse, (x, g, b, o)), max_channels, eps)


def special_rows(fmt: QFmt, n: int, rng) -> np.ndarray:
    """Constant rows, extremes, one outlier, tiny spread, and alternating ±max."""
    rows = [
        np.full(n, rng.integers(fmt.min_raw, fmt.max_raw)),
        np.zeros(n, np.int64),
        np.full(n, fmt.min_raw),
        np.where(np.arange(n) % 2 == 0, fmt.max_raw, fmt.min_raw),
        np.concatenate([[fmt.max_raw], np.zeros(n - 1, np.int64)]),
        rng.integers(-2, 3, n) + rng.integers(fmt.min_raw // 2, fmt.max_raw // 2),
    ]
    return np.stack(rows).astype(np.int64)


def random_rows(fmt: QFmt, rows: int, n: int, rng, spread: float = 40.0) -> np.ndarray:
    """Half with values within ±spread (activations), half over the whole format."""
    span = min(fmt.max_raw, int(spread / fmt.lsb))
    half = rows // 2
    near = rng.integers(-span, span, (half, n), endpoint=True)
    wide = rng.integers(fmt.min_raw, fmt.max_raw, (rows - half, n), endpoint=True)
    return np.concatenate([near, wide])


def _affine(cfg, n, rng):
    gamma = rng.integers(cfg.gamma_fmt.min_raw, cfg.gamma_fmt.max_raw, n, endpoint=True)
    beta = rng.integers(cfg.beta_fmt.min_raw, cfg.beta_fmt.max_raw, n, endpoint=True)
    return gamma, beta


def _reference(cfg, x, gamma, beta):
    eps = cfg.eps_raw * 2.0 ** (-2 * cfg.in_fmt.frac_bits)  # ε as the unit quantizes it
    value = nf.layernorm(cfg.in_fmt.to_float(x), cfg.gamma_fmt.to_float(gamma), cfg.beta_fmt.to_float(beta), eps)
    return nf.correctly_rounded(cfg.out_fmt, value)


@pytest.mark.parametrize("x,g,b,o,eps", CASES)
@pytest.mark.parametrize("n", [1, 2, 7, 192, 1024])
def test_layernorm_is_within_one_lsb_of_float(x, g, b, o, eps, n):
    cfg = _config(x, g, b, o, eps)
    rng = np.random.default_rng(50 + n)
    rows = np.concatenate([special_rows(cfg.in_fmt, n, rng), random_rows(cfg.in_fmt, max(8, 40_000 // n), n, rng)])
    gamma, beta = _affine(cfg, n, rng)
    got = nl.layernorm(cfg, rows, gamma, beta)
    assert np.abs(got - _reference(cfg, rows, gamma, beta)).max() <= 1


def test_constant_rows_give_beta():
    for eps in (0.0, 1e-6):
        cfg = _config("fixed<16,6>", "fixed<16,2>", "fixed<16,4>", "fixed<16,6,RND,SAT>", eps)
        rng = np.random.default_rng(51)
        gamma, beta = _affine(cfg, 192, rng)
        got = nl.layernorm(cfg, np.full((3, 192), 777), gamma, beta)
        assert (got == cfg.out_fmt.cast(beta, cfg.beta_fmt)).all()


def test_eps_is_quantized_on_the_square_grid():
    cfg = _config("fixed<32,10>", "fixed<16,2>", "fixed<16,5>", "fixed<32,10>", 1e-6)
    assert cfg.eps_raw == round(1e-6 * 2.0**44)
    assert _config("fixed<8,3>", "fixed<8,2>", "fixed<8,2>", "fixed<8,3>", 1e-5).eps_raw == 0


def test_layernorm_validation():
    cfg = _config(*CASES[1])
    with pytest.raises(ValueError, match="^gamma and beta must have 4 channels, not"):
        nl.layernorm(cfg, np.zeros((1, 4), np.int64), np.zeros(3, np.int64), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"^eps must be a number in \[0, 1\), not -1$"):
        _config("fixed<16,6>", "fixed<16,2>", "fixed<16,4>", "fixed<16,6>", -1)
    with pytest.raises(ValueError, match="^rows must have 1..1024 elements, not shape"):
        nl.layernorm(cfg, np.zeros((1, 1025), np.int64), np.zeros(1025, np.int64), np.zeros(1025, np.int64))
    assert nl.config_from_dict(nl.config_to_dict(cfg)) == cfg


# ------------------------------------------------------------------------------------------- cosim


def _cosim_units():
    """(name, config, lanes, rows per length, seed, full rate): ~100,000 elements per format, at the
    row unit's lanes (4 at AXI64, 8 at AXI128 with 16-bit activations, 16 with 8-bit ones) and 1;
    rows whose length is not a multiple of the lanes (a partial last beat), shorter than a beat, and
    of one element."""
    big = {4: 64, 192: 280, 1024: 44}
    ragged = {1: 16, 2: 16, 3: 16, 7: 40, 13: 20, 190: 20}
    return [
        ("ln8", _config(*CASES[0]), 4, big, 1, False),
        ("ln16", _config(*CASES[1]), 8, big, 2, False),
        ("ln32", _config(*CASES[2]), 4, big, 3, False),
        ("ln16_odd", _config(*CASES[1]), 1, {1: 16, 2: 16, 7: 40}, 4, False),
        ("ln16_ragged4", _config(*CASES[1]), 4, ragged, 6, False),
        ("ln16_ragged8", _config(*CASES[1]), 8, ragged, 7, False),
        ("ln8_ragged16", _config(*CASES[0]), 16, ragged, 9, False),  # 8-bit activations at AXI 128
        ("ln_full_rate", _config(*CASES[1], max_channels=64), 4, {64: 30}, 5, True),
        ("ln_full_rate_ragged", _config(*CASES[1], max_channels=64), 8, {61: 30}, 8, True),
    ]


def _cosim_rows(cfg, counts, seed):
    """{n: (rows, gamma, beta)}: special rows first, then random rows."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, count in counts.items():
        special = special_rows(cfg.in_fmt, n, rng)
        rows = np.concatenate([special, random_rows(cfg.in_fmt, max(0, count - len(special)), n, rng)])
        out[n] = (rows, *_affine(cfg, n, rng))
    return out


def _run_layernorm_rtl(tmp_path, only=None, corrupt=None):
    import json

    from amaranth.back import verilog

    from hwgen import toolchain
    from hwgen.cosim.bundle import Bundle
    from hwgen.rtl.layernorm import LayerNorm

    members, units = {}, []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, cfg, lanes, counts, seed, full_rate in _cosim_units():
        members[name] = LayerNorm(cfg, lanes)
        if only is not None and name not in only:
            continue
        arrays = {}
        for n, (rows, gamma, beta) in _cosim_rows(cfg, counts, seed).items():
            arrays.update({f"x{n}": rows, f"gamma{n}": gamma, f"beta{n}": beta})
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        stall = 0.0 if full_rate else 0.3
        units.append({"name": name, "config": nl.config_to_dict(cfg), "lanes": lanes, "vectors": str(path),
                      "idle_prob": stall, "backpressure_prob": stall, "full_rate": full_rate})
    source = verilog.convert(Bundle(members), name="layernorm_bundle")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"seed": 1, "units": units}))
    env = {"HWGEN_TB_LAYERNORM": str(plan)}
    if corrupt:
        env["HWGEN_TB_LAYERNORM_CORRUPT"] = corrupt
    toolchain.run_cocotb(source, "layernorm_bundle", "hwgen.cosim.tb_layernorm", work_dir=tmp_path / "sim",
                         extra_env=env)


@pytest.mark.cosim
def test_layernorm_rtl_equals_golden(tmp_path):
    _run_layernorm_rtl(tmp_path)


@pytest.mark.cosim
def test_a_wrong_expected_value_fails_the_bench(tmp_path):
    from hwgen.toolchain import ToolError

    with pytest.raises(ToolError, match="layernorm_units_match_golden"):
        _run_layernorm_rtl(tmp_path, only=("ln_full_rate",), corrupt="ln_full_rate:100")


@pytest.mark.cosim
def test_layernorm_hls_equals_golden():
    from hwgen.hls import CSim
    from hwgen.hls.nonlinear import layernorm_kernels

    units = [u for u in _cosim_units() if not u[5]]
    sim = CSim([k for name, cfg, lanes, counts, *_ in units for k in layernorm_kernels(name, cfg, counts, lanes)])
    for name, cfg, _, counts, seed, _ in units:
        for n, (rows, gamma, beta) in _cosim_rows(cfg, counts, seed).items():
            got = sim.run(f"{name}_rows{n}", {"x": rows, "gamma": np.broadcast_to(gamma, rows.shape),
                                              "beta": np.broadcast_to(beta, rows.shape)})["out"]
            assert (got == nl.layernorm(cfg, rows, gamma, beta)).all(), (name, n)
