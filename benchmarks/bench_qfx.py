# SPDX-License-Identifier: Apache-2.0
"""Throughput of hwgen.qfx quantize and cast on 10**7-element arrays (elements per second).

Run: ``.venv/bin/python benchmarks/bench_qfx.py``. Prints one table row per operation; the figure
is the best of three runs, so a busy machine disturbs it less.
"""

from __future__ import annotations

import time

import numpy as np

from hwgen.qfx import QFmt

N = 10_000_000
REPEATS = 3


def best_seconds(fn) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 16.0, N)
    wide = QFmt(32, 12)
    wide_raw = wide.quantize(x)
    acc = QFmt(48, 20)
    acc_raw = acc.quantize(x * 1000.0)
    rows = [
        ("quantize", "float64 -> fixed<16,6,RND_CONV,SAT>", lambda: QFmt.parse("fixed<16,6,RND_CONV,SAT>").quantize(x)),
        ("quantize", "float64 -> fixed<8,3>", lambda: QFmt.parse("fixed<8,3>").quantize(x)),
        ("quantize", "float64 -> ufixed<8,0,RND,SAT>", lambda: QFmt.parse("ufixed<8,0,RND,SAT>").quantize(x)),
        ("cast", "fixed<32,12> -> fixed<16,6,RND_CONV,SAT>",
         lambda: QFmt.parse("fixed<16,6,RND_CONV,SAT>").cast(wide_raw, wide)),
        ("cast", "fixed<32,12> -> fixed<8,3>", lambda: QFmt.parse("fixed<8,3>").cast(wide_raw, wide)),
        ("cast", "fixed<48,20> -> fixed<8,3,RND,SAT_SYM>",
         lambda: QFmt.parse("fixed<8,3,RND,SAT_SYM>").cast(acc_raw, acc)),
        ("cast", "fixed<48,20> -> fixed<12,4,RND_INF,WRAP_SM>",
         lambda: QFmt.parse("fixed<12,4,RND_INF,WRAP_SM>").cast(acc_raw, acc)),
    ]
    print(f"hwgen.qfx throughput, {N:,} elements, best of {REPEATS}")
    print(f"{'operation':<10} {'formats':<46} {'seconds':>8} {'elements/s':>12}")
    for op, what, fn in rows:
        seconds = best_seconds(fn)
        print(f"{op:<10} {what:<46} {seconds:8.3f} {N / seconds:12.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
