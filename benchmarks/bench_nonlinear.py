# SPDX-License-Identifier: Apache-2.0
"""Error and cost table of the nonlinear units; writes docs/nonlinear.md.

Run:  .venv/bin/python benchmarks/bench_nonlinear.py

For every unit (exp, reciprocal, rsqrt, softmax, GELU table and polynomial, LayerNorm) at 8-, 16-
and 32-bit formats (Edge-MoE's ap_fixed<32,10> among them) it measures the golden model — which
the RTL and the HLS C-sim equal bit for bit (tests/test_<unit>.py) — against the float function
correctly rounded into the output format: max and RMS error in output LSBs and in absolute
terms, plus the max absolute error against the exact float value.  Inputs are every code for
formats of at most 16 bits and 10^6 random codes plus every edge code otherwise (softmax and
LayerNorm: ~10^5 random row elements).  Resources are Yosys ``synth_xilinx -family xcup`` of one
lane of the Amaranth unit (cached by content; the first run takes a while).  Side by side on
identical rows: hls4ml's own softmax (``stable``, ``latency``, default and matched types, g++
from the wheel's nnet_utils) and Edge-MoE's GELU table.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.back import verilog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from nonlinear_vectors import edge_codes  # noqa: E402

from hwgen import __version__, toolchain  # noqa: E402
from hwgen.golden import nonlinear as nl  # noqa: E402
from hwgen.golden import nonlinear_float as nf  # noqa: E402
from hwgen.hls import CSim  # noqa: E402
from hwgen.hls.baselines import HLS4ML_DEFAULTS, Hls4mlSoftmax, hls4ml_include_dir, hls4ml_softmax_kernel  # noqa: E402
from hwgen.qfx import QFmt  # noqa: E402
from hwgen.rtl.exp import Exp  # noqa: E402
from hwgen.rtl.gelu import Gelu  # noqa: E402
from hwgen.rtl.layernorm import LayerNorm  # noqa: E402
from hwgen.rtl.reciprocal import Reciprocal  # noqa: E402
from hwgen.rtl.rsqrt import Rsqrt  # noqa: E402
from hwgen.rtl.softmax import Softmax, SoftmaxNormalize, SoftmaxStats  # noqa: E402

F = QFmt.parse
OUT = ROOT / "docs" / "nonlinear.md"
RANDOM_32 = 1_000_000
SOFTMAX_N = 64
SEED = 2026


# --------------------------------------------------------------------------------------------- inputs


def unary_inputs(fmt: QFmt, focus=None) -> np.ndarray:
    if fmt.width <= 16:
        return np.arange(fmt.min_raw, fmt.max_raw + 1, dtype=np.int64)
    rng = np.random.default_rng(SEED)
    if focus is not None:
        low, high = (int(round(v / fmt.lsb)) for v in focus)
        random = rng.integers(max(low, fmt.min_raw), min(high, fmt.max_raw), RANDOM_32, endpoint=True)
    else:
        # Log-uniform magnitudes: every binade is covered.
        bits = rng.integers(0, fmt.width - 1, RANDOM_32)
        random = rng.integers(0, 1 << 62, RANDOM_32) >> (62 - bits)
        if fmt.signed:
            random = np.where(rng.integers(0, 2, RANDOM_32) == 1, -random, random)
    return np.concatenate([edge_codes(fmt), random])


def softmax_rows(fmt: QFmt, rows: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    span = min(fmt.max_raw, int(8 / fmt.lsb))
    return rng.integers(-span, span, (rows, n), endpoint=True)


def layernorm_rows(fmt: QFmt, rows: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    span = min(fmt.max_raw, int(8 / fmt.lsb))
    return rng.integers(-span, span, (rows, n), endpoint=True)


# ---------------------------------------------------------------------------------------------- error


def errors(out_fmt: QFmt, got: np.ndarray, exact: np.ndarray) -> dict:
    """Errors of raw results against the exact float values: LSBs against the correctly rounded
    codes, and absolute against the float values themselves."""
    finite = np.isfinite(exact)
    got, exact = got[finite], exact[finite]
    lsb = (got - nf.correctly_rounded(out_fmt, exact)).astype(np.float64)
    absolute = np.abs(out_fmt.to_float(got) - exact)
    in_range = (exact >= out_fmt.to_float(out_fmt.min_raw)) & (exact <= out_fmt.to_float(out_fmt.max_raw))
    return {
        "count": len(got),
        "max_lsb": int(np.abs(lsb).max()),
        "rms_lsb": float(np.sqrt(np.mean(lsb**2))),
        "exact": float(np.mean(lsb == 0)),
        "max_abs_cr": float(np.abs(lsb).max() * out_fmt.lsb),
        "rms_abs_cr": float(np.sqrt(np.mean(lsb**2)) * out_fmt.lsb),
        "max_abs": float(absolute[in_range].max()) if in_range.any() else float("nan"),
    }


# ------------------------------------------------------------------------------------------- the units


def unit_rows():
    """(unit, bits, label, config, component, evaluate) for every table row."""
    rows = []
    exp_formats = {8: ("fixed<8,3>", "ufixed<8,1,RND,SAT>"), 16: ("fixed<16,6>", "ufixed<16,1,RND,SAT>"),
                   32: ("fixed<32,10>", "fixed<32,10,RND,SAT>")}
    for bits, (i, o) in exp_formats.items():
        cfg = nl.ExpConfig.for_formats(F(i), F(o))
        rows.append(("exp", bits, f"{cfg.segments} segments + interpolation", cfg, Exp,
                     lambda c: _unary(c, nl.exp, nf.exp, (-24.0, 0.0))))
    recip_formats = {8: ("ufixed<8,4>", "ufixed<8,4,RND,SAT>"), 16: ("fixed<16,6>", "fixed<16,6,RND,SAT>"),
                     32: ("fixed<32,10>", "fixed<32,10,RND,SAT>")}
    for bits, (i, o) in recip_formats.items():
        cfg = nl.ReciprocalConfig.for_formats(F(i), F(o))
        rows.append(("reciprocal", bits, f"{1 << cfg.table_bits} seeds, {cfg.newton_steps} Newton", cfg,
                     Reciprocal, lambda c: _unary(c, nl.reciprocal, nf.reciprocal)))
    rsqrt_formats = {8: ("ufixed<8,4>", "ufixed<8,4,RND,SAT>"), 16: ("ufixed<16,8>", "ufixed<16,4,RND,SAT>"),
                     32: ("fixed<32,10>", "fixed<32,10,RND,SAT>")}
    for bits, (i, o) in rsqrt_formats.items():
        cfg = nl.RsqrtConfig.for_formats(F(i), F(o))
        rows.append(("rsqrt", bits, f"{1 << cfg.table_bits} seeds, {cfg.newton_steps} Newton", cfg, Rsqrt,
                     lambda c: _unary(c, nl.rsqrt, nf.rsqrt)))
    gelu_formats = {8: ("fixed<8,3>", "fixed<8,3>"), 16: ("fixed<16,6>", "fixed<16,6>"),
                    32: ("fixed<32,10>", "fixed<32,10>")}
    for bits, (i, o) in gelu_formats.items():
        cfg = nl.GeluTableConfig(F(i), F(o))
        rows.append(("GELU, Edge-MoE table", bits, "177 entries (step 1/32 to 5.5), ufixed<22,0>", cfg, Gelu,
                     lambda c: _unary(c, nl.gelu, nf.gelu, (-8.0, 8.0))))
    for bits, (i, o) in gelu_formats.items():
        cfg = nl.GeluPolyConfig.for_formats(F(i), F(o))
        rows.append(("GELU, piecewise quadratic", bits,
                     f"{cfg.segments} segments of 1/{1 << cfg.segment_log2}, {cfg.coef_fmt}", cfg, Gelu,
                     lambda c: _unary(c, nl.gelu, nf.gelu, (-8.0, 8.0))))
    cfg = nl.GeluTableConfig(F("fixed<32,10>"), F("fixed<32,10>"), step_log2=7, range=6.0,
                             table_fmt=QFmt(24, 0, False, "RND"))
    rows.append(("GELU, finer table", 32, "769 entries (step 1/128 to 6), ufixed<24,0>", cfg, Gelu,
                 lambda c: _unary(c, nl.gelu, nf.gelu, (-8.0, 8.0))))
    softmax_formats = {8: ("fixed<8,3>", "ufixed<8,0,RND,SAT>"), 16: ("fixed<16,6>", "ufixed<16,0,RND,SAT>"),
                       32: ("fixed<32,10>", "fixed<32,10,RND,SAT>")}
    for bits, (i, o) in softmax_formats.items():
        cfg = nl.SoftmaxConfig.for_formats(F(i), F(o), 1024)
        rows.append(("softmax", bits, f"rows ≤ 1024, exp {cfg.norm_exp.segments} segments, sum {cfg.sum_fmt}",
                     cfg, Softmax, _softmax))
    ln_formats = {8: ("fixed<8,3>", "fixed<8,2>", "fixed<8,2>", "fixed<8,3,RND,SAT>", 1e-5),
                  16: ("fixed<16,6>", "fixed<16,2>", "fixed<16,4>", "fixed<16,6,RND,SAT>", 1e-6),
                  32: ("fixed<32,10>", "fixed<16,2>", "fixed<16,5>", "fixed<32,10>", 1e-6)}
    for bits, (x, g, b, o, eps) in ln_formats.items():
        cfg = nl.LayerNormConfig.for_formats(F(x), F(g), F(b), F(o), 1024, eps)
        rows.append(("LayerNorm", bits, f"n ≤ 1024, γ {cfg.gamma_fmt}, β {cfg.beta_fmt}, ε {eps:g}", cfg,
                     LayerNorm, _layernorm))
    return rows


def _unary(cfg, golden, reference, focus=None):
    x = unary_inputs(cfg.in_fmt, focus)
    return errors(cfg.out_fmt, golden(cfg, x), reference(cfg.in_fmt.to_float(x)))


def _softmax(cfg):
    short = softmax_rows(cfg.in_fmt, 1500, SOFTMAX_N, SEED)
    long = softmax_rows(cfg.in_fmt, 12, 1024, SEED + 1)
    got = np.concatenate([nl.softmax(cfg, rows).ravel() for rows in (short, long)])
    exact = np.concatenate([nf.softmax(cfg.in_fmt.to_float(rows)).ravel() for rows in (short, long)])
    return errors(cfg.out_fmt, got, exact)


def _layernorm(cfg):
    rng = np.random.default_rng(SEED)
    got, exact = [], []
    for n, count in ((192, 400), (1024, 30)):
        x = layernorm_rows(cfg.in_fmt, count, n, SEED + n)
        gamma = rng.integers(cfg.gamma_fmt.min_raw, cfg.gamma_fmt.max_raw, n, endpoint=True)
        beta = rng.integers(cfg.beta_fmt.min_raw, cfg.beta_fmt.max_raw, n, endpoint=True)
        got.append(nl.layernorm(cfg, x, gamma, beta).ravel())
        eps = cfg.eps_raw * 2.0 ** (-2 * cfg.in_fmt.frac_bits)
        exact.append(nf.layernorm(cfg.in_fmt.to_float(x), cfg.gamma_fmt.to_float(gamma),
                                  cfg.beta_fmt.to_float(beta), eps).ravel())
    return errors(cfg.out_fmt, np.concatenate(got), np.concatenate(exact))


def resources(component, cfg, name: str) -> dict:
    unit = component(cfg, 1)
    source = verilog.convert(unit, name=name)
    counts = toolchain.yosys_resources(source, name, family="xcup")
    counts["latency"] = getattr(unit, "latency", None)
    return counts


# --------------------------------------------------------------------------------------- comparisons


def hls4ml_comparison():
    """Max/RMS LSB error of hls4ml's softmax and ours on the same rows of 64."""
    variants = []
    kernels = []
    for bits, (i, o) in {8: ("fixed<8,3>", "ufixed<8,0,RND,SAT>"), 16: ("fixed<16,6>", "ufixed<16,0,RND,SAT>"),
                         32: ("fixed<32,10>", "fixed<32,10,RND,SAT>")}.items():
        in_fmt, out_fmt = F(i), F(o)
        cfg = nl.SoftmaxConfig.for_formats(in_fmt, out_fmt, 1024)
        frac = out_fmt.frac_bits
        # Matched: types as wide as hwgen's internal ones, the largest table hls4ml's backend allows.
        wide = lambda w, i_bits: QFmt(w, i_bits, False, "RND", "SAT")  # noqa: E731
        matched = Hls4mlSoftmax("stable", 4096, wide(frac + 4, 1), wide(frac + 10, 1), wide(frac + 11, 7),
                                wide(frac + 11, 7))
        for label, params in (("stable (defaults)", HLS4ML_DEFAULTS), ("latency (defaults)", Hls4mlSoftmax("latency")),
                              ("stable (matched types, 4096 entries)", matched)):
            name = f"hls4ml_{bits}_{len(kernels)}"
            kernels.append(hls4ml_softmax_kernel(name, params, in_fmt, out_fmt, SOFTMAX_N))
            variants.append((bits, label, name, cfg))
    sim = CSim(kernels, flags=[f"-I{hls4ml_include_dir()}"])
    results = []
    for bits, label, name, cfg in variants:
        x = softmax_rows(cfg.in_fmt, 2000, SOFTMAX_N, SEED + 7)
        exact = nf.softmax(cfg.in_fmt.to_float(x))
        theirs = errors(cfg.out_fmt, sim.run(name, {"in": x})["out"].ravel(), exact.ravel())
        ours = errors(cfg.out_fmt, nl.softmax(cfg, x).ravel(), exact.ravel())
        results.append((bits, cfg, label, theirs, ours))
    return results


