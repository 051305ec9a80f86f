# SPDX-License-Identifier: Apache-2.0
"""cocotb drivers, monitors and a scoreboard for Amaranth ``stream.Signature`` ports.

Port naming assumption: Amaranth flattens a stream member ``i`` of a component into the Verilog
ports ``i__valid``, ``i__ready`` and ``i__payload`` (a member nested in another, such as ``rq0``'s
``i`` in a :class:`~hwgen.cosim.bundle.Bundle`, becomes ``rq0__i__valid``...), and a payload with an
``ArrayLayout`` is one flat vector whose lane ``k`` occupies bits ``[k·w, (k+1)·w)``.  ``prefix``
is everything before ``__valid``.

Timing: a :class:`StreamDriver` or :class:`StreamMonitor` drives its outputs right after a rising
edge, samples the handshake in the read-only phase before the next edge, and counts that next
edge as the cycle of the transfer.  :attr:`cycle` counts rising edges since :meth:`start`, so
components started in the same step share one time base.

``rng`` is anything with a ``random()`` method returning floats in [0, 1) — a seeded
:class:`random.Random` keeps runs reproducible and the per-cycle cost low.
"""

from __future__ import annotations

import collections
import logging
import os
import random
from collections.abc import Iterable, Sequence

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge, with_timeout

__all__ = ["pack_lanes", "unpack_lanes", "StreamDriver", "StreamMonitor", "Scoreboard", "LaneUnitCheck",
           "start_clock_and_reset"]


def pack_lanes(lanes: Sequence[int], lane_width: int, signed: bool) -> int:
    """The flat payload integer of a beat: lane ``k`` at bits ``[k·w, (k+1)·w)``."""
    lo, hi = (-(1 << (lane_width - 1)), (1 << (lane_width - 1)) - 1) if signed else (0, (1 << lane_width) - 1)
    mask = (1 << lane_width) - 1
    packed = 0
    for index, value in enumerate(lanes):
        value = int(value)
        if not lo <= value <= hi:
            kind = "signed" if signed else "unsigned"
            raise ValueError(f"lane {index} must fit {lane_width} {kind} bits ({lo}..{hi}), not {value}")
        packed |= (value & mask) << (index * lane_width)
    return packed


def unpack_lanes(packed: int, lanes: int, lane_width: int, signed: bool) -> list[int]:
    """The lane values of a flat payload integer (inverse of :func:`pack_lanes`)."""
    mask = (1 << lane_width) - 1
    sign = 1 << (lane_width - 1)
    values = []
    for index in range(lanes):
        value = (packed >> (index * lane_width)) & mask
        if signed and value & sign:
            value -= 1 << lane_width
        values.append(value)
    return values


