# SPDX-License-Identifier: Apache-2.0
"""The Program: a header and fixed-size binary descriptors, exactly as ``docs/isa.md`` defines them.

Encoding and decoding live here and nowhere else; :meth:`Program.listing` disassembles a Program
(from its bytes alone) into readable text.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from pathlib import Path

from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_BYTES",
    "DESCRIPTOR_BYTES",
    "OPCODE_LINEAR",
    "OPCODE_LAYERNORM",
    "OPCODE_SOFTMAX",
    "Flag",
    "Requant",
    "LinearDescriptor",
    "RowDescriptor",
    "Descriptor",
    "decode_descriptor",
    "Program",
]

MAGIC = 0x50475748  # the bytes "HWGP"
VERSION = 1
HEADER_BYTES = 64
DESCRIPTOR_BYTES = 64
OPCODE_LINEAR = 1
OPCODE_LAYERNORM = 5
OPCODE_SOFTMAX = 8
_WORDS = struct.Struct("<16I")


class Flag(enum.IntFlag):
    """Flag bits of a LINEAR descriptor (bits 8.. of word 0)."""

    BIAS = 1 << 0
    RELU1 = 1 << 1
    RESIDUAL = 1 << 2
    RELU2 = 1 << 3
    BYPASS = 1 << 4
    B_ROWMAJOR = 1 << 5
    X_UNSIGNED = 1 << 6
    W_UNSIGNED = 1 << 7
    R_UNSIGNED = 1 << 8
    GELU = 1 << 9


_ALL_FLAGS = sum(int(f) for f in Flag)


def _check_field(name: str, value: int, bits: int, signed: bool = False) -> int:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must fit a {'signed ' if signed else ''}{bits}-bit field ({low}..{high}), not {value!r}")
    return value & ((1 << bits) - 1)


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
        return (
            _check_field("requantize shift", self.shift, 8, signed=True)
            | _check_field("requantize width", self.width, 6) << 8
            | int(self.signed) << 14
            | ROUNDING_MODES.index(self.rounding) << 16
            | OVERFLOW_MODES.index(self.overflow) << 20
            | _check_field("requantize source width", self.src_width, 6) << 24
        )

    @classmethod
    def decode(cls, word: int) -> Requant:
        """Read a requantization word; invalid mode codes are refused."""
        shift = word & 0xFF
        rounding, overflow = (word >> 16) & 7, (word >> 20) & 7
        if rounding >= len(ROUNDING_MODES) or overflow >= len(OVERFLOW_MODES):
            raise ValueError(f"requantize word must hold valid mode codes, not rounding {rounding} overflow {overflow}")
        return cls(
            shift - 256 if shift >= 128 else shift,
            (word >> 8) & 0x3F,
            bool(word >> 14 & 1),
            ROUNDING_MODES[rounding],
            OVERFLOW_MODES[overflow],
            (word >> 24) & 0x3F,
        )

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

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        words = [
            OPCODE_LINEAR | _check_field("flags", int(self.flags), 24) << 8,
            _check_field("M", self.m, 32),
            _check_field("K", self.k, 16) | _check_field("N", self.n, 16) << 16,
            _check_field("k_tiles", self.k_tiles, 16) | _check_field("n_tiles", self.n_tiles, 16) << 16,
            _check_field("x_addr", self.x_addr, 32),
            _check_field("w_addr", self.w_addr, 32),
            _check_field("bias_addr", self.bias_addr, 32),
            _check_field("res_addr", self.res_addr, 32),
            _check_field("out_addr", self.out_addr, 32),
            _check_field("x_stride", self.x_stride, 32),
            _check_field("w_stride", self.w_stride, 32),
            _check_field("res_stride", self.res_stride, 32),
            _check_field("out_stride", self.out_stride, 32),
            self.rq1.encode(),
            self.rq2.encode() if self.rq2 is not None else 0,
            _check_field("chunk_tiles", self.chunk_tiles, 16)
            | _check_field("y_shift", self.y_shift, 8) << 16
            | _check_field("r_shift", self.r_shift, 8) << 24,
        ]
        return _WORDS.pack(*words)

    @classmethod
    def decode(cls, data: bytes) -> LinearDescriptor:
        """Read 64 descriptor bytes (the opcode must be LINEAR)."""
        w = _WORDS.unpack(data)
        if w[0] & 0xFF != OPCODE_LINEAR:
            raise ValueError(f"descriptor opcode must be {OPCODE_LINEAR} (LINEAR), not {w[0] & 0xFF}")
        flags = w[0] >> 8
        if flags & ~_ALL_FLAGS:
            raise ValueError(f"descriptor flags must use only defined bits, not {flags:#x}")
        flags = Flag(flags)
        return cls(
            flags=flags,
            m=w[1],
            k=w[2] & 0xFFFF,
            n=w[2] >> 16,
            k_tiles=w[3] & 0xFFFF,
            n_tiles=w[3] >> 16,
            x_addr=w[4],
            w_addr=w[5],
            bias_addr=w[6],
            res_addr=w[7],
            out_addr=w[8],
            x_stride=w[9],
            w_stride=w[10],
            res_stride=w[11],
            out_stride=w[12],
            rq1=Requant.decode(w[13]),
            rq2=Requant.decode(w[14]) if flags & Flag.RESIDUAL else None,
            chunk_tiles=w[15] & 0xFFFF,
            y_shift=(w[15] >> 16) & 0xFF,
            r_shift=w[15] >> 24,
        )

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        flags = "|".join(f.name for f in Flag if f in self.flags) or "-"
        chunks = -(-self.n_tiles // self.chunk_tiles)
        lines = [
            f"LINEAR M={self.m} K={self.k} N={self.n} tiles {self.k_tiles}x{self.n_tiles}"
            f" chunks {chunks}x{self.chunk_tiles} flags {flags}",
            f"  x    @{self.x_addr:#010x} stride {self.x_stride}",
        ]
        if not self.flags & Flag.BYPASS:
            stride = f" stride {self.w_stride}" if self.flags & Flag.B_ROWMAJOR else " (tiles)"
            lines.append(f"  w    @{self.w_addr:#010x}{stride}")
        if self.flags & Flag.BIAS:
            lines.append(f"  bias @{self.bias_addr:#010x}")
        lines.append(f"  rq1  {self.rq1}")
        if self.flags & Flag.RESIDUAL:
            lines.append(f"  res  @{self.res_addr:#010x} stride {self.res_stride}  (y<<{self.y_shift}) + (r<<{self.r_shift})")
            lines.append(f"  rq2  {self.rq2}")
        lines.append(f"  out  @{self.out_addr:#010x} stride {self.out_stride}")
        return lines


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

    NAMES = {OPCODE_LAYERNORM: "LAYERNORM", OPCODE_SOFTMAX: "SOFTMAX"}

    @property
    def name(self) -> str:
        return self.NAMES[self.opcode]

    def encode(self) -> bytes:
        """The 64 bytes of the descriptor."""
        if self.opcode not in self.NAMES:
            raise ValueError(f"row descriptor opcode must be one of {', '.join(map(str, self.NAMES))}, not {self.opcode}")
        offset = _check_field("d_offset", self.d_offset, 96)
        words = [
            self.opcode,
            _check_field("M", self.m, 32),
            _check_field("N", self.n, 16),
            0,
            _check_field("x_addr", self.x_addr, 32),
            _check_field("gamma_addr", self.gamma_addr, 32),
            _check_field("beta_addr", self.beta_addr, 32),
            0,
            _check_field("out_addr", self.out_addr, 32),
            _check_field("x_stride", self.x_stride, 32),
            0,
            0,
            _check_field("out_stride", self.out_stride, 32),
            offset & 0xFFFFFFFF,
            (offset >> 32) & 0xFFFFFFFF,
            offset >> 64,
        ]
        return _WORDS.pack(*words)

    @classmethod
    def decode(cls, data: bytes) -> RowDescriptor:
        """Read 64 descriptor bytes of a LAYERNORM or SOFTMAX descriptor; reserved bits must be 0."""
        w = _WORDS.unpack(data)
        opcode = w[0] & 0xFF
        if opcode not in cls.NAMES:
            raise ValueError(f"descriptor opcode must be one of {', '.join(map(str, cls.NAMES))}, not {opcode}")
        if w[0] >> 8 or w[2] >> 16 or w[3] or w[7] or w[10] or w[11]:
            raise ValueError(f"{cls.NAMES[opcode]} descriptor must have its reserved fields 0")
        return cls(opcode, m=w[1], n=w[2], x_addr=w[4], out_addr=w[8], x_stride=w[9], out_stride=w[12],
                   gamma_addr=w[5], beta_addr=w[6], d_offset=w[13] | w[14] << 32 | w[15] << 64)

    def listing(self) -> list[str]:
        """Disassembly: a few indented lines."""
        lines = [f"{self.name} M={self.m} N={self.n}", f"  x    @{self.x_addr:#010x} stride {self.x_stride}"]
        if self.opcode == OPCODE_LAYERNORM:
            lines.append(f"  gamma @{self.gamma_addr:#010x} beta @{self.beta_addr:#010x} d_offset {self.d_offset}")
        lines.append(f"  out  @{self.out_addr:#010x} stride {self.out_stride}")
        return lines


Descriptor = LinearDescriptor | RowDescriptor


def decode_descriptor(data: bytes) -> Descriptor:
    """Decode 64 descriptor bytes by their opcode."""
    opcode = data[0]
    if opcode == OPCODE_LINEAR:
        return LinearDescriptor.decode(data)
    if opcode in RowDescriptor.NAMES:
        return RowDescriptor.decode(data)
    known = ", ".join(map(str, (OPCODE_LINEAR, *RowDescriptor.NAMES)))
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
        header = _WORDS.pack(
            MAGIC, VERSION, _check_field("fingerprint", self.fingerprint, 32), len(self.descriptors),
            DESCRIPTOR_BYTES, _check_field("image_bytes", self.image_bytes, 32), *([0] * 10),
        )
        return header + b"".join(d.encode() for d in self.descriptors)

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        """Decode a Program; a bad magic, version or size is refused."""
        if len(data) < HEADER_BYTES:
            raise ValueError(f"a Program must be at least {HEADER_BYTES} bytes, not {len(data)}")
        w = _WORDS.unpack(data[:HEADER_BYTES])
        if w[0] != MAGIC:
            raise ValueError(f"Program magic must be {MAGIC:#010x}, not {w[0]:#010x}")
        if w[1] != VERSION:
            raise ValueError(f"Program version must be {VERSION}, not {w[1]}")
        if w[4] != DESCRIPTOR_BYTES:
            raise ValueError(f"descriptor size must be {DESCRIPTOR_BYTES}, not {w[4]}")
        count = w[3]
        end = HEADER_BYTES + count * DESCRIPTOR_BYTES
        if len(data) < end:
            raise ValueError(f"a Program of {count} descriptors must be {end} bytes, not {len(data)}")
        descriptors = tuple(
            decode_descriptor(data[HEADER_BYTES + i * DESCRIPTOR_BYTES : HEADER_BYTES + (i + 1) * DESCRIPTOR_BYTES])
            for i in range(count)
        )
        return cls(w[2], w[5], descriptors)

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
