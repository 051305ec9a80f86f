# SPDX-License-Identifier: Apache-2.0
"""``isa_sim``: execute a Program on a memory image in NumPy, following docs/isa.md literally.

It sees only the Program, the image bytes and the hardware parameters — never the graph or the
layout — and does what the controller does: check the header and each descriptor with the one
validity rule (:mod:`hwgen.isa.rules`; a refusal raises :class:`Refused` with the status every
executor reports), then hand the descriptor to its opcode's engine (:mod:`hwgen.compiler.engines`),
which reads operands at descriptor addresses, computes exactly as docs/isa.md says and writes the
low container bits. ``tests/test_isa_sim.py`` proves it equal to ``golden.run`` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel
from hwgen.compiler.engines import engine_for
from hwgen.compiler.engines.integer import requantize_int
from hwgen.compiler.layout import MemoryImage
from hwgen.hwparams import HwParams
from hwgen.compiler.engines.moe import Stopped
from hwgen.isa import (
    DESCRIPTOR_BYTES, HEADER_BYTES, HEADER_FIELDS, MOE_OPCODES, Program, Refusal, Status, check_descriptor, check_header,
    decode_descriptor, unpack,
)

__all__ = ["isa_sim", "IsaResult", "Refused", "requantize_int"]


class Refused(ValueError):
    """The run stopped at a refusal: ``status`` as every executor reports it, ``executed`` descriptors done.

    ``data`` is the image as the executors leave it: the results of the descriptors before the refused one.
    """

    def __init__(self, refusal: Refusal, executed: int, data: bytes, where: str = ""):
        super().__init__(f"{where}: {refusal.reason}" if where else refusal.reason)
        self.status: Status = refusal.status
        self.executed = executed
        self.data = data


@dataclass(frozen=True)
class IsaResult:
    """The image after the run and the analytical cycle estimate of every descriptor."""

    data: bytes
    cycles: tuple[CycleEstimate, ...]
    header_cycles: int = 0  # reading the Program header, once per run (docs/isa.md §5)

    @property
    def total_cycles(self) -> int:
        """The whole run: the header read plus the descriptors' estimates."""
        return self.header_cycles + sum(c.cycles for c in self.cycles)


def isa_sim(program: Program | bytes, image: MemoryImage | bytes, hw: HwParams, model: CycleModel = CycleModel(), *,
            program_offset: int = 0, task: int = 0) -> IsaResult:
    """Run every descriptor of ``program`` on a copy of ``image``, as the controller does.

    The header and each descriptor pass :func:`hwgen.isa.check_header` / :func:`~hwgen.isa.check_descriptor`
    first; a refusal raises :class:`Refused` (a ``ValueError``) with the status the hardware reports,
    the number of descriptors completed and the image as they left it. ``program_offset`` is where
    the Program sits in the image (the controller's ``PROGRAM_ADDR`` minus its image base). ``task`` is
    the ``TASK`` register: the gate every GATE_TOPK uses (``BAD_TASK`` when not below its ``tasks``).
    The MoE engine's run-time refusals (``BAD_TASK``, ``BAD_COUNT``) stop the run the same way.
    """
    if isinstance(task, bool) or not isinstance(task, int) or task < 0:
        raise ValueError(f"task must be a non-negative integer, not {task!r}")
    raw = program.to_bytes() if isinstance(program, Program) else bytes(program)
    data = image.data if isinstance(image, MemoryImage) else bytes(image)
    memory = np.frombuffer(data, dtype=np.uint8).copy()
    refusal = check_header(raw, hw, program_offset)
    if refusal:
        raise Refused(refusal, 0, data)
    header = unpack(HEADER_FIELDS, raw[:HEADER_BYTES])
    image_bytes, count = header["image_bytes"], header["count"]
    if len(data) < image_bytes:
        raise ValueError(f"memory image must be at least the program's {image_bytes} bytes, not {len(data)}")
    if len(raw) < HEADER_BYTES + count * DESCRIPTOR_BYTES:
        raise ValueError(f"a Program of {count} descriptors must be {HEADER_BYTES + count * DESCRIPTOR_BYTES} bytes, "
                         f"not {len(raw)}")
    estimates = []
    for index in range(count):
        block = raw[HEADER_BYTES + index * DESCRIPTOR_BYTES : HEADER_BYTES + (index + 1) * DESCRIPTOR_BYTES]
        refusal = check_descriptor(block, hw, image_bytes)
        if refusal:
            raise Refused(refusal, index, memory.tobytes(), f"descriptor {index}")
        desc = decode_descriptor(block)
        engine = engine_for(desc.opcode)
        if desc.opcode in MOE_OPCODES:  # the task register; the counts the estimate depends on
            try:
                engine.run(desc, memory, hw, task)
            except Stopped as stop:
                raise Refused(stop.refusal, index, memory.tobytes(), f"descriptor {index}") from None
            estimates.append(engine.estimate(desc, hw, model, memory))
            continue
        engine.run(desc, memory, hw)
        estimates.append(engine.estimate(desc, hw, model))
    return IsaResult(memory.tobytes(), tuple(estimates), model.program_overhead(hw))
