# SPDX-License-Identifier: Apache-2.0
"""One module per opcode family: what a descriptor does (``run``) and what it costs (``estimate``).

``hwgen.isa.spec.OPCODE_ENGINES`` names each opcode's engine; the module of that name here holds
its semantics for ``isa_sim`` and its cycle estimate, as the RTL and HLS engines of the same name
hold its hardware. A new opcode family is a new module here and its line in ``OPCODE_ENGINES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hwgen.compiler.cycles import CycleEstimate, CycleModel
from hwgen.hwparams import HwParams
from hwgen.isa import Descriptor
from hwgen.isa.spec import OPCODE_ENGINES

__all__ = ["engine_for", "estimate_cycles"]


def engine_for(opcode: int) -> ModuleType:
    """The engine module of ``opcode`` (``run`` and ``estimate``)."""
    try:
        name = OPCODE_ENGINES[opcode]
    except KeyError:
        raise ValueError(f"opcode must be one of {', '.join(str(int(o)) for o in OPCODE_ENGINES)}, not {opcode}") from None
    return importlib.import_module(f"{__name__}.{name}")


def estimate_cycles(desc: Descriptor, hw: HwParams, model: CycleModel = CycleModel()) -> CycleEstimate:
    """The docs/isa.md §5 estimate for one descriptor, by its engine."""
    return engine_for(desc.opcode).estimate(desc, hw, model)
