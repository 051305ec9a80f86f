# SPDX-License-Identifier: Apache-2.0
"""``hwgen build``: one model and one board to a self-contained folder (docs/build.md).

:func:`plan_build` does all the work in memory — compile the model for the board's accelerator,
pick seeded test inputs, run the golden model and check ``isa_sim`` against it, emit the RTL
(Amaranth → Verilog) and the HLS sources with a C testbench, estimate resources with Yosys
``synth_xilinx`` and hold them against the board budget, optionally measure cycles in Verilator,
render the Vivado / Vitis HLS project, the host driver and the report — and returns a
:class:`~hwgen.project.BuildPlan`. :func:`build_project` refuses a design over budget (unless
``force``) before anything is written, then writes the plan atomically. The same inputs give
byte-identical folders: nothing records a time, an absolute path or the host.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hwgen import __version__, golden, stamp, zoo
from hwgen.board import BUDGET_KEYS, Board, load_board
from hwgen.compiler import Flag, MemoryImage, RowDescriptor, isa_sim
from hwgen.isa import OPCODE_QK_SOFTMAX_STATS, AttentionDescriptor, ExpertFfnDescriptor, GateTopkDescriptor
from hwgen.compiler.layout import RegionKind, tensor_rows, with_scratch
from hwgen.golden.moe import graph_tasks
from hwgen.sim import golden_file
from hwgen.hls.accelerator import TOP_NAME, TOP_SOURCE, accelerator_sources
from hwgen.hls.emit import render as render_hls
from hwgen.hwparams import HwParams
from hwgen.ir.serialize import npz_bytes
from hwgen.project import RTL_PATH, BuildPlan, HlsDesign, add_board_project
from hwgen.sim import golden_file
from hwgen.quant import QuantConfig
from hwgen.units import core_for, moe_problem

__all__ = [
    "DEFAULT_MODEL",
    "FLOWS",
    "TEST_INPUT_SEED",
    "BudgetError",
    "BuildResult",
    "parse_lanes",
    "accelerator_verilog",
    "golden_npz",
    "Compiled",
    "compile_for",
    "plan_build",
    "build_project",
]

log = logging.getLogger(__name__)

#: The model ``hwgen build`` compiles when none is named: the most representative zoo model the
#: accelerator runs today, a ViT encoder's MLP half at DeiT-tiny size (LayerNorm, Linear, GELU,
#: Linear, residual; 129 tokens × 192). Becomes a whole ViT block when attention lands.
DEFAULT_MODEL = "vit-mlp-block"
#: What a build emits: the Amaranth RTL, the HLS C++, or both (each with its Vivado project).
FLOWS = ("rtl", "hls", "both")
#: Seed of the test inputs in memory.bin / golden.npz; calibration uses seeds ``1000·s + i``
#: (QuantConfig.seed = 0, i < calibration_samples), so the test inputs are never calibration inputs.
TEST_INPUT_SEED = 7357
#: Version of the folder's layout (hwgen.yaml ``hwgen_build``, report.json ``hwgen_report``).
BUILD_FORMAT = 1
#: The Vitis HLS design of every build: the top, the testbench, and the image the testbench reads.
HLS_DESIGN = HlsDesign(
    top=TOP_NAME,
    sources=(TOP_SOURCE,),
    testbench=("tb.cpp",),
    tb_data=("../memory.bin",),
    cflags=("-I.",),
    csim_argv=("../memory.bin",),
)

Progress = Callable[[str], None]


class BudgetError(ValueError):
    """The design does not fit the board's resource budget (``force`` writes it anyway)."""


@dataclass(frozen=True)
class BuildResult:
    """A written build: where, its report (the content of report.json) and the plan it came from."""

    out: Path
    report: dict
    plan: BuildPlan


def parse_lanes(text: str) -> tuple[int, int]:
    """``"16x16"`` → ``(16, 16)``: lanes_in × lanes_out of the compute array."""
    match = re.fullmatch(r"([1-9][0-9]{0,3})[xX]([1-9][0-9]{0,3})", str(text).strip())
    if not match:
        raise ValueError(f"lanes must be INxOUT with positive integers, e.g. 16x16, not {text!r}")
    return int(match.group(1)), int(match.group(2))


# ------------------------------------------------------------------------------------------ pieces


def accelerator_verilog(hw: HwParams) -> str:
    """Verilog of ``Accelerator(hw)`` as module ``hwgen_accel``, stamped (:func:`hwgen.rtl.accelerator.core_verilog`)."""
    from hwgen.rtl.accelerator import core_verilog

    return core_verilog(hw)


