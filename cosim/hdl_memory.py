# SPDX-License-Identifier: Apache-2.0
"""The fast path of whole-Program runs: the AXI memory in HDL, beside the core, in one Verilator build.

``axi_memory.v`` (module ``hwgen_axi_memory``) is a Verilog AXI4 slave with the behaviour of the
cocotb model :class:`~hwgen.cosim.axi_memory.AxiMemory` — DDR-like read latency, bursts queued in
order, one beat per cycle per channel, write responses after a latency, DECERR outside the memory,
random stalls from seeded generators — so a Program runs with no Python per clock cycle.
:func:`sim_top` wraps a core's Verilog and that memory into the top ``hwgen_sim_top``: the core's
``clk``, ``rst``, ``s_axi__*`` and ``irq`` are the top's ports (the AXI-Lite start sequence stays in
cocotb, a few dozen cycles), its ``m_axi__*`` goes to the memory, and the memory's configuration,
bulk load/dump strobes and counters are ports too. The clock is not a port: the wrapper generates
it (``always #5``), and cocotb only watches it. With ``mem_external = 1`` the core's master is
connected to the top's ``m_axi__*`` ports instead (the Verilog memory sees no handshake), so the
cocotb model ``AxiMemory`` runs on the same build: one Verilator build per core serves both
memories. :class:`HdlAxiMemory` is the cocotb side: it
writes the image as one ``$readmemh`` file, sets the configuration, and reads the image back from
one ``$writememh`` file — never word by word.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

__all__ = ["MEMORY_VERILOG", "SIM_TOPLEVEL", "SIM_BUILD_ARGS", "HALF_PERIOD_NS", "MEM_BYTES_LOG2", "sim_top", "HdlAxiMemory", "to_hex",
           "from_hex"]

#: The Verilog memory model.
MEMORY_VERILOG = Path(__file__).with_name("axi_memory.v")
#: Module name of the wrapper :func:`sim_top` emits.
SIM_TOPLEVEL = "hwgen_sim_top"
#: Verilator arguments of the ``hwgen_sim_top`` build. cocotb's runner makes every signal public
#: (``--public-flat-rw``), which keeps Verilator from optimizing the core and halves its speed; the
#: top's ports (and its clock) are marked public in the wrapper itself, and cocotb needs nothing
#: else. The clock is generated inside the wrapper (``--timing``, 10 ns period), so no GPI callback
#: runs per cycle either; the wheel's verilated.mk does not add the ``-fcoroutines`` g++ 12 needs
#: for ``--timing``.
SIM_BUILD_ARGS = ("--no-public-flat-rw", "--timing", "--timescale", "1ns/1ps", "-CFLAGS", "-fcoroutines")
#: Half the period of the wrapper's clock, in ns.
HALF_PERIOD_NS = 5
#: Capacity of the HDL memory: 2**26 bytes (64 MiB) at every data width.
MEM_BYTES_LOG2 = 26
LOAD_FILE, DUMP_FILE = "axi_memory_in.hex", "axi_memory_out.hex"
_COUNTERS = ("read_beats", "write_beats", "read_bursts", "write_bursts", "max_reads_in_flight", "errors")
_DECLARATION = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(\[(\d+):0\]\s+)?(\w+)\s*;", re.M)


def _core_ports(core_verilog: str, core_name: str) -> dict[str, tuple[str, int]]:
    """``{port: (direction, width)}`` of module ``core_name`` in ``core_verilog``."""
    start = re.search(rf"^module\s+{re.escape(core_name)}\s*\(", core_verilog, re.M)
    if start is None:
        raise ValueError(f"core Verilog must define module {core_name!r}, but it does not")
    end = core_verilog.index("endmodule", start.end())
    ports = {}
    for direction, _, msb, name in _DECLARATION.findall(core_verilog[start.end():end]):
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    return ports


@functools.lru_cache(maxsize=1)
def _memory_source() -> str:
    return MEMORY_VERILOG.read_text(encoding="utf-8")


def sim_top(core_verilog: str, core_name: str, data_width: int) -> str:
    """Verilog of ``hwgen_sim_top``: the core ``core_name`` and ``hwgen_axi_memory``, with the core's own text.

    The result is one self-contained source for :func:`hwgen.toolchain.run_cocotb` (top
    :data:`SIM_TOPLEVEL`), so the Verilator build is cached by the content of all three.
    """
    ports = _core_ports(core_verilog, core_name)
    axi = {name: spec for name, spec in ports.items() if name.startswith("m_axi__")}
    needed = {f"m_axi__{n}" for n in ("araddr", "arlen", "arsize", "arvalid", "arready", "rdata", "rresp", "rlast",
                                      "rvalid", "rready", "awaddr", "awlen", "awsize", "awvalid", "awready", "wdata",
                                      "wstrb", "wlast", "wvalid", "wready", "bresp", "bvalid", "bready")}
    missing = sorted(needed - set(axi))
    if missing or not {"clk", "rst", "irq"} <= set(ports):
        raise ValueError(f"core {core_name!r} must have clk, rst, irq and an m_axi AXI4 master, not lack "
                         f"{', '.join(missing + sorted({'clk', 'rst', 'irq'} - set(ports)))}")
    if axi["m_axi__rdata"][1] != data_width:
        raise ValueError(f"data_width must be the core's m_axi width {axi['m_axi__rdata'][1]}, not {data_width}")
    outer = {name: spec for name, spec in ports.items() if not name.startswith("m_axi__") and name != "clk"}
    memory_ports = [("input", "mem_external", 1), ("input", "mem_load", 1), ("input", "mem_dump", 1),
                    ("input", "mem_bytes", 32), ("input", "mem_read_latency", 32), ("input", "mem_write_latency", 32),
                    ("input", "mem_stall_threshold", 17), ("input", "mem_seed", 32),
                    *(("output", f"mem_{c}", 32) for c in _COUNTERS), ("output", "mem_idle", 1)]

    def declare(direction, name, width, public=False):
        # The top's ports stay reachable from cocotb when the build leaves out --public-flat-rw.
        return (f"  {direction} {'' if width == 1 else f'[{width - 1}:0] '}{name}"
                f"{' /*verilator public_flat_rw*/' if public else ''};")

    names = [*outer, *(name for _, name, _ in memory_ports), *axi]
    lines = [f"module {SIM_TOPLEVEL}({', '.join(names)});"]
    lines += [declare(d, n, w, public=True) for n, (d, w) in outer.items()]
    lines += [declare(d, n, w, public=True) for d, n, w in memory_ports]
    # m_axi__* ports: the core's master as seen by a memory model outside the simulation (cocotb's
    # AxiMemory, with mem_external = 1); core__* the core's side, hdl__* the Verilog memory's.
    lines += [declare("output" if d == "output" else "input", n, w, public=True) for n, (d, w) in axi.items()]
    lines += [declare("wire", f"core__{n[len('m_axi__'):]}", w) for n, (_, w) in axi.items()]
    lines += [declare("wire", f"hdl__{n[len('m_axi__'):]}", w) for n, (d, w) in axi.items() if d == "input"]
    for name, (direction, _) in axi.items():
        signal = name[len("m_axi__"):]
        if direction == "output":
            lines.append(f"  assign {name} = core__{signal};")
        else:
            lines.append(f"  assign core__{signal} = mem_external ? {name} : hdl__{signal};")
    lines.append("  reg clk /*verilator public_flat_rw*/ = 1'b0;")
    lines.append(f"  always #{HALF_PERIOD_NS} clk = ~clk;")
    connections = [f".{n}({n})" for n in ["clk", *outer]] + [f".{n}(core__{n[len('m_axi__'):]})" for n in axi]
    lines.append(f"  {core_name} core ({', '.join(connections)});")
    memory = [".clk(clk)", ".rst(rst)"]
    for name in sorted(needed):
        signal = name[len("m_axi__"):]
        if axi[name][0] == "input":
            memory.append(f".{signal}(hdl__{signal})")
        elif signal in ("arvalid", "awvalid", "wvalid", "rready", "bready"):  # no handshakes while external
            memory.append(f".{signal}(core__{signal} & ~mem_external)")
        else:
            memory.append(f".{signal}(core__{signal})")
    memory += [".load(mem_load)", ".dump(mem_dump)", ".mem_bytes(mem_bytes)", ".read_latency(mem_read_latency)",
               ".write_latency(mem_write_latency)", ".stall_threshold(mem_stall_threshold)", ".seed(mem_seed)"]
    memory += [f".{c}(mem_{c})" for c in _COUNTERS] + [".idle(mem_idle)"]
    words_log2 = MEM_BYTES_LOG2 - (data_width // 8).bit_length() + 1
    lines.append(f"  hwgen_axi_memory #(.DATA_WIDTH({data_width}), .MEM_WORDS_LOG2({words_log2})) memory "
                 f"({', '.join(memory)});")
    lines.append("endmodule")
    return "\n".join([core_verilog.rstrip(), "", _memory_source().rstrip(), "", *lines, ""])


def to_hex(data: bytes, word_bytes: int) -> str:
    """``data`` (zero-padded to whole words) as ``$readmemh`` text: one little-endian word per line."""
    import numpy as np

    padded = bytes(data) + bytes(-len(data) % word_bytes)
    words = np.frombuffer(padded, dtype=np.uint8).reshape(-1, word_bytes)[:, ::-1]
    text = words.tobytes().hex()
    step = 2 * word_bytes
    return "\n".join(text[i:i + step] for i in range(0, len(text), step)) + "\n"


def from_hex(text: str, word_bytes: int) -> bytes:
    """The bytes of ``$writememh`` text (one word per line; ``//`` comments and blank lines skipped)."""
    out = bytearray()
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            raise ValueError(f"memory dump must hold consecutive words, not an address line {line!r}")
        out += int(line, 16).to_bytes(word_bytes, "little")
    return bytes(out)


class HdlAxiMemory:
    """cocotb handle of the ``hwgen_axi_memory`` inside ``hwgen_sim_top``: the interface of ``AxiMemory``.

    :meth:`load` writes the whole memory (``size`` bytes, the image at ``offset``, zeros elsewhere)
    as one ``$readmemh`` file in the simulator's working folder and raises ``mem_load``; the next
    clock edge reads it (the testbench's reset cycles give it that edge). :meth:`start` drops
    ``mem_load``. :meth:`fetch` (a coroutine) dumps the memory with ``$writememh`` and reads it
    back, after which :meth:`dump` returns its bytes. Parameters as ``AxiMemory``'s; ``stall_prob``
    becomes the threshold ``round(stall_prob * 65536)`` of 16-bit draws; ``data_bytes`` is the AXI
    word size.
    """

    def __init__(self, dut, clk, *, size, data_bytes, read_latency=64, write_latency=16, stall_prob=0.0, seed=0):
        if not 0 < size <= 1 << MEM_BYTES_LOG2:
            raise ValueError(f"memory size must be 1 to {1 << MEM_BYTES_LOG2} bytes, not {size}")
        if not 0.0 <= stall_prob <= 1.0:
            raise ValueError(f"stall_prob must be in [0, 1], not {stall_prob}")
        self.dut, self.clk, self.size = dut, clk, size
        self.data_bytes = data_bytes
        self.mem = bytearray(size)
        dut.mem_bytes.value = size
        dut.mem_read_latency.value = read_latency
        dut.mem_write_latency.value = write_latency
        dut.mem_stall_threshold.value = round(stall_prob * 65536)
        dut.mem_seed.value = seed & 0xFFFFFFFF
        dut.mem_dump.value = 0
        dut.mem_external.value = 0

    def load(self, image: bytes, offset: int = 0) -> None:
        """Copy ``image`` into memory at byte ``offset`` and have the next clock edge load the whole memory."""
        if offset < 0 or offset + len(image) > len(self.mem):
            raise ValueError(f"image must fit in {len(self.mem)} bytes of memory, not end at {offset + len(image)}")
        self.mem[offset:offset + len(image)] = image
        Path(LOAD_FILE).write_text(to_hex(self.mem, self.data_bytes))
        self.dut.mem_load.value = 1

    def start(self) -> None:
        self.dut.mem_load.value = 0

    def stop(self) -> None:
        pass

    async def fetch(self) -> None:
        """Dump the memory from the simulation (``$writememh``) into this object."""
        from cocotb.triggers import RisingEdge

        path = Path(DUMP_FILE)
        if path.exists():
            os.remove(path)
        self.dut.mem_dump.value = 1
        await RisingEdge(self.clk)
        await RisingEdge(self.clk)
        self.dut.mem_dump.value = 0
        self.mem = bytearray(from_hex(path.read_text(), self.data_bytes)[:self.size])

    def dump(self, offset: int = 0, length: int | None = None) -> bytes:
        """The memory contents as of the last :meth:`fetch`, from ``offset`` (the whole rest by default)."""
        end = len(self.mem) if length is None else offset + length
        return bytes(self.mem[offset:end])

    @property
    def idle(self) -> bool:
        return bool(self.dut.mem_idle.value)

    def __getattr__(self, name):
        if name in _COUNTERS:
            return int(getattr(self.dut, f"mem_{name}").value)
        raise AttributeError(name)
