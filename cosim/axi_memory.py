# SPDX-License-Identifier: Apache-2.0
"""cocotb models of what surrounds the accelerator: a DDR-like AXI4 slave memory, an AXI-Lite master.

Port naming: Amaranth flattens a signature member ``m_axi`` into ``m_axi__araddr``,
``m_axi__rvalid``...; both models look signals up as ``<prefix>__<channel signal>``.

:class:`AxiMemory` behaves like a DDR controller behind an interconnect, as far as a manager can
tell: every read burst returns its first beat ``read_latency`` cycles after its AR handshake (later
bursts queue behind earlier ones), each channel moves at most one beat per cycle, a write burst is
acknowledged ``write_latency`` cycles after its last W beat, and in stress mode every ready/valid
it drives (ARREADY, RVALID, AWREADY, WREADY, BVALID) is dropped at random with probability
``stall_prob``. Addresses outside the memory answer DECERR.
"""

from __future__ import annotations

import collections
import logging
import random

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["AxiMemory", "AxiLiteMaster"]

OKAY, DECERR = 0, 3


class AxiMemory:
    """An AXI4 slave memory with DDR-like read latency and optional random stalls.

    Parameters
    ----------
    dut, clk:
        The toplevel handle and its clock signal.
    size:
        Memory size in bytes; the image given to :meth:`load` starts at address 0.
    prefix:
        Port prefix of the manager's AXI4 port (``m_axi`` gives ``m_axi__araddr``...).
    read_latency:
        Cycles from an AR handshake to the first R beat of that burst (default 64).
    write_latency:
        Cycles from a burst's last W beat to its B response.
    stall_prob:
        Probability, per cycle and per channel, of dropping a ready or valid this model drives.
    seed:
        Seed of the stall generator.
    aw_after_w:
        Hold AWREADY low until the burst's first W beat has arrived, as AXI allows a slave to; a
        manager that waits for AWREADY before raising WVALID deadlocks against this.
    """

    def __init__(self, dut, clk, *, size, prefix="m_axi", read_latency=64, write_latency=16,
                 stall_prob=0.0, seed=0, aw_after_w=False):
        self.log = logging.getLogger(f"cosim.axi_memory.{prefix}")
        self.clk = clk
        self.mem = bytearray(size)
        self.read_latency, self.write_latency = read_latency, write_latency
        self.stall_prob = stall_prob
        self.aw_after_w = aw_after_w
        self.rng = random.Random(seed)
        self.sig = {name: getattr(dut, f"{prefix}__{name}") for name in (
            "araddr", "arlen", "arsize", "arvalid", "arready", "rdata", "rresp", "rlast", "rvalid",
            "rready", "awaddr", "awlen", "awsize", "awvalid", "awready", "wdata", "wstrb", "wlast",
            "wvalid", "wready", "bresp", "bvalid", "bready")}
        self.data_bytes = len(self.sig["rdata"]) // 8
        self.cycle = 0
        self.read_beats = self.write_beats = self.read_bursts = self.write_bursts = 0
        self.max_reads_in_flight = 0
        self.errors = 0
        self._reads = collections.deque()   # [ready_cycle, addr, beats_left, size_bytes]
        self._writes = collections.deque()  # [addr, beats_left, size_bytes] announced on AW
        self._w_early = collections.deque()  # W beats that arrived before their AW
        self._b = collections.deque()       # [ready_cycle, resp]
        self._write_resp = OKAY
        self._task = None

    # ------------------------------------------------------------------ image

    def load(self, image: bytes, offset: int = 0) -> None:
        """Copy ``image`` into memory at byte ``offset``."""
        if offset < 0 or offset + len(image) > len(self.mem):
            raise ValueError(f"image must fit in {len(self.mem)} bytes of memory, not end at {offset + len(image)}")
        self.mem[offset:offset + len(image)] = image

    def dump(self, offset: int = 0, length: int | None = None) -> bytes:
        """The memory contents from ``offset`` (the whole rest by default)."""
        end = len(self.mem) if length is None else offset + length
        return bytes(self.mem[offset:end])

    # ------------------------------------------------------------------ run

    def start(self):
        import cocotb

        for name in ("arready", "rvalid", "rlast", "awready", "wready", "bvalid"):
            self.sig[name].value = 0
        self.sig["rdata"].value = 0
        self.sig["rresp"].value = 0
        self.sig["bresp"].value = 0
        self._task = cocotb.start_soon(self._run())
        return self._task

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def idle(self) -> bool:
        """No read or write burst is in progress inside the model."""
        return not (self._reads or self._writes or self._w_early or self._b)

    def _go(self) -> bool:
        return self.stall_prob == 0.0 or self.rng.random() >= self.stall_prob

    def _in_range(self, addr: int, nbytes: int) -> bool:
        return 0 <= addr and addr + nbytes <= len(self.mem)

    def _write_beat(self, addr: int, size: int, data: int, strb: int) -> int:
        lane = addr % self.data_bytes
        if not self._in_range(addr - lane, self.data_bytes):
            return DECERR
        raw = data.to_bytes(self.data_bytes, "little")
        base = addr - lane
        for i in range(lane, lane + size):
            if strb >> i & 1:
                self.mem[base + i] = raw[i]
        return OKAY

    async def _run(self):
        s = self.sig
        nb = self.data_bytes
        driven = {}

        def drive(name, value):
            if driven.get(name) != value:
                s[name].value = value
                driven[name] = value
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            now = self.cycle
            # Drive this cycle's outputs from the state left by the previous cycle (writing only
            # what changed: a simulator write costs more than the bookkeeping).
            ar_ready = self._go()
            drive("arready", int(ar_ready))
            r_valid = bool(self._reads) and self._reads[0][0] <= now and self._go()
            if r_valid:
                ready_cycle, addr, beats_left, size = self._reads[0]
                lane = addr % nb
                if self._in_range(addr - lane, nb):
                    drive("rdata", int.from_bytes(self.mem[addr - lane:addr - lane + nb], "little"))
                    drive("rresp", OKAY)
                else:
                    drive("rdata", 0)
                    drive("rresp", DECERR)
                drive("rlast", int(beats_left == 1))
            drive("rvalid", int(r_valid))
            aw_ready = self._go() and (not self.aw_after_w or len(self._w_early) > 0)
            w_ready = self._go()
            drive("awready", int(aw_ready))
            drive("wready", int(w_ready))
            b_valid = bool(self._b) and self._b[0][0] <= now and self._go()
            if b_valid:
                drive("bresp", self._b[0][1])
            drive("bvalid", int(b_valid))

            await ReadOnly()
            # Handshakes that complete at the coming edge.
            if ar_ready and s["arvalid"].value:
                addr, beats = int(s["araddr"].value), int(s["arlen"].value) + 1
                self._reads.append([now + self.read_latency, addr, beats, 1 << int(s["arsize"].value)])
                self.read_bursts += 1
                self.max_reads_in_flight = max(self.max_reads_in_flight, len(self._reads))
            if r_valid and s["rready"].value:
                head = self._reads[0]
                self.read_beats += 1
                if head[2] == 1:
                    self._reads.popleft()
                else:
                    head[1] = (head[1] - head[1] % head[3]) + head[3]
                    head[2] -= 1
            if aw_ready and s["awvalid"].value:
                self._writes.append([int(s["awaddr"].value), int(s["awlen"].value) + 1,
                                     1 << int(s["awsize"].value)])
                self.write_bursts += 1
            if w_ready and s["wvalid"].value:
                self._w_early.append((int(s["wdata"].value), int(s["wstrb"].value), int(s["wlast"].value)))
            while self._w_early and self._writes:
                data, strb, wlast = self._w_early.popleft()
                head = self._writes[0]
                resp = self._write_beat(head[0], head[2], data, strb)
                self._write_resp = max(self._write_resp, resp)
                self.write_beats += 1
                if head[1] == 1:
                    if not wlast:
                        self.log.error("WLAST missing on the last beat of a burst at %#x", head[0])
                        self.errors += 1
                    self._writes.popleft()
                    self._b.append((now + self.write_latency, self._write_resp))
                    self._write_resp = OKAY
                else:
                    if wlast:
                        self.log.error("WLAST early in a burst at %#x", head[0])
                        self.errors += 1
                    head[0] = (head[0] - head[0] % head[2]) + head[2]
                    head[1] -= 1
            if b_valid and s["bready"].value:
                self._b.popleft()


