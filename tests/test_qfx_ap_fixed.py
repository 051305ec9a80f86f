# SPDX-License-Identifier: Apache-2.0
"""hwgen.qfx equals the real Xilinx ap_fixed, compiled with g++ (exact int64 equality).

Every (format, mode) is a C++ template instantiation and costs g++ ~30 ms (front-end template
work, no flag helps), so the instantiations are chosen to fit ~4 minutes of CPU on a fresh
machine. What is compared, for every one of the 35 rounding x overflow pairs (``WRAP_SM`` only on
signed destinations: ``ap_ufixed`` rejects it):

- **quantize** (double -> ap_fixed) on 200 random formats per pair, W in 1..32, I in -4..W+4,
  signed and unsigned, 10,000 values each: every code boundary (min, max, 0, +-1 and their
  neighbours), +-1/2-LSB ties and the doubles one ulp either side of them, values just outside the
  range, powers of two across and beyond the range, zeros of both signs, huge and tiny magnitudes,
  then random values (codes, ties, uniform and log-uniform over 2**-(F+10) .. 2**(I+70)).
  The headers convert a double from its exponent and mantissa, so ap_fixed<W,I+k>(x * 2**k) and
  ap_fixed<W,I>(x) have identical raw bits: each of the 64 (32 for WRAP_SM) width x sign classes of
  a pair is compiled once, as the first random format drawn for it (run on unscaled values, which
  add subnormals and +-DBL_MAX), and the pair's other formats of that class run on it with inputs
  scaled exactly by a power of two (magnitudes kept within 2**+-960 so scaling stays exact).
  Python always runs the real format. 2,016 instantiations: every W x sign x Q x O.
- **cast** (ap_fixed -> ap_fixed): raw results depend on the I's only through the binary-point
  offset Fs-Fd (shifting both I's changes nothing), so a pair is (Ws, Ss, Wd, Sd, offset) and
  each is its own instantiation; 200 per mode pair (7,000 in all):
  - 64 *small* pairs, one for every (Ws, Wd) in 1..8 x 1..8, with random signs, random Id in
    -4..Wd+4 and a random offset in -(Wd+2)..Ws+2 (beyond that band every result is 0 or an
    overflow), run on **every** source code: over the 35 mode pairs that is 2,240 small pairs,
    each sign combination and offset of each (Ws, Wd) drawn about 9 times;
  - 136 *wide* random pairs, Wd in 1..32 (I in -4..Wd+4) and Ws in 1..62 (40% wider than 32:
    accumulators), run on every source code when there are at most 10,000, else on 10,000 codes:
    source boundaries, destination boundaries and ties (and +-1 code) expressed in source codes,
    random codes near the destination range and across the source range.
- **arithmetic**: the result types of ``a * b``, ``a + b``, ``a - b`` (RType mult/plus/minus) and
  their raws on 40 random signed/unsigned format pairs x 200 operand pairs equal qfx.mul/add/sub.
- Rounding casts whose source lies entirely below the destination's rounding bit
  (Fs - Fd > Ws) trip an assertion in ap_private.h: such draws are kept out of the C++ comparison,
  counted in ``EXCLUDED`` and drawn again; qfx defines them mathematically and test_qfx.py checks
  that definition. ``test_the_headers_assert_on_sources_below_the_rounding_bit`` shows they trip.

Totals (seeded, so fixed): quantize 7,000 formats / 2,016 instantiations / 70,000,000 values;
cast 2,240 small pairs / 142,800 values and 4,760 wide pairs / 37,657,098 values (1,145 of them
on every code, 1,903 with sources wider than 32 bits); 467 draws excluded (295 small, 172 wide).
Cold (empty cache) it costs ~310 s of CPU, almost all of it g++ instantiating ap_fixed types.

The cases are split into ``CHUNKS`` translation units (pytest-xdist spreads them); values go
through stdin/stdout as binary float64/int64. Binaries are cached by content (hwgen.toolchain).
``make test`` compiles and compares ``CI_SAMPLES`` (2 of the 8 units, about 105 s of cold CPU;
every rounding x overflow pair has cases in each unit: ``test_the_ci_sample_covers_every_mode_pair``);
``make test-full`` all of them.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from hwgen import toolchain
from hwgen import qfx
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt

pytestmark = pytest.mark.cosim

SEED = 0x9F1C
MODE_PAIRS = [(q, o) for q in ROUNDING_MODES for o in OVERFLOW_MODES]
FORMATS_PER_PAIR = 200  # quantize
WIDE_CASTS_PER_PAIR = 136  # + 64 small pairs = the 200 cast formats per mode pair
VALUES_PER_FORMAT = 10_000
SMALL_WIDTH = 8
MAX_STORAGE_WIDTH = 32
MAX_SOURCE_WIDTH = 62
CHUNKS = 8
# Compile time is the cost: -Og compiles nearly as fast as -O0 but runs ap_fixed conversions ~10x
# faster; collecting garbage less often saves ~15% of g++'s time for ~2.5 GB of memory per chunk.
CXX_FLAGS = ("-Og", "-fno-exceptions", "--param", "ggc-min-expand=400", "--param", "ggc-min-heapsize=4000000")
SCALE_LIMIT = 960  # |log2| of magnitudes fed to scaled quantize formats

HARNESS = r"""
#include <ap_fixed.h>
#include <cstdint>
#include <cstdio>
#include <vector>

