# SPDX-License-Identifier: Apache-2.0
"""The one validity rule: why a Program header or a descriptor cannot run on given hardware.

:func:`check_header` and :func:`check_descriptor` take raw bytes, as the controller sees them, and
answer ``None`` or a :class:`Refusal` with the :class:`~hwgen.isa.spec.Status` every executor
reports and a sentence saying why. The compiler refuses to emit what they refuse, ``isa_sim`` and
the driver's ``isa_sim`` device stop where they say, and the RTL and HLS controllers implement the
same checks in the same order (``docs/isa.md`` §3.7), proven by one table of refused Programs
(``tests/refusals.py``) run against every executor.

The checks are grouped by status and the groups are tried in this order, so a descriptor with
several problems gets the same code everywhere: ``BAD_OPCODE``, ``BAD_DESCRIPTOR``,
``DOES_NOT_FIT``, ``MISALIGNED``, ``OUT_OF_BOUNDS``.

Two statuses depend on data and the run, not on the descriptor alone, so the MoE engine of every
executor detects them while running, before the descriptor writes anything: ``BAD_TASK``
(:func:`check_task`, a GATE_TOPK whose ``tasks`` the ``TASK`` register is not below) and ``BAD_COUNT``
(:func:`check_counts`, :func:`check_list`: the counts and lists an EXPERT_FFN reads). They are
defined here, once, beside the static rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen.hwparams import HwParams
from hwgen.units import ROW_MAX, attention_problem, moe_problem, row_units_problem
from hwgen.isa.codec import Requant, unpack
from hwgen.isa.spec import (
    ATTENTION_FIELDS, ATTENTION_OPCODES, CONV_FIELDS, CONV_FORBIDDEN_FLAGS, DESCRIPTOR_BYTES, EXPERT_FFN_FIELDS,
    GATE_TOPK_FIELDS, HEADER_BYTES, HEADER_FIELDS, LINEAR_FIELDS, LIST_ENTRY_BYTES, MAGIC, MOE_MAX_TOP_K, MOE_OPCODES,
    ROW_FIELDS, STATS_ENTRY_BYTES, VERSION, Flag, MoeFlag, Opcode, Status,
)

__all__ = ["Refusal", "Limits", "ExpertBlock", "check_header", "check_descriptor", "check_task", "check_counts",
           "check_list", "rows_end"]

_DEFINED_MOE_FLAGS = sum(int(f) for f in MoeFlag)

_DEFINED_FLAGS = sum(int(f) for f in Flag)
#: Flags that name the second operand; with BYPASS there is none.
_SECOND_OPERAND_FLAGS = Flag.BIAS | Flag.B_ROWMAJOR | Flag.B_TRANSPOSED | Flag.W_UNSIGNED


@dataclass(frozen=True)
class Refusal:
    """A status other than OK and the reason, in the words of an error message."""

    status: Status
    reason: str

    def __str__(self) -> str:
        return f"{self.status.name}: {self.reason}"


@dataclass(frozen=True)
class ExpertBlock:
    """Where the parts of one expert's weight block lie, in bytes from its start (docs/isa.md §3.10):
    W1 tiles, b1, W2 tiles, b2, each on an AXI word; ``size`` is the block aligned (the least
    ``expert_stride``)."""

    w1: int
    b1: int
    w2: int
    b2: int
    size: int


@dataclass(frozen=True)
class Limits:
    """The on-chip capacities every executor honours exactly (docs/isa.md §3.7)."""

    hw: HwParams

    @property
    def max_k_tiles(self) -> int:
        """Most ``lanes_in``-element words one row of ``x`` may have: the row fits one activation bank."""
        return self.hw.act_buffer_bytes // (self.hw.lanes_in * self.hw.act_bytes)

    @property
    def max_chunk_tiles(self) -> int:
        """Most output tiles of one chunk: bounds the bias bank and the residual and output row segments."""
        hw = self.hw
        return hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes)

    def second_operand_bytes(self, flags: Flag) -> int:
        """Container bytes of the second operand: activations with ``B_ROWMAJOR``/``B_TRANSPOSED``, else weights."""
        return self.hw.act_bytes if flags & (Flag.B_ROWMAJOR | Flag.B_TRANSPOSED) else self.hw.weight_bytes

    def chunk_bytes(self, flags: Flag, k_tiles: int, chunk_tiles: int) -> int:
        """Weight-bank bytes a chunk of ``chunk_tiles`` output tiles takes: its tiles and its bias entries."""
        hw = self.hw
        column = k_tiles * hw.tile_stride(self.second_operand_bytes(flags))
        if flags & Flag.BIAS:
            column += hw.lanes_out * hw.bias_bytes
        return chunk_tiles * column

    def attention_product(self, opcode: int, s: int, d_head: int) -> tuple[int, int]:
        """``(k_tiles, n_tiles)`` of one head's product: Q·Kᵀ reduces ``d_head`` into ``S`` scores, A·V ``S`` into ``d_head``."""
        k, n = (d_head, s) if opcode == Opcode.QK_SOFTMAX_STATS else (s, d_head)
        return -(-k // self.hw.lanes_in), -(-n // self.hw.lanes_out)

    def head_operand_bytes(self, opcode: int, s: int, d_head: int) -> int:
        """Weight-bank bytes one head's second operand (K, or V) takes as ``act_bytes`` tiles."""
        k_tiles, n_tiles = self.attention_product(opcode, s, d_head)
        return k_tiles * n_tiles * self.hw.tile_stride(self.hw.act_bytes)

    def largest_chunk(self, flags: Flag, k_tiles: int, n_tiles: int) -> int:
        """The most output tiles a chunk of this descriptor may have (0: not even one fits)."""
        if flags & Flag.BYPASS:
            return min(n_tiles, self.max_chunk_tiles)
        one = self.chunk_bytes(flags, k_tiles, 1)
        return min(n_tiles, self.max_chunk_tiles, self.hw.weight_buffer_bytes // one)

    # The MoE engine's sizes (docs/isa.md §3.10).

    def list_stride(self, m: int) -> int:
        """Bytes from one expert's token list to the next: ``align(8·M)`` (room for every token)."""
        return self.hw.align(LIST_ENTRY_BYTES * m)

    def gate_bytes(self, k_tiles: int, n_tiles: int) -> int:
        """Bytes of one task's gate tiles (the least ``task_stride``); they are one weight chunk."""
        return k_tiles * n_tiles * self.hw.tile_stride(self.hw.weight_bytes)

    def expert_tiles(self, d: int, h: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((k_tiles, n_tiles) of FC1, (k_tiles, n_tiles) of FC2)`` of an expert of width ``d``, hidden ``h``."""
        li, lo = self.hw.lanes_in, self.hw.lanes_out
        return (-(-d // li), -(-h // lo)), (-(-h // li), -(-d // lo))

    def expert_block(self, d: int, h: int) -> ExpertBlock:
        """The layout of one expert's weight block."""
        hw = self.hw
        (k1, n1), (k2, n2) = self.expert_tiles(d, h)
        tile = hw.tile_stride(hw.weight_bytes)
        b1 = n1 * k1 * tile
        w2 = b1 + hw.align(n1 * hw.lanes_out * hw.bias_bytes)
        b2 = w2 + n2 * k2 * tile
        return ExpertBlock(0, b1, w2, b2, b2 + hw.align(n2 * hw.lanes_out * hw.bias_bytes))

    def moe_chunk_bytes(self, k_tiles: int, chunk: int) -> int:
        """Weight-bank bytes of an expert FC chunk of ``chunk`` output tiles: its tiles and its bias entries."""
        return self.chunk_bytes(Flag.BIAS, k_tiles, chunk)

    def moe_largest_chunk(self, k_tiles: int, n_tiles: int) -> int:
        """The most output tiles an expert FC chunk may have (0: not even one fits)."""
        return self.largest_chunk(Flag.BIAS, k_tiles, n_tiles)

    def moe_hidden_bytes(self, m: int, h: int) -> int:
        """Bytes the hidden rows of one expert take at most (every token): ``M·align(H·act_bytes)``."""
        return m * self.hw.align(h * self.hw.act_bytes)

def rows_end(addr: int, rows: int, stride: int, columns: int, element_bytes: int) -> int:
    """One past the last byte of ``rows`` rows of ``columns`` containers, ``stride`` bytes apart."""
    return addr + (rows - 1) * stride + columns * element_bytes


def grid_rows_end(addr: int, grid: tuple[int, int], stride: int, skip: int, columns: int, element_bytes: int) -> int:
    """One past the last byte of a ``grid = (grid_h, grid_w)`` of rows of ``columns`` containers: ``stride`` bytes
    apart in a grid row, and ``skip`` more bytes after each grid row (a CONV's output and residual, §3.9)."""
    grid_h, grid_w = grid
    return addr + (grid_h - 1) * (grid_w * stride + skip) + (grid_w - 1) * stride + columns * element_bytes


def check_header(data: bytes, hw: HwParams, program_offset: int = 0) -> Refusal | None:
    """Why the controller must refuse the Program header ``data`` (64 bytes) at ``program_offset`` in the image."""
    if program_offset % hw.axi_bytes:
        return Refusal(Status.MISALIGNED, f"the Program must start on a multiple of {hw.axi_bytes} bytes, "
                                          f"not at {program_offset}")
    h = unpack(HEADER_FIELDS, bytes(data[:HEADER_BYTES]).ljust(HEADER_BYTES, b"\0"))
    if h["magic"] != MAGIC:
        return Refusal(Status.BAD_MAGIC, f"Program magic must be {MAGIC:#010x}, not {h['magic']:#010x}")
    if h["version"] != VERSION:
        return Refusal(Status.BAD_VERSION, f"Program version must be {VERSION}, not {h['version']}")
    if h["fingerprint"] != hw.fingerprint():
        return Refusal(Status.BAD_FINGERPRINT, f"program hardware fingerprint must be {hw.fingerprint():#010x} "
                                               f"({hw}), not {h['fingerprint']:#010x}")
    if h["descriptor_bytes"] != DESCRIPTOR_BYTES:
        return Refusal(Status.BAD_HEADER, f"descriptor size must be {DESCRIPTOR_BYTES}, not {h['descriptor_bytes']}")
    end = program_offset + HEADER_BYTES + DESCRIPTOR_BYTES * h["count"]
    if end > h["image_bytes"]:
        return Refusal(Status.BAD_HEADER, f"a Program of {h['count']} descriptors must end within the image's "
                                          f"{h['image_bytes']} bytes, not at {end}")
    return None


def check_descriptor(data: bytes, hw: HwParams, image_bytes: int) -> Refusal | None:
    """Why the controller must refuse descriptor ``data`` (64 bytes) in an image of ``image_bytes``, or ``None``."""
    data = bytes(data)
    if len(data) != DESCRIPTOR_BYTES:
        raise ValueError(f"a descriptor must be {DESCRIPTOR_BYTES} bytes, not {len(data)}")
    opcode = data[0]
    if opcode == Opcode.LINEAR:
        return _check_linear(unpack(LINEAR_FIELDS, data), hw, image_bytes)
    if opcode == Opcode.CONV:
        return _check_conv(unpack(CONV_FIELDS, data), hw, image_bytes)
    if opcode in (Opcode.LAYERNORM, Opcode.SOFTMAX):
        problem = row_units_problem(hw)
        if problem is not None:
            return Refusal(Status.BAD_OPCODE, f"{Opcode(opcode).name} needs the row unit, which this hardware "
                                              f"does not have: {problem}")
        return _check_rows(unpack(ROW_FIELDS, data), hw, image_bytes)
    if opcode in ATTENTION_OPCODES:
        problem = attention_problem(hw)
        if problem is not None:
            return Refusal(Status.BAD_OPCODE, f"{Opcode(opcode).name} needs the attention engine: {problem}")
        return _check_attention(unpack(ATTENTION_FIELDS, data), hw, image_bytes)
    if opcode in MOE_OPCODES:
        problem = moe_problem(hw)
        if problem is not None:
            return Refusal(Status.BAD_OPCODE, f"{Opcode(opcode).name} needs the MoE engine: {problem}")
        if opcode == Opcode.GATE_TOPK:
            return _check_gate_topk(unpack(GATE_TOPK_FIELDS, data), hw, image_bytes)
        return _check_expert_ffn(unpack(EXPERT_FFN_FIELDS, data), hw, image_bytes)
    return Refusal(Status.BAD_OPCODE, f"descriptor opcode must be one of {', '.join(str(int(o)) for o in Opcode)}, "
                                      f"not {opcode}")


#: The operands each attention opcode leaves 0: the other opcode's.
_ATTENTION_UNUSED = {
    Opcode.QK_SOFTMAX_STATS: ("v_addr", "out_addr", "v_stride", "out_stride"),
    Opcode.AV: ("q_addr", "k_addr", "q_stride", "k_stride", "scale"),
}


def _first(checks) -> Refusal | None:
    """The first failing check of ``(status, failed, reason)`` triples, in order."""
    for status, failed, reason in checks:
        if failed:
            return Refusal(status, reason)
    return None


def _misaligned(hw: HwParams, named: dict[str, int]) -> tuple[Status, bool, str]:
    bad = [f"{name}={value}" for name, value in named.items() if value % hw.axi_bytes]
    return Status.MISALIGNED, bool(bad), f"addresses and strides must be multiples of {hw.axi_bytes}, not {', '.join(bad)}"


def _beyond(image_bytes: int, named: dict[str, int]) -> tuple[Status, bool, str]:
    bad = [f"{name} ends at {end}" for name, end in named.items() if end > image_bytes]
    return Status.OUT_OF_BOUNDS, bool(bad), f"operands must lie within the image's {image_bytes} bytes, not {'; '.join(bad)}"


def _check_linear(d: dict[str, int], hw: HwParams, image_bytes: int) -> Refusal | None:
    flags = Flag(d["flags"] & _DEFINED_FLAGS)
    b_rows, b_cols = bool(flags & Flag.B_ROWMAJOR), bool(flags & Flag.B_TRANSPOSED)
    m, k, n = d["m"], d["k"], d["n"]
    shape = [
        (Status.BAD_DESCRIPTOR, b_rows and b_cols, "B_ROWMAJOR and B_TRANSPOSED must not both be set"),
        (Status.BAD_DESCRIPTOR, flags & Flag.BYPASS and flags & _SECOND_OPERAND_FLAGS,
         f"BYPASS must not be set with {(flags & _SECOND_OPERAND_FLAGS)!r}"),
        (Status.BAD_DESCRIPTOR, not (m and k and n), f"M, K and N must be at least 1, not M={m}, K={k}, N={n}"),
    ]
    act = hw.act_bytes
    x_aligned = {"x_addr": d["x_addr"], "x_stride": d["x_stride"]}
    x_end = rows_end(d["x_addr"], m, d["x_stride"], k, act)
    return _check_linear_family(d, hw, image_bytes, (1, m), shape, x_aligned, x_end)


def _check_conv(d: dict[str, int], hw: HwParams, image_bytes: int) -> Refusal | None:
    flags = Flag(d["flags"] & _DEFINED_FLAGS)
    grid_h, grid_w, kh, stride_y, k, n = (d[name] for name in ("grid_h", "grid_w", "kh", "stride_y", "k", "n"))
    shape = [
        (Status.BAD_DESCRIPTOR, flags & CONV_FORBIDDEN_FLAGS,
         f"CONV must not set {(flags & CONV_FORBIDDEN_FLAGS)!r}"),
        (Status.BAD_DESCRIPTOR, not (grid_h and grid_w and kh and stride_y and k and n),
         f"CONV grid_h, grid_w, kh, stride_y, K and N must be at least 1, not grid_h={grid_h}, grid_w={grid_w}, "
         f"kh={kh}, stride_y={stride_y}, K={k}, N={n}"),
        (Status.BAD_DESCRIPTOR, kh and k % kh, f"CONV K must be a multiple of kh={kh}, not {k}"),
    ]
    act = hw.act_bytes
    seg_bytes = k // kh * act if kh else 0
    x_aligned = {"x_addr": d["x_addr"], "x_stride": d["x_stride"], "seg_stride": d["seg_stride"],
                 "seg_bytes": seg_bytes}
    # The last window's last kernel row: (grid_h − 1) grid rows down, (grid_w − 1) windows across, kh − 1 rows further.
    x_end = (d["x_addr"] + (grid_h - 1) * stride_y * d["seg_stride"] + (grid_w - 1) * d["x_stride"]
             + (kh - 1) * d["seg_stride"] + seg_bytes)
    return _check_linear_family(d, hw, image_bytes, (grid_h, grid_w), shape, x_aligned, x_end)


def _check_linear_family(d: dict[str, int], hw: HwParams, image_bytes: int, grid: tuple[int, int], shape: list,
                         x_aligned: dict[str, int], x_end: int) -> Refusal | None:
    """The checks LINEAR and CONV share (docs/isa.md §3.7), around the opcode's own: ``shape`` (its flag and
    shape checks, after the reserved-flag check) and how it reads ``x`` (``x_aligned``, ``x_end``). The output
    and residual rows form ``grid = (grid_h, grid_w)``: a LINEAR's ``(1, M)``, a CONV's window grid, whose
    grid rows end ``out_skip`` / ``res_skip`` bytes further apart (0 for LINEAR, which has no such fields)."""
    m = grid[0] * grid[1]
    out_skip, res_skip = d.get("out_skip", 0), d.get("res_skip", 0)
    raw_flags = d["flags"]
    flags = Flag(raw_flags & _DEFINED_FLAGS)
    bypass, bias, residual = bool(flags & Flag.BYPASS), bool(flags & Flag.BIAS), bool(flags & Flag.RESIDUAL)
    b_rows, b_cols = bool(flags & Flag.B_ROWMAJOR), bool(flags & Flag.B_TRANSPOSED)
    k, n, k_tiles, n_tiles, chunk = d["k"], d["n"], d["k_tiles"], d["n_tiles"], d["chunk_tiles"]
    rq1, rq2 = Requant.problem(d["rq1"]), Requant.problem(d["rq2"]) if residual else None
    limits = Limits(hw)
    refusal = _first([
        (Status.BAD_DESCRIPTOR, raw_flags & ~_DEFINED_FLAGS, f"flags must use only defined bits, not {raw_flags:#x}"),
        *shape,
        (Status.BAD_DESCRIPTOR, k_tiles != -(-k // hw.lanes_in) or n_tiles != -(-n // hw.lanes_out),
         f"tile counts must match K={k}, N={n} and the lanes, not {k_tiles}x{n_tiles}"),
        (Status.BAD_DESCRIPTOR, not 1 <= chunk <= n_tiles, f"chunk_tiles must be in 1..{n_tiles}, not {chunk}"),
        (Status.BAD_DESCRIPTOR, bypass and (k != n or chunk != n_tiles),
         f"a BYPASS descriptor must have K == N and one chunk, not K={k}, N={n}, chunk_tiles={chunk}"),
        (Status.BAD_DESCRIPTOR, rq1 is not None, f"RQ1: {rq1}"),
        (Status.BAD_DESCRIPTOR, rq2 is not None, f"RQ2: {rq2}"),
        (Status.DOES_NOT_FIT, k_tiles > limits.max_k_tiles,
         f"a row of x must fit one activation bank ({limits.max_k_tiles} words of {hw.lanes_in}), not {k_tiles}"),
        (Status.DOES_NOT_FIT, chunk > limits.max_chunk_tiles,
         f"chunk_tiles must be at most {limits.max_chunk_tiles} (the bias and output segment buffers), not {chunk}"),
        (Status.DOES_NOT_FIT, not bypass and limits.chunk_bytes(flags, k_tiles, chunk) > hw.weight_buffer_bytes,
         f"a weight chunk must fit one weight bank ({hw.weight_buffer_bytes} bytes), "
         f"not {limits.chunk_bytes(flags, k_tiles, chunk)}"),
    ])
    if refusal:
        return refusal
    aligned = {**x_aligned, "out_addr": d["out_addr"], "out_stride": d["out_stride"], "out_skip": out_skip}
    if not bypass:
        aligned["w_addr"] = d["w_addr"]
    if b_rows or b_cols:
        aligned["w_stride"] = d["w_stride"]
    if bias:
        aligned["bias_addr"] = d["bias_addr"]
    if residual:
        aligned.update(res_addr=d["res_addr"], res_stride=d["res_stride"], res_skip=res_skip)
    act = hw.act_bytes
    ends = {"x": x_end, "out": grid_rows_end(d["out_addr"], grid, d["out_stride"], out_skip, n, act)}
    if residual:
        ends["r"] = grid_rows_end(d["res_addr"], grid, d["res_stride"], res_skip, n, act)
    if b_rows:
        ends["B"] = rows_end(d["w_addr"], k, d["w_stride"], n, act)
    elif b_cols:
        ends["B"] = rows_end(d["w_addr"], n, d["w_stride"], k, act)
    elif not bypass:
        ends["weights"] = d["w_addr"] + n_tiles * k_tiles * hw.tile_stride(hw.weight_bytes)
    if bias:
        ends["bias"] = d["bias_addr"] + n_tiles * hw.lanes_out * hw.bias_bytes
    return _first([_misaligned(hw, aligned), _beyond(image_bytes, ends)])


def _check_rows(d: dict[str, int], hw: HwParams, image_bytes: int) -> Refusal | None:
    layernorm = d["opcode"] == Opcode.LAYERNORM
    name = Opcode(d["opcode"]).name
    reserved = [f.name for f in ROW_FIELDS if f.reserved and d[f.name]]
    m, n = d["m"], d["n"]
    twice_frac = 2 * hw.unit_formats().layernorm_in.frac_bits
    refusal = _first([
        (Status.BAD_DESCRIPTOR, reserved, f"{name} descriptor must have its reserved fields 0, not {', '.join(reserved)}"),
        (Status.BAD_DESCRIPTOR, not (m >= 1 and 1 <= n <= ROW_MAX),
         f"{name} must have M ≥ 1 and 1 ≤ N ≤ {ROW_MAX}, not M={m}, N={n}"),
        (Status.BAD_DESCRIPTOR, not layernorm and (d["gamma_addr"] or d["beta_addr"] or d["d_offset"]),
         "SOFTMAX must have gamma_addr, beta_addr and d_offset 0"),
        (Status.BAD_DESCRIPTOR, layernorm and d["d_offset"] >= (n * n) << twice_frac,
         f"LAYERNORM d_offset must be below N²·2^{twice_frac} = {(n * n) << twice_frac} (ε < 1), not {d['d_offset']}"),
    ])
    if refusal:
        return refusal
    aligned = {"x_addr": d["x_addr"], "x_stride": d["x_stride"], "out_addr": d["out_addr"], "out_stride": d["out_stride"]}
    act = hw.act_bytes
    ends = {"x": rows_end(d["x_addr"], m, d["x_stride"], n, act), "out": rows_end(d["out_addr"], m, d["out_stride"], n, act)}
    if layernorm:
        aligned.update(gamma_addr=d["gamma_addr"], beta_addr=d["beta_addr"])
        ends.update(gamma=d["gamma_addr"] + n * act, beta=d["beta_addr"] + n * act)
    return _first([_misaligned(hw, aligned), _beyond(image_bytes, ends)])


def _check_attention(d: dict[str, int], hw: HwParams, image_bytes: int) -> Refusal | None:
    opcode = Opcode(d["opcode"])
    qk = opcode == Opcode.QK_SOFTMAX_STATS
    name = opcode.name
    reserved = [f.name for f in ATTENTION_FIELDS if f.reserved and d[f.name]]
    unused = [field for field in _ATTENTION_UNUSED[opcode] if d[field]]
    m, s, heads, d_head = d["m"], d["s"], d["heads"], d["d_head"]
    rq = Requant.problem(d["rq"])
    score_rq = None if rq is not None or not qk else Requant.decode(d["rq"])
    limits = Limits(hw)
    k_tiles, n_tiles = limits.attention_product(opcode, s, d_head) if m and s and heads and d_head else (0, 0)
    operand = limits.head_operand_bytes(opcode, s, d_head)
    refusal = _first([
        (Status.BAD_DESCRIPTOR, reserved, f"{name} descriptor must have its reserved fields 0, not {', '.join(reserved)}"),
        (Status.BAD_DESCRIPTOR, not (m and heads and d_head and 1 <= s <= ROW_MAX),
         f"{name} must have M, heads, d_head ≥ 1 and 1 ≤ S ≤ {ROW_MAX}, not M={m}, S={s}, heads={heads}, d_head={d_head}"),
        (Status.BAD_DESCRIPTOR, unused, f"{name} must have {', '.join(_ATTENTION_UNUSED[opcode])} 0, not {', '.join(unused)}"),
        (Status.BAD_DESCRIPTOR, qk and d["scale"] == 0, "QK_SOFTMAX_STATS must have scale ≥ 1, not 0"),
        (Status.BAD_DESCRIPTOR, rq is not None, f"rq: {rq}"),
        (Status.BAD_DESCRIPTOR, score_rq is not None and (score_rq.width != hw.act_bits or not score_rq.signed),
         f"QK_SOFTMAX_STATS must requantize into the signed {hw.act_bits}-bit score format, not {score_rq}"),
        (Status.DOES_NOT_FIT, k_tiles > limits.max_k_tiles,
         f"a row of {'Q' if qk else 'scores'} must fit one activation bank ({limits.max_k_tiles} words of "
         f"{hw.lanes_in}), not {k_tiles}"),
        (Status.DOES_NOT_FIT, n_tiles > limits.max_chunk_tiles,
         f"a {'score' if qk else 'output'} row segment must be at most {limits.max_chunk_tiles} tiles, not {n_tiles}"),
        (Status.DOES_NOT_FIT, operand > hw.weight_buffer_bytes,
         f"one head's {'K' if qk else 'V'} must fit one weight bank ({hw.weight_buffer_bytes} bytes), not {operand}"),
    ])
    if refusal:
        return refusal
    act = hw.act_bytes
    width = heads * d_head
    aligned = {"scores_addr": d["scores_addr"], "scores_stride": d["scores_stride"], "stats_addr": d["stats_addr"],
               "d_head·act_bytes": d_head * act}
    ends = {"scores": rows_end(d["scores_addr"], heads * m, d["scores_stride"], s, act),
            "stats": d["stats_addr"] + heads * m * STATS_ENTRY_BYTES}
    if qk:
        aligned.update(q_addr=d["q_addr"], q_stride=d["q_stride"], k_addr=d["k_addr"], k_stride=d["k_stride"])
        ends.update(Q=rows_end(d["q_addr"], m, d["q_stride"], width, act), K=rows_end(d["k_addr"], s, d["k_stride"], width, act))
    else:
        aligned.update(v_addr=d["v_addr"], v_stride=d["v_stride"], out_addr=d["out_addr"], out_stride=d["out_stride"])
        ends.update(V=rows_end(d["v_addr"], s, d["v_stride"], width, act),
                    out=rows_end(d["out_addr"], m, d["out_stride"], width, act))
    return _first([_misaligned(hw, aligned), _beyond(image_bytes, ends)])


def _experts_and_top_k(name: str, m: int, experts: int, top_k: int) -> list:
    """The shape checks GATE_TOPK and EXPERT_FFN share: ``M ≥ 1``, ``E ≥ 1``, ``1 ≤ k ≤ min(E, 8)``."""
    return [
        (Status.BAD_DESCRIPTOR, not (m and experts), f"{name} must have M and experts ≥ 1, not M={m}, experts={experts}"),
        (Status.BAD_DESCRIPTOR, experts and not 1 <= top_k <= min(experts, MOE_MAX_TOP_K),
         f"{name} top_k must be in 1..{min(experts, MOE_MAX_TOP_K)}, not {top_k}"),
    ]


def _check_gate_topk(d: dict[str, int], hw: HwParams, image_bytes: int) -> Refusal | None:
    reserved = [f.name for f in GATE_TOPK_FIELDS if f.reserved and d[f.name]]
    m, experts, top_k, dim, tasks = d["m"], d["experts"], d["top_k"], d["k"], d["tasks"]
    k_tiles, n_tiles = d["k_tiles"], d["n_tiles"]
    rq = Requant.problem(d["rq"])
    gate_rq = None if rq is not None else Requant.decode(d["rq"])
    limits = Limits(hw)
    gate = limits.gate_bytes(k_tiles, n_tiles)
    refusal = _first([
        (Status.BAD_DESCRIPTOR, reserved, f"GATE_TOPK descriptor must have its reserved fields 0, not {', '.join(reserved)}"),
        *_experts_and_top_k("GATE_TOPK", m, experts, top_k),
        (Status.BAD_DESCRIPTOR, not (dim and tasks), f"GATE_TOPK must have D and tasks ≥ 1, not D={dim}, tasks={tasks}"),
        (Status.BAD_DESCRIPTOR, k_tiles != -(-dim // hw.lanes_in) or n_tiles != -(-experts // hw.lanes_out),
         f"tile counts must match D={dim}, E={experts} and the lanes, not {k_tiles}x{n_tiles}"),
        (Status.BAD_DESCRIPTOR, tasks > 1 and d["task_stride"] < gate,
         f"GATE_TOPK task_stride must be at least one task's {gate} bytes of tiles, not {d['task_stride']}"),
        (Status.BAD_DESCRIPTOR, rq is not None, f"rq: {rq}"),
        (Status.BAD_DESCRIPTOR, gate_rq is not None and (gate_rq.width != hw.act_bits or not gate_rq.signed),
         f"GATE_TOPK must requantize into the signed {hw.act_bits}-bit softmax input, not {gate_rq}"),
        (Status.DOES_NOT_FIT, k_tiles > limits.max_k_tiles,
         f"a row of x must fit one activation bank ({limits.max_k_tiles} words of {hw.lanes_in}), not {k_tiles}"),
        (Status.DOES_NOT_FIT, n_tiles > limits.max_chunk_tiles,
         f"the gate's output tiles must be at most {limits.max_chunk_tiles} (one chunk), not {n_tiles}"),
        (Status.DOES_NOT_FIT, gate > hw.weight_buffer_bytes,
         f"one task's gate must fit one weight bank ({hw.weight_buffer_bytes} bytes), not {gate}"),
    ])
    if refusal:
        return refusal
    act = hw.act_bytes
    aligned = {name: d[name] for name in ("x_addr", "x_stride", "w_addr", "top_addr", "idx_addr", "lists_addr",
                                          "counts_addr")}
    if tasks > 1:
        aligned["task_stride"] = d["task_stride"]
    top_stride, probs_stride = hw.align(top_k * act), hw.align(experts * act)
    ends = {"x": rows_end(d["x_addr"], m, d["x_stride"], dim, act),
            "gates": d["w_addr"] + (tasks - 1) * d["task_stride"] + gate,
            "top": rows_end(d["top_addr"], m, top_stride, top_k, act),
            "idx": rows_end(d["idx_addr"], m, top_stride, top_k, act),
            "lists": d["lists_addr"] + experts * limits.list_stride(m),
            "counts": d["counts_addr"] + 4 * experts}
    if d["probs_addr"]:
        aligned["probs_addr"] = d["probs_addr"]
        ends["probs"] = rows_end(d["probs_addr"], m, probs_stride, experts, act)
    return _first([_misaligned(hw, aligned), _beyond(image_bytes, ends)])


def _check_expert_ffn(d: dict[str, int], hw: HwParams, image_bytes: int) -> Refusal | None:
    raw_flags = d["flags"]
    flags = MoeFlag(raw_flags & _DEFINED_MOE_FLAGS)
    residual, hidden_ddr = bool(flags & MoeFlag.RESIDUAL), bool(flags & MoeFlag.HIDDEN_DDR)
    m, experts, top_k, dim, hidden = d["m"], d["experts"], d["top_k"], d["d"], d["h"]
    limits = Limits(hw)
    (k1, n1), (k2, n2) = limits.expert_tiles(dim, hidden) if dim and hidden else ((0, 0), (0, 0))
    block = limits.expert_block(dim, hidden)
    problems = {name: Requant.problem(d[name]) for name in ("rq_hidden", "rq_expert", "rq_out")}
    if residual:
        problems["rq2"] = Requant.problem(d["rq2"])
    bad_rq = [f"{name}: {problem}" for name, problem in problems.items() if problem]
    rq_out = None if problems["rq_out"] else Requant.decode(d["rq_out"])
    unused = [name for name in ("res_addr", "rq2", "y_shift", "r_shift") if not residual and d[name]]
    chunk1, chunk2 = d["chunk1"], d["chunk2"]
    hidden_bytes = limits.moe_hidden_bytes(m, hidden)
    refusal = _first([
        (Status.BAD_DESCRIPTOR, raw_flags & ~_DEFINED_MOE_FLAGS,
         f"EXPERT_FFN flags must use only defined bits, not {raw_flags:#x}"),
        *_experts_and_top_k("EXPERT_FFN", m, experts, top_k),
        (Status.BAD_DESCRIPTOR, not (dim and hidden), f"EXPERT_FFN must have D and H ≥ 1, not D={dim}, H={hidden}"),
        (Status.BAD_DESCRIPTOR, not (1 <= chunk1 <= n1 and 1 <= chunk2 <= n2),
         f"EXPERT_FFN chunks must be in 1..{n1} (FC1) and 1..{n2} (FC2), not {chunk1} and {chunk2}"),
        (Status.BAD_DESCRIPTOR, unused, f"EXPERT_FFN without RESIDUAL must have {', '.join(unused)} 0"),
        (Status.BAD_DESCRIPTOR, not hidden_ddr and d["hidden_addr"], "EXPERT_FFN without HIDDEN_DDR must have hidden_addr 0"),
        (Status.BAD_DESCRIPTOR, experts > 1 and d["expert_stride"] < block.size,
         f"EXPERT_FFN expert_stride must be at least one expert's {block.size} bytes, not {d['expert_stride']}"),
        (Status.BAD_DESCRIPTOR, bad_rq, "; ".join(bad_rq)),
        (Status.DOES_NOT_FIT, m * dim > hw.moe_acc_entries,
         f"M·D (the weighted sums on chip) must be at most moe_acc_entries={hw.moe_acc_entries}, not {m * dim}"),
        (Status.DOES_NOT_FIT, rq_out is not None and rq_out.src_width > hw.moe_acc_bits,
         f"the weighted sum (rq_out's source) must be at most moe_acc_bits={hw.moe_acc_bits} wide, not "
         f"{rq_out.src_width if rq_out else 0} bits"),
        (Status.DOES_NOT_FIT, max(k1, k2) > limits.max_k_tiles,
         f"a row of x and of the hidden layer must fit one activation bank ({limits.max_k_tiles} words of "
         f"{hw.lanes_in}), not {max(k1, k2)}"),
        (Status.DOES_NOT_FIT, max(chunk1, chunk2) > limits.max_chunk_tiles,
         f"EXPERT_FFN chunks must be at most {limits.max_chunk_tiles} tiles, not {max(chunk1, chunk2)}"),
        (Status.DOES_NOT_FIT, max(limits.moe_chunk_bytes(k1, chunk1), limits.moe_chunk_bytes(k2, chunk2))
         > hw.weight_buffer_bytes,
         f"a weight chunk must fit one weight bank ({hw.weight_buffer_bytes} bytes), not "
         f"{max(limits.moe_chunk_bytes(k1, chunk1), limits.moe_chunk_bytes(k2, chunk2))}"),
        (Status.DOES_NOT_FIT, not hidden_ddr and hidden_bytes > hw.moe_hidden_bytes,
         f"without HIDDEN_DDR the hidden rows (M·align(H·act_bytes)) must be at most "
         f"moe_hidden_bytes={hw.moe_hidden_bytes}, not {hidden_bytes}"),
    ])
    if refusal:
        return refusal
    act = hw.act_bytes
    row = hw.align(dim * act)
    aligned = {name: d[name] for name in ("x_addr", "w_addr", "lists_addr", "counts_addr", "out_addr")}
    if experts > 1:
        aligned["expert_stride"] = d["expert_stride"]
    ends = {"x": rows_end(d["x_addr"], m, row, dim, act),
            "experts": d["w_addr"] + (experts - 1) * d["expert_stride"] + block.size,
            "lists": d["lists_addr"] + experts * limits.list_stride(m),
            "counts": d["counts_addr"] + 4 * experts,
            "out": rows_end(d["out_addr"], m, row, dim, act)}
    if residual:
        aligned["res_addr"] = d["res_addr"]
        ends["r"] = rows_end(d["res_addr"], m, row, dim, act)
    if hidden_ddr:
        aligned["hidden_addr"] = d["hidden_addr"]
        ends["hidden"] = d["hidden_addr"] + hidden_bytes
    return _first([_misaligned(hw, aligned), _beyond(image_bytes, ends)])


def check_task(tasks: int, task: int) -> Refusal | None:
    """Why a GATE_TOPK of ``tasks`` gates must stop for the ``TASK`` register's ``task`` (``BAD_TASK``), or ``None``."""
    if not 0 <= task < tasks:
        return Refusal(Status.BAD_TASK, f"TASK must be below the GATE_TOPK's {tasks} tasks, not {task}")
    return None


def check_counts(counts, m: int, top_k: int) -> Refusal | None:
    """Why an EXPERT_FFN must stop at the counts it read (``BAD_COUNT``): one above ``M``, or a sum other than ``M·k``."""
    counts = [int(c) for c in counts]
    over = [f"count[{e}]={c}" for e, c in enumerate(counts) if c > m]
    if over:
        return Refusal(Status.BAD_COUNT, f"expert token counts must be at most M={m}, not {', '.join(over[:4])}")
    if sum(counts) != m * top_k:
        return Refusal(Status.BAD_COUNT, f"expert token counts must sum to M·top_k = {m * top_k}, not {sum(counts)}")
    return None


def check_list(tokens, expert: int, m: int) -> Refusal | None:
    """Why an EXPERT_FFN must stop at expert ``expert``'s list of ``tokens`` (``BAD_COUNT``): a token ``≥ M``."""
    bad = [int(t) for t in tokens if int(t) >= m]
    if bad:
        return Refusal(Status.BAD_COUNT, f"list {expert} must hold tokens below M={m}, not {bad[0]}")
    return None
