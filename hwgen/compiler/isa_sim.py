# SPDX-License-Identifier: Apache-2.0
"""``isa_sim``: execute a Program on a memory image in NumPy, following docs/isa.md literally.

It sees only the Program, the image bytes and the hardware parameters — never the graph or the
layout — and does what the controller does: check the header and each descriptor with the one
validity rule (:mod:`hwgen.isa.rules`; a refusal raises :class:`Refused` with the status every
executor reports), read operands at descriptor addresses, accumulate
exactly in ``acc_bits`` registers, requantize by the integer recipe of docs/isa.md §3.5, write the
low container bits. ``tests/test_isa_sim.py`` proves it equal to ``golden.run`` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel, estimate_cycles
from hwgen.compiler.layout import MemoryImage, read_rows, read_tiles, read_vector, write_rows
from hwgen.golden import nonlinear as nl
from hwgen.golden.exact import exact_matmul
from hwgen.hwparams import HwParams
from hwgen.isa import (
    DESCRIPTOR_BYTES, HEADER_BYTES, HEADER_FIELDS, OPCODE_LAYERNORM, Flag, LinearDescriptor, Program, Refusal, Requant,
    RowDescriptor, Status, check_descriptor, check_header, decode_descriptor, unpack,
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


def _wrap(values: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """The low ``width`` bits of integers (object or int64 arrays), sign-extended if ``signed``."""
    modulus = 1 << width
    low = values % modulus
    if signed:
        low = np.where(low >= modulus >> 1, low - modulus, low)
    return low


def requantize_int(v: np.ndarray, rq: Requant) -> np.ndarray:
    """docs/isa.md §3.5 step by step: cut, round, overflow. ``v`` holds int64 two's-complement values."""
    v = np.asarray(v, dtype=np.int64)
    negative = v < 0
    if rq.shift > 0:
        s = rq.shift
        q = v >> min(s, 63)
        half = ((v >> min(s - 1, 63)) & 1).astype(bool)
        sticky = (v & ((1 << min(s - 1, 62)) - 1)) != 0
    else:
        left = -rq.shift
        # Exact left shift: int64 while it cannot overflow, Python integers otherwise.
        if int(np.abs(v).max(initial=0)) < 2 ** (62 - left):
            q = v << left
        else:
            q = v.astype(object) * (1 << left)
        half = sticky = np.zeros(v.shape, dtype=bool)

    mode = rq.rounding
    if mode == "TRN":
        inc = np.zeros(v.shape, dtype=bool)
    elif mode == "TRN_ZERO":
        inc = negative & (half | sticky)
    elif mode == "RND":
        inc = half
    elif mode == "RND_ZERO":
        inc = half & (negative | sticky)
    elif mode == "RND_INF":
        inc = half & (~negative | sticky)
    elif mode == "RND_MIN_INF":
        inc = half & sticky
    else:  # RND_CONV
        inc = half & ((np.asarray(q % 2) == 1) | sticky)
    q = q + inc.astype(np.int64)

    w = rq.width
    lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if rq.signed else (0, (1 << w) - 1)
    wrap = _wrap(q, w, rq.signed)
    out_of_range = (q < lo) | (q > hi)
    overflow = rq.overflow
    if overflow == "WRAP":
        result = wrap
    elif overflow == "SAT":
        result = np.where(q > hi, hi, np.where(q < lo, lo, q))
    elif overflow == "SAT_ZERO":
        result = np.where(out_of_range, 0, q)
    elif overflow == "SAT_SYM":
        low = -hi if rq.signed and w > 1 else lo
        result = np.where(q > hi, hi, np.where(q < low, low, q))
    else:  # WRAP_SM
        position = rq.shift + w
        if 0 <= position < rq.src_width:
            above = (v >> position) & 1
        else:
            above = np.zeros(v.shape, dtype=np.int64)
        invert = out_of_range & (above != (np.asarray(wrap) < 0))
        result = np.where(invert, ~wrap.astype(np.int64), wrap)
    return np.asarray(result).astype(np.int64)