// Raw bits of an ap_fixed (masked and sign-extended by the caller).
template <class T>
uint64_t raw_bits(const T& x) { return (uint64_t)x.V.get_VAL(); }

template <class DST>
void quantize(const void* in, uint64_t* out, long n) {
  const double* x = static_cast<const double*>(in);
  for (long i = 0; i < n; ++i) {
    DST y = x[i];
    out[i] = raw_bits(y);
  }
}

template <class SRC, class DST>
void cast(const void* in, uint64_t* out, long n) {
  const int64_t* raw = static_cast<const int64_t*>(in);
  for (long i = 0; i < n; ++i) {
    SRC s;
    s.setBits((ap_ulong)raw[i]);
    DST y = s;
    out[i] = raw_bits(y);
  }
}

typedef void (*Kernel)(const void*, uint64_t*, long);
static const Kernel KERNELS[] = {
{{KERNELS}}
};

// Records on stdin: int64 kernel index, int64 count, count x 8 bytes; each answered on stdout.
int main() {
  int64_t header[2];
  std::vector<uint64_t> in, out;
  while (std::fread(header, sizeof(int64_t), 2, stdin) == 2) {
    size_t n = (size_t)header[1];
    in.resize(n);
    out.resize(n);
    if (std::fread(in.data(), 8, n, stdin) != n) return 3;
    std::fprintf(stderr, "kernel %lld\n", (long long)header[0]);
    KERNELS[header[0]](in.data(), out.data(), (long)n);
    std::fwrite(out.data(), 8, n, stdout);
  }
  return 0;
}
"""


@dataclasses.dataclass(frozen=True)
class Case:
    """One comparison: Python runs ``fmt`` (from ``src``); C++ runs ``cpp_fmt`` with inputs * 2**scale."""

    kind: str  # "quantize" or "cast"
    fmt: QFmt
    cpp_fmt: QFmt
    src: QFmt | None = None
    small: bool = False

    @property
    def scale(self) -> int:
        return self.cpp_fmt.int_bits - self.fmt.int_bits

    def kernel(self) -> str:
        if self.kind == "quantize":
            return f"&quantize<{self.cpp_fmt.cpp_type()} >"
        return f"&cast<{self.src.cpp_type()}, {self.cpp_fmt.cpp_type()} >"

    def trips_assertion(self) -> bool:
        """A rounding cast from a source entirely below the destination's rounding bit."""
        if self.kind != "cast":
            return False
        rounds = self.fmt.rounding != "TRN" and not (self.fmt.rounding == "TRN_ZERO" and not self.src.signed)
        return rounds and self.src.frac_bits - self.fmt.frac_bits > self.src.width


def _random_fmt(rng, q, o, width=None, signed=None) -> QFmt:
    width = int(rng.integers(1, MAX_STORAGE_WIDTH + 1)) if width is None else width
    if signed is None:
        signed = True if o == "WRAP_SM" else bool(rng.integers(2))
    return QFmt(width, int(rng.integers(-4, width + 5)), signed, q, o)


