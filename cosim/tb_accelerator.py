# SPDX-License-Identifier: Apache-2.0
"""cocotb testbench of the whole accelerator: Programs and memory images in, the images after the runs out.

The reference model is ``isa_sim``. :func:`prepare` (plain Python, called by pytest or a
benchmark) writes, for each run, the input image and the image ``isa_sim`` leaves behind into a
work folder. The cocotb test :func:`runs_programs` then, for each run: resets the core, loads the
input image at ``image_base`` into the AXI memory (DDR-like read latency, optional random stalls on
every channel) — by default the Verilog memory of :mod:`hwgen.cosim.hdl_memory` beside the core in
``hwgen_sim_top``, loaded and read back in bulk so no Python runs per clock cycle; with
``memory="python"`` the cocotb model :class:`~hwgen.cosim.axi_memory.AxiMemory` on the same top's
``m_axi__*`` ports (see docs/cosim.md) — checks the FINGERPRINT and PARAMS registers,
programs PROGRAM_ADDR and IMAGE_BASE over AXI-Lite, starts the core, waits for the interrupt (with a
cycle timeout), reads CYCLES, STALLS, STATUS and DESCRIPTORS_DONE into ``result.json``, and compares
the **whole image** with the expected one byte for byte — bytes nobody should write must stay as
they were. A mismatch is reported as the first differing element of the region it falls in, with
both values. The image after each run is kept as ``after<i>.bin``. Several runs share one simulator
process, which saves its start-up per run. :func:`run_bench` does all of it in one call.

The runs are configured by ``bench.json`` in the folder named by ``HWGEN_TB_DIR``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Run", "prepare", "read_results", "accelerator_verilog", "bench_verilog", "run_bench", "simulate",
           "row_program", "TOPLEVEL", "MEMORIES"]

TOPLEVEL = "hwgen_accel"  # hwgen.rtl.accelerator.CORE_NAME
#: The AXI memory models a bench can run against: ``hdl`` (Verilog beside the core, the fast path
#: of whole-Program runs) and ``python`` (the cocotb model, called on every clock edge).
MEMORIES = ("hdl", "python")


@dataclass(frozen=True)
class Run:
    """One Program run: the image before it, the image expected after it, and the expected STATUS."""

    image: bytes
    expected: bytes | None  # None: the bench keeps the image after the run (after<i>.bin) but compares nothing
    regions: tuple = ()  # hwgen.compiler.Region of the image, to name mismatching elements
    expect_status: int = 0  # hwgen.rtl.descriptor.Status code the run must end with
    label: str = "run"
    expect_done: int | None = None  # DESCRIPTORS_DONE the run must end with (None: not checked)
    program_offset: int = 0  # PROGRAM_ADDR - IMAGE_BASE: where the Program header sits in the image


def prepare(work_dir, hw, runs, *, image_base=0x1000, read_latency=64, stall_prob=0.0, seed=1,
            timeout_cycles=20_000_000, memory="hdl") -> dict:
    """Write the bench inputs for ``runs`` into ``work_dir``; returns the ``extra_env`` for ``run_cocotb``.

    ``memory`` (one of :data:`MEMORIES`) must match the Verilog the bench runs on
    (:func:`bench_verilog`).
    """
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, not {memory!r}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    described = []
    for index, run in enumerate(runs):
        if run.expected is not None and len(run.image) != len(run.expected):
            raise ValueError(f"expected image must be as long as the image ({len(run.image)} bytes), "
                             f"not {len(run.expected)}")
        (work_dir / f"image{index}.bin").write_bytes(bytes(run.image))
        if run.expected is not None:  # None: nothing to compare with (the image after the run is kept)
            (work_dir / f"expected{index}.bin").write_bytes(bytes(run.expected))
        else:
            (work_dir / f"expected{index}.bin").unlink(missing_ok=True)
        described.append({
            "label": run.label,
            "expect_status": run.expect_status,
            "expect_done": run.expect_done,
            "program_offset": run.program_offset,
            "regions": [
                {"name": r.name, "offset": r.offset, "size": r.size, "row_stride": r.row_stride,
                 "container_bits": r.container_bits, "signed": r.fmt.signed}
                for r in run.regions if r.kind in ("input", "activation", "output")
            ],
        })
    config = {
        "hw": hw.to_dict(), "image_base": image_base, "read_latency": read_latency, "stall_prob": stall_prob,
        "seed": seed, "timeout_cycles": timeout_cycles, "memory": memory, "runs": described,
    }
    (work_dir / "bench.json").write_text(json.dumps(config, indent=1))
    return {"HWGEN_TB_DIR": str(work_dir)}


def read_results(work_dir) -> list[dict]:
    """What the bench measured per run: cycles, stalls, status, descriptors_done, memory traffic."""
    return json.loads((Path(work_dir) / "result.json").read_text())


def accelerator_verilog(hw) -> str:
    """Verilog of ``Accelerator(hw)``: the text ``hwgen build`` writes, so benches and ``hwgen sim`` share a Verilator build."""
    from hwgen.rtl.accelerator import core_verilog

    return core_verilog(hw)


def bench_verilog(hw, memory="hdl", core_verilog=None, core_name=TOPLEVEL) -> tuple[str, str, tuple[str, ...]]:
    """``(verilog, toplevel, build_args)`` the bench runs on: the core wrapped with the HDL memory in
    ``hwgen_sim_top`` (:mod:`hwgen.cosim.hdl_memory`), whichever ``memory`` the runs use.

    ``core_verilog`` defaults to :func:`accelerator_verilog` of ``hw`` (module ``hwgen_accel``).
    """
    if memory not in MEMORIES:
        raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, not {memory!r}")
    core = accelerator_verilog(hw) if core_verilog is None else core_verilog
    # One build for both memories: with "python" the bench sets mem_external and drives m_axi__*.
    from hwgen.cosim.hdl_memory import SIM_BUILD_ARGS, SIM_TOPLEVEL, sim_top

    return sim_top(core, core_name, hw.axi_data_width), SIM_TOPLEVEL, SIM_BUILD_ARGS


def run_bench(work_dir, hw, runs, *, memory="hdl", core_verilog=None, core_name=TOPLEVEL, **bench) -> list[dict]:
    """Run ``runs`` (:class:`Run`) on the core in Verilator against ``memory``; :func:`read_results`.

    Keywords go to :func:`prepare`; a failing run raises ``ToolError``.
    """
    from hwgen import toolchain

    env = prepare(work_dir, hw, runs, memory=memory, **bench)
    source, toplevel, build_args = bench_verilog(hw, memory, core_verilog, core_name)
    toolchain.run_cocotb(source, toplevel, "hwgen.cosim.tb_accelerator", work_dir=work_dir, extra_env=env,
                         build_args=build_args)
    return read_results(work_dir)


def simulate(work_dir, hw, programs, **bench) -> list[dict]:
    """Run each ``(program, image)`` on the RTL core in Verilator and check it against ``isa_sim``.

    ``image`` is a ``hwgen.compiler.MemoryImage`` with its inputs written. Keywords go to
    :func:`prepare`. Returns :func:`read_results`, each with ``estimate`` and ``ideal`` from
    isa_sim's cycle model and the wall time of the simulation; raises ``ToolError`` on a mismatch.
    """
    from hwgen import toolchain
    from hwgen.compiler import isa_sim

    runs, references = [], []
    for index, (program, image) in enumerate(programs):
        reference = isa_sim(program, image, hw)
        references.append(reference)
        runs.append(Run(image.data, reference.data, image.regions, label=f"program {index}"))
    memory = bench.pop("memory", "hdl")
    env = prepare(work_dir, hw, runs, memory=memory, **bench)
    source, toplevel, build_args = bench_verilog(hw, memory)
    start = time.perf_counter()
    toolchain.run_cocotb(source, toplevel, "hwgen.cosim.tb_accelerator", work_dir=work_dir, extra_env=env,
                         build_args=build_args)
    wall = time.perf_counter() - start
    results = read_results(work_dir)
    for result, reference in zip(results, references):
        result.update(estimate=reference.total_cycles, ideal=sum(c.ideal for c in reference.cycles), wall_s=wall)
    return results


def row_program(hw, opcode, m, n, *, seed=1, eps=1e-5):
    """A Program of one LAYERNORM or SOFTMAX descriptor over random rows (and random γ, β) and its image.

    Regions follow docs/isa.md §4 (AXI-aligned, rows padded to whole words, padding random); the
    LAYERNORM ``d_offset`` is ``N²·eps_raw`` for ``eps``.
    """
    import dataclasses

    import numpy as np

    from hwgen.compiler import Program
    from hwgen.compiler.layout import MemoryImage, Region
    from hwgen.isa import OPCODE_LAYERNORM, RowDescriptor

    rng = np.random.default_rng(seed)
    units = hw.unit_formats()
    layernorm = opcode == OPCODE_LAYERNORM
    data = bytearray(hw.align(128))
    regions = []

    def region(name, kind, rows, fmt):
        stride = hw.align(n * hw.act_bytes)
        offset = len(data)
        data.extend(rng.integers(0, 256, size=rows * stride, dtype=np.uint8).tobytes())
        regions.append(Region(name, kind, offset, rows * stride, str(fmt), (rows, n), stride, 8 * hw.act_bytes))
        return offset, stride

    x, x_stride = region("x", "input", m, units.layernorm_in if layernorm else units.softmax_in)
    gamma = region("gamma", "params", 1, units.layernorm_param)[0] if layernorm else 0
    beta = region("beta", "params", 1, units.layernorm_param)[0] if layernorm else 0
    y, y_stride = region("y", "output", m, units.layernorm_out if layernorm else units.softmax_out)
    d_offset = 0
    if layernorm:
        d_offset = n * n * dataclasses.replace(units.layernorm_config(), eps=eps).eps_raw
    desc = RowDescriptor(opcode, m, n, x, y, x_stride, y_stride, gamma, beta, d_offset)
    program = Program(hw.fingerprint(), len(data), (desc,))
    encoded = program.to_bytes()
    data[:len(encoded)] = encoded
    return program, MemoryImage(bytes(data), tuple(regions))


def _describe_mismatch(got: bytes, want: bytes, regions, base: int) -> str:
    first = next(i for i in range(len(want)) if got[i] != want[i])
    for r in regions:
        if r["offset"] <= first < r["offset"] + r["size"] and r["row_stride"]:
            nbytes = r["container_bits"] // 8
            row, col = divmod(first - r["offset"], r["row_stride"])
            col //= nbytes
            at = r["offset"] + row * r["row_stride"] + col * nbytes
            decode = lambda b: int.from_bytes(b[at:at + nbytes], "little", signed=r["signed"])  # noqa: E731
            return (f"first mismatch in region {r['name']!r} at element ({row}, {col}) "
                    f"(address {base + at:#x}): RTL {decode(got)}, isa_sim {decode(want)}")
    return (f"first mismatch at image byte {first:#x} (address {base + first:#x}): "
            f"RTL {got[first]:#04x}, isa_sim {want[first]:#04x}")


try:
    import cocotb
except ImportError:  # prepare(), simulate() and read_results() only need cocotb inside the simulator
    cocotb = None

if cocotb is not None:
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

    from hwgen.cosim.axi_memory import AxiLiteMaster, AxiMemory
    from hwgen.cosim.hdl_memory import HdlAxiMemory
    from hwgen.hwparams import HwParams
    from hwgen.rtl.accelerator import params_word
    from hwgen.rtl.axi import CONTROL_DONE, REGISTER_MAP

    @cocotb.test()
    async def runs_programs(dut):
        work_dir = Path(os.environ["HWGEN_TB_DIR"])
        cfg = json.loads((work_dir / "bench.json").read_text())
        hw = HwParams.from_dict(cfg["hw"])
        base = cfg["image_base"]
        reg = REGISTER_MAP
        hdl = cfg.get("memory", "hdl") == "hdl"
        # hwgen_sim_top generates its own clock (10 ns); with the Python memory its m_axi__* ports
        # are the core's master, and the Verilog memory beside it sees no handshake.
        dut.mem_external.value = 0 if hdl else 1
        lite = AxiLiteMaster(dut, dut.clk)
        results = []
        for index, run in enumerate(cfg["runs"]):
            image = (work_dir / f"image{index}.bin").read_bytes()
            expected_file = work_dir / f"expected{index}.bin"
            expected = expected_file.read_bytes() if expected_file.exists() else None
            model = functools.partial(HdlAxiMemory, data_bytes=hw.axi_bytes) if hdl else AxiMemory
            memory = model(dut, dut.clk, size=base + len(image) + 4096, read_latency=cfg["read_latency"],
                           stall_prob=cfg["stall_prob"], seed=cfg["seed"] + index)
            memory.load(image, base)
            dut.rst.value = 1
            await ClockCycles(dut.clk, 4)
            dut.rst.value = 0
            memory.start()

            fingerprint = await lite.read(reg["FINGERPRINT"])
            assert fingerprint == hw.fingerprint(), f"FINGERPRINT {fingerprint:#x}, want {hw.fingerprint():#x}"
            assert await lite.read(reg["PARAMS"]) == params_word(hw)
            await lite.write(reg["PROGRAM_ADDR"], base + run["program_offset"])
            await lite.write(reg["IMAGE_BASE"], base)
            await lite.write(reg["GIE"], 1)
            await lite.write(reg["IER"], 1)
            await lite.write(reg["CONTROL"], 1)
            started, started_cpu = time.perf_counter(), time.process_time()
            # irq is sticky (ISR): a run refused at once (a misaligned PROGRAM_ADDR reads nothing) may have
            # raised it before the CONTROL write's response came back, so wait only while it is low.
            if not dut.irq.value:
                await with_timeout(RisingEdge(dut.irq), cfg["timeout_cycles"] * 10, "ns")
            run_wall, run_cpu = time.perf_counter() - started, time.process_time() - started_cpu

            control = await lite.read(reg["CONTROL"])
            result = {
                "label": run["label"],
                "cycles": await lite.read(reg["CYCLES"]),
                "stalls": await lite.read(reg["STALLS"]),
                "status": await lite.read(reg["STATUS"]),
                "descriptors_done": await lite.read(reg["DESCRIPTORS_DONE"]),
                "read_beats": memory.read_beats,
                "write_beats": memory.write_beats,
                "read_bursts": memory.read_bursts,
                "write_bursts": memory.write_bursts,
                "max_reads_in_flight": memory.max_reads_in_flight,
                "memory": cfg.get("memory", "hdl"),
                "run_wall_s": run_wall,  # start to interrupt: the simulator's wall and CPU seconds
                "run_cpu_s": run_cpu,
            }
            await lite.write(reg["ISR"], 1)
            memory.stop()
            if hdl:
                await memory.fetch()
            results.append(result)
            (work_dir / "result.json").write_text(json.dumps(results, indent=1))
            dut._log.info("%s: %s", run["label"], result)
            got = memory.dump(base, len(image))
            (work_dir / f"after{index}.bin").write_bytes(got)
            assert control >> CONTROL_DONE & 1, f"{run['label']}: CONTROL {control:#x} does not show done"
            assert result["status"] == run["expect_status"], (
                f"{run['label']}: STATUS {result['status']:#x}, expected {run['expect_status']:#x}")
            if run["expect_done"] is not None:
                assert result["descriptors_done"] == run["expect_done"], (
                    f"{run['label']}: DESCRIPTORS_DONE {result['descriptors_done']}, expected {run['expect_done']}")
            assert memory.errors == 0, f"{run['label']}: the AXI memory model saw protocol errors"
            if expected is not None and got != expected:
                raise AssertionError(f"{run['label']}: " + _describe_mismatch(got, expected, run["regions"], base))
            assert memory.dump(0, base) == bytes(base), f"{run['label']}: the core wrote below the image"
