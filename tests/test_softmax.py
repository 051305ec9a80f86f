# SPDX-License-Identifier: Apache-2.0
"""Single-pass softmax: golden within 1 LSB of float; RTL (Verilator) and HLS (g++) equal to golden."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.golden import nonlinear as nl
from hwgen.golden import nonlinear_float as nf
from hwgen.qfx import QFmt

CASES = [
    ("fixed<8,3>", "ufixed<8,0,RND,SAT>"),
    ("fixed<16,6>", "ufixed<16,0,RND,SAT>"),
    ("fixed<32,10>", "fixed<32,10,RND,SAT>"),
]


def _config(in_text, out_text, max_row=1024, **kw) -> nl.SoftmaxConfig:
    return nl.SoftmaxConfig.for_formats(QFmt.parse(in_text), QFmt.parse(out_text), max_row, **kw)


def special_rows(fmt: QFmt, n: int, rng) -> np.ndarray:
    """Rows of length n that stress the single pass: ties, all equal, very negative values,
    ascending (the max grows every element), descending, one dominant value, spread ±1 around 0."""
    span = min(fmt.max_raw, int(8 / fmt.lsb))
    rows = [
        np.full(n, rng.integers(-span, span)),  # all equal
        np.full(n, fmt.min_raw),  # all at the most negative code
        np.linspace(fmt.min_raw, fmt.max_raw, n).astype(np.int64),  # ascending over the whole range
        np.linspace(span, -span, n).astype(np.int64),  # descending
        np.where(np.arange(n) % 3 == 0, span // 2, span // 2 - rng.integers(0, 4, n)),  # ties at the max
        np.concatenate([[fmt.max_raw], np.full(n - 1, fmt.min_raw)])[rng.permutation(n)],  # one dominant
        rng.integers(-int(1 / fmt.lsb), int(1 / fmt.lsb), n),  # close values: a wide sum
        np.arange(n) * max(1, span // max(n, 1)) - span,  # ascending by a few LSBs
    ]
    return np.clip(np.stack(rows), fmt.min_raw, fmt.max_raw).astype(np.int64)


def random_rows(fmt: QFmt, rows: int, n: int, rng) -> np.ndarray:
    """Random rows whose values spread over ±8 (where softmax is not one-hot) and over the format."""
    span = min(fmt.max_raw, int(8 / fmt.lsb))
    half = rows // 2
    near = rng.integers(-span, span, (half, n), endpoint=True)
    wide = rng.integers(fmt.min_raw, fmt.max_raw, (rows - half, n), endpoint=True)
    return np.concatenate([near, wide])


def _assert_within_one_lsb(cfg, x):
    got = nl.softmax(cfg, x)
    want = nf.correctly_rounded(cfg.out_fmt, nf.softmax(cfg.in_fmt.to_float(x)))
    assert np.abs(got - want).max() <= 1


@pytest.mark.parametrize("in_text,out_text", CASES)
@pytest.mark.parametrize("n", [1, 2, 3, 17, 64])
def test_softmax_is_within_one_lsb_of_float(in_text, out_text, n):
    cfg = _config(in_text, out_text)
    rng = np.random.default_rng(40 + n)
    x = np.concatenate([special_rows(cfg.in_fmt, n, rng), random_rows(cfg.in_fmt, 100_000 // n // 10 + 8, n, rng)])
    _assert_within_one_lsb(cfg, x)


@pytest.mark.parametrize("in_text,out_text", CASES)
def test_softmax_rows_of_1024_are_within_one_lsb(in_text, out_text):
    cfg = _config(in_text, out_text)
    rng = np.random.default_rng(41)
    x = np.concatenate([special_rows(cfg.in_fmt, 1024, rng), random_rows(cfg.in_fmt, 12, 1024, rng)])
    _assert_within_one_lsb(cfg, x)


def test_single_element_rows_and_all_equal_rows_are_exact():
    cfg = _config("fixed<16,6>", "ufixed<16,0,RND,SAT>")
    one = nl.softmax(cfg, np.array([[5], [-32768], [32767]]))
    assert (one == cfg.out_fmt.max_raw).all()  # 1.0 saturates to 1 − 2^-16
    for n in (2, 4, 64, 1024):
        p = nl.softmax(cfg, np.full((1, n), -1234))
        assert (p == cfg.out_fmt.quantize(1 / n)).all()


def test_stats_are_the_exact_max_and_the_inverse_sum():
    cfg = _config("fixed<16,6>", "ufixed<16,0,RND,SAT>")
    rng = np.random.default_rng(42)
    x = random_rows(cfg.in_fmt, 40, 300, rng)
    top, inv = nl.softmax_stats(cfg, x)
    assert (top == x.max(axis=-1)).all()
    xf = cfg.in_fmt.to_float(x)
    exact = 1 / np.exp(xf - xf.max(axis=-1, keepdims=True)).sum(axis=-1)
    rel = np.abs(cfg.inv_fmt.to_float(inv) / exact - 1)
    # The exp's chord error is relative and of one sign, so 1/sum carries it (≈2^-17 here); it
    # cancels in p = e·(1/sum) because the numerator has the same bias.
    assert rel.max() < 2.0 ** -cfg.out_fmt.frac_bits
    # The normalization pass with these statistics is the softmax.
    p = nl.softmax_normalize(cfg, x, top[:, None], inv[:, None])
    assert (p == nl.softmax(cfg, x)).all()


def test_stats_do_not_depend_on_where_the_max_is_for_equal_values():
    cfg = _config("fixed<16,6>", "ufixed<16,0,RND,SAT>")
    row = np.full(50, -200)
    row[17] = 100
    shuffled = np.roll(row, 20)
    assert nl.softmax_stats(cfg, row[None])[1] == nl.softmax_stats(cfg, shuffled[None])[1]


def _stats_by_beats(cfg, row, lanes):
    """docs/isa.md §3.6's multi-element form of the statistics pass, in plain integers: a beat of
    ``lanes`` elements is max(1, r) steps, one per raise of the running max (r raises in the beat),
    each ``l ← ⌊(l + Σ terms before the raise)·e(m − x_raise)⌋ + Σ terms from it on``. Returns the
    (max, sum, steps) it reaches."""
    e = lambda d: int(nl.exp(cfg.stats_exp, np.array([d]))[0])  # noqa: E731
    frac, values = cfg.sum_frac_bits, [int(v) for v in row]
    top, total, steps = values[0], 0, 0
    for start in range(0, len(values), lanes):
        beat, prefix, raises, maxima = values[start:start + lanes], top, [], []
        for k, x in enumerate(beat):
            if x > prefix and start + k > 0:
                raises.append(k)
            prefix = max(prefix, x)
            maxima.append(prefix)
        bounds = [0] + raises[1:] + [len(beat)]  # one raise (or none) per step
        for lo, hi in zip(bounds, bounds[1:]):
            raise_at = next((k for k in raises if lo <= k < hi), hi)
            before = sum(e(beat[k] - maxima[k]) for k in range(lo, raise_at))
            after = sum(e(beat[k] - maxima[k]) for k in range(raise_at, hi))
            if raise_at < hi:  # the scale is e(old max − new max), the new max the raising element
                old = maxima[raise_at - 1] if raise_at else top
                total = ((total + before) * e(old - beat[raise_at]) >> frac) + after
            else:
                total += before
            steps += 1
        top = maxima[-1]
    return top, total, steps


def test_a_grouping_that_rescales_once_per_raise_keeps_every_bit():
    """docs/isa.md §3.6: the statistics of several elements per step equal the golden's element
    order, bit for bit, when each step holds at most one raise of the max (scale e(0) = 1 exactly
    between raises); a beat costs max(1, raises) steps."""
    cfg = _config("fixed<16,6>", "ufixed<16,0,RND,SAT>")
    rng = np.random.default_rng(61)
    assert int(nl.exp(cfg.stats_exp, np.zeros(1, np.int64))[0]) == 1 << cfg.sum_frac_bits
    for n in (1, 2, 7, 8, 9, 33, 192):
        rows = np.concatenate([special_rows(cfg.in_fmt, n, rng), random_rows(cfg.in_fmt, 6, n, rng)])
        top, inv = nl.softmax_stats(cfg, rows)
        for lanes in (1, 4, 8):
            for row, want_top, want_inv in zip(rows, top, inv):
                got_top, got_sum, steps = _stats_by_beats(cfg, row, lanes)
                assert got_top == want_top
                assert int(nl.reciprocal(cfg.recip, np.array([got_sum]))[0]) == want_inv
                assert -(-n // lanes) <= steps <= n


def test_softmax_validation():
    cfg = _config("fixed<16,6>", "ufixed<16,0,RND,SAT>", max_row=8)
    with pytest.raises(ValueError, match="^row length must be at most max_row=8, not 9$"):
        nl.softmax(cfg, np.zeros((1, 9), np.int64))
    with pytest.raises(ValueError, match="^max_row must be an integer ≥ 1, not 0$"):
        _config("fixed<16,6>", "ufixed<16,0>", max_row=0)
    with pytest.raises(ValueError, match="needs 82 bits, more than the 62 supported"):
        _config("fixed<32,10>", "ufixed<32,0>")
    cfg = _config("fixed<32,10>", "fixed<32,10,RND,SAT>")
    assert nl.config_from_dict(nl.config_to_dict(cfg)) == cfg


# ------------------------------------------------------------------------------------------- cosim

# Rows per length: about 100,000 elements per configuration, every special row at every length.
ROW_COUNTS = {1: 64, 2: 64, 3: 64, 17: 200, 64: 400, 1024: 68}


def cosim_rows(cfg, seed: int, counts=ROW_COUNTS) -> dict[int, np.ndarray]:
    """Rows by length: the special rows, then random ones, ``counts[n]`` in all (a multiple of 4)."""
    rng = np.random.default_rng(seed)
    rows = {}
    for n, count in counts.items():
        special = special_rows(cfg.in_fmt, n, rng)
        rows[n] = np.concatenate([special, random_rows(cfg.in_fmt, count - len(special), n, rng)])
    return rows


def as_beats(rows: dict[int, np.ndarray], lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of equal length side by side in ``lanes``: (beats, lanes) values and (beats,) last flags."""
    xs, lasts = [], []
    for n, block in rows.items():
        assert len(block) % lanes == 0
        for k in range(0, len(block), lanes):
            xs.append(block[k:k + lanes].T)
            lasts.append(np.arange(n) == n - 1)
    return np.concatenate(xs), np.concatenate(lasts).astype(np.int64)