class _StreamPort:
    def __init__(self, dut, prefix: str, clk, lanes: int, signed: bool, rng, probability: float, what: str):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"{what} must be in [0, 1), not {probability!r}")
        if probability and rng is None:
            raise ValueError(f"rng must be given when {what} is not 0, not None")
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        width = len(self.payload)
        if width % lanes:
            raise ValueError(f"lanes must divide the {width}-bit payload of {prefix}, not {lanes}")
        self.prefix, self.clk, self.lanes, self.signed, self.rng = prefix, clk, lanes, signed, rng
        self.lane_width = width // lanes
        self.cycle = 0
        #: Cycle (see the module notes) of every transfer, in order.
        self.transfer_cycles: list[int] = []
        self.log = logging.getLogger(f"cosim.streams.{prefix}")
        self._task = None

    def _chance(self, probability: float) -> bool:
        return probability > 0.0 and self.rng.random() < probability

    def start(self):
        """Run from the current step on (call it right after a rising edge)."""
        import cocotb

        if self._task is None:
            self._task = cocotb.start_soon(self._run())
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class StreamDriver(_StreamPort):
    """Sends beats into ``<prefix>__valid/ready/payload``, idling at random between beats.

    A beat is a sequence of ``lanes`` ints.  Before each beat the driver stays idle (valid low)
    for a cycle with probability ``idle_prob``, repeatedly; once valid is high it stays high with
    the same payload until the handshake, as the stream rules require.
    """

    def __init__(self, dut, prefix: str, clk, idle_prob: float = 0.0, rng=None, *, lanes: int = 1,
                 signed: bool = True):
        super().__init__(dut, prefix, clk, lanes, signed, rng, idle_prob, "idle_prob")
        self.idle_prob = idle_prob
        self._queue: collections.deque[int] = collections.deque()
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0

    def send(self, beats: Iterable[Sequence[int]]) -> None:
        """Queue beats (packed now, so the per-cycle loop only copies integers)."""
        for beat in beats:
            if len(beat) != self.lanes:
                raise ValueError(f"a beat for {self.prefix} must have {self.lanes} lanes, not {len(beat)}")
            self._queue.append(pack_lanes(beat, self.lane_width, self.signed))
        if self._queue:
            self._idle.clear()

    @property
    def sent(self) -> int:
        return len(self.transfer_cycles)

    async def wait_idle(self) -> None:
        """Return once every queued beat has been transferred."""
        await self._idle.wait()

    async def _run(self) -> None:
        valid, ready, payload, clk = self.valid, self.ready, self.payload, self.clk
        queue, cycles = self._queue, self.transfer_cycles
        holding = driven = False
        while True:
            if not holding and queue and not self._chance(self.idle_prob):
                payload.value = queue.popleft()
                holding = True
            if holding is not driven:
                valid.value = int(holding)
                driven = holding
            await ReadOnly()
            fired = holding and ready.value == 1
            await RisingEdge(clk)
            self.cycle += 1
            if fired:
                holding = False
                cycles.append(self.cycle)
                if not queue:
                    self._idle.set()


class StreamMonitor(_StreamPort):
    """Collects beats from ``<prefix>__valid/ready/payload`` while dropping ``ready`` at random.

    Each cycle ``ready`` is low with probability ``backpressure_prob``.  Collected beats are lists
    of lane ints in :attr:`beats`, unpacked as signed or unsigned lanes.
    """

    def __init__(self, dut, prefix: str, clk, backpressure_prob: float = 0.0, rng=None, *, lanes: int = 1,
                 signed: bool = True):
        super().__init__(dut, prefix, clk, lanes, signed, rng, backpressure_prob, "backpressure_prob")
        self.backpressure_prob = backpressure_prob
        self.beats: list[list[int]] = []
        self._wanted = 0
        self._enough = Event()
        self.ready.value = 0

    async def wait_for(self, count: int) -> None:
        """Return once at least ``count`` beats have been collected."""
        self._wanted = count
        if len(self.beats) < count:
            self._enough.clear()
            await self._enough.wait()

    async def _run(self) -> None:
        valid, ready, payload, clk = self.valid, self.ready, self.payload, self.clk
        beats, cycles = self.beats, self.transfer_cycles
        accepting = None
        while True:
            want = not self._chance(self.backpressure_prob)
            if want is not accepting:
                ready.value = int(want)
                accepting = want
            await ReadOnly()
            packed = int(payload.value) if want and valid.value == 1 else None
            await RisingEdge(clk)
            self.cycle += 1
            if packed is not None:
                beats.append(unpack_lanes(packed, self.lanes, self.lane_width, self.signed))
                cycles.append(self.cycle)
                if len(beats) >= self._wanted:
                    self._enough.set()


