# SPDX-License-Identifier: Apache-2.0
"""The requantizer three ways: Amaranth RTL (Amaranth sim and Verilator), HLS C++ (g++), hwgen.qfx.

The golden model ``out_fmt.cast(raw, in_fmt)`` is the spec; every other result must equal it as
int64 raw values.  The cosim tests share one Verilator build (a Bundle of every combination) and
one g++ binary (a harness holding every kernel), because building dominates their cost.
"""

from __future__ import annotations

import json
import random

import jinja2
import numpy as np
import pytest
from amaranth import Fragment, Module, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data
from amaranth.sim import Simulator

from hwgen import toolchain
from hwgen.cosim.bundle import Bundle
from hwgen.cosim.streams import Scoreboard, pack_lanes, unpack_lanes
from hwgen.hls import CSim, Kernel, KernelPort, csimulate, render, requantize_kernel
from hwgen.hls.emit import requantize_config, stamp
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt
from hwgen.rtl.requantize import Requantizer, RequantizePlan, lane_shape, requantize_lane

F = QFmt.parse

# (name, in_fmt, out_fmt): right and left shifts, narrowing and widening, signed <-> unsigned,
# every rounding mode and every overflow mode, including SAT_SYM and WRAP_SM.
COMBOS = [
    ("acc_rndconv_sat", "fixed<32,12>", "fixed<16,6,RND_CONV,SAT>"),
    ("acc_trn_wrap", "fixed<32,12>", "fixed<16,6>"),
    ("acc_rnd_wrapsm", "fixed<32,12>", "fixed<16,6,RND,WRAP_SM>"),
    ("narrow_rnd_satsym", "fixed<24,8>", "fixed<8,3,RND,SAT_SYM>"),
    ("narrow_rndzero_wrapsm", "fixed<20,10>", "fixed<10,4,RND_ZERO,WRAP_SM>"),
    ("to_unsigned_rndinf_sat", "fixed<18,6>", "ufixed<8,4,RND_INF,SAT>"),
    ("from_unsigned_rndmininf_sat", "ufixed<16,8>", "fixed<12,6,RND_MIN_INF,SAT>"),
    ("left_shift_sat", "fixed<12,8>", "fixed<16,6,TRN,SAT>"),
    ("left_shift_widen_wrap", "fixed<16,4>", "fixed<24,10,RND,WRAP>"),
    ("to_int_trnzero_satzero", "fixed<32,16>", "fixed<8,8,TRN_ZERO,SAT_ZERO>"),
    ("neg_int_bits_rndconv_satsym", "fixed<28,4>", "fixed<6,-2,RND_CONV,SAT_SYM>"),
    ("unsigned_rndconv_wrap", "ufixed<20,12>", "ufixed<10,6,RND_CONV,WRAP>"),
    ("to_unsigned_same_bits_wrap", "fixed<16,6>", "ufixed<16,6,TRN,WRAP>"),
]
# Runs with no idle and no backpressure at all: N beats must leave in N + latency cycles.
FULL_RATE = ("wide_acc_full_rate", "fixed<48,24>", "fixed<18,8,RND,SAT>")

# The design is small and the bench's Python dominates the run, so g++ -O0 halves the build time
# (the Verilator runtime compiled with it included) at no visible cost in simulation time.
BUILD_ARGS = ("-CFLAGS", "-O0")
COSIM_LANES = 4
COSIM_VALUES = 10_240  # per combination: 2,560 beats of 4 lanes
STALL_PROB = 0.3