def _quantize_cases(rng, q, o) -> list[Case]:
    classes = [(w, s) for w in range(1, MAX_STORAGE_WIDTH + 1) for s in (True, False) if s or o != "WRAP_SM"]
    compiled: dict[tuple[int, bool], QFmt] = {}
    cases = []
    for i in range(FORMATS_PER_PAIR):
        # The first formats visit every width x sign class once, so every class is compiled.
        fmt = _random_fmt(rng, q, o, *classes[i]) if i < len(classes) else _random_fmt(rng, q, o)
        cpp = compiled.setdefault((fmt.width, fmt.signed), fmt)
        cases.append(Case("quantize", fmt, cpp))
    return cases


def _cast_case(rng, q, o, src_width, dst_width, small) -> Case:
    dst = _random_fmt(rng, q, o, dst_width)
    src_signed = bool(rng.integers(2))
    offset = int(rng.integers(-(dst_width + 2), src_width + 3))  # Fs - Fd
    src = QFmt(src_width, src_width - (dst.frac_bits + offset), src_signed)
    return Case("cast", dst, dst, src, small)


def _cast_cases(rng, q, o) -> list[Case]:
    """The 64 small pairs, then the wide ones, all distinct; pairs that trip the headers' assertion
    are kept (to be counted) and drawn again with the same widths."""
    cases = []
    kernels = set()

    def draw(ws, wd, small):
        while True:
            case = _cast_case(rng, q, o, ws, wd, small)
            if case.kernel() in kernels:
                continue
            kernels.add(case.kernel())
            cases.append(case)
            if not case.trips_assertion():
                return

    for ws in range(1, SMALL_WIDTH + 1):
        for wd in range(1, SMALL_WIDTH + 1):
            draw(ws, wd, small=True)
    for _ in range(WIDE_CASTS_PER_PAIR):
        wide = rng.random() < 0.4
        ws = int(rng.integers(MAX_STORAGE_WIDTH + 1, MAX_SOURCE_WIDTH + 1) if wide else rng.integers(1, 33))
        draw(ws, int(rng.integers(1, MAX_STORAGE_WIDTH + 1)), small=False)
    return cases


def build_cases() -> list[Case]:
    """Every case, in a fixed order (seeded)."""
    rng = np.random.default_rng(SEED)
    cases = []
    for q, o in MODE_PAIRS:
        cases += _quantize_cases(rng, q, o)
        cases += _cast_cases(rng, q, o)
    return cases


CASES = build_cases()
EXCLUDED = [c for c in CASES if c.trips_assertion()]
COMPARED = [c for c in CASES if not c.trips_assertion()]


_KERNEL_ORDER = {k: i for i, k in enumerate(dict.fromkeys(c.kernel() for c in COMPARED))}


def chunk_of(case: Case) -> int:
    """Chunk (translation unit) of a case: every case sharing a C++ kernel lands in the same one."""
    return _KERNEL_ORDER[case.kernel()] % CHUNKS


# ----------------------------------------------------------------------------------------- values


def _ties_and_neighbours(codes: np.ndarray, lsb: float) -> list[np.ndarray]:
    centre = codes * lsb
    out = []
    for offset in (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0):
        value = centre + offset * lsb
        out += [value, np.nextafter(value, np.inf), np.nextafter(value, -np.inf)]
    return out


def quantize_values(case: Case, rng) -> np.ndarray:
    """10,000 doubles for ``case.fmt``: boundaries first, then random values."""
    fmt = case.fmt
    lsb = fmt.lsb
    edges = np.array([fmt.min_raw, fmt.min_raw + 1, -1, 0, 1, fmt.max_raw - 1, fmt.max_raw], dtype=np.float64)
    edges = edges[(edges >= fmt.min_raw) & (edges <= fmt.max_raw)]
    fixed = _ties_and_neighbours(edges, lsb)
    powers = np.ldexp(1.0, np.arange(-fmt.frac_bits - 4, fmt.int_bits + 70))
    fixed += [powers, -powers, np.nextafter(powers, 0), -np.nextafter(powers, 0)]
    fixed += [np.array([0.0, -0.0]), np.ldexp(np.array([1.0, -1.0, 1.5, -1.5]), SCALE_LIMIT)]
    fixed += [np.ldexp(np.array([1.0, -1.0, 1.75, -1.75]), -SCALE_LIMIT)]
    if case.scale == 0:  # the compiled format itself: the doubles scaling could not carry
        fixed += [np.array([5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308,
                            1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308])]
    values = np.concatenate(fixed)
    rest = VALUES_PER_FORMAT - values.size
    n = rest // 4
    span = fmt.max_raw - fmt.min_raw + 1
    codes = rng.integers(fmt.min_raw - span, fmt.max_raw + span + 1, size=n).astype(np.float64)
    fractions = rng.choice([0.0, 0.5, -0.5], size=n) + np.where(rng.random(n) < 0.3, rng.random(n), 0.0)
    ties = (rng.integers(fmt.min_raw - 2, fmt.max_raw + 3, size=n) + 0.5) * lsb
    uniform = rng.uniform(-2.0 ** (fmt.int_bits + 2), 2.0 ** (fmt.int_bits + 2), size=n)
    magnitudes = np.ldexp(1.0 + rng.random(rest - 3 * n), rng.integers(-fmt.frac_bits - 10, fmt.int_bits + 70, rest - 3 * n))
    logs = magnitudes * rng.choice([-1.0, 1.0], size=rest - 3 * n)
    values = np.concatenate([values, (codes + fractions) * lsb, ties, uniform, logs])
    if case.scale:  # scaling a subnormal is inexact: such values are run on the compiled format only
        floor = np.ldexp(1.0, -SCALE_LIMIT)
        values = np.where((values != 0) & (np.abs(values) < floor), np.copysign(floor, values), values)
    return values