class Scoreboard:
    """Exact comparison of collected beats (or rows of raw values) with the expected ones.

    :meth:`check` raises :class:`AssertionError` naming the first differing beat, lane and both
    values, or the beat counts when one sequence is a prefix of the other.
    """

    def __init__(self, name: str):
        self.name = name
        self.log = logging.getLogger(f"cosim.scoreboard.{name}")

    def check(self, expected: Iterable[Sequence[int]], actual: Iterable[Sequence[int]]) -> None:
        expected, actual = [list(map(int, b)) for b in expected], [list(map(int, b)) for b in actual]
        for index, (want, got) in enumerate(zip(expected, actual)):
            if want != got:
                lane = next((k for k, (w, g) in enumerate(zip(want, got)) if w != g), min(len(want), len(got)))
                raise AssertionError(
                    f"{self.name}: beat {index} differs at lane {lane}: got {got}, expected {want}"
                )
        if len(actual) != len(expected):
            raise AssertionError(f"{self.name}: got {len(actual)} beats, expected {len(expected)}")
        self.log.info("%s: %d beats match", self.name, len(expected))


async def start_clock_and_reset(dut, cycles: int = 2) -> None:
    """A 100 MHz clock on ``dut.clk`` and ``cycles`` of synchronous reset on ``dut.rst``."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


class LaneUnitCheck:
    """Driver, monitor, golden expectation and scoreboard of one streaming unit with a beat in, a beat out.

    ``vectors`` (beats × lanes raw inputs) go in on ``<input>__*`` with idle cycles, results come out
    on ``<output>__*`` under backpressure, and :meth:`check` compares them with ``expected`` exactly.
    With ``full_rate`` (no idle, no backpressure) it also asserts that N beats leave N + ``latency``
    cycles after the first enters.  ``corrupt`` (``"<name>:<beat>"``, from the bench's environment
    variable) flips one expected LSB, which must fail the check: the test of the test.
    """

    #: Cycles a unit may take per beat before the bench gives up (stalls included), plus a margin.
    CYCLES_PER_BEAT_LIMIT = 20
    CYCLE_MARGIN = 200
    #: Cycles to keep watching after the last expected beat, so an extra beat shows up as a failure.
    DRAIN_CYCLES = 16

    def __init__(self, dut, unit: dict, seed: int, *, input: str, output: str, expected: np.ndarray,
                 in_signed: bool, out_signed: bool, latency: int, corrupt: str = ""):
        self.name = unit["name"]
        self.vectors = np.load(unit["vectors"])
        self.expected = np.array(expected)
        if corrupt.startswith(self.name + ":"):
            self.expected[int(corrupt.split(":")[1]), 0] ^= 1
        self.latency, self.full_rate = latency, unit.get("full_rate", False)
        lanes = unit["lanes"]
        # One RNG per unit and role: adding a unit never changes another unit's stall pattern.
        self.driver = StreamDriver(dut, input, dut.clk, unit["idle_prob"], random.Random(f"{seed}:{self.name}:idle"),
                                   lanes=lanes, signed=in_signed)
        self.monitor = StreamMonitor(dut, output, dut.clk, unit["backpressure_prob"],
                                     random.Random(f"{seed}:{self.name}:ready"), lanes=lanes, signed=out_signed)
        self.scoreboard = Scoreboard(self.name)

    @staticmethod
    def corruption(variable: str) -> str:
        """The ``<name>:<beat>`` a bench's corruption variable asks for ('' when unset)."""
        return os.environ.get(variable, "")

    def start(self) -> None:
        self.driver.send(self.vectors.tolist())
        self.driver.start()
        self.monitor.start()

    async def run(self) -> None:
        beats = len(self.vectors)
        limit = beats * self.CYCLES_PER_BEAT_LIMIT + self.CYCLE_MARGIN
        await with_timeout(self.monitor.wait_for(beats), limit * 10, "ns")
        await ClockCycles(self.driver.clk, self.DRAIN_CYCLES)
        self.driver.stop()
        self.monitor.stop()

    def check(self) -> None:
        self.scoreboard.check(self.expected.tolist(), self.monitor.beats)
        if self.full_rate:
            beats = len(self.vectors)
            first_in, last_out = self.driver.transfer_cycles[0], self.monitor.transfer_cycles[-1]
            assert last_out - first_in + 1 == beats + self.latency, (
                f"{self.name}: {beats} beats took {last_out - first_in + 1} cycles from first input "
                f"to last output, expected {beats} + latency {self.latency}"
            )
