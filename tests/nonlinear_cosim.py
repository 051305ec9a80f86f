# SPDX-License-Identifier: Apache-2.0
"""The element-wise nonlinear units (exp, reciprocal, rsqrt, GELU) run three ways: RTL in Verilator,
HLS in g++, both compared with the golden model as int64 raw values.

Every configuration of every unit sits in one :class:`~hwgen.cosim.bundle.Bundle`, so the four
test modules share a single Verilator build (building costs ~30 s, simulating a unit seconds);
each module's test drives only its own units.  Sweeps are exhaustive for inputs of at most
16 bits and 100,000 random values plus every edge code otherwise.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from hwgen import toolchain
from hwgen.cosim.bundle import Bundle
from hwgen.golden import nonlinear as nl
from hwgen.hls import CSim
from hwgen.qfx import QFmt
from nonlinear_vectors import unary_inputs

STALL_PROB = 0.3
BUNDLE_NAME = "nonlinear_unary_bundle"
F = QFmt.parse


@dataclass
class UnaryCase:
    """One unit configuration in the bundle: its name, config, lanes and raw input values."""

    name: str
    cfg: object
    lanes: int
    values: np.ndarray
    full_rate: bool = False

    def beats(self) -> np.ndarray:
        """The values as (beats, lanes), padded with the first values to whole beats."""
        values = np.asarray(self.values, dtype=np.int64)
        pad = (-len(values)) % self.lanes
        return np.concatenate([values, values[:pad]]).reshape(-1, self.lanes)


def _sweep(name, cfg, lanes, seed, focus=None):
    return UnaryCase(name, cfg, lanes, unary_inputs(cfg.in_fmt, seed, focus=focus))


def _full_rate(name, cfg):
    """A one-lane case run with no idle and no backpressure, to measure throughput."""
    rng = np.random.default_rng(99)
    return UnaryCase(name, cfg, 1, rng.integers(cfg.in_fmt.min_raw, cfg.in_fmt.max_raw, 2000, endpoint=True),
                     full_rate=True)


@functools.cache
def unary_cases() -> dict[str, tuple[UnaryCase, ...]]:
    """Configurations per function: 8-, 16- and 32-bit formats, a variant, a full-rate run."""
    exp = nl.ExpConfig.for_formats
    recip = nl.ReciprocalConfig.for_formats
    rsqrt = nl.RsqrtConfig.for_formats
    table = nl.GeluTableConfig
    poly = nl.GeluPolyConfig.for_formats
    return {
        "exp": (
            _sweep("exp8", exp(F("fixed<8,3>"), F("ufixed<8,1,RND,SAT>")), 2, 1),
            _sweep("exp8_table_only", exp(F("fixed<8,3>"), F("ufixed<8,1,RND,SAT>"), interpolate=False), 2, 2),
            _sweep("exp16", exp(F("fixed<16,6>"), F("ufixed<16,1,RND,SAT>")), 4, 3),
            _sweep("exp32", exp(F("fixed<32,10>"), F("fixed<32,10,RND,SAT>")), 4, 5, focus=(-20.0, 0.0)),
            _full_rate("exp_full_rate", exp(F("fixed<16,6>"), F("ufixed<16,1,RND,SAT>"))),
        ),
        "reciprocal": (
            _sweep("recip8", recip(F("ufixed<8,4>"), F("ufixed<8,4,RND,SAT>")), 2, 11),
            _sweep("recip16_signed", recip(F("fixed<16,6>"), F("fixed<16,6,RND,SAT>")), 4, 13),
            _sweep("recip32", recip(F("fixed<32,10>"), F("fixed<32,10,RND,SAT>")), 4, 14),
            _full_rate("recip_full_rate", recip(F("fixed<16,6>"), F("fixed<16,6,RND,SAT>"))),
        ),
        "rsqrt": (
            _sweep("rsqrt8", rsqrt(F("ufixed<8,4>"), F("ufixed<8,4,RND,SAT>")), 2, 21),
            _sweep("rsqrt16_signed", rsqrt(F("fixed<16,6>"), F("ufixed<16,6,RND,SAT>")), 4, 23),
            _sweep("rsqrt32", rsqrt(F("fixed<32,10>"), F("fixed<32,10,RND,SAT>")), 4, 24),
            _full_rate("rsqrt_full_rate", rsqrt(F("ufixed<16,8>"), F("ufixed<16,4,RND,SAT>"))),
        ),
        "gelu": (
            _sweep("gelu8_table", table(F("fixed<8,3>"), F("fixed<8,3,RND,SAT>")), 2, 31),
            _sweep("gelu8_poly", poly(F("fixed<8,3>"), F("fixed<8,3>")), 2, 32),
            _sweep("gelu16_table", table(F("fixed<16,6>"), F("fixed<16,6,RND,SAT>")), 4, 33),
            _sweep("gelu16_poly", poly(F("fixed<16,3>"), F("fixed<16,3>")), 4, 34),
            _sweep("gelu32_edge_moe", table(F("fixed<32,10>"), F("fixed<32,10>")), 4, 35, focus=(-8.0, 8.0)),
            _sweep("gelu32_poly", poly(F("fixed<32,10>"), F("fixed<32,10>")), 4, 36, focus=(-8.0, 8.0)),
            _full_rate("gelu_full_rate", poly(F("fixed<16,6>"), F("fixed<16,6,RND,SAT>"))),
        ),
    }


GOLDEN = {"exp": nl.exp, "reciprocal": nl.reciprocal, "rsqrt": nl.rsqrt, "gelu": nl.gelu}


def _components():
    from hwgen.rtl.exp import Exp
    from hwgen.rtl.gelu import Gelu
    from hwgen.rtl.reciprocal import Reciprocal
    from hwgen.rtl.rsqrt import Rsqrt

    return {"exp": Exp, "reciprocal": Reciprocal, "rsqrt": Rsqrt, "gelu": Gelu}


@functools.cache
def unary_bundle() -> tuple[str, dict]:
    """(Verilog of the bundle of every case, latency per case name)."""
    components = _components()
    members = {case.name: components[function](case.cfg, case.lanes)
               for function, cases in unary_cases().items() for case in cases}
    latencies = {name: member.latency for name, member in members.items()}
    return verilog.convert(Bundle(members), name=BUNDLE_NAME), latencies


def run_rtl(tmp_path: Path, function: str, seed: int = 1, only: tuple[str, ...] | None = None,
            corrupt: str | None = None) -> None:
    """Run ``hwgen.cosim.tb_unary`` on the bundle, driving ``function``'s units (or the ``only``
    ones); raises :class:`~hwgen.toolchain.ToolError` if any of them differs from the golden model.
    ``corrupt="<unit>:<beat>"`` flips one expected LSB (to prove the check can fail)."""
    source, latencies = unary_bundle()
    tmp_path.mkdir(parents=True, exist_ok=True)
    units = []
    for case in unary_cases()[function]:
        if only is not None and case.name not in only:
            continue
        path = tmp_path / f"{case.name}.npy"
        np.save(path, case.beats())
        stall = 0.0 if case.full_rate else STALL_PROB
        units.append({
            "name": case.name, "function": function, "config": nl.config_to_dict(case.cfg),
            "lanes": case.lanes, "latency": latencies[case.name], "vectors": str(path),
            "idle_prob": stall, "backpressure_prob": stall, "full_rate": case.full_rate,
        })
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"seed": seed, "units": units}))
    env = {"HWGEN_TB_UNARY": str(plan)}
    if corrupt:
        env["HWGEN_TB_UNARY_CORRUPT"] = corrupt
    toolchain.run_cocotb(source, BUNDLE_NAME, "hwgen.cosim.tb_unary", work_dir=tmp_path / "sim", extra_env=env)


def run_hls(function: str) -> None:
    """C-simulate every case of ``function`` in one g++ binary; assert exact equality with golden."""
    from hwgen.hls import nonlinear as hls

    factory = {"exp": hls.exp_kernel, "reciprocal": hls.reciprocal_kernel, "rsqrt": hls.rsqrt_kernel,
               "gelu": hls.gelu_kernel}[function]
    cases = unary_cases()[function]
    sim = CSim([factory(case.name, case.cfg, case.lanes) for case in cases])
    for case in cases:
        beats = case.beats()
        got = sim.run(case.name, {"in": beats})["out"]
        want = GOLDEN[function](case.cfg, beats)
        mismatch = np.argwhere(got != want)
        assert not len(mismatch), (
            f"{case.name}: C-sim differs from golden at {len(mismatch)} values, first at input "
            f"{beats[tuple(mismatch[0])]}: got {got[tuple(mismatch[0])]}, expected {want[tuple(mismatch[0])]}"
        )