# ------------------------------------------------------------------------------------------- report


def fmt_float(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else "–"


def main() -> int:
    start = time.time()
    table, over_one, by_unit = [], [], {}
    for unit, bits, label, cfg, component, evaluate in unit_rows():
        t = time.time()
        err = evaluate(cfg)
        name = "u_" + "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in f"{unit}_{bits}_{label}")[:60]
        res = resources(component, cfg, name)
        table.append(
            f"| {unit} | {bits} | {cfg.in_fmt} → {cfg.out_fmt} | {label} | {err['count']:,} | {err['max_lsb']} | "
            f"{err['rms_lsb']:.3f} | {100 * err['exact']:.1f} % | {fmt_float(err['max_abs_cr'])} | "
            f"{fmt_float(err['rms_abs_cr'])} | {fmt_float(err['max_abs'])} | {res['LUT']} | {res['FF']} | "
            f"{res['DSP']} | {res['BRAM36']} | {res['latency']} |"
        )
        by_unit[(unit, bits)] = err
        if err["max_lsb"] > 1:
            step = f"1/{1 << cfg.step_log2}"
            over_one.append(f"- {unit}, {bits} bits: max {err['max_lsb']} LSB, max abs {err['max_abs']:.3g} vs "
                            f"float — the interpolation error of a {step} step near 0, where δ curves most.")
        print(f"{unit:28s} {bits:2d}  max {err['max_lsb']} LSB  abs {err['max_abs']:.3g}  "
              f"LUT {res['LUT']} DSP {res['DSP']} BRAM {res['BRAM36']}  ({time.time() - t:.0f} s)", flush=True)

    parts = []
    for bits, (i, o) in {8: ("fixed<8,3>", "ufixed<8,0,RND,SAT>"), 16: ("fixed<16,6>", "ufixed<16,0,RND,SAT>"),
                         32: ("fixed<32,10>", "fixed<32,10,RND,SAT>")}.items():
        cfg = nl.SoftmaxConfig.for_formats(F(i), F(o), 1024)
        for component, what in ((SoftmaxStats, "statistics (max, 1/sum per row)"),
                                (SoftmaxNormalize, "normalization p = e(x − max)·(1/sum)")):
            res = resources(component, cfg, f"sm_{component.__name__}_{bits}")
            parts.append(f"| {bits} | {what} | {cfg.inv_fmt} | {res['LUT']} | {res['FF']} | {res['DSP']} | "
                         f"{res['BRAM36']} | {res['latency']} |")

    comparison, worst_hls4ml = [], {}
    for bits, cfg, label, theirs, ours in hls4ml_comparison():
        comparison.append(f"| {bits} | {cfg.out_fmt} | hls4ml {label} | {theirs['max_lsb']} | {theirs['rms_lsb']:.2f} | "
                          f"{fmt_float(theirs['max_abs'])} | {ours['max_lsb']} | {ours['rms_lsb']:.3f} |")
        if label.startswith("stable (defaults)"):
            worst_hls4ml[bits] = theirs["max_lsb"]
        print(f"hls4ml {bits:2d} {label:40s} max {theirs['max_lsb']} LSB (hwgen {ours['max_lsb']})", flush=True)

    hwgen_units = [key for key in by_unit if "Edge-MoE" not in key[0] and "finer" not in key[0]]
    worst = max(by_unit[key]["max_lsb"] for key in hwgen_units)
    poly32 = by_unit[("GELU, piecewise quadratic", 32)]["max_abs"]
    edge32 = by_unit[("GELU, Edge-MoE table", 32)]["max_abs"]
    softmax_worst = {bits: by_unit[("softmax", bits)]["max_lsb"] for bits in (8, 16, 32)}
    lines = [
        "# Nonlinear units: error and cost",
        "",
        "Generated by `.venv/bin/python benchmarks/bench_nonlinear.py` "
        f"(hwgen {__version__}, {datetime.date.today().isoformat()}). Do not edit by hand.",
        "",
        "## Summary against the targets of issue 6",
        "",
        f"- Every hwgen unit (exp, reciprocal, rsqrt, softmax, both GELU forms with their `for_formats` "
        f"settings, LayerNorm) at 8, 16 and 32 bits: max error {worst} LSB of its output format against the "
        "correctly rounded float function.  Exceptions: none among hwgen's configurations; Edge-MoE's own "
        "GELU table is listed for comparison and exceeds one LSB at 32 bits (below).",
        f"- GELU at Edge-MoE's `ap_fixed<32,10>`: the piecewise quadratic reaches {poly32:.2g} max abs "
        f"error against exact GELU (one LSB); Edge-MoE's table (step 1/32 to 5.5) reaches {edge32:.3g}.",
        "- Softmax at equal output format on the same rows: hwgen max "
        + ", ".join(f"{softmax_worst[b]} LSB ({b} bits)" for b in (8, 16, 32))
        + "; hls4ml `softmax_stable` with its defaults: "
        + ", ".join(f"{worst_hls4ml[b]} LSB" for b in (8, 16, 32)) + ".",
        "- Throughput: one element per cycle per lane in steady state for every unit (asserted in",
        "  Verilator: N beats in N + latency cycles; softmax and LayerNorm accept and emit a beat every",
        "  cycle over back-to-back rows).",
        "",
        "## Error and resources per unit",
        "",
        "Every figure is of the golden model, which the Amaranth RTL (cocotb + Verilator) and the HLS",
        "C++ (g++ C-sim) equal bit for bit — `tests/test_<unit>.py` proves it on the same kind of inputs.",
        "Errors are against the float function *correctly rounded into the output format* (the exact",
        "value assigned to the format with its own rounding and overflow modes): max and RMS in output",
        "LSBs and the same in absolute terms; *max abs vs float* is against the exact value itself",
        "(the figure Edge-MoE's 9.7e-5 GELU error refers to), where it lies inside the output range.",
        "Inputs: every code for formats of at most 16 bits, 10⁶ random codes plus every edge code for",
        "32 bits (exp and GELU on [−24, 0] and [−8, 8], reciprocal and rsqrt log-uniform); softmax on",
        "1,500 random rows of 64 and 12 rows of 1,024 within ±8; LayerNorm on 400 rows of 192 and 30",
        "rows of 1,024 within ±8 with random γ, β.",
        "",
        "Resources: Yosys `synth_xilinx -family xcup` of one lane of the Amaranth unit (softmax and",
        "LayerNorm include their 1,024-element row buffer and statistics FIFO); latency: pipeline",
        "cycles (softmax and LayerNorm also wait for a whole row before its first output).",
        "",
        "| unit | bits | formats (in → out) | configuration | inputs | max err (LSB) | RMS (LSB) | exact | "
        "max abs (CR) | RMS abs (CR) | max abs vs float | LUT | FF | DSP | BRAM36 | latency |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *table,
        "",
        "Rows over one LSB (tables kept for comparison at Edge-MoE's format):",
        "",
        *(over_one or ["- none"]),
        "",
        "## Softmax parts (one lane)",
        "",
        "The statistics unit is the interface for attention: it streams the scores once and returns",
        "(max, 1/sum) per row, so A·V can accumulate e(s − max)·v and scale once by 1/sum.",
        "",
        "| bits | part | 1/sum format | LUT | FF | DSP | BRAM36 | latency |",
        "|---|---|---|---|---|---|---|---|",
        *parts,
        "",
        "## Softmax against hls4ml's own (same rows of 64, same output format)",
        "",
        "hls4ml 1.3.0's `nnet::softmax_stable` and `softmax_latency` compiled with g++ from the wheel's",
        "`nnet_utils`, configured as its Vivado backend does: defaults (1,024-entry tables, every",
        "internal type `ap_fixed<18,8,AP_RND,AP_SAT>`), and *matched*: 4,096-entry tables with",
        "unsigned types as wide as hwgen's internals (exp table F+4 bits, 1/sum table F+10 bits, sum",
        "F+11 bits with 7 integer bits). Inputs within ±8.",
        "",
        "| bits | output | implementation | max err (LSB) | RMS (LSB) | max abs vs float | hwgen max (LSB) | hwgen RMS (LSB) |",
        "|---|---|---|---|---|---|---|---|",
        *comparison,
        "",
        "hls4ml indexes its exp and 1/x tables with the top bits of their inputs, so the tables'",
        "resolution, not their width, bounds the error; hwgen interpolates 2^f between table entries",
        "and refines 1/x by Newton steps.",
        "",
        f"Generated in {time.time() - start:.0f} s.",
        "",
    ]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