def requantize_vectors(in_fmt: QFmt, out_fmt: QFmt, count: int, seed: int) -> np.ndarray:
    """``count`` raw ``in_fmt`` values: every boundary first, then random values.

    Boundaries: the ends of ``in_fmt``; for destination codes around 0 and both ends of
    ``out_fmt`` (one past each end included), the source values that land exactly on the code,
    on the rounding tie above it and one LSB either side of that tie.  Half of the random values
    cover the whole input range, half a window twice the output range, where rounding matters.
    """
    rng = np.random.default_rng(seed)
    drop = in_fmt.frac_bits - out_fmt.frac_bits  # > 0: the conversion drops this many bits
    codes = [out_fmt.min_raw - 1, out_fmt.min_raw, out_fmt.min_raw + 1, -1, 0, 1,
             out_fmt.max_raw - 1, out_fmt.max_raw, out_fmt.max_raw + 1]
    codes += rng.integers(out_fmt.min_raw, out_fmt.max_raw + 1, size=16).tolist()
    points = [in_fmt.min_raw, in_fmt.min_raw + 1, -1, 0, 1, in_fmt.max_raw - 1, in_fmt.max_raw]
    for code in codes:
        if drop > 0:
            base, step, half = code << drop, 1 << drop, 1 << (drop - 1)
            points += [base - 1, base, base + 1, base + half - 1, base + half, base + half + 1,
                       base + step - 1]
        else:
            base = code >> -drop
            points += [base - 1, base, base + 1]
    points = [p for p in dict.fromkeys(points) if in_fmt.min_raw <= p <= in_fmt.max_raw]
    if len(points) > count:
        raise ValueError(f"count must be at least the {len(points)} boundary values, not {count}")
    spare = count - len(points)
    whole = rng.integers(in_fmt.min_raw, in_fmt.max_raw + 1, size=spare // 2, dtype=np.int64)
    lo = max(in_fmt.min_raw, int(np.floor(np.ldexp(out_fmt.min_raw * 2.0, drop))))
    hi = min(in_fmt.max_raw, int(np.ceil(np.ldexp(out_fmt.max_raw * 2.0 + 1, drop))))
    if lo > hi:
        lo, hi = in_fmt.min_raw, in_fmt.max_raw
    window = rng.integers(lo, hi + 1, size=spare - spare // 2, dtype=np.int64)
    return np.concatenate([np.array(points, dtype=np.int64), whole, window])


def beats_of(values: np.ndarray, lanes: int) -> np.ndarray:
    return values.reshape(-1, lanes)


# --------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("lanes", [1, 4, 16])
@pytest.mark.parametrize(("in_text", "out_text"), [
    ("fixed<32,12>", "fixed<16,6,RND_CONV,SAT>"),
    ("ufixed<20,12>", "fixed<10,4,RND,WRAP_SM>"),
    ("fixed<18,6>", "ufixed<8,4,RND_INF,SAT>"),
])
def test_signature_follows_formats(in_text, out_text, lanes):
    in_fmt, out_fmt = F(in_text), F(out_text)
    rq = Requantizer(in_fmt, out_fmt, lanes)
    members = rq.signature.members
    assert members["i"].signature.members["payload"].shape == data.ArrayLayout(lane_shape(in_fmt), lanes)
    assert members["o"].signature.members["payload"].shape == data.ArrayLayout(lane_shape(out_fmt), lanes)
    assert lane_shape(in_fmt) == (signed(in_fmt.width) if in_fmt.signed else unsigned(in_fmt.width))
    assert lane_shape(out_fmt).signed == out_fmt.signed
    Fragment.get(rq, None)  # elaborates for every lane count


@pytest.mark.parametrize(("args", "message"), [
    ((F("fixed<32,12>"), F("fixed<16,6>"), 0), "lanes must be a positive integer, not 0"),
    ((F("fixed<32,12>"), F("fixed<16,6>"), True), "lanes must be a positive integer, not True"),
    ((F("fixed<32,12>"), F("fixed<16,6>"), "4"), "lanes must be a positive integer, not '4'"),
    (("fixed<32,12>", F("fixed<16,6>"), 4), "in_fmt must be a QFmt, not 'fixed<32,12>'"),
    ((F("fixed<32,12>"), 16, 4), "out_fmt must be a QFmt, not 16"),
])
def test_bad_parameters_are_refused(args, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        Requantizer(*args)


def test_bundle_names_ports_by_member():
    bundle = Bundle({
        "a": Requantizer(F("fixed<8,4>"), F("fixed<4,2,RND,SAT>"), 2),
        "b": Requantizer(F("ufixed<8,4>"), F("fixed<6,2>"), 1),
    })
    text = verilog.convert(bundle, name="bundle")
    for port in ("a__i__valid", "a__o__payload", "b__i__ready", "b__o__valid", "clk", "rst"):
        assert f" {port};" in text or f" {port} " in text, port
    member = Requantizer(F("fixed<8,4>"), F("fixed<4,2>"), 1)
    with pytest.raises(ValueError, match="^member name must be an identifier without '__', not 'x__y'$"):
        Bundle({"x__y": member})
    Fragment.get(member, None)  # the member itself is fine


# ------------------------------------------------------------------------ lane logic, exhaustive


def _small_pair(rng: random.Random, rounding: str, overflow: str) -> tuple[QFmt, QFmt]:
    out_signed = overflow == "WRAP_SM" or rng.random() < 0.6
    src_width, dst_width = rng.randint(1, 7), rng.randint(1, 6)
    src = QFmt(src_width, rng.randint(-3, src_width + 3), rng.random() < 0.6)
    dst = QFmt(dst_width, rng.randint(-6, dst_width + 6), out_signed, rounding, overflow)
    return src, dst


def test_lane_logic_equals_golden_for_every_mode_exhaustively():
    """Every raw code of small random formats, for every rounding x overflow pair (Amaranth sim)."""
    rng = random.Random(2)
    pairs = [_small_pair(rng, q, o) for q in ROUNDING_MODES for o in OVERFLOW_MODES for _ in range(3)]
    pairs += [(dst, dst) for _, dst in pairs[::3]]  # the same type on both sides: a plain copy
    m = Module()
    probes = []
    for src, dst in pairs:
        x, y = Signal(lane_shape(src)), Signal(lane_shape(dst))
        m.d.comb += y.eq(requantize_lane(x, src, dst))
        probes.append((src, dst, x, y))
    got = {}

    async def bench(ctx):
        for src, dst, x, y in probes:
            codes = range(src.min_raw, src.max_raw + 1)
            values = []
            for code in codes:
                ctx.set(x, code)
                values.append(ctx.get(y))
            got[(src, dst)] = values

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for src, dst, _, _ in probes:
        codes = np.arange(src.min_raw, src.max_raw + 1)
        Scoreboard(f"{dst} <- {src}").check([dst.cast(codes, src).tolist()], [got[(src, dst)]])


def test_lane_logic_equals_golden_on_random_wide_formats():
    """40 random pairs up to 62-bit sources, on their boundary and random values (Amaranth sim)."""
    rng = random.Random(7)
    for _ in range(40):
        overflow = rng.choice(OVERFLOW_MODES)
        src_width, dst_width = rng.randint(1, 62), rng.randint(1, 32)
        src = QFmt(src_width, rng.randint(-8, src_width + 8), rng.random() < 0.6)
        dst = QFmt(dst_width, rng.randint(-8, dst_width + 8) + rng.choice([0, 0, -20, 20]),
                   overflow == "WRAP_SM" or rng.random() < 0.6, rng.choice(ROUNDING_MODES), overflow)
        values = requantize_vectors(src, dst, 400, seed=rng.randrange(1 << 30))
        m = Module()
        x, y = Signal(lane_shape(src)), Signal(lane_shape(dst))
        m.d.comb += y.eq(requantize_lane(x, src, dst))
        got = []

        async def bench(ctx):
            for value in values.tolist():
                ctx.set(x, value)
                got.append(ctx.get(y))

        sim = Simulator(m)
        sim.add_testbench(bench)
        sim.run()
        Scoreboard(f"{dst} <- {src}").check([dst.cast(values, src).tolist()], [got])


# ---------------------------------------------------------------- stream behaviour, Amaranth sim


def _amaranth_stream_run(rq: Requantizer, beats: np.ndarray, seed: int, stall_prob: float) -> list:
    rng = random.Random(seed)
    received = []

    async def producer(ctx):
        for beat in beats.tolist():
            while rng.random() < stall_prob:
                await ctx.tick()
            ctx.set(rq.i.valid, 1)
            for lane, value in enumerate(beat):
                ctx.set(rq.i.payload[lane], value)
            await ctx.tick().until(rq.i.ready)
            ctx.set(rq.i.valid, 0)

    async def consumer(ctx):
        while len(received) < len(beats):
            ready = rng.random() >= stall_prob
            ctx.set(rq.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(rq.o.valid, rq.o.payload)
            if ready and valid:
                received.append([int(payload[lane]) for lane in range(rq.lanes)])
        ctx.set(rq.o.ready, 0)
        for _ in range(8):  # nothing more may come out
            _, _, valid = await ctx.tick().sample(rq.o.valid)
            assert not valid

    sim = Simulator(rq)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return received


@pytest.mark.parametrize(("lanes", "in_text", "out_text"), [
    (1, "fixed<32,12>", "fixed<16,6,RND_CONV,SAT>"),
    (16, "fixed<20,10>", "fixed<10,4,RND_ZERO,WRAP_SM>"),
])
def test_stream_equals_golden_in_amaranth_sim(lanes, in_text, out_text):
    in_fmt, out_fmt = F(in_text), F(out_text)
    beats = beats_of(requantize_vectors(in_fmt, out_fmt, 320, seed=lanes), lanes)
    rq = Requantizer(in_fmt, out_fmt, lanes)
    received = _amaranth_stream_run(rq, beats, seed=lanes, stall_prob=0.3)
    Scoreboard(f"{out_fmt} <- {in_fmt}").check(out_fmt.cast(beats, in_fmt).tolist(), received)


# ----------------------------------------------------------------------- helpers of the harness


def test_vectors_hold_every_boundary():
    in_fmt, out_fmt = F("fixed<32,12>"), F("fixed<16,6,RND_CONV,SAT>")
    values = requantize_vectors(in_fmt, out_fmt, COSIM_VALUES, seed=0)
    assert len(values) == COSIM_VALUES and values.dtype == np.int64
    assert values.min() == in_fmt.min_raw and values.max() == in_fmt.max_raw
    drop = in_fmt.frac_bits - out_fmt.frac_bits
    tie = (out_fmt.max_raw << drop) + (1 << (drop - 1))
    just_over = (out_fmt.max_raw + 1) << drop
    assert {tie - 1, tie, tie + 1, just_over, (out_fmt.min_raw << drop) - 1} <= set(values.tolist())
    # The golden model sees overflow in both directions and exact ties on these vectors.
    golden = out_fmt.cast(values, in_fmt)
    assert (golden == out_fmt.max_raw).any() and (golden == out_fmt.min_raw).any()


def test_pack_and_unpack_lanes_round_trip():
    lanes = [-8, 7, 0, -1]
    packed = pack_lanes(lanes, 4, signed=True)
    assert packed == 0xF078  # lane k at bits 4k..4k+3: -8 -> 0x8, 7 -> 0x7, 0 -> 0x0, -1 -> 0xF
    assert unpack_lanes(packed, 4, 4, signed=True) == lanes
    assert unpack_lanes(packed, 4, 4, signed=False) == [8, 7, 0, 15]
    with pytest.raises(ValueError, match=r"^lane 1 must fit 4 signed bits \(-8\.\.7\), not 8$"):
        pack_lanes([0, 8], 4, signed=True)


def test_scoreboard_reports_first_mismatch_and_counts():
    board = Scoreboard("unit")
    board.check([[1, 2], [3, 4]], [[1, 2], [3, 4]])
    with pytest.raises(AssertionError, match=r"^unit: beat 1 differs at lane 1: got \[3, 5\], expected \[3, 4\]$"):
        board.check([[1, 2], [3, 4], [5, 6]], [[1, 2], [3, 5], [0, 0]])
    with pytest.raises(AssertionError, match="^unit: got 1 beats, expected 2$"):
        board.check([[1, 2], [3, 4]], [[1, 2]])
    with pytest.raises(AssertionError, match="^unit: got 3 beats, expected 2$"):
        board.check([[1, 2], [3, 4]], [[1, 2], [3, 4], [3, 4]])


def test_render_stamps_and_is_strict():
    text = requantize_config("rq_config", F("fixed<32,12>"), F("ufixed<8,3,RND,SAT>"), 4)
    assert text.splitlines()[0] == f"// {stamp()}"
    assert "typedef ap_ufixed<8, 3, AP_RND, AP_SAT> out_t;" in text
    assert "static const unsigned lanes = 4;" in text
    with pytest.raises(jinja2.UndefinedError):
        render("requantize_config.h.j2", name="x", lanes=1)
    with pytest.raises(ValueError, match="^template name must end in .j2, not 'requantize.h'$"):
        render("requantize.h")


def test_kernel_descriptions_are_validated():
    fmt = F("fixed<8,4>")
    with pytest.raises(ValueError, match="^kernel name must be a C identifier, not 'a b'$"):
        requantize_kernel("a b", fmt, fmt, 2)
    with pytest.raises(ValueError, match="^port in size must be a positive integer, not 0$"):
        requantize_kernel("k", fmt, fmt, 0)
    with pytest.raises(ValueError, match="^kernel k port names must be unique, not \\['x', 'x'\\]$"):
        Kernel("k", "", "f(x)", (KernelPort("x", fmt, 1),), (KernelPort("x", fmt, 1),))


# ------------------------------------------------------------------------------- cosim: shared


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory):
    """name -> (in_fmt, out_fmt, beats, .npy path) for every combination, written once."""
    folder = tmp_path_factory.mktemp("requantize_vectors")
    files = {}
    for index, (name, in_text, out_text) in enumerate(COMBOS + [FULL_RATE]):
        in_fmt, out_fmt = F(in_text), F(out_text)
        beats = beats_of(requantize_vectors(in_fmt, out_fmt, COSIM_VALUES, seed=100 + index), COSIM_LANES)
        path = folder / f"{name}.npy"
        np.save(path, beats)
        files[name] = (in_fmt, out_fmt, beats, path)
    return files


def _bundle_verilog() -> str:
    members = {name: Requantizer(F(i), F(o), COSIM_LANES) for name, i, o in COMBOS + [FULL_RATE]}
    return verilog.convert(Bundle(members), name="requantizers")


def _bench_plan(path, units: dict, seed: int = 1) -> str:
    plan = {"seed": seed, "latency": Requantizer.latency, "units": []}
    for name, (in_fmt, out_fmt, _, vectors) in units.items():
        stalls = 0.0 if name == FULL_RATE[0] else STALL_PROB
        plan["units"].append({
            "name": name, "input": f"{name}__i", "output": f"{name}__o", "lanes": COSIM_LANES,
            "in_fmt": str(in_fmt), "out_fmt": str(out_fmt), "vectors": str(vectors),
            "idle_prob": stalls, "backpressure_prob": stalls, "full_rate": stalls == 0.0,
        })
    path.write_text(json.dumps(plan, indent=1))
    return str(path)


# ------------------------------------------------------------------------ cosim: Verilator


@pytest.mark.cosim
def test_verilator_equals_golden_under_stalls(vector_files, tmp_path):
    """13 combinations x 10,240 values with random idle and backpressure, plus one at full rate."""
    assert len(COMBOS) >= 12
    plan = _bench_plan(tmp_path / "plan.json", vector_files)
    toolchain.run_cocotb(
        _bundle_verilog(), "requantizers", "hwgen.cosim.tb_requantize",
        work_dir=tmp_path / "sim", extra_env={"HWGEN_TB_REQUANTIZE": plan}, build_args=BUILD_ARGS,
    )


@pytest.mark.cosim
def test_verilator_check_catches_a_corrupted_expectation(vector_files, tmp_path):
    name = COMBOS[3][0]
    plan = _bench_plan(tmp_path / "plan.json", {name: vector_files[name]})
    with pytest.raises(toolchain.ToolError, match="requantizers_match_golden"):
        toolchain.run_cocotb(
            _bundle_verilog(), "requantizers", "hwgen.cosim.tb_requantize",
            work_dir=tmp_path / "sim", testcase="requantizers_match_golden", build_args=BUILD_ARGS,
            extra_env={"HWGEN_TB_REQUANTIZE": plan, "HWGEN_TB_REQUANTIZE_CORRUPT": f"{name}:1234"},
        )


# ------------------------------------------------------------------------------ cosim: g++


@pytest.mark.cosim
def test_csim_equals_golden(vector_files):
    kernels = [requantize_kernel(name, i, o, COSIM_LANES) for name, (i, o, _, _) in vector_files.items()]
    csim = CSim(kernels)
    for name, (in_fmt, out_fmt, beats, _) in vector_files.items():
        got = csim.run(name, {"in": beats})["out"]
        assert got.dtype == np.int64 and got.shape == beats.shape
        Scoreboard(name).check(out_fmt.cast(beats, in_fmt), got)


@pytest.mark.cosim
def test_csim_comparison_catches_a_corrupted_expectation(vector_files):
    name = COMBOS[4][0]
    in_fmt, out_fmt, beats, _ = vector_files[name]
    got = csimulate(requantize_kernel(name, in_fmt, out_fmt, COSIM_LANES), {"in": beats})["out"]
    expected = out_fmt.cast(beats, in_fmt)
    Scoreboard(name).check(expected, got)
    expected[777, 2] ^= 1
    with pytest.raises(AssertionError, match=f"^{name}: beat 777 differs at lane 2"):
        Scoreboard(name).check(expected, got)
    with pytest.raises(ValueError, match="^input in raw values must lie in"):
        csimulate(requantize_kernel(name, in_fmt, out_fmt, COSIM_LANES), {"in": beats * 0 + in_fmt.max_raw + 1})
