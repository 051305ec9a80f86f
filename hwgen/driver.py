# SPDX-License-Identifier: Apache-2.0
"""Host driver of a built hwgen folder: copied verbatim into ``driver/hwgen_driver.py`` by ``hwgen build``.

One class, :class:`HwgenDriver`, does what the host does on the board: allocate one buffer for the
memory image, write the image (Program at offset 0, weights, inputs), check the core's FINGERPRINT
register against the Program header, set PROGRAM_ADDR and IMAGE_BASE (docs/isa.md §8.1), start,
poll CONTROL.done, read STATUS, CYCLES, STALLS and DESCRIPTORS_DONE, read every output region back
and compare it with ``golden.npz`` — integer equality of the raw codes.

The steps talk to a *device*: :class:`PynqDevice` on a PYNQ board (``pynq`` is imported only there)
or :class:`IsaSimDevice`, which models the same registers and DDR in plain Python and runs the
Program with ``hwgen.compiler.isa_sim`` when started — so the driver logic itself (register writes,
buffer placement, output extraction and comparison) is tested without a board.

On the board, beside ``vivado/rtl/hwgen.bit`` and ``hwgen.hwh``::

    from hwgen_driver import HwgenDriver, PynqDevice
    driver = HwgenDriver("..", PynqDevice("../vivado/rtl/hwgen.bit"))
    result = driver.run()
    print(result.summary())

or ``python3 driver/hwgen_driver.py [--isa-sim]`` from the folder. Only the RTL flow's bitstream is
driven here: its register map is the one below; the HLS IP's registers are Vitis HLS's own.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["REGISTERS", "STATUS_NAMES", "HwgenDriver", "RunResult", "PynqDevice", "IsaSimDevice", "DriverError"]

#: Byte offsets of the core's AXI-Lite registers (docs/isa.md §8.1).
REGISTERS = {
    "CONTROL": 0x00,
    "GIE": 0x04,
    "IER": 0x08,
    "ISR": 0x0C,
    "STATUS": 0x10,
    "PROGRAM_ADDR": 0x14,
    "CYCLES": 0x18,
    "STALLS": 0x1C,
    "FINGERPRINT": 0x20,
    "PARAMS": 0x24,
    "DESCRIPTORS_DONE": 0x28,
    "IMAGE_BASE": 0x2C,
}
CONTROL_START, CONTROL_DONE, CONTROL_IDLE, CONTROL_ERROR = 0, 1, 2, 3
#: STATUS codes: why a run stopped (docs/isa.md §3.7; ``hwgen.isa.Status`` in this order — the driver
#: runs on the board without hwgen, so the names are spelled out here and a test keeps them equal).
STATUS_NAMES = ("OK", "BAD_MAGIC", "BAD_VERSION", "BAD_FINGERPRINT", "BAD_HEADER", "BAD_OPCODE", "BAD_DESCRIPTOR",
                "DOES_NOT_FIT", "MISALIGNED", "OUT_OF_BOUNDS", "READ_ERROR", "WRITE_ERROR", "BAD_TASK", "BAD_COUNT")
PROGRAM_MAGIC = 0x50475748
# The Program header's third word is the hardware fingerprint it was compiled for (docs/isa.md §3.1).
_FINGERPRINT_WORD = 2
# Every DDR buffer the core reads starts on an AXI word; 4 KiB keeps bursts inside the first page too.
_BUFFER_ALIGN = 4096


class DriverError(RuntimeError):
    """The core refused or failed the run, or the folder is not a hwgen build."""


@dataclass(frozen=True)
class OutputCheck:
    """One output tensor compared with the golden model."""

    name: str
    shape: tuple[int, ...]
    mismatches: int
    first: str = ""  # "out[3, 7]: got 12, golden 13" for the first mismatch


@dataclass(frozen=True)
class RunResult:
    """What one run measured and whether every output equals ``golden.npz``."""

    status: int
    cycles: int
    stalls: int
    descriptors_done: int
    outputs: tuple[OutputCheck, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """The run succeeded and every output equals the golden model."""
        return self.status == 0 and all(o.mismatches == 0 for o in self.outputs)

    @property
    def status_name(self) -> str:
        """The STATUS code's name (docs/isa.md §3.7)."""
        return STATUS_NAMES[self.status] if self.status < len(STATUS_NAMES) else f"UNKNOWN_{self.status}"

    def summary(self) -> str:
        """A few lines for a person."""
        lines = [f"status {self.status} {self.status_name}, {self.cycles} cycles "
                 f"({self.stalls} without a tile step), {self.descriptors_done} descriptors"]
        for o in self.outputs:
            verdict = "equal to golden" if not o.mismatches else f"{o.mismatches} mismatches, first {o.first}"
            lines.append(f"{o.name} {'x'.join(map(str, o.shape))}: {verdict}")
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


