# SPDX-License-Identifier: Apache-2.0
"""The instruction set as data: opcodes, flags, status codes and every field of every block.

This is the one definition of the ISA. The Python codec (:mod:`hwgen.isa.codec`), the Amaranth
layouts (``rtl/descriptor.py``), the C++ header of the HLS core (:mod:`hwgen.isa.cpp`) and the
field tables of ``docs/isa.md`` (:mod:`hwgen.isa.doc`) are all generated from the tables here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_BYTES",
    "DESCRIPTOR_BYTES",
    "Opcode",
    "OPCODE_LINEAR",
    "OPCODE_LAYERNORM",
    "OPCODE_SOFTMAX",
    "OPCODE_QK_SOFTMAX_STATS",
    "OPCODE_AV",
    "OPCODE_CONV",
    "OPCODE_GATE_TOPK",
    "OPCODE_EXPERT_FFN",
    "ATTENTION_OPCODES",
    "MOE_OPCODES",
    "STATS_ENTRY_BYTES",
    "LIST_ENTRY_BYTES",
    "RESERVED_OPCODES",
    "OPCODE_MEANINGS",
    "OPCODE_ENGINES",
    "Flag",
    "FLAG_MEANINGS",
    "MoeFlag",
    "MOE_FLAG_MEANINGS",
    "Status",
    "STATUS_MEANINGS",
    "Field",
    "HEADER_FIELDS",
    "LINEAR_FIELDS",
    "ROW_FIELDS",
    "ATTENTION_FIELDS",
    "CONV_FIELDS",
    "CONV_FORBIDDEN_FLAGS",
    "GATE_TOPK_FIELDS",
    "EXPERT_FFN_FIELDS",
    "MOE_MAX_TOP_K",
    "REQUANT_FIELDS",
    "ROUNDING_MODES",
    "OVERFLOW_MODES",
    "BLOCKS",
]

MAGIC = 0x50475748  # the bytes "HWGP"
VERSION = 1
HEADER_BYTES = 64
DESCRIPTOR_BYTES = 64


class Opcode(enum.IntEnum):
    """Opcodes the accelerator executes (bits 7:0 of descriptor word 0)."""

    LINEAR = 1
    CONV = 2
    QK_SOFTMAX_STATS = 3
    AV = 4
    LAYERNORM = 5
    GATE_TOPK = 6
    EXPERT_FFN = 7
    SOFTMAX = 8


OPCODE_LINEAR, OPCODE_LAYERNORM, OPCODE_SOFTMAX = Opcode.LINEAR, Opcode.LAYERNORM, Opcode.SOFTMAX
OPCODE_QK_SOFTMAX_STATS, OPCODE_AV = Opcode.QK_SOFTMAX_STATS, Opcode.AV
OPCODE_CONV = Opcode.CONV
OPCODE_GATE_TOPK, OPCODE_EXPERT_FFN = Opcode.GATE_TOPK, Opcode.EXPERT_FFN
#: The attention engine's pair: only on hardware with ``HwParams.has_attention`` (else ``BAD_OPCODE``).
ATTENTION_OPCODES = (Opcode.QK_SOFTMAX_STATS, Opcode.AV)
#: Bytes of one row's statistics: the max (a sign-extended 32-bit word), then 1/sum (an unsigned 32-bit word).
STATS_ENTRY_BYTES = 8
#: The MoE engine's pair: only on hardware with ``HwParams.has_moe`` (else ``BAD_OPCODE``).
MOE_OPCODES = (Opcode.GATE_TOPK, Opcode.EXPERT_FFN)
#: Bytes of one entry of a per-expert token list: word 0 = token (bits 15:0) and slot (bits 23:16),
#: word 1 = the score code, zero-extended (docs/isa.md §3.10).
LIST_ENTRY_BYTES = 8
#: Most experts per token (`top_k`) a GATE_TOPK may choose: the length of its insertion registers.
MOE_MAX_TOP_K = 8

#: Opcodes kept for later operators; every executor refuses them with ``BAD_OPCODE`` today.
RESERVED_OPCODES: dict[int, str] = {}

#: The engine that runs each opcode, by the name of its module in every executor:
#: ``hwgen/compiler/engines/<name>.py`` (isa_sim and the cycle model), and the RTL and HLS engines.
OPCODE_ENGINES = {Opcode.LINEAR: "linear", Opcode.CONV: "linear", Opcode.LAYERNORM: "rows", Opcode.SOFTMAX: "rows",
                  Opcode.QK_SOFTMAX_STATS: "attention", Opcode.AV: "attention", Opcode.GATE_TOPK: "moe",
                  Opcode.EXPERT_FFN: "moe"}

OPCODE_MEANINGS = {
    Opcode.LINEAR: "matrix product with bias, requantization, ReLU/GELU and residual add (§3.3)",
    Opcode.CONV: "convolution (implicit im2col): LINEAR whose rows of `x` are gathered window by window from a "
                 "channels-last feature map (§3.9)",
    Opcode.QK_SOFTMAX_STATS: "attention scores Q·Kᵀ/√d of every head, and each score row's softmax statistics "
                             "(§3.8); only with the attention engine (`has_attention`), else `BAD_OPCODE`",
    Opcode.AV: "attention output Σ softmax(s)·V of every head, the normalization fused (§3.8); only with the "
               "attention engine, else `BAD_OPCODE`",
    Opcode.LAYERNORM: "LayerNorm over rows on the row unit (§3.6)",
    Opcode.GATE_TOPK: "MoE gate of the task in the `TASK` register: logits on the array, the softmax unit, top-k, "
                      "and the per-expert token lists and counts (§3.10); only with the MoE engine (`has_moe`), "
                      "else `BAD_OPCODE`",
    Opcode.EXPERT_FFN: "every active expert of a MoE layer (FC1 → GELU/ReLU → FC2, score-weighted sum on chip), "
                       "then the output rows with the residual add (§3.10); only with the MoE engine, else "
                       "`BAD_OPCODE`",
    Opcode.SOFTMAX: "softmax over rows on the row unit (§3.6)",
}


class Flag(enum.IntFlag):
    """Flag bits of a LINEAR descriptor (the 24-bit ``flags`` field, bits 31:8 of word 0)."""

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
    B_TRANSPOSED = 1 << 10


FLAG_MEANINGS = {
    Flag.BIAS: "add `bias[n]` to the accumulator before the products",
    Flag.RELU1: "`y1 = max(y1, 0)`",
    Flag.RESIDUAL: "add the residual `r` and requantize with `RQ2`",
    Flag.RELU2: "`y2 = max(y2, 0)` (only meaningful with `RESIDUAL`)",
    Flag.BYPASS: "no products: `acc[m,n] = x[m,n]`; `K == N`, one chunk; not with `BIAS`, `B_ROWMAJOR`, "
                 "`B_TRANSPOSED` or `W_UNSIGNED`",
    Flag.B_ROWMAJOR: "the second operand is an activation tensor `B` of `K` rows of `N` `act_bits` containers "
                     "(row stride `w_stride`; `V` in A·V) instead of weight tiles",
    Flag.X_UNSIGNED: "`x` containers hold unsigned values (zero-extend); otherwise sign-extend",
    Flag.W_UNSIGNED: "weight (or `B`) containers hold unsigned values",
    Flag.R_UNSIGNED: "residual containers hold unsigned values",
    Flag.GELU: "`y1 = gelu(sext(y1))`: the low `act_bits` bits of `y1`, sign-extended, are a raw code of the GELU "
               "format and are replaced by the raw code of its GELU, "
               "`hwgen.golden.nonlinear.gelu(HwParams.unit_formats().gelu_config(), ·)` (Edge-MoE's table form, or "
               "quadratics past 13 fraction bits, §1)",
    Flag.B_TRANSPOSED: "the second operand is an activation tensor given transposed: `N` rows of `K` `act_bits` "
                       "containers (row stride `w_stride`; `K` in Q·Kᵀ, or a PyTorch weight); not with `B_ROWMAJOR`",
}


class MoeFlag(enum.IntFlag):
    """Flag bits of an EXPERT_FFN descriptor (its 24-bit ``flags`` field, bits 31:8 of word 0)."""

    RESIDUAL = 1 << 0
    RELU = 1 << 1
    HIDDEN_DDR = 1 << 2


MOE_FLAG_MEANINGS = {
    MoeFlag.RESIDUAL: "add the residual `r` to the requantized weighted sum and requantize with `rq2`",
    MoeFlag.RELU: "the hidden activation is `max(h, 0)`, not the GELU lanes",
    MoeFlag.HIDDEN_DDR: "one expert's hidden rows go to DDR at `hidden_addr` (and are read back by FC2) instead "
                        "of the on-chip hidden buffer",
}


class Status(enum.IntEnum):
    """Why a run stopped: the RTL ``STATUS`` register, the HLS ``status`` output, ``isa_sim`` and the driver."""

    OK = 0
    BAD_MAGIC = 1
    BAD_VERSION = 2
    BAD_FINGERPRINT = 3
    BAD_HEADER = 4
    BAD_OPCODE = 5
    BAD_DESCRIPTOR = 6
    DOES_NOT_FIT = 7
    MISALIGNED = 8
    OUT_OF_BOUNDS = 9
    READ_ERROR = 10
    WRITE_ERROR = 11
    BAD_TASK = 12
    BAD_COUNT = 13


STATUS_MEANINGS = {
    Status.OK: "the run completed",
    Status.BAD_MAGIC: "the header's magic is not `0x50475748`",
    Status.BAD_VERSION: "the header's version is not 1",
    Status.BAD_FINGERPRINT: "the header's fingerprint is not the hardware's",
    Status.BAD_HEADER: "`descriptor_bytes ≠ 64`, or the Program extends past `image_bytes`",
    Status.BAD_OPCODE: "an opcode this hardware does not execute (reserved, or a unit or engine it lacks)",
    Status.BAD_DESCRIPTOR: "a reserved bit set, a field out of range or inconsistent with another (§3.7)",
    Status.DOES_NOT_FIT: "an x row, a weight chunk or its output segment exceeds an on-chip buffer (§3.7)",
    Status.MISALIGNED: "an address or row stride that is not a multiple of `axi_bytes`",
    Status.OUT_OF_BOUNDS: "an operand extends past `image_bytes`",
    Status.READ_ERROR: "a read response was SLVERR or DECERR",
    Status.WRITE_ERROR: "a write response was SLVERR or DECERR",
    Status.BAD_TASK: "the `TASK` register is not below a GATE_TOPK's `tasks` (§3.10)",
    Status.BAD_COUNT: "an EXPERT_FFN read a count above `m`, counts summing to other than `m·top_k`, or a list "
                      "entry whose token is not below `m` (§3.10)",
}


@dataclass(frozen=True)
class Field:
    """``bits`` bits of a block starting at bit ``lo`` of 32-bit word ``word`` (may span words)."""

    name: str
    word: int
    lo: int
    bits: int
    meaning: str
    signed: bool = False

    @property
    def offset(self) -> int:
        """First bit within the block."""
        return 32 * self.word + self.lo

    @property
    def reserved(self) -> bool:
        return self.name.startswith("reserved")


def _word(name: str, word: int, meaning: str) -> Field:
    return Field(name, word, 0, 32, meaning)


HEADER_FIELDS = (
    Field("magic", 0, 0, 32, "`0x50475748` (the bytes `H W G P`)"),
    Field("version", 1, 0, 32, "`1`"),
    Field("fingerprint", 2, 0, 32, "`HwParams.fingerprint()` of the parameters the Program was compiled for"),
    Field("count", 3, 0, 32, "number of descriptors that follow"),
    Field("descriptor_bytes", 4, 0, 32, "`64`"),
    Field("image_bytes", 5, 0, 32, "total size of the memory image the Program was laid out in"),
    Field("reserved", 6, 0, 320, "`0`"),
)

LINEAR_FIELDS = (
    Field("opcode", 0, 0, 8, "`1`"),
    Field("flags", 0, 8, 24, "see the flag table"),
    _word("m", 1, "rows (tokens); ≥ 1"),
    Field("k", 2, 0, 16, "input columns (reduction length); ≥ 1"),
    Field("n", 2, 16, 16, "output columns; ≥ 1"),
    Field("k_tiles", 3, 0, 16, "`ceil(K / lanes_in)`"),
    Field("n_tiles", 3, 16, 16, "`ceil(N / lanes_out)`"),
    _word("x_addr", 4, "first byte of `x` (row-major activations)"),
    _word("w_addr", 5, "first byte of the weight tiles (or of `B` with `B_ROWMAJOR` / `B_TRANSPOSED`); "
                       "unused with `BYPASS`"),
    _word("bias_addr", 6, "first byte of the bias vector; unused without `BIAS`"),
    _word("res_addr", 7, "first byte of the residual `r`; unused without `RESIDUAL`"),
    _word("out_addr", 8, "first byte of the output"),
    _word("x_stride", 9, "bytes from one row of `x` to the next"),
    _word("w_stride", 10, "bytes from one row of `B` to the next (`B_ROWMAJOR` / `B_TRANSPOSED` only, else 0)"),
    _word("res_stride", 11, "bytes from one row of `r` to the next (else 0)"),
    _word("out_stride", 12, "bytes from one row of the output to the next"),
    _word("rq1", 13, "requantization of the accumulator (packing in §3.5)"),
    _word("rq2", 14, "requantization of the residual sum (`RESIDUAL` only, else 0)"),
    Field("chunk_tiles", 15, 0, 16, "output tiles per weight chunk (§3.4); `1 ≤ chunk_tiles ≤ n_tiles`"),
    Field("y_shift", 15, 16, 8, "left shift of `y1` before the residual add (0–255)"),
    Field("r_shift", 15, 24, 8, "left shift of `r` before the residual add (0–255)"),
)

ROW_FIELDS = (
    Field("opcode", 0, 0, 8, "`5` or `8`"),
    Field("reserved0", 0, 8, 24, "`0`"),
    _word("m", 1, "rows; ≥ 1"),
    Field("n", 2, 0, 16, "elements per row; 1 … 1024"),
    Field("reserved2", 2, 16, 16, "`0`"),
    _word("reserved3", 3, "`0`"),
    _word("x_addr", 4, "first byte of `x`"),
    _word("gamma_addr", 5, "LAYERNORM: first byte of γ (`N` containers of `act_bytes`, the γ/β format); SOFTMAX: `0`"),
    _word("beta_addr", 6, "LAYERNORM: first byte of β (likewise); SOFTMAX: `0`"),
    _word("reserved7", 7, "`0`"),
    _word("out_addr", 8, "first byte of the output"),
    _word("x_stride", 9, "bytes from one row of `x` to the next"),
    Field("reserved10", 10, 0, 64, "`0`"),
    _word("out_stride", 12, "bytes from one row of the output to the next"),
    Field("d_offset", 13, 0, 96, "LAYERNORM: the 96-bit unsigned `d_offset` (word 13 least significant); SOFTMAX: `0`"),
)

#: QK_SOFTMAX_STATS (3) and AV (4): one block for the pair; each opcode leaves the other's operands 0.
#: Head ``h`` is columns ``h·d_head … h·d_head + d_head − 1`` of Q, K, V and the output.
ATTENTION_FIELDS = (
    Field("opcode", 0, 0, 8, "`3` or `4`"),
    Field("reserved0", 0, 8, 24, "`0` (no flags are defined)"),
    Field("m", 1, 0, 16, "query rows (tokens of Q and of the output); ≥ 1"),
    Field("s", 1, 16, 16, "key rows (tokens of K and V; the length of a score row); 1 … 1024"),
    Field("heads", 2, 0, 8, "heads; ≥ 1"),
    Field("reserved2", 2, 8, 8, "`0`"),
    Field("d_head", 2, 16, 16, "columns per head; ≥ 1"),
    _word("q_addr", 3, "QK: first byte of Q (`M` rows of `heads·d_head`); AV: `0`"),
    _word("k_addr", 4, "QK: first byte of K (`S` rows of `heads·d_head`); AV: `0`"),
    _word("v_addr", 5, "AV: first byte of V (`S` rows of `heads·d_head`); QK: `0`"),
    _word("out_addr", 6, "AV: first byte of the output (`M` rows of `heads·d_head`); QK: `0`"),
    _word("q_stride", 7, "QK: bytes from one row of Q to the next; AV: `0`"),
    _word("k_stride", 8, "QK: bytes from one row of K to the next; AV: `0`"),
    _word("v_stride", 9, "AV: bytes from one row of V to the next; QK: `0`"),
    _word("out_stride", 10, "AV: bytes from one row of the output to the next; QK: `0`"),
    _word("scores_addr", 11, "first byte of the scores: `heads·M` rows of `S` `act_bytes` containers, head-major "
                             "(QK writes them, AV reads them)"),
    _word("scores_stride", 12, "bytes from one score row to the next"),
    _word("stats_addr", 13, "first byte of the row statistics: `heads·M` entries of 8 bytes, head-major "
                            "(QK writes them, AV reads them)"),
    _word("rq", 14, "QK: requantization of `acc·scale` into the score format; AV: of the A·V accumulator into "
                    "the output format (packing in §3.5)"),
    Field("scale", 15, 0, 16, "QK: unsigned multiplier of the Q·Kᵀ accumulator (`1/√d_head = scale·2^-f`, `f` "
                              "folded into `rq`'s shift); ≥ 1. AV: `0`"),
    Field("reserved15", 15, 16, 16, "`0`"),
)

#: CONV (2): LINEAR whose row ``r = (gy, gx)`` of ``x`` is the concatenation of ``kh`` segments of one
#: channels-last feature map (docs/isa.md §3.9). Words 3, 5–8 and 11–15 are LINEAR's.
CONV_FIELDS = (
    Field("opcode", 0, 0, 8, "`2`"),
    Field("flags", 0, 8, 24, "LINEAR's flags; `BYPASS`, `B_ROWMAJOR` and `B_TRANSPOSED` must be 0"),
    Field("grid_h", 1, 0, 16, "rows of the output grid (windows down); ≥ 1"),
    Field("kh", 1, 16, 8, "kernel rows = segments per row of `x`; ≥ 1; `K mod kh = 0`"),
    Field("stride_y", 1, 24, 8, "feature-map rows from one grid row of windows to the next; ≥ 1"),
    Field("k", 2, 0, 16, "input columns = `kh` · segment elements (a segment is `kw·C` contiguous elements of one "
                         "feature-map row); ≥ 1"),
    Field("n", 2, 16, 16, "output columns (output channels); ≥ 1"),
    Field("k_tiles", 3, 0, 16, "`ceil(K / lanes_in)`"),
    Field("n_tiles", 3, 16, 16, "`ceil(N / lanes_out)`"),
    _word("x_addr", 4, "first byte of window 0 (its first kernel row)"),
    _word("w_addr", 5, "first byte of the weight tiles (`K` ordered `(ky, kx, c)`, as the segments concatenate)"),
    _word("bias_addr", 6, "as LINEAR"),
    _word("res_addr", 7, "as LINEAR"),
    _word("out_addr", 8, "first byte of the output: `M = grid_h·grid_w` rows, window order (row-major over the grid); "
                         "window `(gy, gx)` at `out_addr + gy·(grid_w·out_stride + out_skip) + gx·out_stride`"),
    Field("x_stride", 9, 0, 16, "bytes from one window to the next in a grid row (`stride_x · C · act_bytes`)"),
    Field("grid_w", 9, 16, 16, "windows per grid row (columns of the output grid); ≥ 1"),
    _word("seg_stride", 10, "bytes from one kernel row of a window to the next (one feature-map row: "
                            "`W · C · act_bytes`)"),
    Field("res_stride", 11, 0, 16, "bytes from one residual row (window) to the next in a grid row"),
    Field("res_skip", 11, 16, 16, "bytes added after each grid row of the residual, beyond `res_stride` (a padded "
                                  "map's border: `2·pad` pixels); 0 for dense rows"),
    Field("out_stride", 12, 0, 16, "bytes from one output row (window) to the next in a grid row"),
    Field("out_skip", 12, 16, 16, "bytes added after each grid row of the output, beyond `out_stride` (a padded "
                                  "map's border: `2·pad` pixels); 0 for dense rows"),
    _word("rq1", 13, "as LINEAR"),
    _word("rq2", 14, "as LINEAR"),
    Field("chunk_tiles", 15, 0, 16, "as LINEAR"),
    Field("y_shift", 15, 16, 8, "as LINEAR"),
    Field("r_shift", 15, 24, 8, "as LINEAR"),
)
#: LINEAR flags a CONV descriptor must leave 0: its second operand is always weight tiles, and it has products.
CONV_FORBIDDEN_FLAGS = Flag.BYPASS | Flag.B_ROWMAJOR | Flag.B_TRANSPOSED

#: GATE_TOPK (6): the gate of one MoE layer for the task in the ``TASK`` register (docs/isa.md §3.10).
GATE_TOPK_FIELDS = (
    Field("opcode", 0, 0, 8, "`6`"),
    Field("reserved0", 0, 8, 24, "`0`"),
    Field("m", 1, 0, 16, "tokens (rows of `x`); ≥ 1"),
    Field("experts", 1, 16, 8, "`E`: gate outputs = softmax row length; 1 … 255"),
    Field("top_k", 1, 24, 8, "`k`: experts per token; 1 … min(E, 8)"),
    Field("k", 2, 0, 16, "`D`: input columns; ≥ 1"),
    Field("tasks", 2, 16, 8, "gates in the image (one per task); ≥ 1; `TASK` must be below it (`BAD_TASK`)"),
    Field("reserved2", 2, 24, 8, "`0`"),
    Field("k_tiles", 3, 0, 16, "`ceil(D / lanes_in)`"),
    Field("n_tiles", 3, 16, 16, "`ceil(E / lanes_out)`"),
    _word("x_addr", 4, "first byte of `x` (the LayerNorm output the experts also read)"),
    _word("w_addr", 5, "task 0's gate: `(D, E)` weight tiles as LINEAR's (§3.3); task `t` at `w_addr + t·task_stride`"),
    _word("task_stride", 6, "bytes from one task's gate tiles to the next (`k_tiles·n_tiles·tile_stride(weight_bytes)`)"),
    _word("probs_addr", 7, "the probabilities, `M` rows of `E` containers (`ufixed<act_bits,1>`), rows "
                           "`align(E·act_bytes)` apart; 0: not written"),
    _word("top_addr", 8, "the scores, `M` rows of `k` containers, rows `align(k·act_bytes)` apart"),
    _word("x_stride", 9, "bytes from one row of `x` to the next"),
    _word("lists_addr", 10, "the per-expert lists (§3.10): list `e` at `lists_addr + e·align(8·M)`"),
    _word("counts_addr", 11, "`E` u32 counts (§3.10)"),
    _word("idx_addr", 12, "the indices, `M` rows of `k` containers (`uint<act_bits>`), rows `align(k·act_bytes)` apart"),
    _word("rq", 13, "requantization of the gate accumulator into the softmax unit's input format (signed `act_bits`)"),
    Field("reserved14", 14, 0, 64, "`0`"),
)

#: EXPERT_FFN (7): every active expert of one MoE layer and its output rows (docs/isa.md §3.10).
EXPERT_FFN_FIELDS = (
    Field("opcode", 0, 0, 8, "`7`"),
    Field("flags", 0, 8, 24, "bit 0 `RESIDUAL` (add `r`, requantize with `rq2`), bit 1 `RELU` (hidden ReLU, "
                             "not GELU), bit 2 `HIDDEN_DDR` (hidden rows in DDR at `hidden_addr`); others 0"),
    Field("m", 1, 0, 16, "tokens; ≥ 1; `m·D ≤ moe_acc_entries`"),
    Field("experts", 1, 16, 8, "`E`; 1 … 255"),
    Field("top_k", 1, 24, 8, "`k`; as the GATE_TOPK that wrote the lists"),
    Field("d", 2, 0, 16, "`D`: model width (FC1 input, FC2 output); ≥ 1"),
    Field("h", 2, 16, 16, "`H`: expert hidden width; ≥ 1"),
    Field("chunk1", 3, 0, 8, "FC1 output tiles per weight chunk (`1 … ceil(H/lanes_out)`)"),
    Field("chunk2", 3, 8, 8, "FC2 output tiles per weight chunk (`1 … ceil(D/lanes_out)`)"),
    Field("y_shift", 3, 16, 8, "as LINEAR: left shift of the requantized sum before the residual add"),
    Field("r_shift", 3, 24, 8, "as LINEAR: left shift of `r`"),
    _word("x_addr", 4, "first byte of `x`; token `t`'s row at `x_addr + t·align(D·act_bytes)` (gathered by the lists)"),
    _word("w_addr", 5, "expert 0's block: W1 tiles, b1, W2 tiles, b2 (§3.10); expert `e` at `w_addr + e·expert_stride`"),
    _word("expert_stride", 6, "bytes from one expert's block to the next"),
    _word("lists_addr", 7, "as GATE_TOPK"),
    _word("counts_addr", 8, "as GATE_TOPK"),
    _word("res_addr", 9, "the residual `r` (`M` rows of `D`, rows `align(D·act_bytes)` apart); `RESIDUAL` only, else 0"),
    _word("out_addr", 10, "the output (`M` rows of `D`, rows `align(D·act_bytes)` apart)"),
    _word("hidden_addr", 11, "`HIDDEN_DDR`: scratch of `M` rows of `align(H·act_bytes)`; else 0"),
    _word("rq_hidden", 12, "FC1 accumulator → hidden format (the GELU format unless `RELU`)"),
    _word("rq_expert", 13, "FC2 accumulator → expert output format (signed `act_bits`)"),
    _word("rq_out", 14, "the exact weighted sum → the layer's output format (`moe`)"),
    _word("rq2", 15, "the residual sum → the block output format (`RESIDUAL` only, else 0)"),
)

#: The requantization word (``RQ1``, ``RQ2``), bit 0 first.
REQUANT_FIELDS = (
    Field("shift", 0, 0, 8, "`s8`: source fraction bits minus destination fraction bits "
                            "(> 0 shifts right and rounds; ≤ 0 shifts left)", signed=True),
    Field("width", 0, 8, 6, "destination width `W`, 1–32"),
    Field("is_signed", 0, 14, 1, "destination is signed"),
    Field("reserved15", 0, 15, 1, "0"),
    Field("round", 0, 16, 3, "rounding mode code"),
    Field("reserved19", 0, 19, 1, "0"),
    Field("overflow", 0, 20, 3, "overflow mode code"),
    Field("reserved23", 0, 23, 1, "0"),
    Field("src_width", 0, 24, 6, "width of the source format the golden model casts from (read only by `WRAP_SM`)"),
    Field("reserved30", 0, 30, 2, "0"),
)

#: Every block and its size in bits, for the generators and the coverage check.
@dataclass(frozen=True)
class Block:
    """One packed block of the ISA: its field table, its size, and the names the generated C++ gives it."""

    fields: tuple[Field, ...]
    bits: int
    c_struct: str  # the struct of hwgen_isa.h
    c_decoder: str  # the function of hwgen_isa.h that unpacks it
    meaning: str  # one line, with the docs/isa.md section


#: Every block, by the name of its table in docs/isa.md (``<!-- isa:NAME -->``). The codec, the C++
#: header and the document iterate over this: a new descriptor block is one entry here.
BLOCKS = {
    "header": Block(HEADER_FIELDS, 8 * HEADER_BYTES, "header_fields", "decode_header",
                    "The Program header (docs/isa.md §3.1)."),
    "linear": Block(LINEAR_FIELDS, 8 * DESCRIPTOR_BYTES, "linear_descriptor", "decode_linear",
                    "A LINEAR descriptor (docs/isa.md §3.3)."),
    "conv": Block(CONV_FIELDS, 8 * DESCRIPTOR_BYTES, "conv_descriptor", "decode_conv",
                  "A CONV descriptor (docs/isa.md §3.9)."),
    "row": Block(ROW_FIELDS, 8 * DESCRIPTOR_BYTES, "row_descriptor", "decode_rows",
                 "A LAYERNORM or SOFTMAX descriptor (docs/isa.md §3.6)."),
    "attention": Block(ATTENTION_FIELDS, 8 * DESCRIPTOR_BYTES, "attention_descriptor", "decode_attention",
                       "A QK_SOFTMAX_STATS or AV descriptor (docs/isa.md §3.8)."),
    "gate_topk": Block(GATE_TOPK_FIELDS, 8 * DESCRIPTOR_BYTES, "gate_topk_descriptor", "decode_gate_topk",
                       "A GATE_TOPK descriptor (docs/isa.md §3.10)."),
    "expert_ffn": Block(EXPERT_FFN_FIELDS, 8 * DESCRIPTOR_BYTES, "expert_ffn_descriptor", "decode_expert_ffn",
                        "An EXPERT_FFN descriptor (docs/isa.md §3.10)."),
    "requant": Block(REQUANT_FIELDS, 32, "requant_fields", "decode_requant_fields",
                     "A requantization word, RQ1 or RQ2 (docs/isa.md §3.5)."),
}


def _check_blocks() -> None:
    """Each block's fields tile its bits exactly, in order: a typo in a table fails at import."""
    for name, block in BLOCKS.items():
        position, size = 0, block.bits
        for f in block.fields:
            if f.offset != position:
                raise AssertionError(f"ISA block {name}: field {f.name} must start at bit {position}, not {f.offset}")
            position += f.bits
        if position != size:
            raise AssertionError(f"ISA block {name} must have {size} bits, not {position}")


_check_blocks()
