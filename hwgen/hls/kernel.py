# SPDX-License-Identifier: Apache-2.0
"""What a C-simulation harness needs to know to call one HLS kernel on raw fixed-point arrays."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwgen.qfx import QFmt

__all__ = ["KernelPort", "Kernel"]

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_identifier(what: str, name: object) -> None:
    if not isinstance(name, str) or not _C_IDENTIFIER.fullmatch(name):
        raise ValueError(f"{what} must be a C identifier, not {name!r}")


@dataclass(frozen=True)
class KernelPort:
    """One array argument of a kernel: its C name, element format and element count."""

    name: str
    fmt: QFmt
    size: int

    def __post_init__(self):
        _check_identifier("port name", self.name)
        if not isinstance(self.fmt, QFmt):
            raise ValueError(f"port fmt must be a QFmt, not {self.fmt!r}")
        if self.fmt.width > 62:
            raise ValueError(f"port {self.name} width must be at most 62 bits, not {self.fmt.width}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"port {self.name} size must be a positive integer, not {self.size!r}")


@dataclass(frozen=True)
class Kernel:
    """How to call one kernel: C++ declarations it needs (its config header), the call, its ports.

    ``call`` is a C++ expression naming the ports, e.g. ``hwgen::requantize<rq_config>(in, out)``;
    the harness declares one array per port and calls it once per vector.
    """

    name: str
    declarations: str
    call: str
    inputs: tuple[KernelPort, ...]
    outputs: tuple[KernelPort, ...]

    def __post_init__(self):
        _check_identifier("kernel name", self.name)
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [port.name for port in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel {self.name} port names must be unique, not {names}")
        for side in ("inputs", "outputs"):
            if not getattr(self, side):
                raise ValueError(f"kernel {self.name} {side} must be non-empty, not ()")
