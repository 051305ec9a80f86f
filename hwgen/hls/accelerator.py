# SPDX-License-Identifier: Apache-2.0
"""The accelerator as Vitis-HLS C++: emit its config header and top, and C-simulate it with g++.

The kernel itself is the hand-written headers ``hls_templates/accelerator.h`` (the controller:
fetch, decode, check, dispatch; and one function per engine), ``compute_unit.h`` (the MAC array
and the post-processing lanes) and ``requantize_rt.h``; from one :class:`~hwgen.hwparams.HwParams`
Python fills only ``hwgen_accel_config.h`` (lanes, containers, the validity rule's capacities and
the bank depths they imply, AXI width, fingerprint, whether the attention and MoE engines exist (the
MoE engine's array sizes), and the config structs of the GELU lanes, the
LayerNorm unit and the softmax unit from ``hw.unit_formats()``) and ``hwgen_accel.cpp`` (the
``hwgen_accel`` top with its interface pragmas; the ``task`` port with the MoE engine), beside the
generated ISA header ``hwgen_isa.h``
(opcodes, flags, status codes and field positions from the one ISA definition).

:class:`AcceleratorCSim` compiles the same top into a g++ harness (one binary per configuration,
cached by content) that loads a memory image into the DDR array, runs the Program (with the TASK
register on a core with the MoE engine) and returns the image after the run, and that also exposes the
runtime requantizer on raw vectors.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwgen import toolchain
from hwgen.hls import nonlinear
from hwgen.hls.emit import render
from hwgen.hls_templates import TEMPLATE_DIR
from hwgen.hwparams import HwParams
from hwgen.isa import Flag, Limits, Status
from hwgen.isa.cpp import ISA_HEADER_NAME, isa_header
from hwgen.units import ROW_MAX, attention_problem, moe_problem, row_units_problem

__all__ = [
    "TOP_NAME",
    "CONFIG_HEADER",
    "ISA_HEADER",
    "TOP_SOURCE",
    "KERNEL_HEADERS",
    "UNIT_CONFIG_NAMES",
    "Status",
    "AccelRun",
    "AcceleratorCSim",
    "accelerator_context",
    "bank_tiles",
    "x_bank_rows",
    "accelerator_config",
    "accelerator_top",
    "accelerator_sources",
]

log = logging.getLogger(__name__)

#: The top function Vitis HLS synthesizes (``set_top``).
TOP_NAME = "hwgen_accel"
#: File names of the generated sources.
CONFIG_HEADER = "hwgen_accel_config.h"
#: The generated ISA header (opcodes, flags, status codes, field positions) the kernel includes.
ISA_HEADER = ISA_HEADER_NAME
TOP_SOURCE = "hwgen_accel.cpp"
#: The hand-written headers the top includes (from :data:`hwgen.hls_templates.TEMPLATE_DIR`).
KERNEL_HEADERS = (
    "accelerator.h", "compute_unit.h", "requantize_rt.h", "gelu.h", "layernorm.h", "softmax.h",
    "exp.h", "reciprocal.h", "rsqrt.h", "fixed_raw.h",
)
#: Names of the units' config structs inside ``hwgen_accel_config.h``.
UNIT_CONFIG_NAMES = {"gelu": "accel_gelu", "layernorm": "accel_layernorm", "softmax": "accel_softmax"}

# Default m_axi depth (in AXI words) when the image size is not known: only C/RTL co-simulation
# reads it, to size its memory model.
_DEFAULT_DEPTH_BYTES = 1 << 20
_TRAILER = np.dtype([("status", "<u4"), ("executed", "<u4"), ("array_steps", "<u8")])


def _check_hw(hw: object) -> HwParams:
    if not isinstance(hw, HwParams):
        raise ValueError(f"hw must be a HwParams, not {type(hw).__name__}")
    return hw


def _unit_configs(hw: HwParams) -> dict[str, object]:
    """The config structs of the GELU lanes, the LayerNorm unit and the softmax unit for ``hw``, and which units exist.

    They come from the same ``hw.unit_formats()`` configs as ``isa_sim`` and the RTL; LayerNorm's
    is built for ε = 0, since each LAYERNORM descriptor brings its own ``d_offset``. Hardware
    without row units (:func:`hwgen.units.row_units_problem`: 32-bit activations) gets neither,
    and the controller refuses opcodes 5 and 8 with ``BAD_OPCODE``, as ``isa_sim`` and the RTL do.
    The attention engine exists when :func:`hwgen.units.attention_problem` finds none
    (``HwParams.has_attention`` and the softmax unit, whose numerics it uses); without it the
    controller refuses opcodes 3 and 4 with ``BAD_OPCODE``. The MoE engine likewise when
    :func:`hwgen.units.moe_problem` finds none (``HwParams.has_moe`` and the softmax unit), with
    its on-chip arrays sized by ``moe_acc_entries``, ``moe_acc_bits`` and ``moe_hidden_bytes``;
    without it opcodes 6 and 7 are ``BAD_OPCODE``, and the config and the top are those of a core
    that never had it (no ``task`` port), byte for byte.
    """
    units = hw.unit_formats()
    parts = [nonlinear.gelu_config(UNIT_CONFIG_NAMES["gelu"], units.gelu_config(), lanes=hw.lanes_out)]
    problem = row_units_problem(hw)
    if problem is None:
        parts.append(nonlinear.layernorm_config(UNIT_CONFIG_NAMES["layernorm"], units.layernorm_config()))
        parts.append(nonlinear.softmax_config(UNIT_CONFIG_NAMES["softmax"], units.softmax_config()))
    else:
        log.info("no LayerNorm or softmax unit for %s: %s", hw, problem)
    has_moe = moe_problem(hw) is None
    return {
        "unit_configs": "\n".join(parts),
        "has_layernorm": problem is None,
        "has_softmax": problem is None,
        "has_attention": attention_problem(hw) is None,
        "layernorm_frac_bits": units.layernorm_in.frac_bits,
        "has_moe": has_moe,
        "moe_acc_entries": hw.moe_acc_entries,
        "moe_acc_bits": hw.moe_acc_bits,
        "moe_hidden_bytes": hw.moe_hidden_bytes,
    }


def bank_tiles(hw: HwParams) -> int:
    """Tiles of one weight bank: the most any chunk the validity rule accepts holds.

    ``Limits.largest_chunk`` output tiles of ``k_tiles ≤ max_k_tiles`` tiles each, at the tile
    stride of weights or (``B_ROWMAJOR`` / ``B_TRANSPOSED``) of activations, without bias.
    """
    limits = Limits(hw)
    return max(
        k_tiles * limits.largest_chunk(flags, k_tiles, limits.max_chunk_tiles)
        for flags in (Flag(0), Flag.B_ROWMAJOR)
        for k_tiles in range(1, limits.max_k_tiles + 1)
    )


def x_bank_rows(hw: HwParams) -> int:
    """Rows (``lanes_in`` elements each) of one activation bank: the largest ``k_tiles`` of an
    accepted descriptor that uses the array, ``≤ max_k_tiles`` and with one output tile of its
    weights or activations fitting the weight bank (``BYPASS`` does not use the bank)."""
    limits = Limits(hw)
    return max(k_tiles for flags in (Flag(0), Flag.B_ROWMAJOR) for k_tiles in range(1, limits.max_k_tiles + 1)
               if limits.largest_chunk(flags, k_tiles, 1) >= 1)


def accelerator_context(hw: HwParams) -> dict[str, object]:
    """The values the config template receives: HwParams fields and the bank depths they imply.

    The banks hold exactly what the validity rule (``hwgen.isa.rules``) accepts: :func:`x_bank_rows`
    activation rows, :func:`bank_tiles` weight tiles, ``max_chunk_tiles`` output tiles of bias
    and of each row segment buffer.
    """
    hw = _check_hw(hw)
    limits = Limits(hw)
    if limits.max_k_tiles < 1 or limits.max_chunk_tiles < 1:
        raise ValueError(f"hw must have room for one tile in each buffer, not max_k_tiles={limits.max_k_tiles}, "
                         f"max_chunk_tiles={limits.max_chunk_tiles} ({hw})")
    return {
        "description": str(hw),
        "lanes_in": hw.lanes_in,
        "lanes_out": hw.lanes_out,
        "acc_bits": hw.acc_bits,
        "act_bits": hw.act_bits,
        "weight_bits": hw.weight_bits,
        "bias_bits": 8 * hw.bias_bytes,
        "axi_bits": hw.axi_data_width,
        "weight_buffer_bytes": hw.weight_buffer_bytes,
        "max_k_tiles": limits.max_k_tiles,
        "max_chunk_tiles": limits.max_chunk_tiles,
        "x_bank_rows": x_bank_rows(hw),
        "weight_tiles": bank_tiles(hw),
        "fingerprint": f"{hw.fingerprint():#010x}",
        "row_max": ROW_MAX,
        "row_lanes": hw.row_lanes,
        "unit_config_names": UNIT_CONFIG_NAMES,
        **_unit_configs(hw),
    }


def _mem_depth(hw: HwParams, image_bytes: int | None) -> int:
    if image_bytes is None:
        image_bytes = _DEFAULT_DEPTH_BYTES
    if isinstance(image_bytes, bool) or not isinstance(image_bytes, int) or image_bytes < 1:
        raise ValueError(f"image_bytes must be a positive integer, not {image_bytes!r}")
    return -(-image_bytes // hw.axi_bytes)


def accelerator_config(hw: HwParams) -> str:
    """``hwgen_accel_config.h``: ``struct hwgen_accel_config`` for ``hw``."""
    return render("accelerator_config.h.j2", **accelerator_context(hw))


def accelerator_top(hw: HwParams, image_bytes: int | None = None) -> str:
    """``hwgen_accel.cpp``: the ``hwgen_accel`` top function with its interface pragmas.

    ``image_bytes`` sizes the m_axi ``depth`` (used only by C/RTL co-simulation; 1 MiB if omitted).
    """
    return render("accelerator_top.cpp.j2", **accelerator_context(hw), mem_depth=_mem_depth(hw, image_bytes))


def accelerator_sources(hw: HwParams, image_bytes: int | None = None) -> dict[str, str]:
    """Every file Vitis HLS needs for ``hw``, by file name: the generated three and the kernel headers."""
    files = {CONFIG_HEADER: accelerator_config(hw), ISA_HEADER: isa_header(), TOP_SOURCE: accelerator_top(hw, image_bytes)}
    for name in KERNEL_HEADERS:
        files[name] = (TEMPLATE_DIR / name).read_text(encoding="utf-8")
    return files


def _isa_header_dir() -> Path:
    """A folder holding ``hwgen_isa.h`` (cached by content) for the g++ C-simulation builds."""
    text = isa_header()
    folder = toolchain.cache_dir() / "hls-isa" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if not (folder / ISA_HEADER).exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{ISA_HEADER}.{id(text)}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(folder / ISA_HEADER)
    return folder


@dataclass(frozen=True)
class AccelRun:
    """What one C-simulated run returned: the result registers and the image after the run."""

    status: Status
    executed: int
    array_steps: int
    data: bytes


class AcceleratorCSim:
    """The ``hwgen_accel`` top for ``hw`` compiled with g++ (cached by content), ready to run images."""

    def __init__(self, hw: HwParams):
        self.hw = _check_hw(hw)
        context = accelerator_context(hw)
        self.has_moe = context["has_moe"]
        self.source = render("accelerator_csim.cpp.j2", **context, mem_depth=_mem_depth(hw, None))
        name = f"hwgen_accel_{hw.lanes_in}x{hw.lanes_out}_axi{hw.axi_data_width}"
        self.binary = toolchain.compile_cpp(self.source, includes=[TEMPLATE_DIR, _isa_header_dir()], name=name)

    def run(self, image: bytes, program_addr: int = 0, task: int = 0) -> AccelRun:
        """Run the Program at ``program_addr`` on a copy of ``image`` with the TASK register at ``task``;
        return the registers and image. Hardware without the MoE engine has no TASK register (no
        descriptor reads it, as in isa_sim), so ``task`` changes nothing there."""
        if not isinstance(image, (bytes, bytearray)):
            raise ValueError(f"image must be bytes, not {type(image).__name__}")
        for name, value in (("program_addr", program_addr), ("task", task)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise ValueError(f"{name} must be an integer from 0 to 2**32-1, not {value!r}")
        log.info("C-simulating hwgen_accel (%s) on a %d-byte image, task %d", self.hw, len(image), task)
        args = ["run", str(program_addr)] + ([str(task)] if self.has_moe else [])
        out = toolchain.run_cpp(self.binary, args, stdin=bytes(image))
        trailer = np.frombuffer(out[: _TRAILER.itemsize], dtype=_TRAILER)[0]
        data = out[_TRAILER.itemsize :]
        padded = self.hw.align(len(image))
        if len(data) != padded:
            raise toolchain.ToolError(f"hwgen_accel harness returned {len(data)} image bytes, expected {padded}")
        return AccelRun(Status(int(trailer["status"])), int(trailer["executed"]), int(trailer["array_steps"]),
                        data[: len(image)])

    def requantize(self, values: np.ndarray, words: np.ndarray) -> np.ndarray:
        """``hwgen::requantize_rt`` of each acc value under its requantization word (int64 arrays)."""
        values = np.asarray(values)
        words = np.asarray(words)
        if values.dtype.kind not in "iu" or words.dtype.kind not in "iu":
            raise ValueError(f"values and words must be integer arrays, not {values.dtype} and {words.dtype}")
        values, words = np.broadcast_arrays(values.astype(np.int64), words.astype(np.int64))
        low, high = -(1 << (self.hw.acc_bits - 1)), (1 << (self.hw.acc_bits - 1)) - 1
        if values.size and (values.min() < low or values.max() > high):
            raise ValueError(f"values must fit acc_bits={self.hw.acc_bits}, not [{values.min()}, {values.max()}]")
        pairs = np.stack([values.ravel(), words.ravel()], axis=1).astype("<i8")
        out = toolchain.run_cpp(self.binary, ["requantize"], stdin=pairs.tobytes())
        return np.frombuffer(out, dtype="<i8").astype(np.int64).reshape(values.shape)