def _run_linear(desc: LinearDescriptor, memory: np.ndarray, hw: HwParams) -> None:
    flags = desc.flags
    x = read_rows(memory, desc.x_addr, desc.m, desc.k, desc.x_stride, hw.act_bytes, not flags & Flag.X_UNSIGNED)
    if flags & Flag.BYPASS:
        acc = x
    else:
        w_signed = not flags & Flag.W_UNSIGNED
        if flags & Flag.B_ROWMAJOR:
            w = read_rows(memory, desc.w_addr, desc.k, desc.n, desc.w_stride, hw.act_bytes, w_signed)
        elif flags & Flag.B_TRANSPOSED:
            w = read_rows(memory, desc.w_addr, desc.n, desc.k, desc.w_stride, hw.act_bytes, w_signed).T
        else:
            tiles = read_tiles(
                memory, desc.w_addr, desc.k_tiles, desc.n_tiles, hw.lanes_in, hw.lanes_out,
                hw.weight_bytes, hw.tile_stride(hw.weight_bytes), w_signed,
            )
            w = tiles[: desc.k, : desc.n]
        acc = exact_matmul(x, w)
        if flags & Flag.BIAS:
            acc = acc + read_vector(memory, desc.bias_addr, desc.n, hw.bias_bytes)
        # The accumulator registers are acc_bits wide: an overflowing sum would wrap there too.
        acc = _wrap(acc, hw.acc_bits, True)
    y = requantize_int(acc, desc.rq1)
    if flags & Flag.RELU1:
        y = np.maximum(y, 0)
    if flags & Flag.GELU:
        # The GELU lanes read the low act_bits of y1 as their signed input format.
        y = nl.gelu(hw.unit_formats().gelu_config(), _wrap(y, hw.act_bits, True))
    if flags & Flag.RESIDUAL:
        r = read_rows(memory, desc.res_addr, desc.m, desc.n, desc.res_stride, hw.act_bytes, not flags & Flag.R_UNSIGNED)
        total = _wrap((y << desc.y_shift) + (r << desc.r_shift), hw.acc_bits, True)
        y = requantize_int(total, desc.rq2)
        if flags & Flag.RELU2:
            y = np.maximum(y, 0)
    write_rows(memory, desc.out_addr, y, desc.out_stride, hw.act_bytes)


def _run_rows(desc: RowDescriptor, memory: np.ndarray, hw: HwParams) -> None:
    units = hw.unit_formats()
    x = read_rows(memory, desc.x_addr, desc.m, desc.n, desc.x_stride, hw.act_bytes, True)
    if desc.opcode == OPCODE_LAYERNORM:
        gamma = read_vector(memory, desc.gamma_addr, desc.n, hw.act_bytes)
        beta = read_vector(memory, desc.beta_addr, desc.n, hw.act_bytes)
        y = nl.layernorm(units.layernorm_config(), x, gamma, beta, d_offset=desc.d_offset)
    else:
        y = nl.softmax(units.softmax_config(), x)
    write_rows(memory, desc.out_addr, y, desc.out_stride, hw.act_bytes)


def isa_sim(program: Program | bytes, image: MemoryImage | bytes, hw: HwParams, model: CycleModel = CycleModel(), *,
            program_offset: int = 0) -> IsaResult:
    """Run every descriptor of ``program`` on a copy of ``image``, as the controller does.

    The header and each descriptor pass :func:`hwgen.isa.check_header` / :func:`~hwgen.isa.check_descriptor`
    first; a refusal raises :class:`Refused` (a ``ValueError``) with the status the hardware reports,
    the number of descriptors completed and the image as they left it. ``program_offset`` is where
    the Program sits in the image (the controller's ``PROGRAM_ADDR`` minus its image base).
    """
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
        if isinstance(desc, RowDescriptor):
            _run_rows(desc, memory, hw)
        else:
            _run_linear(desc, memory, hw)
        estimates.append(estimate_cycles(desc, hw, model))
    return IsaResult(memory.tobytes(), tuple(estimates), model.program_overhead(hw))