def _cosim_units():
    f = QFmt.parse
    sm16 = nl.SoftmaxConfig.for_formats(f("fixed<16,6>"), f("ufixed<16,0,RND,SAT>"), 1024)
    return [
        # (name, kind, config, lanes, rows, full rate)
        ("sm8", "softmax", nl.SoftmaxConfig.for_formats(f("fixed<8,3>"), f("ufixed<8,0,RND,SAT>"), 1024), 4, 1, False),
        ("sm16", "softmax", sm16, 4, 2, False),
        ("sm32", "softmax", nl.SoftmaxConfig.for_formats(f("fixed<32,10>"), f("fixed<32,10,RND,SAT>"), 1024), 2, 3, False),
        ("stats16", "stats", sm16, 4, 4, False),
        ("sm_full_rate", "softmax", nl.SoftmaxConfig.for_formats(f("fixed<16,6>"), f("ufixed<16,0,RND,SAT>"), 64), 1, 5, True),
    ]


def _run_softmax_rtl(tmp_path, only=None, corrupt=None):
    import json

    from amaranth.back import verilog

    from hwgen import toolchain
    from hwgen.cosim.bundle import Bundle
    from hwgen.rtl.softmax import Softmax, SoftmaxStats

    members, units = {}, []
    for name, kind, cfg, lanes, seed, full_rate in _cosim_units():
        members[name] = (Softmax if kind == "softmax" else SoftmaxStats)(cfg, lanes)
        if only is not None and name not in only:
            continue
        counts = {64: 40} if full_rate else ROW_COUNTS
        x, last = as_beats(cosim_rows(cfg, seed, counts), lanes)
        path = tmp_path / f"{name}.npz"
        np.savez(path, x=x, last=last)
        stall = 0.0 if full_rate else 0.3
        units.append({"name": name, "kind": kind, "config": nl.config_to_dict(cfg), "lanes": lanes,
                      "vectors": str(path), "idle_prob": stall, "backpressure_prob": stall, "full_rate": full_rate})
    source = verilog.convert(Bundle(members), name="softmax_bundle")
    tmp_path.mkdir(parents=True, exist_ok=True)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"seed": 1, "units": units}))
    env = {"HWGEN_TB_SOFTMAX": str(plan)}
    if corrupt:
        env["HWGEN_TB_SOFTMAX_CORRUPT"] = corrupt
    toolchain.run_cocotb(source, "softmax_bundle", "hwgen.cosim.tb_softmax", work_dir=tmp_path / "sim", extra_env=env)