def cast_codes(case: Case, rng) -> np.ndarray:
    """Every source code when there are at most 10,000, else boundaries, ties and random codes."""
    src, dst = case.src, case.fmt
    if case.small or src.max_raw - src.min_raw < VALUES_PER_FORMAT:
        return np.arange(src.min_raw, src.max_raw + 1, dtype=np.int64)
    shift = src.frac_bits - dst.frac_bits  # source codes per destination code: 2**shift
    picks = [src.min_raw, src.min_raw + 1, -1, 0, 1, src.max_raw - 1, src.max_raw]
    for code in (dst.min_raw, dst.min_raw + 1, -1, 0, 1, dst.max_raw - 1, dst.max_raw, dst.max_raw + 1):
        base = code << shift if shift >= 0 else code >> -shift
        half = 1 << (shift - 1) if shift > 0 else 0
        picks += [base + d for d in (-1, 0, 1)] + [base + half + d for d in (-1, 0, 1)]
    picks = np.array([p for p in picks if src.min_raw <= p <= src.max_raw], dtype=np.int64)
    rest = VALUES_PER_FORMAT - picks.size
    anywhere = rng.integers(src.min_raw, src.max_raw, size=rest // 2, endpoint=True)
    # Codes within a few destination steps of the destination's range, incl. exact ties.
    reach = 1 << max(min(shift + dst.width + 1, MAX_SOURCE_WIDTH), 0)
    near = rng.integers(max(-reach, src.min_raw), min(reach, src.max_raw), size=rest - rest // 2, endpoint=True)
    if 0 < shift < MAX_SOURCE_WIDTH:
        tie = (near >> shift << shift) + (1 << (shift - 1))
        near = np.where((rng.random(near.size) < 0.3) & (tie >= src.min_raw) & (tie <= src.max_raw), tie, near)
    return np.concatenate([picks, anywhere, near]).astype(np.int64)


# ----------------------------------------------------------------------------------------- harness


def _signed_bits(bits: np.ndarray, fmt: QFmt) -> np.ndarray:
    mask = np.uint64((1 << fmt.width) - 1)
    raw = (bits & mask).astype(np.int64)
    if fmt.signed:
        sign = np.int64(1 << (fmt.width - 1))
        raw = (raw ^ sign) - sign
    return raw


def compare_chunk(cases: list[Case], seed: int) -> tuple[int, list[str]]:
    """Run ``cases`` through one compiled harness; (values compared, descriptions of mismatches)."""
    kernels: dict[str, int] = {}
    for case in cases:
        kernels.setdefault(case.kernel(), len(kernels))
    source = HARNESS.replace("{{KERNELS}}", ",\n".join(kernels))
    binary = toolchain.compile_cpp(source, flags=CXX_FLAGS, name=f"qfx_ap_fixed_{seed}")
    rng = np.random.default_rng(seed)
    records, expected = [], []
    for case in cases:
        if case.kind == "quantize":
            x = quantize_values(case, rng)
            expected.append(case.fmt.quantize(x))
            payload = np.ldexp(x, case.scale)
        else:
            codes = cast_codes(case, rng)
            expected.append(case.fmt.cast(codes, case.src))
            payload = codes
        records += [struct.pack("<qq", kernels[case.kernel()], payload.size), payload.tobytes()]
    output = np.frombuffer(toolchain.run_cpp(binary, stdin=b"".join(records)), dtype=np.uint64)
    mismatches, start, compared = [], 0, 0
    for case, want in zip(cases, expected):
        got = _signed_bits(output[start : start + want.size], case.cpp_fmt)
        start += want.size
        compared += want.size
        everything = case.kind == "cast" and want.size == case.src.max_raw - case.src.min_raw + 1
        assert everything or want.size >= VALUES_PER_FORMAT
        bad = np.flatnonzero(got != want)
        if bad.size:
            what = f"{case.fmt}.quantize (as {case.cpp_fmt})" if case.kind == "quantize" else f"{case.src} -> {case.fmt}"
            mismatches.append(f"{what}: {bad.size} of {want.size} differ, first at index {bad[0]}: "
                              f"qfx {want[bad[0]]}, ap_fixed {got[bad[0]]}")
    assert start == output.size
    return compared, mismatches


# ------------------------------------------------------------------------------------------- tests


def test_coverage_is_what_the_docstring_says():
    for q, o in MODE_PAIRS:
        quantized = [c for c in CASES if c.kind == "quantize" and (c.fmt.rounding, c.fmt.overflow) == (q, o)]
        casts = [c for c in COMPARED if c.kind == "cast" and (c.fmt.rounding, c.fmt.overflow) == (q, o)]
        assert len(quantized) == FORMATS_PER_PAIR and len(casts) == SMALL_WIDTH**2 + WIDE_CASTS_PER_PAIR
        classes = {(c.fmt.width, c.fmt.signed) for c in quantized}
        assert len(classes) == (32 if o == "WRAP_SM" else 64)
        assert all(c.cpp_fmt.width == c.fmt.width and c.cpp_fmt.signed == c.fmt.signed for c in quantized)
        assert {(c.src.width, c.fmt.width) for c in casts if c.small} == {
            (a, b) for a in range(1, SMALL_WIDTH + 1) for b in range(1, SMALL_WIDTH + 1)
        }
        assert all(-4 <= c.fmt.int_bits <= c.fmt.width + 4 for c in quantized + casts)
        assert any(c.src.width > MAX_STORAGE_WIDTH for c in casts)
    assert {c.fmt.signed for c in CASES} == {True, False}
    assert len({c.kernel() for c in COMPARED}) == 2016 + 35 * (SMALL_WIDTH**2 + WIDE_CASTS_PER_PAIR)
    # Only rounding casts from sources below the rounding bit are left out.
    assert all(c.kind == "cast" and c.src.frac_bits - c.fmt.frac_bits > c.src.width for c in EXCLUDED)
    assert 0 < len(EXCLUDED) < len(CASES) // 20


#: The translation units ``make test-full`` compares (the ``full_sample`` tier of tests/conftest.py) ...
SAMPLES = tuple(range(CHUNKS))
#: ... and the ones ``make test`` compares.
CI_SAMPLES = (0, 5)


def test_the_ci_sample_covers_every_mode_pair():
    for chunk in CI_SAMPLES:
        cases = [c for c in COMPARED if chunk_of(c) == chunk]
        for kind in ("quantize", "cast"):
            pairs = {(c.fmt.rounding, c.fmt.overflow) for c in cases if c.kind == kind}
            assert pairs == set(MODE_PAIRS), f"chunk {chunk} lacks {kind} cases of {set(MODE_PAIRS) - pairs}"
        assert any(c.kind == "cast" and c.small for c in cases) and any(c.src.width > MAX_STORAGE_WIDTH
                                                                         for c in cases if c.kind == "cast")


def test_qfx_equals_ap_fixed(full_sample):
    chunk = full_sample
    cases = [c for c in COMPARED if chunk_of(c) == chunk]
    compared, mismatches = compare_chunk(cases, seed=SEED + chunk)
    assert compared >= VALUES_PER_FORMAT * sum(c.kind == "quantize" for c in cases)
    assert not mismatches, f"{len(mismatches)} case(s) differ:\n" + "\n".join(mismatches[:20])


def test_the_headers_assert_on_sources_below_the_rounding_bit():
    source = r"""
        #include <ap_fixed.h>
        int main() {
            ap_fixed<11, -1> small = 0.001;
            ap_fixed<4, 5, AP_RND, AP_SAT> y = small;
            return y.V.get_VAL() == 12345;
        }
    """
    binary = toolchain.compile_cpp(source, flags=CXX_FLAGS, name="qfx_ap_fixed_assert")
    with pytest.raises(toolchain.ToolError, match="Attempting to read bit beyond MSB"):
        toolchain.run_cpp(binary)


ARITHMETIC_HARNESS = r"""
#include <ap_fixed.h>
#include <cstdint>
#include <cstdio>
#include <vector>

template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
void describe(const ap_fixed_base<W, I, S, Q, O, N>&, uint64_t* out) {
  out[0] = W;
  out[1] = (uint64_t)(int64_t)I;
  out[2] = S;
}

// a * b, a + b, a - b of every (a, b) pair: first their three types, then three raws per pair.
template <class A, class B>
void arithmetic(const int64_t* in, uint64_t* out, long n) {
  A a;
  B b;
  describe(a * b, out);
  describe(a + b, out + 3);
  describe(a - b, out + 6);
  for (long i = 0; i < n; ++i) {
    a.setBits((ap_ulong)in[2 * i]);
    b.setBits((ap_ulong)in[2 * i + 1]);
    out[9 + 3 * i] = (a * b).V.get_VAL();
    out[10 + 3 * i] = (a + b).V.get_VAL();
    out[11 + 3 * i] = (a - b).V.get_VAL();
  }
}

typedef void (*Kernel)(const int64_t*, uint64_t*, long);
static const Kernel KERNELS[] = {
{{KERNELS}}
};

int main() {
  int64_t header[2];
  std::vector<int64_t> in;
  std::vector<uint64_t> out;
  while (std::fread(header, sizeof(int64_t), 2, stdin) == 2) {
    size_t n = (size_t)header[1];
    in.resize(2 * n);
    out.resize(9 + 3 * n);
    if (std::fread(in.data(), 8, 2 * n, stdin) != 2 * n) return 3;
    KERNELS[header[0]](in.data(), out.data(), (long)n);
    std::fwrite(out.data(), 8, out.size(), stdout);
  }
  return 0;
}
"""


def test_arithmetic_matches_ap_fixed_operators():
    """Result formats (RType mult/plus/minus) and exact raws of a*b, a+b, a-b on 40 format pairs."""
    rng = np.random.default_rng(SEED + 99)
    pairs = []
    while len(pairs) < 40:
        a, b = (_random_fmt(rng, "TRN", "WRAP", int(rng.integers(1, 32))) for _ in range(2))
        try:
            qfx.result_fmt_add(a, b)  # the widest of the three results
        except ValueError:
            continue  # more than the 62 bits qfx supports
        pairs.append((a, b))
    kernels = ",\n".join(f"&arithmetic<{a.cpp_type()}, {b.cpp_type()} >" for a, b in pairs)
    binary = toolchain.compile_cpp(
        ARITHMETIC_HARNESS.replace("{{KERNELS}}", kernels), flags=CXX_FLAGS, name="qfx_ap_fixed_arithmetic"
    )
    records, operands = [], []
    for k, (a, b) in enumerate(pairs):
        ra = np.concatenate([[a.min_raw, a.max_raw, a.min_raw, 0], rng.integers(a.min_raw, a.max_raw, 196, endpoint=True)])
        rb = np.concatenate([[b.min_raw, b.max_raw, b.max_raw, 0], rng.integers(b.min_raw, b.max_raw, 196, endpoint=True)])
        operands.append((ra, rb))
        records += [struct.pack("<qq", k, ra.size), np.stack([ra, rb], axis=1).astype(np.int64).tobytes()]
    output = np.frombuffer(toolchain.run_cpp(binary, stdin=b"".join(records)), dtype=np.uint64)
    start = 0
    for (a, b), (ra, rb) in zip(pairs, operands):
        block = output[start : start + 9 + 3 * ra.size]
        start += block.size
        types = block[:9].astype(np.int64).reshape(3, 3)
        for column, op in enumerate((qfx.mul, qfx.add, qfx.sub)):
            want, fmt = op(ra, a, rb, b)
            width, int_bits, signed = types[column].tolist()
            assert QFmt(width, int_bits, bool(signed)) == fmt, f"{op.__name__}({a}, {b})"
            got = _signed_bits(block[9 + column :: 3], fmt)
            assert np.array_equal(got, want), f"{op.__name__}({a}, {b})"
    assert start == output.size
