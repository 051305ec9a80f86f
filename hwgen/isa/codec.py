# SPDX-License-Identifier: Apache-2.0
"""Encode and decode Programs: header and descriptors, packed by the field tables of :mod:`hwgen.isa.spec`.

Encoding and decoding live here and nowhere else; :meth:`Program.listing` disassembles a Program
(from its bytes alone) into readable text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hwgen.isa.spec import (
    ATTENTION_FIELDS, CONV_FIELDS, DESCRIPTOR_BYTES, EXPERT_FFN_FIELDS, GATE_TOPK_FIELDS, HEADER_BYTES, HEADER_FIELDS,
    LINEAR_FIELDS, MAGIC, REQUANT_FIELDS, ROW_FIELDS, VERSION, Field, Flag, MoeFlag, Opcode,
)
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt

__all__ = [
    "pack",
    "unpack",
    "Requant",
    "LinearDescriptor",
    "ConvDescriptor",
    "RowDescriptor",
    "AttentionDescriptor",
    "GateTopkDescriptor",
    "ExpertFfnDescriptor",
    "Descriptor",
    "decode_descriptor",
    "Program",
]

_ALL_FLAGS = sum(int(f) for f in Flag)
_ALL_MOE_FLAGS = sum(int(f) for f in MoeFlag)


def _fits(name: str, value: int, bits: int, signed: bool = False) -> int:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must fit a {'signed ' if signed else ''}{bits}-bit field ({low}..{high}), not {value!r}")
    return value & ((1 << bits) - 1)


def pack(fields: tuple[Field, ...], values: Mapping[str, int]) -> bytes:
    """The little-endian bytes of a block: every field from ``values`` (absent ones 0), each checked to fit."""
    unknown = set(values) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"fields must be among the block's, not {sorted(unknown)}")
    total = 0
    for f in fields:
        total |= _fits(f.name, int(values.get(f.name, 0)), f.bits, f.signed) << f.offset
    size = sum(f.bits for f in fields)
    return total.to_bytes(size // 8, "little")


def unpack(fields: tuple[Field, ...], data: bytes) -> dict[str, int]:
    """Every field of a block from its little-endian bytes (signed fields sign-extended)."""
    total = int.from_bytes(data, "little")
    values = {}
    for f in fields:
        value = (total >> f.offset) & ((1 << f.bits) - 1)
        if f.signed and value >> (f.bits - 1):
            value -= 1 << f.bits
        values[f.name] = value
    return values


def _word(fields: tuple[Field, ...], values: Mapping[str, int]) -> int:
    return int.from_bytes(pack(fields, values), "little")


@dataclass(frozen=True)
class Requant:
    """One requantization step: shift (round) then fit ``width`` bits per the overflow mode."""

    shift: int
    width: int
    signed: bool
    rounding: str
    overflow: str
    src_width: int

    @classmethod
    def between(cls, src: QFmt, dst: QFmt) -> Requant:
        """The step equal to ``dst.cast(raw, src)``; the identity when the formats are the same type."""
        if src == dst:
            return cls.identity(src)
        return cls(src.frac_bits - dst.frac_bits, dst.width, dst.signed, dst.rounding, dst.overflow, src.width)

    @classmethod
    def identity(cls, fmt: QFmt) -> Requant:
        """A step that leaves every code of ``fmt`` unchanged."""
        return cls(0, fmt.width, fmt.signed, "TRN", "WRAP", fmt.width)

    def encode(self) -> int:
        """The 32-bit requantization word (docs/isa.md §3.5)."""
        if not 1 <= self.width <= 32:
            raise ValueError(f"requantize width must be 1 to 32 bits, not {self.width}")
        return _word(REQUANT_FIELDS, {
            "shift": self.shift, "width": self.width, "is_signed": int(self.signed),
            "round": ROUNDING_MODES.index(self.rounding), "overflow": OVERFLOW_MODES.index(self.overflow),
            "src_width": self.src_width,
        })

    @staticmethod
    def problem(word: int) -> str | None:
        """Why ``word`` is not a valid requantization word (docs/isa.md §3.5), or ``None``."""
        f = unpack(REQUANT_FIELDS, word.to_bytes(4, "little"))
        if not 1 <= f["width"] <= 32:
            return f"requantize width must be 1 to 32, not {f['width']}"
        if f["round"] >= len(ROUNDING_MODES) or f["overflow"] >= len(OVERFLOW_MODES):
            return f"requantize word must hold valid mode codes, not rounding {f['round']} overflow {f['overflow']}"
        reserved = [name for name, value in f.items() if name.startswith("reserved") and value]
        if reserved:
            return f"requantize word must have its reserved bits 0, not {', '.join(reserved)} set"
        return None

    @classmethod
    def decode(cls, word: int) -> Requant:
        """Read a requantization word; an invalid one is refused."""
        problem = cls.problem(word)
        if problem:
            raise ValueError(problem)
        f = unpack(REQUANT_FIELDS, word.to_bytes(4, "little"))
        return cls(f["shift"], f["width"], bool(f["is_signed"]), ROUNDING_MODES[f["round"]],
                   OVERFLOW_MODES[f["overflow"]], f["src_width"])

    def __str__(self) -> str:
        move = f">>{self.shift}" if self.shift > 0 else f"<<{-self.shift}"
        kind = "s" if self.signed else "u"
        return f"{move} {kind}{self.width} {self.rounding} {self.overflow} (src {self.src_width} b)"


@dataclass(frozen=True)
class LinearDescriptor:
    """A LINEAR descriptor (opcode 1): every field of docs/isa.md §3.3."""

    flags: Flag
    m: int
    k: int
    n: int
    k_tiles: int
    n_tiles: int
    x_addr: int
    w_addr: int
    bias_addr: int
    res_addr: int
    out_addr: int
    x_stride: int
    w_stride: int
    res_stride: int
    out_stride: int
    rq1: Requant
    rq2: Requant | None
    chunk_tiles: int
    y_shift: int = 0
    r_shift: int = 0

    opcode = Opcode.LINEAR
    name = "LINEAR"

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        return _encode_linear_family(self, LINEAR_FIELDS)

    @classmethod
    def decode(cls, data: bytes) -> LinearDescriptor:
        """Read 64 descriptor bytes (the opcode must be LINEAR, the flags and requantization words defined)."""
        return cls(**_decode_linear_family(LINEAR_FIELDS, Opcode.LINEAR, data))

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        chunks = -(-self.n_tiles // self.chunk_tiles)
        head = (f"LINEAR M={self.m} K={self.k} N={self.n} tiles {self.k_tiles}x{self.n_tiles}"
                f" chunks {chunks}x{self.chunk_tiles} flags {_flag_names(self.flags)}")
        return _linear_family_listing(self, head, f"  x    @{self.x_addr:#010x} stride {self.x_stride}")


def _flag_names(flags: Flag) -> str:
    return "|".join(f.name for f in Flag if f in flags) or "-"


def _encode_linear_family(desc: LinearDescriptor | ConvDescriptor, fields: tuple[Field, ...]) -> bytes:
    """The 64 bytes of a LINEAR or CONV descriptor: its fields, the flags and requantization words packed."""
    values = {f.name: getattr(desc, f.name) for f in fields if f.name not in ("opcode", "flags", "rq1", "rq2")}
    values.update(opcode=int(desc.opcode), flags=int(desc.flags), rq1=desc.rq1.encode(),
                  rq2=desc.rq2.encode() if desc.rq2 is not None else 0)
    return pack(fields, values)


def _decode_linear_family(fields: tuple[Field, ...], opcode: Opcode, data: bytes) -> dict:
    """The constructor arguments of a LINEAR or CONV descriptor (its flags and requantization words defined)."""
    f = unpack(fields, data)
    if f["opcode"] != opcode:
        raise ValueError(f"descriptor opcode must be {int(opcode)} ({opcode.name}), not {f['opcode']}")
    if f["flags"] & ~_ALL_FLAGS:
        raise ValueError(f"descriptor flags must use only defined bits, not {f['flags']:#x}")
    flags = Flag(f.pop("flags"))
    del f["opcode"]
    rq1, rq2 = Requant.decode(f.pop("rq1")), f.pop("rq2")
    return dict(flags=flags, rq1=rq1, rq2=Requant.decode(rq2) if flags & Flag.RESIDUAL else None, **f)


def _linear_family_listing(desc: LinearDescriptor | ConvDescriptor, head: str, x_line: str) -> list[str]:
    """Disassembly of a LINEAR or CONV descriptor: its first line and the line of ``x``, then the rest."""
    lines = [head, x_line]
    if not desc.flags & Flag.BYPASS:
        stride = f" stride {desc.w_stride}" if desc.flags & Flag.B_ROWMAJOR else " (tiles)"
        lines.append(f"  w    @{desc.w_addr:#010x}{stride}")
    if desc.flags & Flag.BIAS:
        lines.append(f"  bias @{desc.bias_addr:#010x}")
    lines.append(f"  rq1  {desc.rq1}")
    if desc.flags & Flag.RESIDUAL:
        skip = f" skip {desc.res_skip}" if getattr(desc, "res_skip", 0) else ""
        lines.append(f"  res  @{desc.res_addr:#010x} stride {desc.res_stride}{skip}  (y<<{desc.y_shift}) + (r<<{desc.r_shift})")
        lines.append(f"  rq2  {desc.rq2}")
    skip = f" skip {desc.out_skip}" if getattr(desc, "out_skip", 0) else ""
    lines.append(f"  out  @{desc.out_addr:#010x} stride {desc.out_stride}{skip}")
    return lines


@dataclass(frozen=True)
class ConvDescriptor:
    """A CONV descriptor (opcode 2): LINEAR on rows of ``x`` gathered from a channels-last feature map (docs/isa.md §3.9).

    Row ``r = (gy, gx) = (r // grid_w, r % grid_w)`` of ``x`` is the concatenation of ``kh`` segments of
    ``K / kh`` elements; segment ``j`` starts at ``x_addr + gy·stride_y·seg_stride + gx·x_stride + j·seg_stride``.
    """

    flags: Flag
    grid_h: int
    grid_w: int
    kh: int
    stride_y: int
    k: int
    n: int
    k_tiles: int
    n_tiles: int
    x_addr: int
    w_addr: int
    bias_addr: int
    res_addr: int
    out_addr: int
    x_stride: int
    seg_stride: int
    res_stride: int
    out_stride: int
    rq1: Requant
    rq2: Requant | None
    chunk_tiles: int
    y_shift: int = 0
    r_shift: int = 0
    res_skip: int = 0
    out_skip: int = 0

    opcode = Opcode.CONV
    name = "CONV"
    #: CONV's second operand is always weight tiles (no ``B`` operand).
    w_stride = 0

    @property
    def m(self) -> int:
        """Rows of ``x`` and of the output: one per window."""
        return self.grid_h * self.grid_w

    @property
    def seg_elems(self) -> int:
        """Elements of one segment (``kw·C``, one kernel row of a window)."""
        return self.k // self.kh

    def segment_addrs(self, row: int) -> list[int]:
        """The first byte of each of row ``row``'s ``kh`` segments."""
        gy, gx = divmod(row, self.grid_w)
        start = self.x_addr + gy * self.stride_y * self.seg_stride + gx * self.x_stride
        return [start + j * self.seg_stride for j in range(self.kh)]

    def out_row_addr(self, row: int) -> int:
        """The first byte of output row (window) ``row``: ``out_skip`` more bytes after each grid row."""
        gy, gx = divmod(row, self.grid_w)
        return self.out_addr + gy * (self.grid_w * self.out_stride + self.out_skip) + gx * self.out_stride

    def res_row_addr(self, row: int) -> int:
        """The first byte of residual row (window) ``row``: ``res_skip`` more bytes after each grid row."""
        gy, gx = divmod(row, self.grid_w)
        return self.res_addr + gy * (self.grid_w * self.res_stride + self.res_skip) + gx * self.res_stride

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        return _encode_linear_family(self, CONV_FIELDS)

    @classmethod
    def decode(cls, data: bytes) -> ConvDescriptor:
        """Read 64 descriptor bytes (the opcode must be CONV, the flags and requantization words defined)."""
        return cls(**_decode_linear_family(CONV_FIELDS, Opcode.CONV, data))

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        chunks = -(-self.n_tiles // self.chunk_tiles)
        head = (f"CONV grid {self.grid_h}x{self.grid_w} (M={self.m}) kernel rows {self.kh} stride_y {self.stride_y}"
                f" K={self.k} N={self.n} tiles {self.k_tiles}x{self.n_tiles} chunks {chunks}x{self.chunk_tiles}"
                f" flags {_flag_names(self.flags)}")
        x_line = (f"  x    @{self.x_addr:#010x} window stride {self.x_stride} row stride {self.seg_stride}"
                  f" segments {self.kh}x{self.seg_elems}")
        return _linear_family_listing(self, head, x_line)


@dataclass(frozen=True)
class RowDescriptor:
    """A LAYERNORM (opcode 5) or SOFTMAX (opcode 8) descriptor: a row unit over M rows of N elements (docs/isa.md §3.6)."""

    opcode: int
    m: int
    n: int
    x_addr: int
    out_addr: int
    x_stride: int
    out_stride: int
    gamma_addr: int = 0
    beta_addr: int = 0
    d_offset: int = 0

    OPCODES = (Opcode.LAYERNORM, Opcode.SOFTMAX)

    @property
    def name(self) -> str:
        return Opcode(self.opcode).name

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        if self.opcode not in self.OPCODES:
            raise ValueError(f"row descriptor opcode must be one of {', '.join(str(int(o)) for o in self.OPCODES)}, "
                             f"not {self.opcode}")
        return pack(ROW_FIELDS, {f.name: int(getattr(self, f.name)) for f in ROW_FIELDS if not f.reserved})

    @classmethod
    def decode(cls, data: bytes) -> RowDescriptor:
        """Read 64 descriptor bytes of a LAYERNORM or SOFTMAX descriptor; reserved bits must be 0."""
        f = unpack(ROW_FIELDS, data)
        if f["opcode"] not in cls.OPCODES:
            raise ValueError(f"descriptor opcode must be one of {', '.join(str(int(o)) for o in cls.OPCODES)}, "
                             f"not {f['opcode']}")
        if any(f.pop(name) for name in [field.name for field in ROW_FIELDS if field.reserved]):
            raise ValueError(f"{Opcode(f['opcode']).name} descriptor must have its reserved fields 0")
        return cls(**f)

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        lines = [f"{self.name} M={self.m} N={self.n}", f"  x    @{self.x_addr:#010x} stride {self.x_stride}"]
        if self.opcode == Opcode.LAYERNORM:
            lines.append(f"  gamma @{self.gamma_addr:#010x} beta @{self.beta_addr:#010x} d_offset {self.d_offset}")
        lines.append(f"  out  @{self.out_addr:#010x} stride {self.out_stride}")
        return lines


@dataclass(frozen=True)
class AttentionDescriptor:
    """A QK_SOFTMAX_STATS (opcode 3) or AV (opcode 4) descriptor: every head of an attention layer (docs/isa.md §3.8).

    Fields the opcode does not use are 0 (QK: ``v_*``, ``out_*``; AV: ``q_*``, ``k_*``, ``scale``).
    """

    opcode: int
    m: int
    s: int
    heads: int
    d_head: int
    scores_addr: int
    scores_stride: int
    stats_addr: int
    rq: Requant
    q_addr: int = 0
    k_addr: int = 0
    v_addr: int = 0
    out_addr: int = 0
    q_stride: int = 0
    k_stride: int = 0
    v_stride: int = 0
    out_stride: int = 0
    scale: int = 0

    OPCODES = (Opcode.QK_SOFTMAX_STATS, Opcode.AV)

    @property
    def name(self) -> str:
        return Opcode(self.opcode).name

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        if self.opcode not in self.OPCODES:
            raise ValueError(f"attention descriptor opcode must be one of {', '.join(str(int(o)) for o in self.OPCODES)}, "
                             f"not {self.opcode}")
        values = {f.name: getattr(self, f.name) for f in ATTENTION_FIELDS if not f.reserved and f.name != "rq"}
        values.update(opcode=int(self.opcode), rq=self.rq.encode())
        return pack(ATTENTION_FIELDS, values)

    @classmethod
    def decode(cls, data: bytes) -> AttentionDescriptor:
        """Read 64 descriptor bytes of a QK_SOFTMAX_STATS or AV descriptor; reserved bits must be 0."""
        f = unpack(ATTENTION_FIELDS, data)
        if f["opcode"] not in cls.OPCODES:
            raise ValueError(f"descriptor opcode must be one of {', '.join(str(int(o)) for o in cls.OPCODES)}, "
                             f"not {f['opcode']}")
        if any(f.pop(name) for name in [field.name for field in ATTENTION_FIELDS if field.reserved]):
            raise ValueError(f"{Opcode(f['opcode']).name} descriptor must have its reserved fields 0")
        return cls(rq=Requant.decode(f.pop("rq")), **f)

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        qk = self.opcode == Opcode.QK_SOFTMAX_STATS
        lines = [f"{self.name} M={self.m} S={self.s} heads {self.heads}x{self.d_head}"]
        if qk:
            lines += [f"  q    @{self.q_addr:#010x} stride {self.q_stride}", f"  k    @{self.k_addr:#010x} stride {self.k_stride}",
                      f"  scale {self.scale}  rq {self.rq}"]
        lines += [f"  scores @{self.scores_addr:#010x} stride {self.scores_stride}", f"  stats  @{self.stats_addr:#010x}"]
        if not qk:
            lines += [f"  v    @{self.v_addr:#010x} stride {self.v_stride}", f"  rq   {self.rq}",
                      f"  out  @{self.out_addr:#010x} stride {self.out_stride}"]
        return lines


def _reserved_zero(fields: tuple[Field, ...], f: dict[str, int], name: str) -> None:
    """Drop the reserved fields of ``f``; any of them set is refused."""
    if any(f.pop(field.name) for field in fields if field.reserved):
        raise ValueError(f"{name} descriptor must have its reserved fields 0")


@dataclass(frozen=True)
class GateTopkDescriptor:
    """A GATE_TOPK descriptor (opcode 6): one MoE layer's gate for the task in ``TASK`` (docs/isa.md §3.10).

    Logits ``x·W_g[task]`` on the array, requantized by ``rq`` into the softmax unit's input format,
    the softmax unit over each token's ``E`` logits, a ``top_k``-long insertion; writes ``probs``
    (if ``probs_addr``), ``top``, ``idx``, the per-expert token lists and the counts.
    """

    m: int
    experts: int
    top_k: int
    k: int
    tasks: int
    k_tiles: int
    n_tiles: int
    x_addr: int
    w_addr: int
    task_stride: int
    probs_addr: int
    top_addr: int
    x_stride: int
    lists_addr: int
    counts_addr: int
    idx_addr: int
    rq: Requant

    opcode = Opcode.GATE_TOPK
    name = "GATE_TOPK"

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        values = {f.name: getattr(self, f.name) for f in GATE_TOPK_FIELDS if not f.reserved and f.name not in ("opcode", "rq")}
        values.update(opcode=int(self.opcode), rq=self.rq.encode())
        return pack(GATE_TOPK_FIELDS, values)

    @classmethod
    def decode(cls, data: bytes) -> GateTopkDescriptor:
        """Read 64 descriptor bytes of a GATE_TOPK descriptor; reserved bits must be 0."""
        f = unpack(GATE_TOPK_FIELDS, data)
        if f["opcode"] != Opcode.GATE_TOPK:
            raise ValueError(f"descriptor opcode must be {int(Opcode.GATE_TOPK)} (GATE_TOPK), not {f['opcode']}")
        del f["opcode"]
        _reserved_zero(GATE_TOPK_FIELDS, f, "GATE_TOPK")
        return cls(rq=Requant.decode(f.pop("rq")), **f)

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        lines = [f"GATE_TOPK M={self.m} D={self.k} E={self.experts} top {self.top_k} tasks {self.tasks}"
                 f" tiles {self.k_tiles}x{self.n_tiles}",
                 f"  x    @{self.x_addr:#010x} stride {self.x_stride}",
                 f"  w    @{self.w_addr:#010x} (tiles) task stride {self.task_stride}",
                 f"  rq   {self.rq}"]
        if self.probs_addr:
            lines.append(f"  probs @{self.probs_addr:#010x}")
        lines += [f"  top  @{self.top_addr:#010x} idx @{self.idx_addr:#010x}",
                  f"  lists @{self.lists_addr:#010x} counts @{self.counts_addr:#010x}"]
        return lines


@dataclass(frozen=True)
class ExpertFfnDescriptor:
    """An EXPERT_FFN descriptor (opcode 7): every active expert of one MoE layer and its output (docs/isa.md §3.10).

    Reads the counts and lists a GATE_TOPK wrote; each active expert's FFN on its gathered tokens,
    ``score·y`` summed exactly on chip, then ``out[t] = requantize(A[t], rq_out)`` (with ``RESIDUAL``:
    ``requantize((y1 << y_shift) + (r[t] << r_shift), rq2)``).
    """

    flags: MoeFlag
    m: int
    experts: int
    top_k: int
    d: int
    h: int
    chunk1: int
    chunk2: int
    x_addr: int
    w_addr: int
    expert_stride: int
    lists_addr: int
    counts_addr: int
    res_addr: int
    out_addr: int
    hidden_addr: int
    rq_hidden: Requant
    rq_expert: Requant
    rq_out: Requant
    rq2: Requant | None
    y_shift: int = 0
    r_shift: int = 0

    opcode = Opcode.EXPERT_FFN
    name = "EXPERT_FFN"
    _REQUANTS = ("rq_hidden", "rq_expert", "rq_out", "rq2")

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        values = {f.name: getattr(self, f.name) for f in EXPERT_FFN_FIELDS
                  if f.name not in ("opcode", "flags", *self._REQUANTS)}
        values.update(opcode=int(self.opcode), flags=int(self.flags), rq_hidden=self.rq_hidden.encode(),
                      rq_expert=self.rq_expert.encode(), rq_out=self.rq_out.encode(),
                      rq2=self.rq2.encode() if self.rq2 is not None else 0)
        return pack(EXPERT_FFN_FIELDS, values)

    @classmethod
    def decode(cls, data: bytes) -> ExpertFfnDescriptor:
        """Read 64 descriptor bytes of an EXPERT_FFN descriptor (flags and requantization words defined)."""
        f = unpack(EXPERT_FFN_FIELDS, data)
        if f["opcode"] != Opcode.EXPERT_FFN:
            raise ValueError(f"descriptor opcode must be {int(Opcode.EXPERT_FFN)} (EXPERT_FFN), not {f['opcode']}")
        del f["opcode"]
        if f["flags"] & ~_ALL_MOE_FLAGS:
            raise ValueError(f"EXPERT_FFN flags must use only defined bits, not {f['flags']:#x}")
        flags = MoeFlag(f.pop("flags"))
        rq2 = f.pop("rq2")
        rqs = {name: Requant.decode(f.pop(name)) for name in ("rq_hidden", "rq_expert", "rq_out")}
        return cls(flags=flags, rq2=Requant.decode(rq2) if flags & MoeFlag.RESIDUAL else None, **rqs, **f)

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        flags = "|".join(f.name for f in MoeFlag if f in self.flags) or "-"
        lines = [f"EXPERT_FFN M={self.m} D={self.d} H={self.h} E={self.experts} top {self.top_k}"
                 f" chunks {self.chunk1}/{self.chunk2} flags {flags}",
                 f"  x    @{self.x_addr:#010x} (gathered)",
                 f"  w    @{self.w_addr:#010x} expert stride {self.expert_stride}",
                 f"  lists @{self.lists_addr:#010x} counts @{self.counts_addr:#010x}",
                 f"  rq_hidden {self.rq_hidden}", f"  rq_expert {self.rq_expert}", f"  rq_out    {self.rq_out}"]
        if self.flags & MoeFlag.HIDDEN_DDR:
            lines.append(f"  hidden @{self.hidden_addr:#010x}")
        if self.flags & MoeFlag.RESIDUAL:
            lines.append(f"  res  @{self.res_addr:#010x}  (y<<{self.y_shift}) + (r<<{self.r_shift})")
            lines.append(f"  rq2  {self.rq2}")
        lines.append(f"  out  @{self.out_addr:#010x}")
        return lines


Descriptor = (LinearDescriptor | ConvDescriptor | RowDescriptor | AttentionDescriptor | GateTopkDescriptor
              | ExpertFfnDescriptor)


def decode_descriptor(data: bytes) -> Descriptor:
    """Decode 64 descriptor bytes by their opcode."""
    opcode = data[0]
    if opcode == Opcode.LINEAR:
        return LinearDescriptor.decode(data)
    if opcode == Opcode.CONV:
        return ConvDescriptor.decode(data)
    if opcode in RowDescriptor.OPCODES:
        return RowDescriptor.decode(data)
    if opcode in AttentionDescriptor.OPCODES:
        return AttentionDescriptor.decode(data)
    if opcode == Opcode.GATE_TOPK:
        return GateTopkDescriptor.decode(data)
    if opcode == Opcode.EXPERT_FFN:
        return ExpertFfnDescriptor.decode(data)
    known = ", ".join(str(int(o)) for o in Opcode)
    raise ValueError(f"descriptor opcode must be one of {known}, not {opcode}")


@dataclass(frozen=True)
class Program:
    """A header (fingerprint, image size) and the descriptors, in execution order."""

    fingerprint: int
    image_bytes: int
    descriptors: tuple[Descriptor, ...]

    @property
    def nbytes(self) -> int:
        """Size of the encoded Program."""
        return HEADER_BYTES + DESCRIPTOR_BYTES * len(self.descriptors)

    def to_bytes(self) -> bytes:
        """The encoded Program: header then descriptors (``program.bin``)."""
        header = pack(HEADER_FIELDS, {
            "magic": MAGIC, "version": VERSION, "fingerprint": self.fingerprint, "count": len(self.descriptors),
            "descriptor_bytes": DESCRIPTOR_BYTES, "image_bytes": self.image_bytes,
        })
        return header + b"".join(d.encode() for d in self.descriptors)

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        """Decode a Program; a bad magic, version or size is refused."""
        if len(data) < HEADER_BYTES:
            raise ValueError(f"a Program must be at least {HEADER_BYTES} bytes, not {len(data)}")
        h = unpack(HEADER_FIELDS, data[:HEADER_BYTES])
        if h["magic"] != MAGIC:
            raise ValueError(f"Program magic must be {MAGIC:#010x}, not {h['magic']:#010x}")
        if h["version"] != VERSION:
            raise ValueError(f"Program version must be {VERSION}, not {h['version']}")
        if h["descriptor_bytes"] != DESCRIPTOR_BYTES:
            raise ValueError(f"descriptor size must be {DESCRIPTOR_BYTES}, not {h['descriptor_bytes']}")
        count = h["count"]
        end = HEADER_BYTES + count * DESCRIPTOR_BYTES
        if len(data) < end:
            raise ValueError(f"a Program of {count} descriptors must be {end} bytes, not {len(data)}")
        descriptors = tuple(
            decode_descriptor(data[HEADER_BYTES + i * DESCRIPTOR_BYTES : HEADER_BYTES + (i + 1) * DESCRIPTOR_BYTES])
            for i in range(count)
        )
        return cls(h["fingerprint"], h["image_bytes"], descriptors)

    def listing(self, labels: tuple[str, ...] = ()) -> str:
        """Human-readable disassembly; ``labels`` (e.g. layer names) annotate descriptors."""
        lines = [
            f"hwgen Program v{VERSION}: {len(self.descriptors)} descriptors, hw fingerprint {self.fingerprint:#010x},"
            f" image {self.image_bytes} bytes"
        ]
        for index, descriptor in enumerate(self.descriptors):
            body = descriptor.listing()
            label = f"  ; {labels[index]}" if index < len(labels) else ""
            lines.append(f"#{index:<3} {body[0]}{label}")
            lines.extend(f"     {line}" for line in body[1:])
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write ``program.bin``."""
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Program:
        """Read a ``program.bin``."""
        return cls.from_bytes(Path(path).read_bytes())