@pytest.mark.cosim
def test_softmax_rtl_equals_golden(tmp_path):
    _run_softmax_rtl(tmp_path)


@pytest.mark.cosim
def test_a_wrong_expected_value_fails_the_bench(tmp_path):
    from hwgen.toolchain import ToolError

    with pytest.raises(ToolError, match="softmax_units_match_golden"):
        _run_softmax_rtl(tmp_path, only=("sm_full_rate",), corrupt="sm_full_rate:100")


@pytest.mark.cosim
def test_softmax_hls_equals_golden():
    from hwgen.hls import CSim
    from hwgen.hls.nonlinear import softmax_kernels

    units = [u for u in _cosim_units() if not u[5] and u[1] == "softmax"]
    sim = CSim([k for name, _, cfg, *_ in units for k in softmax_kernels(name, cfg, ROW_COUNTS)])
    for name, _, cfg, _, seed, _ in units:
        for n, rows in cosim_rows(cfg, seed).items():
            assert (sim.run(f"{name}_rows{n}", {"in": rows})["out"] == nl.softmax(cfg, rows)).all(), (name, n)
            stats = sim.run(f"{name}_stats{n}", {"in": rows})
            top, inv = nl.softmax_stats(cfg, rows)
            assert (stats["row_max"][:, 0] == top).all() and (stats["inv_sum"][:, 0] == inv).all(), (name, n)


@pytest.mark.cosim
@pytest.mark.parametrize("in_text,out_text", CASES[:2])
def test_softmax_max_error_is_below_hls4ml_stable(in_text, out_text):
    """The issue's target: on the same rows and at the same output format, a smaller max error
    than hls4ml's own ``softmax_stable`` (its backend defaults, compiled with g++)."""
    from hwgen.hls import CSim
    from hwgen.hls.baselines import HLS4ML_DEFAULTS, hls4ml_include_dir, hls4ml_softmax_kernel

    cfg = _config(in_text, out_text)
    n = 64
    rows = random_rows(cfg.in_fmt, 4000, n, np.random.default_rng(43))
    kernel = hls4ml_softmax_kernel("hls4ml_stable", HLS4ML_DEFAULTS, cfg.in_fmt, cfg.out_fmt, n)
    theirs = CSim([kernel], flags=[f"-I{hls4ml_include_dir()}"]).run("hls4ml_stable", {"in": rows})["out"]
    want = nf.correctly_rounded(cfg.out_fmt, nf.softmax(cfg.in_fmt.to_float(rows)))
    ours = np.abs(nl.softmax(cfg, rows) - want).max()
    assert ours <= 1 < np.abs(theirs - want).max()
