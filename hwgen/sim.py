# SPDX-License-Identifier: Apache-2.0
"""``hwgen sim``: run a built folder's Program on one backend and compare with ``golden.npz``.

The expected image is ``memory.bin`` with every input, activation and output region holding the
golden model's codes from ``golden.npz``; a backend passes only when its image after the run equals
it — intermediates and row padding included, so equal bytes mean equal int64 codes everywhere.

- ``isa``: :func:`hwgen.compiler.isa_sim` (NumPy); cycles are its analytical estimate.
- ``rtl``: the folder's ``rtl/hwgen_accel.v`` in Verilator under the cocotb bench
  :mod:`hwgen.cosim.tb_accelerator`, beside the Verilog AXI memory of :mod:`hwgen.cosim.hdl_memory`
  (DDR-like latency, no Python per clock cycle); cycles are the core's CYCLES register.
- ``hls``: the folder's ``hls/hwgen_accel.cpp`` and C testbench ``hls/tb.cpp`` compiled with g++
  against ap_types and run on ``memory.bin`` — the program Vitis HLS's ``csim_design`` runs; C
  simulation has no clock, so the cycles shown are the analytical estimate.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hwgen.compiler import MemoryImage, Program, isa_sim
from hwgen.compiler.layout import RegionKind, with_scratch
from hwgen.hwparams import HwParams

__all__ = ["BACKENDS", "BuiltFolder", "SimResult", "golden_file", "load_folder", "run_rtl", "simulate"]

log = logging.getLogger(__name__)

#: Executors ``hwgen sim`` can run a folder's Program on.
BACKENDS = ("isa", "rtl", "hls")
_ACTIVATIONS = ("input", "activation", "output")


def golden_file(task: int) -> str:
    """The name of a built folder's golden codes for ``task``: ``golden.npz`` for task 0, else ``golden_task<N>.npz``."""
    return "golden.npz" if task == 0 else f"golden_task{task}.npz"


@dataclass(frozen=True)
class BuiltFolder:
    """A folder ``hwgen build`` wrote, read back: parameters, Program, image and golden codes."""

    path: Path
    config: dict
    hw: HwParams
    program: Program
    image: MemoryImage
    golden: dict[str, np.ndarray]
    task: int = 0  # the TASK register of the run (a multi-task MoE model); ``golden`` is that task's

    def expected(self) -> bytes:
        """The image after a correct run: the golden codes in every tensor, and in a scratch region
        (attention scores and statistics, MoE lists and counts) what isa_sim leaves there."""
        want = self.image.with_values(self.golden).data
        if any(region.kind is RegionKind.SCRATCH for region in self.image.regions):
            want = with_scratch(want, isa_sim(self.program, self.image, self.hw, task=self.task).data,
                                self.image.regions)
        return want


@dataclass(frozen=True)
class SimResult:
    """One backend's run: equal to golden or not, the cycles and where they come from."""

    backend: str
    equal: bool
    cycles: int
    cycles_source: str
    analytical_cycles: int
    mismatches: tuple[str, ...] = field(default=())
    detail: str = ""

    def to_dict(self) -> dict:
        """The result as plain data (for ``--json``)."""
        return {"backend": self.backend, "equal": self.equal, "cycles": self.cycles,
                "cycles_source": self.cycles_source, "analytical_cycles": self.analytical_cycles,
                "mismatches": list(self.mismatches), "detail": self.detail}


def golden_file(task: int) -> str:
    """The name of a built folder's golden codes for ``task``: ``golden.npz`` for task 0, else ``golden_task<N>.npz``."""
    return "golden.npz" if task == 0 else f"golden_task{task}.npz"


def load_folder(folder: str | Path, task: int = 0) -> BuiltFolder:
    """Read a built folder, with the golden codes of ``task`` (``golden.npz``, or ``golden_task<N>.npz`` of a
    multi-task model); a folder that is not one (or is damaged) is a one-line ``ValueError``."""
    path = Path(folder)
    if not (path / "hwgen.yaml").is_file():
        raise ValueError(f"folder must be one hwgen build wrote (with hwgen.yaml), not {str(folder)!r}")
    if isinstance(task, bool) or not isinstance(task, int) or task < 0:
        raise ValueError(f"task must be a non-negative integer, not {task!r}")
    if task and not (path / golden_file(task)).is_file():
        tasks = 1 + sum(1 for _ in path.glob("golden_task*.npz"))
        raise ValueError(f"task must be in 0..{tasks - 1} for this build, not {task}")
    try:
        config = yaml.safe_load((path / "hwgen.yaml").read_text(encoding="utf-8"))
        hw = HwParams.from_dict(dict(config["accelerator"]))
        program = Program.load(path / "program.bin")
        image = MemoryImage.load(path)
        with np.load(path / golden_file(task), allow_pickle=False) as archive:
            golden = {name: archive[name].astype(np.int64) for name in archive.files}
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"folder {str(folder)!r} must be a complete hwgen build, not damaged: {reason}") from None
    for region in image.regions:
        if region.kind in _ACTIVATIONS:
            if region.name not in golden:
                raise ValueError(f"golden.npz must hold tensor {region.name!r}, but it does not")
            if golden[region.name].shape != region.shape:
                raise ValueError(f"golden.npz tensor {region.name!r} must have shape {region.shape}, "
                                 f"not {golden[region.name].shape}")
    return BuiltFolder(path, config, hw, program, image, golden, task)