class HwgenDriver:
    """Load a built folder and run its Program on ``device`` (a :class:`PynqDevice` or :class:`IsaSimDevice`)."""

    def __init__(self, folder, device):
        self.folder = Path(folder)
        try:
            self.image = (self.folder / "memory.bin").read_bytes()
            self.layout = json.loads((self.folder / "memory.json").read_text(encoding="utf-8"))
            with np.load(self.folder / "golden.npz") as golden:
                self.golden = {name: golden[name] for name in golden.files}
        except (OSError, ValueError) as exc:
            raise DriverError(f"folder {self.folder} must hold memory.bin, memory.json and golden.npz: {exc}") from None
        if len(self.image) != self.layout["size"]:
            raise DriverError(f"memory.bin must be {self.layout['size']} bytes as memory.json says, not {len(self.image)}")
        program = next(r for r in self.layout["regions"] if r["kind"] == "program")
        self.program_offset = program["offset"]
        header = np.frombuffer(self.image, dtype="<u4", count=16, offset=self.program_offset)
        if int(header[0]) != PROGRAM_MAGIC:
            raise DriverError(f"memory.bin must start its Program with magic {PROGRAM_MAGIC:#x}, not {int(header[0]):#x}")
        self.fingerprint = int(header[_FINGERPRINT_WORD])
        self.device = device

    # Registers.

    def _read(self, name: str) -> int:
        return int(self.device.read(REGISTERS[name])) & 0xFFFFFFFF

    def _write(self, name: str, value: int) -> None:
        self.device.write(REGISTERS[name], int(value) & 0xFFFFFFFF)

    def run(self, timeout_s: float = 10.0, task: int = 0) -> RunResult:
        """Place the image, start the core, wait for done, read the counters and compare the outputs.

        ``task`` is the TASK register of a multi-task (MoE) model: the outputs are compared with that
        task's golden codes (``golden_task<N>.npz``). Only a device with the MoE engine takes one
        (:class:`IsaSimDevice`); the RTL core has none yet.
        """
        golden = self._golden(task)
        fingerprint = self._read("FINGERPRINT")
        if fingerprint != self.fingerprint:
            raise DriverError(f"the core's FINGERPRINT must be the Program's {self.fingerprint:#010x}, not "
                              f"{fingerprint:#010x}: load the bitstream of this build")
        buffer = self.device.allocate(len(self.image))
        address = int(buffer.physical_address)
        if address % _BUFFER_ALIGN:
            raise DriverError(f"the image buffer must start on a {_BUFFER_ALIGN}-byte boundary, not at {address:#x}")
        buffer[:] = np.frombuffer(self.image, dtype=np.uint8)
        self.device.sync_to_device(buffer)

        self._write("PROGRAM_ADDR", address + self.program_offset)
        self._write("IMAGE_BASE", address)
        self._write("ISR", 1)  # clear a stale "finished" from an earlier run
        if task:
            set_task = getattr(self.device, "set_task", None)
            if set_task is None:
                raise DriverError(f"task must be 0 on this device (the RTL core has no MoE engine yet), not {task}")
            set_task(task)
        self._write("CONTROL", 1 << CONTROL_START)
        deadline = time.monotonic() + timeout_s
        while not self._read("CONTROL") >> CONTROL_DONE & 1:
            if time.monotonic() > deadline:
                raise DriverError(f"the core did not finish within {timeout_s:g} s "
                                  f"({self._read('DESCRIPTORS_DONE')} descriptors done)")
            self.device.wait()
        status, cycles = self._read("STATUS"), self._read("CYCLES")
        stalls, done = self._read("STALLS"), self._read("DESCRIPTORS_DONE")
        self._write("ISR", 1)
        self.device.sync_from_device(buffer)
        after = np.asarray(buffer, dtype=np.uint8).tobytes()
        return RunResult(status, cycles, stalls, done, tuple(self.compare(after, golden)))

    def _golden(self, task: int) -> dict[str, np.ndarray]:
        """The golden codes of ``task``: golden.npz, or golden_task<N>.npz of a multi-task model."""
        if isinstance(task, bool) or not isinstance(task, int) or task < 0:
            raise DriverError(f"task must be a non-negative integer, not {task!r}")
        if not task:
            return self.golden
        path = self.folder / f"golden_task{task}.npz"
        if not path.is_file():
            tasks = 1 + len(list(self.folder.glob("golden_task*.npz")))
            raise DriverError(f"task must be in 0..{tasks - 1} for this build, not {task}")
        with np.load(path) as golden:
            return {name: golden[name] for name in golden.files}

    # Outputs.

    def read_outputs(self, image: bytes) -> dict[str, np.ndarray]:
        """int64 raw codes of every output region of ``image`` (memory.json says where and how)."""
        memory = np.frombuffer(image, dtype=np.uint8)
        outputs = {}
        for r in self.layout["regions"]:
            if r["kind"] != "output":
                continue
            nbytes = r["container_bits"] // 8
            signed = not r["format"].startswith("ufixed")
            shape = tuple(r["shape"])
            # A feature map (layout "hwc") is H·W rows of C containers, channels-last, with a zero border of
            # pad = (py, px) pixels around them (docs/isa.md §4).
            hwc = r.get("layout", "rows") == "hwc"
            py, px = r.get("pad", (0, 0))
            cols = shape[0] if hwc else shape[-1]
            grid = (shape[1] + 2 * py, shape[2] + 2 * px) if hwc else ()
            rows = grid[0] * grid[1] if hwc else int(np.prod(shape[:-1], dtype=np.int64))
            stride = r["row_stride"]
            table = np.lib.stride_tricks.as_strided(memory[r["offset"]:], shape=(rows, cols * nbytes), strides=(stride, 1))
            containers = np.ascontiguousarray(table).view(f"<{'i' if signed else 'u'}{nbytes}").astype(np.int64)
            if hwc:
                bordered = containers.T.reshape(cols, *grid)
                outputs[r["name"]] = bordered[:, py:py + shape[1], px:px + shape[2]]
            else:
                outputs[r["name"]] = containers.reshape(shape)
        return outputs

    def compare(self, image: bytes, golden: dict[str, np.ndarray] | None = None) -> list[OutputCheck]:
        """Every output of ``image`` against ``golden`` (default ``golden.npz``): integer equality, first mismatch named."""
        golden = self.golden if golden is None else golden
        checks = []
        for name, got in self.read_outputs(image).items():
            if name not in golden:
                raise DriverError(f"golden.npz must hold output {name!r}, but it does not")
            want = golden[name].astype(np.int64)
            if want.shape != got.shape:
                checks.append(OutputCheck(name, got.shape, got.size, f"golden shape {want.shape}"))
                continue
            bad = np.argwhere(got != want)
            first = ""
            if bad.size:
                at = tuple(int(i) for i in bad[0])
                first = f"{name}[{', '.join(map(str, at))}]: got {int(got[at])}, golden {int(want[at])}"
            checks.append(OutputCheck(name, got.shape, int(len(bad)), first))
        if not checks:
            raise DriverError("memory.json must name at least one output region, but it names none")
        return checks


