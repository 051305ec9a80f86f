# SPDX-License-Identifier: Apache-2.0
"""cocotb testbench of the whole accelerator: a Program and memory image in, the image after the run out.

The reference model is ``isa_sim``: :func:`prepare` (plain Python, called by pytest or a benchmark)
writes the input image and the image ``isa_sim`` leaves behind into a work folder; the cocotb test
:func:`runs_program` loads the input image into :class:`~hwgen.cosim.axi_memory.AxiMemory` at
``image_base``, programs the core over AXI-Lite, starts it, waits for the interrupt (with a cycle
timeout), reads the CYCLES, STALLS, STATUS and DESCRIPTORS_DONE registers into ``result.json``,
and compares the **whole image** with the expected one byte for byte (an untouched byte must stay
untouched too). A mismatch is reported as the first differing element of the region it falls in,
with both values.

The run is configured by ``bench.json`` in the work folder, named by ``HWGEN_TB_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["prepare", "read_result", "TOPLEVEL"]

TOPLEVEL = "accelerator"


def prepare(work_dir, hw, image, expected, *, regions=(), image_base=0x1000, read_latency=64,
            stall_prob=0.0, seed=1, timeout_cycles=2_000_000, expect_status=0) -> dict:
    """Write the bench inputs into ``work_dir``; returns the ``extra_env`` for ``run_cocotb``.

    ``image``/``expected`` are the memory image before the run and after ``isa_sim``;
    ``regions`` (``hwgen.compiler.Region``) name the bytes in mismatch reports.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if len(image) != len(expected):
        raise ValueError(f"expected image must be as long as the image ({len(image)} bytes), not {len(expected)}")
    (work_dir / "image.bin").write_bytes(bytes(image))
    (work_dir / "expected.bin").write_bytes(bytes(expected))
    config = {
        "hw": hw.to_dict(),
        "image_base": image_base,
        "read_latency": read_latency,
        "stall_prob": stall_prob,
        "seed": seed,
        "timeout_cycles": timeout_cycles,
        "expect_status": expect_status,
        "regions": [
            {"name": r.name, "offset": r.offset, "size": r.size, "shape": list(r.shape),
             "row_stride": r.row_stride, "container_bits": r.container_bits, "signed": r.fmt.signed}
            for r in regions if r.kind in ("input", "activation", "output")
        ],
    }
    (work_dir / "bench.json").write_text(json.dumps(config, indent=1))
    return {"HWGEN_TB_DIR": str(work_dir)}


def read_result(work_dir) -> dict:
    """What the bench measured: cycles, stalls, status, descriptors_done, simulated memory traffic."""
    return json.loads((Path(work_dir) / "result.json").read_text())


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
    return f"first mismatch at image byte {first:#x} (address {base + first:#x}): RTL {got[first]:#04x}, isa_sim {want[first]:#04x}"


try:
    import cocotb
except ImportError:  # prepare() and read_result() work without cocotb
    cocotb = None

if cocotb is not None:
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

    from hwgen.cosim.axi_memory import AxiLiteMaster, AxiMemory
    from hwgen.hwparams import HwParams
    from hwgen.rtl.accelerator import params_word
    from hwgen.rtl.axi import CONTROL_DONE, REGISTER_MAP

    @cocotb.test()
    async def runs_program(dut):
        work_dir = Path(os.environ["HWGEN_TB_DIR"])
        cfg = json.loads((work_dir / "bench.json").read_text())
        hw = HwParams.from_dict(cfg["hw"])
        image = (work_dir / "image.bin").read_bytes()
        expected = (work_dir / "expected.bin").read_bytes()
        base = cfg["image_base"]

        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        memory = AxiMemory(dut, dut.clk, size=base + len(image) + 4096, read_latency=cfg["read_latency"],
                           stall_prob=cfg["stall_prob"], seed=cfg["seed"])
        memory.load(image, base)
        lite = AxiLiteMaster(dut, dut.clk)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        memory.start()

        reg = REGISTER_MAP
        fingerprint = await lite.read(reg["FINGERPRINT"])
        assert fingerprint == hw.fingerprint(), f"FINGERPRINT register {fingerprint:#x}, want {hw.fingerprint():#x}"
        assert await lite.read(reg["PARAMS"]) == params_word(hw)
        await lite.write(reg["PROGRAM_ADDR"], base)
        await lite.write(reg["IMAGE_BASE"], base)
        await lite.write(reg["GIE"], 1)
        await lite.write(reg["IER"], 1)
        await lite.write(reg["CONTROL"], 1)
        await with_timeout(RisingEdge(dut.irq), cfg["timeout_cycles"] * 10, "ns")

        control = await lite.read(reg["CONTROL"])
        result = {
            "cycles": await lite.read(reg["CYCLES"]),
            "stalls": await lite.read(reg["STALLS"]),
            "status": await lite.read(reg["STATUS"]),
            "descriptors_done": await lite.read(reg["DESCRIPTORS_DONE"]),
            "read_beats": memory.read_beats,
            "write_beats": memory.write_beats,
            "read_bursts": memory.read_bursts,
            "max_reads_in_flight": memory.max_reads_in_flight,
        }
        (work_dir / "result.json").write_text(json.dumps(result, indent=1))
        dut._log.info("run finished: %s", result)
        assert control >> CONTROL_DONE & 1, f"CONTROL {control:#x} does not show done"
        assert result["status"] == cfg["expect_status"], (
            f"STATUS {result['status']:#x}, expected {cfg['expect_status']:#x}")
        assert memory.errors == 0, "the AXI memory model saw protocol errors"
        got = memory.dump(base, len(image))
        if got != expected:
            raise AssertionError(_describe_mismatch(got, expected, cfg["regions"], base))
        assert memory.dump(0, base) == bytes(base), "the core wrote below the image"