def _mismatches(built: BuiltFolder, after: bytes) -> list[str]:
    """Per tensor that differs from golden: its name, count and first differing element."""
    got = built.image.with_data(after)
    problems = []
    for region in built.image.regions:
        if region.kind not in _ACTIVATIONS:
            continue
        have, want = got.read(region.name), built.golden[region.name]
        bad = np.argwhere(have != want)
        if bad.size:
            at = tuple(int(i) for i in bad[0])
            problems.append(f"{region.name}: {len(bad)} of {want.size} codes differ, first [{', '.join(map(str, at))}] "
                            f"is {int(have[at])}, golden {int(want[at])}")
    if not problems and after != built.expected():
        problems.append("bytes outside the tensors (row padding or constants) differ from the image the build wrote")
    return problems


def run_rtl(verilog: str, hw: HwParams, image: MemoryImage, expected: bytes, work_dir: Path) -> dict:
    """Run ``image`` on the Verilog core in Verilator; ``{"equal", "cycles", "stalls", "detail"}``."""
    from hwgen import toolchain
    from hwgen.cosim import tb_accelerator as bench

    env = bench.prepare(work_dir, hw, [bench.Run(image.data, expected, image.regions, label="build")])
    # The core beside the HDL AXI memory: no Python runs per clock cycle.
    source, toplevel, build_args = bench.bench_verilog(hw, "hdl", verilog, "hwgen_accel")
    try:
        toolchain.run_cocotb(source, toplevel, "hwgen.cosim.tb_accelerator", work_dir=work_dir, extra_env=env,
                             build_args=build_args)
    except toolchain.ToolError as exc:
        lines = str(exc).splitlines()
        # The bench's assertion names the first differing element; its reference is our golden image.
        failure = next((line.split("AssertionError:", 1)[1] for line in lines if "AssertionError:" in line), None)
        if failure is not None:
            detail = failure.strip().removeprefix("build: ").replace(", isa_sim ", ", golden ")
        else:
            detail = lines[0] if lines else "the cocotb bench failed"
        results = bench.read_results(work_dir) if (work_dir / "result.json").exists() else []
        cycles = results[0]["cycles"] if results else 0
        return {"equal": False, "cycles": cycles, "stalls": results[0]["stalls"] if results else 0, "detail": detail}
    (result,) = bench.read_results(work_dir)
    return {"equal": True, "cycles": result["cycles"], "stalls": result["stalls"], "detail": ""}


def _run_hls(built: BuiltFolder, work_dir: Path) -> tuple[bytes, bool, str]:
    """Compile and run the folder's C testbench: (image after the run, its own verdict, its last line)."""
    from hwgen import toolchain

    hls = built.path / "hls"
    sources = [hls / "hwgen_accel.cpp", hls / "tb.cpp"]
    missing = [str(p.relative_to(built.path)) for p in sources if not p.is_file()]
    if missing:
        raise ValueError(f"folder must hold {' and '.join(missing)} for the hls backend (built with --flow hls or "
                         "both), but it does not")
    # One translation unit of the top and the testbench, as csim_design links them.
    source = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    binary = toolchain.compile_cpp(source, includes=[hls.absolute()], name="hwgen_hls_tb")
    after = work_dir / "after.bin"
    try:
        # The task is the testbench's third argument (the top's `task` scalar).
        out = toolchain.run_cpp(binary, [(built.path / "memory.bin").absolute(), after, str(built.task)], cwd=work_dir)
        passed, detail = True, out.decode(errors="replace").strip().splitlines()[-1]
    except toolchain.ToolError as exc:
        passed, detail = False, " ".join(str(exc).split())
    if not after.is_file():
        raise toolchain.ToolError(f"the HLS testbench wrote no image: {detail}")
    return after.read_bytes(), passed, detail


def simulate(folder: str | Path | BuiltFolder, backend: str = "isa", *, work_dir: str | Path | None = None) -> SimResult:
    """Run the folder's Program on ``backend`` (one of :data:`BACKENDS`) and compare with golden."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    built = folder if isinstance(folder, BuiltFolder) else load_folder(folder)
    log.info("running %s (%s) on the %s backend%s", built.path, built.hw, backend,
             f", task {built.task}" if built.task else "")
    reference = isa_sim(built.program, built.image, built.hw, task=built.task)
    analytical = reference.total_cycles
    if backend == "isa":
        problems = _mismatches(built, reference.data)
        return SimResult("isa", not problems, analytical, "analytical (isa_sim)", analytical, tuple(problems))

    with tempfile.TemporaryDirectory(prefix=f"hwgen-sim-{backend}-") as scratch:
        work = Path(work_dir) if work_dir is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if backend == "rtl":
            verilog_path = built.path / "rtl" / "hwgen_accel.v"
            if not verilog_path.is_file():
                raise ValueError("folder must hold rtl/hwgen_accel.v for the rtl backend (built with --flow rtl or "
                                 "both), but it does not")
            if built.task:
                raise ValueError(f"task must be 0 on the rtl backend (the RTL core has no MoE engine), not {built.task}")
            outcome = run_rtl(verilog_path.read_text(encoding="utf-8"), built.hw, built.image, built.expected(), work)
            problems = () if outcome["equal"] else (outcome["detail"],)
            return SimResult("rtl", outcome["equal"], outcome["cycles"], "measured in Verilator (CYCLES register)",
                             analytical, problems)
        after, passed, detail = _run_hls(built, work)
        problems = _mismatches(built, after) + ([] if passed else [f"the C testbench failed: {detail}"])
        return SimResult("hls", not problems, analytical, "analytical (C simulation has no clock)", analytical,
                         tuple(problems), detail)