def golden_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` of int64 arrays, sorted by name, that is byte-identical for the same arrays."""
    return npz_bytes({name: np.asarray(arrays[name], dtype="<i8") for name in sorted(arrays)})


def _check_out(out: Path, force: bool) -> None:
    """Refuse an ``out`` that :meth:`BuildPlan.write` would refuse, before any expensive step."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise ValueError(f"out must be a folder, not the file {out}")
        if any(out.iterdir()) and not force:
            raise ValueError(f"out folder {out} must be empty (or use --force to replace it), not holding files")
        return
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"out folder {out} must be in a writable folder, not under the file {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out folder {out} must be in a writable folder, not in {parent}")


#: Lanes ``--trim-units`` may widen to: each a multiple of the other (the RTL core's rule), at most this many.
_LANE_CHOICES = (4, 8, 12, 16, 20, 24, 32, 40, 48, 64)
#: Wider geometries ``--trim-units`` estimates with Yosys before it keeps the board's lanes.
_TRIM_TRIES = 3


def _spend_on_lanes(board: Board, model, hw: HwParams, compiled: Compiled, *, lanes_given: bool, rtl: bool,
                    round_scales: bool, calibration) -> tuple[HwParams, Compiled, dict]:
    """``--trim-units``: the trimmed core at the widest lanes that fit the board and run the model faster.

    Candidates have more MACs than ``hw``, at most the board's DSPs (one per MAC), pass the RTL core's geometry
    rule and run the model in fewer analytical cycles; from the most MACs down, fastest first, at most
    :data:`_TRIM_TRIES` of them are estimated with Yosys, and the first under every budget wins. Lanes the user gave, or an HLS-only build
    (no resource estimate), keep ``hw``. Returns the core, its compiled model and the report's ``trim`` section:
    the board's default core and the trimmed one, resources and analytical cycles.
    """
    from hwgen import toolchain
    from hwgen.rtl.geometry import Geometry

    def estimate(core: HwParams) -> dict | None:
        return toolchain.yosys_resources(accelerator_verilog(core), "hwgen_accel", family=board.family) if rtl else None

    default = board.hw_params()
    default_compiled = compile_for(model, default, round_scales=round_scales, calibration=calibration)
    chosen, chosen_compiled, reason = hw, compiled, None
    if lanes_given:
        reason = "lanes given with --lanes"
    elif not rtl:
        reason = "an HLS-only build has no resource estimate to widen the lanes by"
    else:
        candidates = [dataclasses.replace(hw, lanes_in=li, lanes_out=lo) for li in _LANE_CHOICES for lo in _LANE_CHOICES
                      if hw.macs_per_cycle < li * lo <= board.budget["DSP"] and max(li, lo) % min(li, lo) == 0]
        candidates = [core for core in candidates if Geometry.problem(core) is None]
        reason = "no wider lanes pass the core's geometry rule and the board's DSPs"
        tries = 0
        for macs in sorted({core.macs_per_cycle for core in candidates}, reverse=True):
            runs = []  # the geometries of this many MACs that run the model faster, fastest first
            for core in (c for c in candidates if c.macs_per_cycle == macs):
                try:
                    attempt = compile_for(model, core, round_scales=round_scales, calibration=calibration)
                except ValueError as exc:  # a layer that no longer fits the buffers at these lanes
                    log.info("--trim-units: %dx%d lanes cannot run the model: %s", core.lanes_in, core.lanes_out, exc)
                    continue
                if attempt.reference.total_cycles < compiled.reference.total_cycles:
                    runs.append((attempt.reference.total_cycles, core.lanes_in, core, attempt))
            for _, _, core, attempt in sorted(runs, key=lambda run: run[:2]):
                if tries == _TRIM_TRIES:
                    break
                tries += 1
                if not _overruns(estimate(core), board.budget):
                    chosen, chosen_compiled, reason = core, attempt, None
                    break
                reason = f"the widest faster lanes ({core.lanes_in}x{core.lanes_out}) are over the board's budget"
            if chosen is not hw or tries == _TRIM_TRIES:
                break

    def row(core: HwParams, run: Compiled) -> dict:
        used = estimate(core)
        return {"lanes": f"{core.lanes_in}x{core.lanes_out}", "has_row_units": core.has_row_units,
                "resources": None if used is None else {k: used[k] for k in BUDGET_KEYS},
                "cycles": run.reference.total_cycles}

    trim = {"default": row(default, default_compiled), "trimmed": row(chosen, chosen_compiled),
            "widened": chosen is not hw, "why_not_widened": reason}
    return chosen, chosen_compiled, trim


def _overruns(used: dict[str, int], budget: dict[str, int]) -> list[str]:
    return [f"{key} {used[key]:,} of {budget[key]:,} (+{used[key] - budget[key]:,})"
            for key in BUDGET_KEYS if used[key] > budget[key]]


def _percent(used: int, budget: int) -> float | None:
    return round(100.0 * used / budget, 1) if budget else None


def _tensor_role(graph, name: str) -> str:
    tensor = graph.tensor(name)
    if tensor.is_constant:
        return "bias" if name.endswith(".bias") else "weight"
    if name in graph.inputs:
        return "input"
    if name in graph.outputs:
        return "output"
    producer = graph.producer(name)
    return "exact" if producer is not None and producer.op in ("Linear", "MatMul", "Add") else "activation"


def _float_or_none(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else round(value, 6)


def _c_bytes(data: bytes) -> list[str]:
    return [", ".join(str(b) for b in data[i:i + 24]) + "," for i in range(0, len(data), 24)]


def _tb_expected(model_name: str, image: MemoryImage, values: dict[str, np.ndarray], descriptors: int, hw,
                 task: int = 0) -> str:
    """``tb_expected.h``: the golden output regions; on a core with the MoE engine also the ``task`` they are of."""
    regions = []
    for r in image.regions:
        if r.kind != RegionKind.OUTPUT:
            continue
        # The rows as they lie in DDR (a feature map's are its pixels, channels-last: docs/isa.md §4).
        matrix = tensor_rows(values[r.name], r.layout, r.pad)  # a bordered map's border: zeros
        rows, cols = matrix.shape
        data = np.ascontiguousarray(matrix, dtype=f"<{'i' if r.fmt.signed else 'u'}{r.container_bits // 8}").tobytes()
        regions.append({
            "name": r.name, "format": r.format, "shape": "x".join(map(str, r.shape)), "offset": r.offset,
            "rows": rows, "cols": cols, "row_stride": r.row_stride, "signed": r.fmt.signed,
            "nbytes": len(data), "lines": _c_bytes(data),
        })
    return render_hls("accelerator_tb_expected.h.j2", model=model_name, description=str(hw), regions=regions,
                      image_bytes=len(image.data), descriptors=descriptors,
                      task=task if moe_problem(hw) is None else None)


# ------------------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Compiled:
    """A model compiled for one accelerator, with its test inputs written and its golden run checked."""

    qgraph: object
    config: QuantConfig
    hw: HwParams  # the core the model needs (hwgen.units.core_for the board's)
    program: object
    image: MemoryImage  # inputs written
    values: dict  # every tensor's golden int64 codes
    expected: bytes  # the image after a correct run
    reference: object  # isa_sim's IsaResult (equal to ``expected``)
    accuracy: list
    macs: int
    notes: tuple = ()  # what the front end changed on request (rounded QONNX scales)
    calibration: str = "seeded random inputs"  # what the formats were calibrated on
    #: for an ONNX model: the outputs' accuracy against onnxruntime's float32 run (list of TensorAccuracy),
    #: or why it was not computed (str); None for other models
    onnxruntime: list | str | None = None
    #: accuracy of the residual stream (every Add's output, in graph order: a ViT's two per block)
    residuals: list = dataclasses.field(default_factory=list)
    #: a multi-task (MoE) model's other tasks: every tensor's golden codes for task 1, 2, … (task 0 is ``values``)
    task_values: dict = dataclasses.field(default_factory=dict)

    def golden(self, task: int = 0) -> dict[str, np.ndarray]:
        """What golden.npz (``golden_task<N>.npz`` for task N ≥ 1) holds: the codes of every tensor that has
        a region in the image, for that task."""
        values = self.task_values[task] if task else self.values
        return {r.name: values[r.name] for r in self.image.regions if r.kind.holds_tensor}

    def files(self) -> dict[str, bytes]:
        """The folder's program.bin/.txt, memory.bin/.json, golden.npz (and golden_task<N>.npz of other tasks)."""
        files = {
            "memory.bin": self.image.data,
            "memory.json": (json.dumps(self.image.layout(), indent=1) + "\n").encode(),
            "program.bin": self.program.to_bytes(),
            "program.txt": self.program.listing(self.image.labels).encode(),
            "golden.npz": golden_npz(self.golden()),
        }
        for task in sorted(self.task_values):
            files[golden_file(task)] = golden_npz(self.golden(task))
        return files


def compile_for(model: str | Path, hw: HwParams, *, round_scales: bool = False,
                calibration: str | Path | None = None) -> Compiled:
    """Compile ``model`` for ``hw``, write seeded test inputs, run golden and float, check isa_sim.

    ``round_scales`` is passed to the ONNX front end; ``calibration`` names an ``.npy`` of inputs
    to calibrate on instead of seeded random ones.
    """
    from hwgen.pipeline import build as compile_model
    from hwgen.quant import load_calibration

    loaded = zoo.load_model(model, round_scales=round_scales)
    hw = core_for(loaded.graph, hw)
    samples = () if calibration is None else load_calibration(calibration, loaded.graph)
    config = QuantConfig.for_hw(hw, formats=loaded.formats, calibration=samples)
    built = compile_model(loaded, hw, config)
    qgraph, program = built.qgraph, built.program
    float_inputs = golden.sample_inputs(qgraph, seed=TEST_INPUT_SEED)
    raw_inputs = golden.quantize_inputs(qgraph, float_inputs)
    image = built.image.write_all(raw_inputs)
    values = golden.run(qgraph, raw_inputs)
    kept = {r.name: values[r.name] for r in image.regions if r.kind.holds_tensor}
    want = image.with_values(kept).data
    reference = isa_sim(program, image, hw)
    want = with_scratch(want, reference.data, image.regions)  # every other byte is the golden model's
    if reference.data != want:
        raise RuntimeError(f"isa_sim must equal the golden model on {qgraph.name}, but it does not: a compiler bug")
    task_values = {}
    for task in range(1, graph_tasks(qgraph)):  # a multi-task model: one Program and image, the TASK register
        task_values[task] = golden.run(qgraph, raw_inputs, task=task)
        kept = {r.name: task_values[task][r.name] for r in image.regions if r.kind.holds_tensor}
        run = isa_sim(program, image, hw, task=task)
        if run.data != with_scratch(image.with_values(kept).data, run.data, image.regions):
            raise RuntimeError(f"isa_sim must equal the golden model on {qgraph.name} task {task}, but it does not: "
                               f"a compiler bug")
    float_values = golden.run_float(loaded.graph, float_inputs)
    every = {row.name: row for row in golden.accuracy_report(qgraph, float_values, values)}
    accuracy = [every[name] for name in qgraph.outputs if name in every]
    residuals = [every[node.outputs[0]] for node in loaded.graph.nodes if node.op == "Add" and node.outputs[0] in every]
    against_ort = None
    if isinstance(model, (str, Path)) and Path(model).suffix == ".onnx":
        from hwgen.frontend.onnx import onnxruntime_outputs

        ort = onnxruntime_outputs(zoo.resolve(model), qgraph, float_inputs)
        against_ort = ort if isinstance(ort, str) else golden.accuracy_report(qgraph, ort, values)
    return Compiled(qgraph, config, hw, program, image, values, want, reference, accuracy, zoo.macs(loaded), loaded.notes,
                    "seeded random inputs" if calibration is None else Path(calibration).name, against_ort,
                    residuals, task_values)



def _model_source(model: str | Path) -> tuple[dict, list[tuple[str, bytes]]]:
    """How hwgen.yaml names the model, and the files to copy so the folder can rebuild it."""
    if isinstance(model, str) and model in zoo.names():
        return {"zoo": model}, []
    path = zoo.resolve(model)  # refuses an unknown name before anything else
    if path.suffix == ".onnx":
        import onnx

        files = [(f"model/{path.name}", path.read_bytes())]
        try:  # external weights (dynamo's model.onnx.data) travel with the model; the import names any problem
            proto = onnx.load(str(path), load_external_data=False)
            locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
        except Exception:  # noqa: BLE001 - an unreadable file is refused by the import, one line
            locations = set()
        for location in sorted(locations):
            relative = Path(location)
            if not relative.is_absolute() and ".." not in relative.parts and (path.parent / relative).is_file():
                files.append((f"model/{relative.as_posix()}", (path.parent / relative).read_bytes()))
        return {"onnx": f"model/{path.name}"}, files
    zoo.load_model(model)  # refuses a malformed spec before anything else
    spec = path.read_bytes()
    files = [(f"model/{path.name}", spec)]
    document = yaml.safe_load(spec) or {}
    weights = document.get("weights") if isinstance(document, dict) else None
    if isinstance(weights, str) and weights != "random":
        relative = Path(weights)
        if not relative.is_absolute() and ".." not in relative.parts and (path.parent / relative).is_file():
            files.append((f"model/{relative.as_posix()}", (path.parent / relative).read_bytes()))
    return {"spec": f"model/{path.name}"}, files


def _board_source(board: str | Path | Board) -> tuple[Board, str, list[tuple[str, bytes]]]:
    """The board, how hwgen.yaml names it, and its file when it is not a shipped board."""
    from hwgen.board import board_names

    if isinstance(board, str) and board in board_names():
        return load_board(board), board, []
    loaded = board if isinstance(board, Board) else load_board(board)
    return loaded, f"board/{loaded.name}.yaml", [(f"board/{loaded.name}.yaml", loaded.path.read_bytes())]


def plan_build(
    model: str | Path = DEFAULT_MODEL,
    board: str | Path | Board = "ultra96",
    *,
    flow: str = "both",
    lanes: str | tuple[int, int] | None = None,
    clock_mhz: float | None = None,
    force: bool = False,
    sim: bool = False,
    progress: Progress | None = None,
    round_scales: bool = False,
    calibration: str | Path | None = None,
    trim_units: bool = False,
) -> tuple[BuildPlan, dict]:
    """Everything ``hwgen build`` writes, in memory: ``(plan, report)``.

    Raises ``ValueError`` for bad input (unknown board or model, malformed YAML, bad lanes or
    clock, a model the accelerator cannot run) and :class:`BudgetError` for a design over the
    board's budget unless ``force``.
    """
    step = progress or (lambda label: None)

    def announce(label: str) -> None:
        log.info("%s", label)
        step(label)

    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {', '.join(FLOWS)}, not {flow!r}")
    board, board_ref, board_files = _board_source(board)
    mhz = board.clock_mhz(clock_mhz)
    if isinstance(lanes, str):
        lanes = parse_lanes(lanes)
    hw = board.hw_params(**({} if lanes is None else {"lanes_in": lanes[0], "lanes_out": lanes[1]}))
    # What the model needs of the core (the attention engine), at the board's lanes for such a core.
    # With trim_units, a model without LayerNorm, Softmax or Attention gets a core without those units.
    hw = board.core_for(zoo.load_model(model, round_scales=round_scales).graph, hw, lanes_given=lanes is not None,
                        trim_units=trim_units)
    lanes_text = f"{hw.lanes_in}x{hw.lanes_out}"
    rtl, hls = flow in ("rtl", "both"), flow in ("hls", "both")
    if sim and not rtl:
        raise ValueError(f"--sim measures the RTL core in Verilator, so flow must be rtl or both, not {flow}")
    if rtl and hw.has_moe:
        raise ValueError(f"flow must be hls for {model}: it needs the MoE engine, which the RTL core does not have "
                         f"yet, not {flow}")
    if rtl:
        # Only the RTL core has this geometry limit; an HLS-only build does not depend on it.
        from hwgen.rtl.geometry import Geometry

        problem = Geometry.problem(hw)
        if problem:
            raise ValueError(f"lanes {lanes_text} on {board.name}: {problem} (or build --flow hls)")
    # First-order check before the expensive steps: the array alone needs one DSP per MAC.
    if hw.macs_per_cycle > board.budget["DSP"] and not force:
        raise BudgetError(
            f"design must fit {board.name}'s budget, but lanes {lanes_text} need about {hw.macs_per_cycle:,} DSP "
            f"(one per MAC) of {board.budget['DSP']:,} (+{hw.macs_per_cycle - board.budget['DSP']:,}); "
            "use fewer lanes, or --force to write it anyway"
        )

    model_ref, model_files = _model_source(model)
    if calibration is not None and Path(calibration).is_file():
        model_files.append((f"model/{Path(calibration).name}", Path(calibration).read_bytes()))
    announce(f"compiling {model} for {board.name} ({lanes_text} lanes)")
    compiled = compile_for(model, hw, round_scales=round_scales, calibration=calibration)
    qgraph, program, image, values = compiled.qgraph, compiled.program, compiled.image, compiled.values

    budget = dict(board.budget)
    trim = None
    if trim_units and not hw.has_row_units:
        # The units' DSPs go to lanes (RTL flow: the Yosys estimate says what fits), and the report sets the
        # trimmed core beside the board's default one.
        announce("trimming the units: trying wider lanes with the freed resources")
        hw, compiled, trim = _spend_on_lanes(board, model, hw, compiled, lanes_given=lanes is not None, rtl=rtl,
                                             round_scales=round_scales, calibration=calibration)
        lanes_text = f"{hw.lanes_in}x{hw.lanes_out}"
        qgraph, program, image, values = compiled.qgraph, compiled.program, compiled.image, compiled.values
    verilog_text, resources, over = None, None, []
    if rtl:
        announce("emitting the RTL (Amaranth to Verilog)")
        verilog_text = accelerator_verilog(hw)

        announce(f"estimating resources (Yosys synth_xilinx -family {board.family})")
        from hwgen import toolchain

        resources = toolchain.yosys_resources(verilog_text, "hwgen_accel", family=board.family)
        over = _overruns(resources, budget)
        if over and not force:
            core = f"the {lanes_text} core with the attention engine" if hw.has_attention else "the Yosys estimate"
            raise BudgetError(f"design must fit {board.name}'s budget, but {core} is over on "
                              f"{', '.join(over)}; use fewer lanes, or --force to write it anyway")

    measured = None
    if sim:
        announce("measuring cycles in Verilator")
        from hwgen.sim import run_rtl

        with tempfile.TemporaryDirectory(prefix="hwgen-sim-") as work:
            outcome = run_rtl(verilog_text, hw, image, compiled.expected, Path(work))
        if not outcome["equal"]:
            raise RuntimeError(f"the RTL must equal the golden model, but it does not: {outcome['detail']}")
        measured = outcome

    announce("rendering the HLS sources, the vendor project, the driver and the report")
    plan = BuildPlan()
    if rtl:
        plan.add_file(RTL_PATH, verilog_text)
    if hls:
        for name, text in accelerator_sources(hw, image_bytes=len(image.data)).items():
            plan.add_file(f"hls/{name}", text)
        from hwgen.hls_templates import TEMPLATE_DIR

        plan.add_file("hls/tb.cpp", (TEMPLATE_DIR / "accelerator_tb.cpp").read_bytes())
        plan.add_file("hls/tb_expected.h", _tb_expected(qgraph.name, image, values, len(program.descriptors), hw))
    for path, data in compiled.files().items():
        plan.add_file(path, data)
    add_board_project(plan, board, rtl=rtl, hls=HLS_DESIGN if hls else None, clock_mhz=mhz)
    plan.add_file("driver/hwgen_driver.py", Path(__file__).with_name("driver.py").read_bytes())
    for path, data in model_files + board_files:
        plan.add_file(path, data)

    report = _report(
        model_name=qgraph.name, model_ref=model_ref, description=qgraph.description, graph=qgraph,
        board=board, board_ref=board_ref, hw=hw, mhz=mhz, flow=flow, program=program, image=image,
        reference=compiled.reference, measured=measured, resources=resources, budget=budget, over=over,
        accuracy=compiled.accuracy, residuals=compiled.residuals, macs=compiled.macs, notes=compiled.notes,
        calibration=compiled.calibration,
        onnxruntime=compiled.onnxruntime,
    )
    if trim is not None:
        report["trim"] = trim
    plan.add_file("hwgen.yaml", _hwgen_yaml(report, compiled.config, sim=sim, round_scales=round_scales,
                                            calibration=None if calibration is None else Path(calibration).name))
    plan.add_file("report.json", json.dumps(report, indent=1) + "\n")
    plan.add_file("report.md", render_report(report))
    return plan, report


def build_project(
    model: str | Path = DEFAULT_MODEL,
    board: str | Path | Board = "ultra96",
    out: str | Path | None = None,
    *,
    flow: str = "both",
    lanes: str | tuple[int, int] | None = None,
    clock_mhz: float | None = None,
    force: bool = False,
    sim: bool = False,
    progress: Progress | None = None,
    round_scales: bool = False,
    calibration: str | Path | None = None,
    trim_units: bool = False,
) -> BuildResult:
    """:func:`plan_build`, then write the folder atomically to ``out`` (default ``build/<board>``)."""
    if out is None:
        name = board.name if isinstance(board, Board) else Path(str(board)).stem
        out = Path("build") / name
    out = Path(out).absolute()
    _check_out(out, force)
    plan, report = plan_build(model, board, flow=flow, lanes=lanes, clock_mhz=clock_mhz, force=force, sim=sim,
                              progress=progress, round_scales=round_scales, calibration=calibration,
                              trim_units=trim_units)
    if progress:
        progress(f"writing {out}")
    written = plan.write(out, force=force)
    return BuildResult(written, report, plan)


# ------------------------------------------------------------------------------------------ report


def _layer_types(layers: list[dict], total: int) -> list[dict]:
    """Cycles per layer type (the descriptor's opcode; BYPASS for a LINEAR without products), most first."""
    types: dict[str, dict] = {}
    for layer in layers:
        kind = "BYPASS" if layer["opcode"] == "LINEAR" and layer["macs"] == 0 else layer["opcode"]
        row = types.setdefault(kind, {"type": kind, "descriptors": 0, "macs": 0, "ideal_cycles": 0, "cycles": 0})
        for key in ("macs", "ideal_cycles", "cycles"):
            row[key] += layer[key]
        row["descriptors"] += 1
    rows = sorted(types.values(), key=lambda row: -row["cycles"])
    for row in rows:
        row["utilization"] = round(row["ideal_cycles"] / row["cycles"], 4) if row["cycles"] else 0.0
        row["share"] = round(row["cycles"] / total, 4) if total else 0.0
    return rows


def _descriptor_shape(desc) -> tuple[int, int, int, int]:
    """(M, K, N, MACs) of a descriptor for the report: a row operation's K is its row length, an
    attention descriptor's M counts every head's rows (Q·Kᵀ: K = d_head, N = keys; A·V: K = keys, N = d_head)."""
    if isinstance(desc, RowDescriptor):  # LAYERNORM or SOFTMAX: N elements per row, no MACs
        return desc.m, desc.n, desc.n, 0
    if isinstance(desc, AttentionDescriptor):
        m = desc.heads * desc.m
        k, n = (desc.d_head, desc.s) if desc.opcode == OPCODE_QK_SOFTMAX_STATS else (desc.s, desc.d_head)
        return m, k, n, m * k * n
    if isinstance(desc, GateTopkDescriptor):  # the gate logits: D inputs, E outputs per token
        return desc.m, desc.k, desc.experts, desc.m * desc.k * desc.experts
    if isinstance(desc, ExpertFfnDescriptor):  # every token's k experts: FC1 (D → H) and FC2 (H → D)
        slots = desc.m * desc.top_k
        return slots, desc.d, desc.h, 2 * slots * desc.d * desc.h
    return desc.m, desc.k, desc.n, 0 if desc.flags & Flag.BYPASS else desc.m * desc.k * desc.n


def _report(*, model_name, model_ref, description, graph, board, board_ref, hw, mhz, flow, program, image,
            reference, measured, resources, budget, over, accuracy, macs, residuals=(), notes=(),
            calibration="seeded random inputs",
            onnxruntime=None) -> dict:
    layers = []
    for index, (desc, estimate) in enumerate(zip(program.descriptors, reference.cycles)):
        m, k, n, layer_macs = _descriptor_shape(desc)
        layers.append({
            "descriptor": index,
            "opcode": desc.name,
            "layers": image.labels[index] if index < len(image.labels) else "",
            "m": m, "k": k, "n": n,
            "macs": layer_macs,
            "ideal_cycles": estimate.ideal,
            "cycles": estimate.cycles,
            "utilization": round(estimate.utilization, 4),
        })
    analytical = reference.total_cycles
    ideal = sum(c.ideal for c in reference.cycles)

    def projection(cycles: int) -> dict:
        return {"cycles": cycles, "latency_us": round(cycles / mhz, 3), "fps": round(mhz * 1e6 / cycles, 2),
                "utilization": round(ideal / cycles, 4)}

    performance = {"clock_mhz": mhz, "ideal_cycles": ideal, "header_cycles": reference.header_cycles,
                   "analytical": projection(analytical), "measured": None}
    if measured is not None:
        performance["measured"] = {**projection(measured["cycles"]), "stalls": measured["stalls"],
                                   "simulator": "Verilator", "model_error": round(analytical / measured["cycles"] - 1, 4)}
    formats = []
    regions = {r.name: r for r in image.regions}
    for tensor in graph.tensors:
        region = regions.get(tensor.name)
        formats.append({"tensor": tensor.name, "role": _tensor_role(graph, tensor.name), "shape": list(tensor.shape),
                        "format": str(tensor.fmt), "region": region.kind if region else None})
    return {
        "hwgen_report": BUILD_FORMAT,
        "hwgen_version": __version__,
        "model": {"name": model_name, "source": model_ref, "description": description, "macs": macs,
                  "inputs": {n: list(graph.tensor(n).shape) for n in graph.inputs},
                  "outputs": {n: list(graph.tensor(n).shape) for n in graph.outputs}},
        "board": {"name": board.name, "ref": board_ref, "description": board.description, "part": board.part,
                  "family": board.family, "clock_source": board.pl_clock.source},
        "flow": flow,
        "accelerator": {**hw.to_dict(), "fingerprint": f"{hw.fingerprint():#010x}", "macs_per_cycle": hw.macs_per_cycle},
        "program": {"descriptors": len(program.descriptors), "program_bytes": len(program.to_bytes()),
                    "image_bytes": len(image.data)},
        "performance": performance,
        "layers": layers,
        "layer_types": _layer_types(layers, analytical),
        "resources": _resources(board, resources, budget, over),
        "accuracy": [{"output": row.name, "format": row.fmt, "sqnr_db": _float_or_none(row.sqnr_db),
                      "max_abs_error": _float_or_none(row.max_abs_error),
                      "max_abs_reference": _float_or_none(row.max_abs_reference)} for row in accuracy],
        "accuracy_residuals": [{"tensor": row.name, "sqnr_db": _float_or_none(row.sqnr_db)} for row in residuals],
        "formats": formats,
        "test_inputs": {"seed": TEST_INPUT_SEED},
        "calibration": calibration,
        "import_notes": list(notes),
        **({} if onnxruntime is None else {"accuracy_onnxruntime": _against_onnxruntime(onnxruntime)}),
    }


def _against_onnxruntime(rows: list | str) -> dict:
    """The report's accuracy of the outputs against onnxruntime's float32 run, or why it was not computed."""
    if isinstance(rows, str):
        return {"computed": False, "reason": rows, "outputs": []}
    return {"computed": True, "reason": None, "outputs": [
        {"output": row.name, "sqnr_db": _float_or_none(row.sqnr_db), "max_abs_error": _float_or_none(row.max_abs_error),
         "max_abs_reference": _float_or_none(row.max_abs_reference)} for row in rows]}


def _resources(board: Board, resources: dict | None, budget: dict, over: list[str]) -> dict:
    """The report's resources: the Yosys estimate of the RTL core, or none for an HLS-only build."""
    if resources is None:
        return {"estimator": "none for an HLS-only build: Vitis HLS reports the HLS core's resources "
                             "(hls/.../csynth.rpt) and Vivado after implementation",
                "used": None, "budget": budget, "percent": None, "over_budget": [], "forced": False}
    return {
        "estimator": f"Yosys synth_xilinx -family {board.family} of the RTL core (hwgen_accel)",
        "used": dict(resources),
        "budget": budget,
        "percent": {k: _percent(resources[k], budget[k]) for k in BUDGET_KEYS},
        "over_budget": over,
        "forced": bool(over),
    }


def _hwgen_yaml(report: dict, config: QuantConfig, *, sim: bool, round_scales: bool = False,
                calibration: str | None = None) -> str:
    model = report["model"]["source"]
    board = report["board"]["ref"]
    accel = report["accelerator"]
    lanes = f"{accel['lanes_in']}x{accel['lanes_out']}"
    mhz = report["performance"]["clock_mhz"]
    model_arg = model.get("zoo") or model.get("spec") or model.get("onnx")
    forced = report["resources"]["forced"]
    command = (f"hwgen build --board {board} --model {model_arg} --flow {report['flow']} --lanes {lanes} "
               f"--clock-mhz {mhz:g}{' --sim' if sim else ''}{' --force' if forced else ''}"
               f"{f' --calibration model/{calibration}' if calibration else ''}{' --round-scales' if round_scales else ''}"
               " --out DIR")
    quant = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "calibration"}
    quant["units"] = None if config.units is None else dataclasses.asdict(config.units)
    quant["formats"] = {name: str(fmt) for name, fmt in config.formats}
    quant["calibration"] = report["calibration"]
    document = {
        "hwgen_build": BUILD_FORMAT,
        "hwgen_version": __version__,
        "model": model,
        "board": board,
        "flow": report["flow"],
        "lanes": lanes,
        "clock_mhz": mhz,
        "sim": sim,
        "over_budget_forced": forced,
        "test_input_seed": TEST_INPUT_SEED,
        "accelerator": {k: accel[k] for k in HwParams().to_dict()},
        "fingerprint": accel["fingerprint"],
        "quantization": quant,
    }
    return (f"# {stamp()}\n# Everything this folder was built from. Rebuild (from this folder) with:\n#   {command}\n"
            + yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_report(report: dict) -> str:
    """``report.md``: the report as Markdown for a person."""
    model, board, accel, perf = report["model"], report["board"], report["accelerator"], report["performance"]
    res = report["resources"]
    lines = [f"# hwgen build: {model['name']} on {board['name']}", "", f"<!-- {stamp()} -->", ""]
    if res["over_budget"]:
        lines += [f"> **Over budget** — written with `--force`: {', '.join(res['over_budget'])}. "
                  "Vivado will not fit this design on the part.", ""]
    flows = {"both": "RTL (Amaranth) and HLS (Vitis HLS)", "rtl": "RTL (Amaranth)", "hls": "HLS (Vitis HLS)"}
    lines += _table(["", ""], [
        ["model", f"{model['name']} — {model['description']}"],
        ["inputs", ", ".join(f"{n} {'×'.join(map(str, s))}" for n, s in model["inputs"].items())],
        ["MACs per run", _n(model["macs"])],
        ["board", f"{board['name']} — {board['description']} (`{board['part']}`)"],
        ["accelerator", f"{accel['lanes_in']}×{accel['lanes_out']} MAC array, {accel['act_bits']}-bit activations, "
                        f"{accel['weight_bits']}-bit weights, {accel['acc_bits']}-bit accumulators, "
                        f"AXI {accel['axi_data_width']} b{', attention engine' if accel['has_attention'] else ''}; "
                        f"fingerprint `{accel['fingerprint']}`"],
        ["clock", f"{perf['clock_mhz']:g} MHz from {board['clock_source']}"],
        ["flows", flows[report["flow"]]],
        ["program", f"{report['program']['descriptors']} descriptors, memory image {_n(report['program']['image_bytes'])} bytes"],
    ])
    lines += ["", "## Performance", ""]
    rows = []
    for label, key in (("analytical (docs/isa.md §5 cycle model)", "analytical"), ("measured in Verilator", "measured")):
        p = perf[key]
        if p is None:
            rows.append([label, "not run (`hwgen build --sim`)", "", "", ""])
        else:
            rows.append([label, _n(p["cycles"]), f"{p['latency_us']:,.1f} µs", f"{p['fps']:,.1f}",
                         f"{100 * p['utilization']:.1f} %"])
    lines += _table(["cycles per run", "cycles", f"latency at {perf['clock_mhz']:g} MHz", "FPS", "MAC utilization"],
                    rows, "lrrrr")
    lines += ["", f"MAC utilization is ideal cycles ({_n(perf['ideal_cycles'])}, one full tile per cycle) over cycles."]
    if perf["measured"] is not None:
        lines += [f"The analytical model is {100 * perf['measured']['model_error']:+.1f} % off the Verilator count; "
                  f"{_n(perf['measured']['stalls'])} measured cycles issued no tile."]
    lines += ["", "## Cycles per layer type", ""]
    lines += _table(["type", "descriptors", "MACs", "ideal cycles", "cycles (analytical)", "utilization", "share"], [
        [t["type"], str(t["descriptors"]), _n(t["macs"]), _n(t["ideal_cycles"]), _n(t["cycles"]),
         f"{100 * t['utilization']:.1f} %", f"{100 * t['share']:.1f} %"] for t in report["layer_types"]
    ], "lrrrrrr")
    lines += ["", "## Layers", ""]
    lines += _table(["#", "descriptor", "layers", "M × K × N", "MACs", "ideal cycles", "cycles (analytical)", "utilization"], [
        ["—", "", "Program header (read once per run)", "", "", "", _n(perf["header_cycles"]), ""],
        *([layer["descriptor"], layer["opcode"], layer["layers"], f"{layer['m']} × {layer['k']} × {layer['n']}",
           _n(layer["macs"]), _n(layer["ideal_cycles"]), _n(layer["cycles"]), f"{100 * layer['utilization']:.1f} %"]
          for layer in report["layers"]),
    ], "lllrrrrr")
    lines += ["", "## Resources", ""]
    if res["used"] is None:
        lines += [f"No estimate: {res['estimator']}."]
    else:
        lines += [f"{res['estimator']}, against the board's budget:", ""]
        rows = []
        for key in BUDGET_KEYS:
            pct = res["percent"][key]
            over = res["used"][key] > res["budget"][key]
            rows.append([key, _n(res["used"][key]), _n(res["budget"][key]),
                         ("—" if pct is None else f"{pct:.1f} %") + (" **over**" if over else "")])
        lines += _table(["resource", "estimate", "budget", "use"], rows, "lrrr")
        extra = ", ".join(f"{k} {_n(v)}" for k, v in res["used"].items() if k not in BUDGET_KEYS)
        lines += ["", f"Also mapped: {extra}. Vivado's numbers after implementation are in "
                      "`vivado/<flow>/utilization.rpt`."]
    if "trim" in report:
        trim = report["trim"]
        lines += ["", "## Trimmed units (`--trim-units`)", "",
                  "The core leaves out the LayerNorm and softmax units this model never uses"
                  + (f"; its freed resources went to wider lanes." if trim["widened"]
                     else f"; the lanes stay ({trim['why_not_widened']}).") + " Beside the board's default core:", ""]
        keys = [k for k in BUDGET_KEYS if any((r["resources"] or {}).get(k) for r in (trim["default"], trim["trimmed"]))]
        rows = []
        for label, r in (("board default", trim["default"]), ("trimmed", trim["trimmed"])):
            used = r["resources"] or {}
            latency = f"{r['cycles'] / perf['clock_mhz']:,.1f} µs"
            rows.append([label, r["lanes"], *(_n(used[k]) if k in used else "—" for k in keys), _n(r["cycles"]), latency])
        lines += _table(["core", "lanes", *keys, "cycles (analytical)", f"latency at {perf['clock_mhz']:g} MHz"], rows,
                        "ll" + "r" * (len(keys) + 2))
    lines += ["", "## Accuracy against float", "",
              "The quantized model (golden, bit-exact with the hardware) against the float64 reference on the "
              f"test inputs (seed {report['test_inputs']['seed']}, never used for calibration; formats calibrated on "
              f"{report['calibration']}):", ""]
    lines += _table(["output", "format", "SQNR", "max abs error", "max abs reference"], [
        [a["output"], f"`{a['format']}`", "exact" if a["sqnr_db"] is None else f"{a['sqnr_db']:.1f} dB",
         f"{a['max_abs_error']:.3g}", f"{a['max_abs_reference']:.3g}"] for a in report["accuracy"]
    ], "llrrr")
    if report["accuracy_residuals"]:
        lines += ["", "The residual stream (each Add's output, in order: a transformer's two per block): "
                  + ", ".join(f"{a['tensor']} " + ("exact" if a["sqnr_db"] is None else f"{a['sqnr_db']:.1f} dB")
                              for a in report["accuracy_residuals"]) + "."]
    ort = report.get("accuracy_onnxruntime")
    if ort is not None and ort["computed"]:
        lines += ["", "Against onnxruntime's float32 output of the ONNX file on the same test inputs:", ""]
        lines += _table(["output", "SQNR", "max abs error", "max abs reference"], [
            [a["output"], "exact" if a["sqnr_db"] is None else f"{a['sqnr_db']:.1f} dB", f"{a['max_abs_error']:.3g}",
             f"{a['max_abs_reference']:.3g}"] for a in ort["outputs"]
        ], "lrrr")
    elif ort is not None:
        lines += ["", f"SQNR against onnxruntime: not computed ({ort['reason']})."]
    if report["import_notes"]:
        lines += ["", "Changed by the import on request (each adds the error shown):", ""]
        lines += [f"- {note}" for note in report["import_notes"]]
    lines += ["", "## Formats", ""]
    lines += _table(["tensor", "role", "shape", "format", "in DDR"], [
        [f["tensor"], f["role"], "×".join(map(str, f["shape"])), f"`{f['format']}`", f["region"] or "—"]
        for f in report["formats"]
    ])
    lines += ["", "## This folder", "",
              "`build.sh` turns it into bitstreams (Vitis HLS, then Vivado per flow); `hwgen sim . --backend "
              "isa|rtl|hls` reruns the Program and compares it with `golden.npz`; `driver/hwgen_driver.py` runs it "
              "on the board. `hwgen.yaml` holds everything it was built from. docs/build.md describes every file.", ""]
    return "\n".join(lines)