class AxiLiteMaster:
    """Drives an AXI-Lite slave port: 32-bit register reads and writes, one at a time."""

    def __init__(self, dut, clk, *, prefix="s_axi"):
        self.clk = clk
        self.sig = {name: getattr(dut, f"{prefix}__{name}") for name in (
            "awaddr", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp", "bvalid",
            "bready", "araddr", "arvalid", "arready", "rdata", "rresp", "rvalid", "rready")}
        for name in ("awvalid", "wvalid", "bready", "arvalid", "rready", "awaddr", "wdata", "wstrb", "araddr"):
            self.sig[name].value = 0

    async def write(self, addr: int, value: int, strb: int = 0xF, timeout: int = 1000) -> int:
        """Write ``value`` to byte address ``addr``; returns BRESP."""
        s = self.sig
        await RisingEdge(self.clk)
        s["awaddr"].value, s["awvalid"].value = addr, 1
        s["wdata"].value, s["wstrb"].value, s["wvalid"].value = value, strb, 1
        s["bready"].value = 1
        aw_pending = w_pending = True
        for _ in range(timeout):
            await ReadOnly()
            aw_hs = aw_pending and bool(s["awready"].value)
            w_hs = w_pending and bool(s["wready"].value)
            b_hs = bool(s["bvalid"].value)
            resp = int(s["bresp"].value) if b_hs else None
            await RisingEdge(self.clk)
            if aw_hs:
                aw_pending = False
                s["awvalid"].value = 0
            if w_hs:
                w_pending = False
                s["wvalid"].value = 0
            if b_hs and not aw_pending and not w_pending:
                s["bready"].value = 0
                return resp
        raise TimeoutError(f"AXI-Lite write to {addr:#x} got no response in {timeout} cycles")

    async def read(self, addr: int, timeout: int = 1000) -> int:
        """Read the 32-bit register at byte address ``addr``."""
        s = self.sig
        await RisingEdge(self.clk)
        s["araddr"].value, s["arvalid"].value = addr, 1
        s["rready"].value = 1
        ar_pending = True
        for _ in range(timeout):
            await ReadOnly()
            ar_hs = ar_pending and bool(s["arready"].value)
            r_hs = not ar_pending and bool(s["rvalid"].value)
            value = int(s["rdata"].value) if r_hs else None
            await RisingEdge(self.clk)
            if ar_hs:
                ar_pending = False
                s["arvalid"].value = 0
            if r_hs:
                s["rready"].value = 0
                return value
        raise TimeoutError(f"AXI-Lite read of {addr:#x} got no response in {timeout} cycles")