class PynqDevice:
    """The bitstream on a PYNQ board: the accelerator cell's MMIO and ``pynq.allocate`` buffers."""

    def __init__(self, bitfile, cell: str = "accel"):
        import pynq  # only on the board

        self._pynq = pynq
        self.overlay = pynq.Overlay(str(bitfile))
        self.ip = getattr(self.overlay, cell)

    def read(self, offset: int) -> int:
        return self.ip.read(offset)

    def write(self, offset: int, value: int) -> None:
        self.ip.write(offset, value)

    def allocate(self, nbytes: int):
        return self._pynq.allocate(shape=(nbytes,), dtype=np.uint8)

    def sync_to_device(self, buffer) -> None:
        buffer.sync_to_device()

    def sync_from_device(self, buffer) -> None:
        buffer.sync_from_device()

    def wait(self) -> None:
        time.sleep(1e-4)


class _Buffer(np.ndarray):
    """A NumPy byte array with the ``physical_address`` a PYNQ buffer has."""

    physical_address: int


class IsaSimDevice:
    """The core's registers and DDR in plain Python; starting it runs ``isa_sim`` on the buffer.

    It behaves as docs/isa.md §8.1 says the RTL core does: FINGERPRINT and PARAMS are constants,
    CONTROL bit 0 starts a run of the Program at PROGRAM_ADDR with addresses relative to
    IMAGE_BASE, CONTROL.done and ISR are set when it ends, CYCLES is ``isa_sim``'s analytical
    estimate and STALLS the part of it without a tile step. A Program the hardware refuses (docs/isa.md
    §3.7: a foreign fingerprint, a descriptor that does not fit, an address past the image…) stops with
    the status code and DESCRIPTORS_DONE the core reports, the earlier descriptors' results in DDR. ``flip_byte`` (an image offset) flips the low bit of that byte after each
    run, so a test can show that the driver notices a wrong output.
    """

    _BASE = 0x4000_0000

    def __init__(self, hw, *, flip_byte: int | None = None):
        self.hw = hw
        self.flip_byte = flip_byte
        self.registers = {offset: 0 for offset in REGISTERS.values()}
        self.registers[REGISTERS["FINGERPRINT"]] = hw.fingerprint()
        self.registers[REGISTERS["CONTROL"]] = 1 << CONTROL_IDLE
        self.buffers: list[_Buffer] = []
        self.writes: list[tuple[str, int]] = []  # (register name, value), in order
        self._next = self._BASE
        self.task = 0  # the TASK register of a core with the MoE engine (hw.has_moe)

    def allocate(self, nbytes: int) -> _Buffer:
        buffer = np.zeros(nbytes, dtype=np.uint8).view(_Buffer)
        buffer.physical_address = self._next
        self._next += -(-nbytes // _BUFFER_ALIGN) * _BUFFER_ALIGN
        self.buffers.append(buffer)
        return buffer

    def sync_to_device(self, buffer) -> None:
        pass

    def sync_from_device(self, buffer) -> None:
        pass

    def wait(self) -> None:
        pass

    def read(self, offset: int) -> int:
        if offset not in self.registers:
            raise DriverError(f"register offset must be one of the map's, not {offset:#x}")
        return self.registers[offset]

    def write(self, offset: int, value: int) -> None:
        names = {v: k for k, v in REGISTERS.items()}
        if offset not in names or names[offset] in ("STATUS", "CYCLES", "STALLS", "FINGERPRINT", "PARAMS",
                                                      "DESCRIPTORS_DONE"):
            raise DriverError(f"register offset must be a writable register, not {offset:#x}")
        name = names[offset]
        self.writes.append((name, value))
        if name == "ISR":
            self.registers[offset] &= ~value
        elif name == "CONTROL":
            if value >> CONTROL_START & 1:
                self._run()
        else:
            self.registers[offset] = value

    def set_task(self, task: int) -> None:
        """Write the TASK register (the gate a multi-task MoE model runs); only a core with the MoE engine has it."""
        if not self.hw.has_moe:
            raise DriverError(f"task must be 0 on a core without the MoE engine, not {task}")
        self.task = task

    def _buffer_at(self, address: int) -> tuple[_Buffer, int]:
        for buffer in self.buffers:
            if buffer.physical_address <= address < buffer.physical_address + buffer.size:
                return buffer, address - buffer.physical_address
        raise DriverError(f"address {address:#x} must lie in an allocated buffer, but it does not")

    def _run(self) -> None:
        from hwgen.compiler import Refused, isa_sim

        reg = lambda name: self.registers[REGISTERS[name]]  # noqa: E731
        buffer, base_offset = self._buffer_at(reg("IMAGE_BASE"))
        offset = reg("PROGRAM_ADDR") - reg("IMAGE_BASE")
        image = bytes(buffer[base_offset:])
        status = cycles = stalls = done = 0
        try:
            result = isa_sim(image[offset:], image, self.hw, program_offset=offset, task=self.task)
        except Refused as refused:
            status, done = int(refused.status), refused.executed
            buffer[base_offset:] = np.frombuffer(refused.data, dtype=np.uint8)
        else:
            buffer[base_offset:] = np.frombuffer(result.data, dtype=np.uint8)
            cycles = result.total_cycles
            stalls = cycles - sum(c.ideal for c in result.cycles)
            done = len(result.cycles)
            if self.flip_byte is not None:
                buffer[base_offset + self.flip_byte] ^= 1
        self.registers[REGISTERS["STATUS"]] = status
        self.registers[REGISTERS["CYCLES"]] = cycles & 0xFFFFFFFF
        self.registers[REGISTERS["STALLS"]] = stalls & 0xFFFFFFFF
        self.registers[REGISTERS["DESCRIPTORS_DONE"]] = done
        self.registers[REGISTERS["CONTROL"]] = 1 << CONTROL_DONE | 1 << CONTROL_IDLE | (status != 0) << CONTROL_ERROR
        self.registers[REGISTERS["ISR"]] = 1


def main(argv: list[str] | None = None) -> int:
    """``python3 hwgen_driver.py [--isa-sim] [--bitfile PATH]`` from the built folder or its driver/."""
    import argparse

    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description="Run a hwgen build's Program and compare with golden.npz.")
    parser.add_argument("--folder", default=str(here.parent), help="the built folder (default: this file's parent)")
    parser.add_argument("--bitfile", default=None, help="bitstream (default: FOLDER/vivado/rtl/hwgen.bit)")
    parser.add_argument("--isa-sim", action="store_true", help="run on IsaSimDevice (needs hwgen) instead of a board")
    parser.add_argument("--task", type=int, default=0, help="the TASK register of a multi-task MoE model (default 0)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if args.isa_sim:
        import yaml

        from hwgen.hwparams import HwParams

        config = yaml.safe_load((folder / "hwgen.yaml").read_text(encoding="utf-8"))
        device = IsaSimDevice(HwParams.from_dict(config["accelerator"]))
    else:
        device = PynqDevice(args.bitfile or folder / "vivado" / "rtl" / "hwgen.bit")
    result = HwgenDriver(folder, device).run(task=args.task)
    sys.stdout.write(result.summary() + "\n")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
