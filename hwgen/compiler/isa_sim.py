# SPDX-License-Identifier: Apache-2.0
"""``isa_sim``: execute a Program on a memory image in NumPy, following docs/isa.md literally.

It sees only the Program, the image bytes and the hardware parameters — never the graph or the
layout — and does what the controller does: read operands at descriptor addresses, accumulate
exactly in ``acc_bits`` registers, requantize by the integer recipe of docs/isa.md §3.5, write the
low container bits. ``tests/test_isa_sim.py`` proves it equal to ``golden.run`` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.compiler.cycles import CycleEstimate, CycleModel, estimate_cycles
from hwgen.compiler.layout import MemoryImage, read_rows, read_tiles, read_vector, write_rows
from hwgen.compiler.program import OPCODE_LAYERNORM, Flag, LinearDescriptor, Program, Requant, RowDescriptor
from hwgen.golden import nonlinear as nl
from hwgen.golden.exact import exact_matmul
from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX, row_units_problem

__all__ = ["isa_sim", "IsaResult", "requantize_int"]


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
    if desc.k_tiles != -(-desc.k // hw.lanes_in) or desc.n_tiles != -(-desc.n // hw.lanes_out):
        raise ValueError(f"tile counts must match K={desc.k}, N={desc.n} and the lanes, not {desc.k_tiles}x{desc.n_tiles}")
    if not 1 <= desc.chunk_tiles <= desc.n_tiles:
        raise ValueError(f"chunk_tiles must be in 1..{desc.n_tiles}, not {desc.chunk_tiles}")
    x = read_rows(memory, desc.x_addr, desc.m, desc.k, desc.x_stride, hw.act_bytes, not flags & Flag.X_UNSIGNED)
    if flags & Flag.BYPASS:
        if desc.k != desc.n:
            raise ValueError(f"a BYPASS descriptor must have K == N, not K={desc.k}, N={desc.n}")
        acc = x
    else:
        w_signed = not flags & Flag.W_UNSIGNED
        if flags & Flag.B_ROWMAJOR:
            w = read_rows(memory, desc.w_addr, desc.k, desc.n, desc.w_stride, hw.act_bytes, w_signed)
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
    problem = row_units_problem(hw)
    if problem is not None:
        raise ValueError(f"{desc.name} needs the row unit, which this hardware does not have: {problem}")
    if not 1 <= desc.n <= ROW_MAX or desc.m < 1:
        raise ValueError(f"{desc.name} must have M ≥ 1 and 1 ≤ N ≤ {ROW_MAX}, not M={desc.m}, N={desc.n}")
    units = hw.unit_formats()
    x = read_rows(memory, desc.x_addr, desc.m, desc.n, desc.x_stride, hw.act_bytes, True)
    if desc.opcode == OPCODE_LAYERNORM:
        gamma = read_vector(memory, desc.gamma_addr, desc.n, hw.act_bytes)
        beta = read_vector(memory, desc.beta_addr, desc.n, hw.act_bytes)
        y = nl.layernorm(units.layernorm_config(), x, gamma, beta, d_offset=desc.d_offset)
    else:
        if desc.d_offset or desc.gamma_addr or desc.beta_addr:
            raise ValueError("SOFTMAX must have gamma_addr, beta_addr and d_offset 0")
        y = nl.softmax(units.softmax_config(), x)
    write_rows(memory, desc.out_addr, y, desc.out_stride, hw.act_bytes)


def isa_sim(program: Program | bytes, image: MemoryImage | bytes, hw: HwParams, model: CycleModel = CycleModel()) -> IsaResult:
    """Run every descriptor of ``program`` on a copy of ``image``; refuse a Program built for other hardware."""
    if not isinstance(program, Program):
        program = Program.from_bytes(bytes(program))
    if program.fingerprint != hw.fingerprint():
        raise ValueError(
            f"program hardware fingerprint must be {hw.fingerprint():#010x} ({hw}), not {program.fingerprint:#010x}"
        )
    data = image.data if isinstance(image, MemoryImage) else bytes(image)
    if len(data) < program.image_bytes:
        raise ValueError(f"memory image must be at least the program's {program.image_bytes} bytes, not {len(data)}")
    memory = np.frombuffer(data, dtype=np.uint8).copy()
    estimates = []
    for index, desc in enumerate(program.descriptors):
        try:
            if isinstance(desc, RowDescriptor):
                _run_rows(desc, memory, hw)
            else:
                _run_linear(desc, memory, hw)
        except ValueError as exc:
            raise ValueError(f"descriptor {index}: {exc}") from None
        estimates.append(estimate_cycles(desc, hw, model))
    return IsaResult(memory.tobytes(), tuple(estimates), model.program_overhead(hw))
