# SPDX-License-Identifier: Apache-2.0
"""The RTL accelerator executes Programs exactly as isa_sim does.

Fast tier (Amaranth only): signatures follow HwParams, unsupported parameters are refused, the
descriptor layouts (LINEAR, row) match the compiler's encoding, the row unit is left out where its
units cannot be built, the run-time requantizer equals ``QFmt.cast``, and the compute unit alone
(Amaranth simulator) computes exactly: a two-chunk LINEAR with bias and residual at 4x4 (16- and
32-bit activations, a tile every cycle once its data is in), BYPASS at 4x4, 8x4, 16x4, 4x8 and 4x16
lanes, and activation x activation with B row-major and transposed at 4x4, 8x4, 4x8 and 4x4/act32.

Cosim tier (Verilator through cocotb, the Verilog AXI memory of cosim/axi_memory.v beside the core
(tests/test_fast_memory.py shows it equals the cocotb model), 64-cycle read latency, random stalls
0.3 on every AXI channel): at every shipped geometry (pynq-z2 16x8/AXI64, ultra96 16x16/AXI128, kv260
16x16/AXI128 with 8 KiB/64 KiB buffers, zcu102 32x32/AXI128, buffers as in boards/*.yaml) the whole image after the run equals
isa_sim's, byte for byte, on mlp-odd, the coverage model (B_ROWMAJOR MatMul, BYPASS Add/ReLU/
Requantize, unsigned operands and residual, every rounding and overflow mode the compiler emits
there), the same with its MatMul reading B^T (B_TRANSPOSED), GELU on every other descriptor, a 21x40
model with standalone Add, ReLU and Requantize before a Linear, mlp-odd with LAYERNORM and SOFTMAX
over its tensors and the edge cases of ROW_CASES, and the zoo's softmax-rows; the array issues
exactly the ideal number of tile-cycles. The shared refusal table (tests/refusals.py), this file's
LINEAR/header table (check priorities, 64-bit extents) and the row table give the expected STATUS
code and DESCRIPTORS_DONE with the image holding exactly the earlier descriptors' results; the
row-less core (32-bit activations) refuses LAYERNORM with BAD_OPCODE after running a LINEAR.
mlp-tiny (full_model) at 16x16 and vit-mlp-block (full_model) at 16x8/AXI64, 16x16/AXI128 and
32x32/AXI128 (and 8x8/AXI64 with --full), LayerNorm at 4 and 8 elements per beat; one beat per cycle on long
LAYERNORM rows, one element per cycle on long SOFTMAX rows, and the §5 row estimate within 10 % on six
LAYERNORM/SOFTMAX shapes; the 129x192 -> 192 Linear at 16x16, chunked
as the compiler chooses, reaches >= 90 % MAC utilization and the analytical cycle model is within
5 % of the measured cycles; a corrupted expected output makes the bench fail.
"""

import dataclasses
import random
import struct

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hwgen import golden, toolchain, zoo
from hwgen.board import load_board
from hwgen.compiler import Flag, LinearDescriptor, Program, Requant, compile_graph, isa_sim
from hwgen.compiler.layout import MemoryImage, Region
from hwgen.isa import DESCRIPTOR_BYTES, HEADER_BYTES, OPCODE_LAYERNORM, OPCODE_SOFTMAX, RowDescriptor
from hwgen.cosim import tb_accelerator as tb
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.pipeline import build, run_passes
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES, QFmt
from hwgen.quant import QuantConfig
from hwgen.rtl.accelerator import Accelerator
from hwgen.rtl.compute_unit import ComputeUnit, Geometry
from hwgen.compiler import CycleModel
from hwgen.rtl.controller import CHECK_CYCLES, Controller
from hwgen.rtl.descriptor import DESCRIPTOR_LAYOUT, ROW_DESCRIPTOR_LAYOUT, TAG_WIDTH, Status, Tag
from hwgen.rtl.row_unit import RowGeometry, RowUnit
from hwgen.rtl.runtime_requantize import RESULT_SHAPE, RQ_LAYOUT, requantize_cut, requantize_fit

from refusals import refusal_cases, rowless_case

# The compiler's coverage model (tests/test_isa_sim.py), GELU aside: every flag the compiler emits.
COVERAGE_SPEC = {
    "name": "rtl-coverage",
    "inputs": {"a": {"shape": [12, 20], "distribution": "uniform", "scale": 2.0},
               "b": {"shape": [20, 9], "distribution": "uniform", "scale": 1.0}},
    "layers": [
        {"name": "mm", "op": "MatMul", "inputs": ["a", "b"]},  # activation x activation (B_ROWMAJOR)
        {"name": "r1", "op": "ReLU", "input": "mm"},  # fused RELU1
        {"name": "p", "op": "Linear", "input": "a", "features": 9, "bias": False},
        {"name": "s", "op": "Add", "inputs": ["r1", "p"]},  # fused residual
        {"name": "t", "op": "ReLU", "input": "s"},  # s is an output: standalone BYPASS ReLU
        {"name": "u", "op": "Add", "inputs": ["t", "t"]},  # standalone BYPASS Add
        {"name": "v", "op": "Requantize", "input": "u"},  # standalone BYPASS Requantize (WRAP_SM)
        {"name": "w", "op": "ReLU", "input": "v"},
        {"name": "z", "op": "Linear", "input": "w", "features": 5},  # unsigned x and weights
        {"name": "q", "op": "MatMul", "input": "z", "features": 7},  # constant MatMul, no bias
        {"name": "z2", "op": "Linear", "input": "a", "features": 5},
        {"name": "s2", "op": "Add", "inputs": ["z2", "z"]},  # unsigned residual
        {"name": "s3", "op": "ReLU", "input": "s2"},  # fused RELU2
    ],
    "outputs": ["q", "s", "s3"],
    "formats": {
        "a": "fixed<10,2,RND,SAT>",
        "b": "ufixed<12,1,RND_INF,SAT>",
        "mm": "fixed<12,3,TRN,WRAP>",
        "p": "fixed<10,2,RND_INF,SAT_SYM>",
        "s": "fixed<14,4,TRN_ZERO,SAT_ZERO>",
        "u": "fixed<12,3,RND_MIN_INF,SAT>",
        "v": "fixed<6,1,RND_ZERO,WRAP_SM>",
        "z.weight": "ufixed<8,-1,RND_CONV,SAT>",
        "z": "ufixed<9,2,RND_CONV,SAT>",
        "q": "fixed<16,2,RND,WRAP>",
    },
}

HW_SMALL = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
HW_LARGE = HwParams(lanes_in=16, lanes_out=16, axi_data_width=128)
#: Every shipped board's geometry (boards/*.yaml): 16x8/AXI64, 16x16/AXI128 (ultra96 and kv260's larger
#: buffers), 32x32/AXI128. lanes_in = 2·lanes_out is pynq-z2's; lanes_out = r·lanes_in runs in the unit tests.
SHIPPED = {name: load_board(name).hw_params() for name in ("pynq-z2", "ultra96", "kv260", "zcu102")}
assert SHIPPED["ultra96"] == HW_LARGE

# A standalone Add, ReLU and Requantize (BYPASS descriptors, K = N) before a Linear: the issue's 21x40 model.
BYPASS_SPEC = {
    "name": "rtl-bypass",
    "inputs": {"x": {"shape": [21, 40], "distribution": "normal", "scale": 2.0},
               "y": {"shape": [21, 40], "distribution": "normal", "scale": 2.0}},
    "layers": [
        {"name": "s", "op": "Add", "inputs": ["x", "y"]},
        {"name": "r", "op": "ReLU", "input": "s"},
        {"name": "q", "op": "Requantize", "input": "r"},
        {"name": "fc", "op": "Linear", "input": "q", "features": 19},
    ],
    "outputs": ["s", "fc"],
    "formats": {"s": "fixed<14,4,RND,SAT>", "q": "fixed<9,3,RND_CONV,SAT_SYM>"},
}


def _compiled(model, hw, *, seed=1, scale=1.0):
    """Program and memory image (inputs written) of a zoo name or a parsed spec."""
    model = zoo.load_model(model, seed=seed) if isinstance(model, str) else model
    qgraph = run_passes(model.graph, QuantConfig.for_hw(hw, formats=model.formats))
    inputs = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=scale))
    program, image = compile_graph(qgraph, hw)
    for name, raw in inputs.items():
        image = image.write(name, raw)
    return program, image


def _zoo_build(name, hw, *, seed, scale=1.0):
    """Program and image (inputs written) of a zoo model compiled by ``hwgen.pipeline.build``."""
    result = build(zoo.load_model(name, seed=seed), hw)
    inputs = golden.quantize_inputs(result.qgraph, golden.sample_inputs(result.qgraph, seed=seed, scale=scale))
    return result.program, result.image.write_all(inputs)


def _with_program(image, program):
    encoded = program.to_bytes()
    return image.with_data(encoded + image.data[len(encoded):])


def _with_gelu(program, image, every=1):
    """The Program with the GELU flag set on every ``every``-th LINEAR descriptor (isa_sim defines the result
    for any raw input, so the flag can go on any descriptor)."""
    descriptors = tuple(dataclasses.replace(d, flags=d.flags | Flag.GELU) if i % every == 0 else d
                        for i, d in enumerate(program.descriptors))
    program = Program(program.fingerprint, program.image_bytes, descriptors)
    return program, _with_program(image, program)


# Row descriptors over regions of their own: (label, opcode, M, N, ε or None, extra stride words, row kinds).
# Row kinds: "random" (any raw code), "const" (one value), "ties" (three values), "low" (near the most
# negative code, with ties). The x rows are padded with random bytes, which the units must ignore.
ROW_CASES = (
    ("ln n=1", OPCODE_LAYERNORM, 3, 1, 1e-5, 1, ("random",)),
    ("ln n=7", OPCODE_LAYERNORM, 5, 7, 0.1, 2, ("random", "ties")),
    ("ln n=192", OPCODE_LAYERNORM, 4, 192, 1e-6, 3, ("random", "low")),
    ("ln eps=0 const", OPCODE_LAYERNORM, 3, 7, 0.0, 1, ("const", "random")),
    ("sm n=1", OPCODE_SOFTMAX, 4, 1, None, 1, ("random",)),
    ("sm n=129", OPCODE_SOFTMAX, 4, 129, None, 1, ("ties", "const", "low", "random")),
    ("sm n=1024", OPCODE_SOFTMAX, 2, 1024, None, 0, ("random", "low")),
)


def _row_values(rng, kind, n, bits):
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)
    if kind == "const":
        return np.full(n, rng.integers(low, high))
    if kind == "ties":
        return rng.choice(rng.integers(low // 4, high // 4, size=3), size=n)
    if kind == "low":
        return rng.choice(rng.integers(low, low + 40, size=max(2, n // 3)), size=n)
    return rng.integers(low, high, size=n)


def _d_offset(hw, n, eps):
    cfg = dataclasses.replace(hw.unit_formats().layernorm_config(), eps=eps)
    return n * n * cfg.eps_raw


class _ImageBuilder:
    """A memory image grown region by region behind a Program region (docs/isa.md §4 layout rules)."""

    def __init__(self, hw, rng, program_bytes, tail=b""):
        self.hw, self.rng = hw, rng
        self.data = bytearray(hw.align(program_bytes)) + bytearray(tail)
        self.regions = []

    def region(self, name, rows, cols, pad_words, fmt, kind="activation"):
        """A rows x cols region of random bytes (stride padded by ``pad_words`` AXI words); its offset and stride."""
        stride = self.hw.align(cols * self.hw.act_bytes) + pad_words * self.hw.axi_bytes
        offset = len(self.data)
        self.data += self.rng.integers(0, 256, size=rows * stride, dtype=np.uint8).tobytes()
        self.regions.append(Region(name, kind, offset, rows * stride, str(fmt), (rows, cols), stride,
                                   8 * self.hw.act_bytes))
        return offset, stride

    def put_row(self, offset, stride, row, values):
        nbytes = self.hw.act_bytes
        raw = np.asarray(values, dtype=np.int64).astype(f"<i{nbytes}").tobytes()
        self.data[offset + row * stride:offset + row * stride + len(raw)] = raw

    def image(self, program):
        encoded = program.to_bytes()
        self.data[:len(encoded)] = encoded
        return MemoryImage(bytes(self.data), tuple(self.regions))


def _mixed_program(hw, seed):
    """mlp-odd with GELU on fc1 (LINEAR), then LAYERNORM over its output and SOFTMAX over its hidden
    layer (reading what the LINEAR descriptors wrote), then the edge cases of ROW_CASES, in one Program.

    The compiled image is moved behind a Program region large enough for every descriptor (its
    addresses relocated), and the row descriptors' regions follow it.
    """
    rng = np.random.default_rng(seed)
    odd_program, odd_image = _with_gelu(*_compiled("mlp-odd", hw, seed=seed, scale=3.0), every=2)
    count = len(odd_program.descriptors) + 2 + len(ROW_CASES)
    builder = _ImageBuilder(hw, rng, 64 * (1 + count), odd_image.data)
    delta = hw.align(64 * (1 + count))
    descriptors = [dataclasses.replace(d, x_addr=d.x_addr + delta, w_addr=d.w_addr + delta,
                                       bias_addr=d.bias_addr + delta, res_addr=d.res_addr + delta,
                                       out_addr=d.out_addr + delta) for d in odd_program.descriptors]
    builder.regions += [dataclasses.replace(r, offset=r.offset + delta)
                        for r in odd_image.regions if r.kind != "program"]
    units = hw.unit_formats()
    param_fmt = units.layernorm_param

    def params(label, n):
        gamma, _ = builder.region(f"{label} gamma", 1, n, 0, param_fmt, kind="params")
        beta, _ = builder.region(f"{label} beta", 1, n, 0, param_fmt, kind="params")
        return gamma, beta

    out, hidden = odd_image.region("out"), odd_image.region("relu1")
    # LayerNorm of mlp-odd's output, softmax of its hidden layer.
    gamma, beta = params("ln mlp-odd", out.shape[1])
    ln_out, ln_stride = builder.region("ln mlp-odd out", *out.shape, 1, units.layernorm_out)
    descriptors.append(RowDescriptor(OPCODE_LAYERNORM, out.shape[0], out.shape[1], out.offset + delta, ln_out,
                                     out.row_stride, ln_stride, gamma, beta, _d_offset(hw, out.shape[1], 1e-5)))
    sm_out, sm_stride = builder.region("sm mlp-odd out", *hidden.shape, 2, units.softmax_out)
    descriptors.append(RowDescriptor(OPCODE_SOFTMAX, hidden.shape[0], hidden.shape[1], hidden.offset + delta, sm_out,
                                     hidden.row_stride, sm_stride))
    for label, opcode, m, n, eps, pad, kinds in ROW_CASES:
        layernorm = opcode == OPCODE_LAYERNORM
        in_fmt = units.layernorm_in if layernorm else units.softmax_in
        x, x_stride = builder.region(f"{label} x", m, n, pad, in_fmt, kind="input")
        for row in range(m):
            builder.put_row(x, x_stride, row, _row_values(rng, kinds[row % len(kinds)], n, hw.act_bits))
        gamma, beta = params(label, n) if layernorm else (0, 0)
        y, y_stride = builder.region(f"{label} out", m, n, pad + 1,
                                     units.layernorm_out if layernorm else units.softmax_out, kind="output")
        descriptors.append(RowDescriptor(opcode, m, n, x, y, x_stride, y_stride, gamma, beta,
                                         _d_offset(hw, n, eps) if layernorm else 0))
    program = Program(hw.fingerprint(), len(builder.data), tuple(descriptors))
    return program, builder.image(program)


def _row_error_runs(hw):
    """Row descriptors the controller must refuse (BAD_DESCRIPTOR) and reserved opcodes (BAD_OPCODE)."""
    rng = np.random.default_rng(9)
    builder = _ImageBuilder(hw, rng, 128)
    x, x_stride = builder.region("x", 2, 8, 0, hw.unit_formats().softmax_in, kind="input")
    gamma, beta = builder.region("gamma", 1, 8, 0, hw.unit_formats().layernorm_param, kind="params")[0], x
    y, y_stride = builder.region("y", 2, 8, 0, hw.unit_formats().softmax_out, kind="output")
    good_ln = RowDescriptor(OPCODE_LAYERNORM, 2, 8, x, y, x_stride, y_stride, gamma, beta, _d_offset(hw, 8, 1e-5))
    good_sm = RowDescriptor(OPCODE_SOFTMAX, 2, 8, x, y, x_stride, y_stride)
    limit = 8 * 8 << 2 * hw.unit_formats().layernorm_in.frac_bits  # d_offset must stay below N²·2^2F
    cases = [
        ("M=0", good_sm, lambda w: w.__setitem__(1, 0), "BAD_DESCRIPTOR"),
        ("N=0", good_ln, lambda w: w.__setitem__(2, 0), "BAD_DESCRIPTOR"),
        ("N=1025", good_sm, lambda w: w.__setitem__(2, 1025), "BAD_DESCRIPTOR"),
        ("reserved flags", good_ln, lambda w: w.__setitem__(0, w[0] | 1 << 12), "BAD_DESCRIPTOR"),
        ("x misaligned", good_ln, lambda w: w.__setitem__(4, w[4] + hw.axi_bytes // 2), "MISALIGNED"),
        ("beta misaligned", good_ln, lambda w: w.__setitem__(6, w[6] + 2), "MISALIGNED"),
        ("out stride misaligned", good_sm, lambda w: w.__setitem__(12, w[12] + 2), "MISALIGNED"),
        ("x past the image", good_sm, lambda w: w.__setitem__(1, 1 << 20), "OUT_OF_BOUNDS"),
        ("gamma past the image", good_ln, lambda w: w.__setitem__(5, hw.align(len(builder.data))), "OUT_OF_BOUNDS"),
        ("out past the image", good_ln, lambda w: w.__setitem__(12, 1 << 31), "OUT_OF_BOUNDS"),
        ("reserved N high", good_sm, lambda w: w.__setitem__(2, w[2] | 1 << 20), "BAD_DESCRIPTOR"),
        ("reserved word 3", good_ln, lambda w: w.__setitem__(3, 1), "BAD_DESCRIPTOR"),
        ("reserved word 7", good_sm, lambda w: w.__setitem__(7, 16), "BAD_DESCRIPTOR"),
        ("reserved word 11", good_ln, lambda w: w.__setitem__(11, 1 << 31), "BAD_DESCRIPTOR"),
        ("softmax gamma", good_sm, lambda w: w.__setitem__(5, gamma), "BAD_DESCRIPTOR"),
        ("softmax d_offset", good_sm, lambda w: w.__setitem__(15, 1), "BAD_DESCRIPTOR"),
        ("layernorm d_offset", good_ln, lambda w: (w.__setitem__(13, limit & 0xFFFFFFFF),
                                                   w.__setitem__(14, limit >> 32)), "BAD_DESCRIPTOR"),
        ("opcode 6", good_sm, lambda w: w.__setitem__(0, 6), "BAD_OPCODE"),
        ("opcode 9", good_ln, lambda w: w.__setitem__(0, 9), "BAD_OPCODE"),
    ]
    runs = []
    for label, desc, mutate, bit in cases:
        program = Program(hw.fingerprint(), len(builder.data), (desc,))
        image = bytearray(builder.image(program).data)
        words = [int.from_bytes(image[64 + 4 * i:68 + 4 * i], "little") for i in range(16)]
        mutate(words)
        image[64:128] = b"".join(w.to_bytes(4, "little") for w in words)
        runs.append(tb.Run(bytes(image), bytes(image), tuple(builder.regions),
                           expect_status=Status[bit], expect_done=0, label=label))
    # The unmutated descriptors are valid: isa_sim runs them (so each refusal above is the mutation's).
    for desc in (good_ln, good_sm):
        program = Program(hw.fingerprint(), len(builder.data), (desc,))
        isa_sim(program, builder.image(program), hw)
    return runs


# ------------------------------------------------------------------------------ fast: structure


def _signature_only(component):
    """Mark a component built only to inspect its signature, so Amaranth does not warn it was never elaborated."""
    component._MustUse__silence = True
    return component


def test_the_cycle_model_counts_the_controllers_checks():
    """docs/isa.md §5's ``check`` term is the RTL controller's, so the model follows the hardware it predicts."""
    assert CycleModel().check == CHECK_CYCLES


@pytest.mark.parametrize("hw", [HW_SMALL, HW_LARGE], ids=["8x8-axi64", "16x16-axi128"])
def test_signature_follows_hw_params(hw):
    top = _signature_only(Accelerator(hw))
    m_axi = top.signature.members["m_axi"].signature.members
    assert m_axi["rdata"].shape == hw.axi_data_width and m_axi["wstrb"].shape == hw.axi_bytes
    assert m_axi["araddr"].flow == wiring.Out and m_axi["rvalid"].flow == wiring.In
    s_axi = top.signature.members["s_axi"]
    assert s_axi.flow == wiring.In and s_axi.signature.members["wdata"].shape == 32
    unit = _signature_only(ComputeUnit(hw))
    assert unit.signature.members["fill"].signature.members["payload"].shape.size == hw.axi_data_width + TAG_WIDTH + 1
    geo = unit.geometry
    assert geo.act_slots * hw.axi_bytes == hw.lanes_in * hw.act_bytes
    assert geo.tile_beats * hw.axi_bytes == hw.tile_stride(hw.weight_bytes)
    assert geo.post_lanes * geo.tile_out_beats == hw.lanes_out
    assert geo.max_chunk_tiles * (hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes) <= hw.weight_buffer_bytes


def test_unsupported_params_are_refused():
    with pytest.raises(ValueError, match=r"^lanes_in × act_bits must be a multiple of the AXI data width \(128\) "
                                         r"for the RTL core, not 64$"):
        Accelerator(HwParams(lanes_in=4, lanes_out=16))
    with pytest.raises(ValueError, match=r"^lanes_out × act_bits must be a multiple of the AXI data width \(64\) "
                                         r"for the RTL core, not 48$"):
        ComputeUnit(HwParams(lanes_in=8, lanes_out=3, axi_data_width=64))
    with pytest.raises(ValueError, match=r"^hardware parameters must be an HwParams, not 16$"):
        Geometry(16)


def test_row_unit_follows_hw_params_and_is_left_out_where_its_units_cannot_be_built():
    for hw in (HW_SMALL, HW_LARGE):
        rows = _signature_only(RowUnit(hw))
        assert rows.signature.members["fill"].signature.members["payload"].shape.size == hw.axi_data_width + TAG_WIDTH + 1
        assert RowGeometry(hw).input_beats == 2 * -(-1024 * hw.act_bytes // hw.axi_bytes)
        assert _signature_only(Controller(hw)).has_rows
    wide = HwParams(lanes_in=8, lanes_out=8, act_bits=32, axi_data_width=128)
    assert RowGeometry.problem(wide).startswith("32-bit activations leave no room for their internal precision")
    assert not _signature_only(Controller(wide)).has_rows  # opcodes 5 and 8 become BAD_OPCODE
    engines = {name for _, name, _ in Fragment.get(Controller(wide), None).subfragments}
    assert "LinearEngine" in engines and "RowEngine" not in engines


def test_row_descriptor_layout_matches_the_compiler_encoding():
    desc = RowDescriptor(OPCODE_LAYERNORM, m=129, n=1000, x_addr=0x1230, out_addr=0x4560, x_stride=2048,
                         out_stride=4096, gamma_addr=0x7890, beta_addr=0xABC0, d_offset=(5 << 70) + 12345)
    bits = int.from_bytes(desc.encode(), "little")

    def field(name):
        member = ROW_DESCRIPTOR_LAYOUT[name]
        return bits >> member.offset & ((1 << member.width) - 1)

    for name in ("m", "n", "x_addr", "out_addr", "x_stride", "out_stride", "gamma_addr", "beta_addr", "d_offset"):
        assert field(name) == getattr(desc, name), name
    assert field("opcode") == OPCODE_LAYERNORM
    assert all(field(name) == 0 for name, _ in ROW_DESCRIPTOR_LAYOUT if name.startswith("reserved"))


def test_descriptor_layout_matches_the_compiler_encoding():
    rng = random.Random(5)
    for _ in range(20):
        fields = {name: rng.randrange(1, 1 << 16) for name in ("m", "k", "n", "k_tiles", "n_tiles", "chunk_tiles")}
        fields.update({name: rng.randrange(1 << 32) for name in (
            "x_addr", "w_addr", "bias_addr", "res_addr", "out_addr", "x_stride", "w_stride", "res_stride",
            "out_stride")})
        rq = [Requant(rng.randrange(-128, 128), rng.randrange(1, 33), bool(rng.randrange(2)),
                      rng.choice(ROUNDING_MODES), rng.choice(OVERFLOW_MODES), rng.randrange(64)) for _ in range(2)]
        desc = LinearDescriptor(flags=Flag(rng.randrange(1 << 10)) | Flag.RESIDUAL, rq1=rq[0], rq2=rq[1],
                                y_shift=rng.randrange(256), r_shift=rng.randrange(256), **fields)
        bits = int.from_bytes(desc.encode(), "little")

        def field(path, layout=DESCRIPTOR_LAYOUT, offset=0):
            name, *rest = path
            member = layout[name]
            if rest:
                return field(rest, member.shape, offset + member.offset)
            value = bits >> (offset + member.offset) & ((1 << member.width) - 1)
            if member.shape.signed and value >> (member.width - 1):
                value -= 1 << member.width
            return value

        assert field(["opcode"]) == 1
        for name, value in fields.items():
            assert field([name]) == value, name
        for flag in Flag:
            assert field(["flags", flag.name.lower()]) == int(flag in desc.flags), flag
        for name, step in (("rq1", rq[0]), ("rq2", rq[1])):
            assert field([name, "shift"]) == step.shift and field([name, "width"]) == step.width
            assert field([name, "is_signed"]) == step.signed and field([name, "src_width"]) == step.src_width
            assert field([name, "round"]) == ROUNDING_MODES.index(step.rounding)
            assert field([name, "overflow"]) == OVERFLOW_MODES.index(step.overflow)
        assert field(["y_shift"]) == desc.y_shift and field(["r_shift"]) == desc.r_shift


class _RequantizeLane(wiring.Component):
    value: wiring.In(48)
    rq: wiring.In(RQ_LAYOUT)
    result: wiring.Out(RESULT_SHAPE)

    def elaborate(self, platform):
        from amaranth import Module

        m = Module()
        cut = requantize_cut(m, self.value.as_signed(), self.rq)
        m.d.comb += self.result.eq(requantize_fit(m, cut, self.rq))
        return m


def test_runtime_requantizer_equals_qfx_cast():
    """300 random (source, destination) format pairs, every mode, boundaries included: 6,000 values."""
    rng = random.Random(7)
    cases = []
    for _ in range(300):
        src_width = rng.randint(2, 48)
        src = QFmt(src_width, rng.randint(-4, src_width + 4))
        dst_signed = rng.random() < 0.7
        overflow = rng.choice([o for o in OVERFLOW_MODES if dst_signed or o != "WRAP_SM"])
        width = rng.randint(1, 32)
        int_bits = rng.randint(-6, width + 8) if rng.random() < 0.8 else rng.randint(-60, 80)
        dst = QFmt(width, int_bits, dst_signed, rng.choice(ROUNDING_MODES), overflow)
        values = [src.min_raw, src.max_raw, 0, -1, 1] + [rng.randint(src.min_raw, src.max_raw) for _ in range(15)]
        want = dst.cast(np.array(values, dtype=np.int64), src)
        cases.append((src, dst, Requant.between(src, dst).encode(), values, want))
    lane = _RequantizeLane()
    mismatches = []

    async def bench(ctx):
        for src, dst, word, values, want in cases:
            ctx.set(lane.rq.as_value(), word)
            for value, expected in zip(values, want):
                ctx.set(lane.value, value & ((1 << 48) - 1))
                got = ctx.get(lane.result)
                if got != int(expected):
                    mismatches.append(f"{dst} <- {src} of {value}: RTL {got}, qfx {int(expected)}")

    sim = Simulator(lane)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, mismatches[:5]


# ------------------------------------------------------------------------------ fast: compute unit


def _unit_beats(desc, image, hw):
    """The fill beats a controller sends for ``desc``, in its order (all weight chunks first)."""
    geo = Geometry(hw)
    data = image.data
    word = hw.axi_bytes

    def words(addr, count, tag):
        out = []
        for i in range(count):
            raw = int.from_bytes(data[addr + i * word:addr + (i + 1) * word], "little")
            out.append((raw, tag, int(i == count - 1)))
        return out

    chunks = [min(desc.chunk_tiles, desc.n_tiles - start) for start in range(0, desc.n_tiles, desc.chunk_tiles)]
    beats = []
    for c, tiles in enumerate(chunks):
        first = c * desc.chunk_tiles
        if desc.flags & Flag.BYPASS:
            break
        if desc.flags & Flag.BIAS:
            beats += words(desc.bias_addr + first * hw.lanes_out * hw.bias_bytes,
                           tiles * hw.lanes_out * hw.bias_bytes // word, Tag.BIAS)
        cols = min(desc.n - first * hw.lanes_out, tiles * hw.lanes_out)
        if desc.flags & Flag.B_ROWMAJOR:  # the chunk's segment of each row of B
            weights = sum((words(desc.w_addr + k * desc.w_stride + first * hw.lanes_out * hw.act_bytes,
                                 -(-cols * hw.act_bytes // word), Tag.WEIGHT) for k in range(desc.k)), [])
        elif desc.flags & Flag.B_TRANSPOSED:  # the chunk's rows of B^T
            weights = sum((words(desc.w_addr + (first * hw.lanes_out + n) * desc.w_stride,
                                 -(-desc.k * hw.act_bytes // word), Tag.WEIGHT) for n in range(cols)), [])
        else:
            weights = words(desc.w_addr + first * desc.k_tiles * hw.tile_stride(hw.weight_bytes),
                            tiles * desc.k_tiles * geo.tile_beats, Tag.WEIGHT)
        beats += weights[:-1] + [(weights[-1][0], Tag.WEIGHT_END, 1)]
    for c, tiles in enumerate(chunks):
        cols = min(desc.n - c * desc.chunk_tiles * hw.lanes_out, tiles * hw.lanes_out)
        for row in range(desc.m):
            beats += words(desc.x_addr + row * desc.x_stride, -(-desc.k * hw.act_bytes // word), Tag.ACT)
            if desc.flags & Flag.RESIDUAL:
                beats += words(desc.res_addr + row * desc.res_stride
                               + c * desc.chunk_tiles * hw.lanes_out * hw.act_bytes, -(-cols * hw.act_bytes // word),
                               Tag.RES)
    return chunks, beats


@pytest.mark.parametrize("backpressure, act_bits", [(0.0, 16), (0.4, 16), (0.4, 32)],
                         ids=["full-rate", "backpressure", "backpressure-act32"])
def test_compute_unit_alone(backpressure, act_bits):
    """A two-chunk Linear with bias and residual on a 4x4 unit: isa_sim's bytes, a tile every cycle (at 32-bit
    activations four weight tiles share a bank row)."""
    hw = HwParams(lanes_in=4, lanes_out=4, act_bits=act_bits, acc_bits=32 if act_bits == 16 else 48,
                  axi_data_width=64 if act_bits == 16 else 128)
    spec = {
        "name": "unit",
        "inputs": {"x": {"shape": [6, 10], "distribution": "normal", "scale": 2.0},
                   "r": {"shape": [6, 9], "distribution": "normal", "scale": 1.0}},
        "layers": [{"name": "fc", "op": "Linear", "input": "x", "features": 9},
                   {"name": "s", "op": "Add", "inputs": ["fc", "r"]}],
        "outputs": ["s"],
    }
    program, image = _compiled(parse_spec(spec), hw, seed=3)
    (desc,) = program.descriptors
    assert desc.flags & Flag.BIAS and desc.flags & Flag.RESIDUAL and desc.n_tiles == 3
    desc = dataclasses.replace(desc, chunk_tiles=2)  # chunks of 2 and 1 output tiles
    _run_unit(hw, desc, image, backpressure)


BYPASS_UNIT_SPEC = {
    "name": "unit-bypass",
    "inputs": {"x": {"shape": [5, 21], "distribution": "normal", "scale": 2.0},
               "r": {"shape": [5, 21], "distribution": "normal", "scale": 2.0}},
    "layers": [{"name": "s", "op": "Add", "inputs": ["x", "r"]}, {"name": "t", "op": "ReLU", "input": "s"}],
    "outputs": ["t"],
}


@pytest.mark.parametrize("lanes", [(4, 4), (8, 4), (16, 4), (4, 8), (4, 16)], ids=lambda v: f"{v[0]}x{v[1]}")
def test_compute_unit_bypass_at_any_lane_ratio(lanes):
    """BYPASS (a standalone Add and ReLU) with lanes_in = r·lanes_out and lanes_out = r·lanes_in: isa_sim's bytes."""
    hw = HwParams(lanes_in=lanes[0], lanes_out=lanes[1], axi_data_width=64)
    program, image = _compiled(parse_spec(BYPASS_UNIT_SPEC), hw, seed=4)
    (desc,) = program.descriptors
    assert desc.flags & Flag.BYPASS and desc.flags & Flag.RESIDUAL
    issues = _run_unit(hw, desc, image, 0.2)
    assert len(issues) == desc.m * desc.n_tiles * Geometry(hw).bypass_words_per_tile


MATMUL_SPEC = {  # activation x activation: the compiler emits B_ROWMAJOR
    "name": "act-matmul",
    "inputs": {"a": {"shape": [7, 21], "distribution": "uniform", "scale": 2.0},
               "b": {"shape": [21, 11], "distribution": "uniform", "scale": 1.0}},
    "layers": [{"name": "mm", "op": "MatMul", "inputs": ["a", "b"]}],
    "outputs": ["mm"],
    "formats": {"a": "fixed<10,2,RND,SAT>", "b": "ufixed<12,1,RND_INF,SAT>", "mm": "fixed<16,4,RND,SAT>"},
}


def _transposed(program, image, hw, index, seed=0):
    """``program`` with its B_ROWMAJOR descriptor ``index`` reading B^T (B_TRANSPOSED) from a region
    appended to ``image`` (rows padded with random bytes); returns that Program, its image and the
    image isa_sim leaves after the B_ROWMAJOR original over the same bytes (the same products)."""
    desc = program.descriptors[index]
    assert desc.flags & Flag.B_ROWMAJOR
    nbytes, rng = hw.act_bytes, np.random.default_rng(seed)
    stride = hw.align(desc.k * nbytes) + hw.axi_bytes
    offset = hw.align(len(image.data))
    data = bytearray(image.data) + bytearray(offset - len(image.data))
    for n in range(desc.n):
        row = bytearray(rng.integers(0, 256, size=stride, dtype=np.uint8).tobytes())
        for k in range(desc.k):
            at = desc.w_addr + k * desc.w_stride + n * nbytes
            row[k * nbytes:(k + 1) * nbytes] = image.data[at:at + nbytes]
        data += row
    flags = desc.flags & ~Flag.B_ROWMAJOR | Flag.B_TRANSPOSED
    descriptors = list(program.descriptors)
    descriptors[index] = dataclasses.replace(desc, flags=flags, w_addr=offset, w_stride=stride)
    transposed = Program(program.fingerprint, len(data), tuple(descriptors))
    original = Program(program.fingerprint, len(data), program.descriptors)
    regions = image.regions + (Region("B^T", "input", offset, desc.n * stride, "fixed<16,4>", (desc.n, desc.k), stride,
                                      8 * nbytes),)
    encoded = transposed.to_bytes()
    data[:len(encoded)] = encoded
    result = MemoryImage(bytes(data), regions)
    expected = isa_sim(original, result, hw).data
    assert isa_sim(transposed, result, hw).data == expected  # isa_sim's B_TRANSPOSED agrees
    return transposed, result, expected


@pytest.mark.parametrize("lanes", [(4, 4, 16, 64), (8, 4, 16, 64), (4, 8, 16, 64), (4, 4, 32, 128)],
                         ids=lambda v: f"{v[0]}x{v[1]}-act{v[2]}-axi{v[3]}")
@pytest.mark.parametrize("layout", ["rowmajor", "transposed"])
def test_compute_unit_activation_operand(lanes, layout):
    """activation x activation in two chunks, B row-major (K rows of N) or transposed (N rows of K): isa_sim's bytes.
    At 32-bit activations a bank row holds four weight tiles (weight tiles in byte slots)."""
    hw = HwParams(lanes_in=lanes[0], lanes_out=lanes[1], act_bits=lanes[2], acc_bits=32 if lanes[2] == 16 else 48,
                  axi_data_width=lanes[3])
    program, image = _compiled(parse_spec(MATMUL_SPEC), hw, seed=5)
    (desc,) = program.descriptors
    assert desc.flags & Flag.B_ROWMAJOR and desc.flags & Flag.W_UNSIGNED and desc.n_tiles >= 2
    program = Program(program.fingerprint, program.image_bytes,
                      (dataclasses.replace(desc, chunk_tiles=desc.n_tiles - 1),))
    image = _with_program(image, program)
    expected = None
    if layout == "transposed":
        program, image, expected = _transposed(program, image, hw, 0, seed=6)
    (desc,) = program.descriptors
    issues = _run_unit(hw, desc, image, 0.2, expected=expected, image_bytes=program.image_bytes)
    assert len(issues) == desc.m * desc.k_tiles * desc.n_tiles


def _run_unit(hw, desc, image, backpressure, *, expected=None, image_bytes=None):
    """Run ``desc`` on a ComputeUnit fed as the controller would; check isa_sim's bytes (or ``expected``);
    returns the issue cycles."""
    program = Program(hw.fingerprint(), image_bytes or len(image.data), (desc,))
    image = _with_program(image, program)
    if expected is None:
        expected = isa_sim(program, image, hw).data
    assert expected != image.data
    chunks, beats = _unit_beats(desc, image, hw)

    unit = ComputeUnit(hw)
    rng = random.Random(11)
    written = bytearray(image.data)
    trace = {"issue_cycles": [], "fed": None, "done": False}

    async def bench(ctx):
        ctx.set(unit.desc.as_value(), int.from_bytes(desc.encode(), "little"))
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        segments = [(c, row) for c in range(len(chunks)) for row in range(desc.m)]
        segment, beat = 0, 0
        for cycle in range(5000):
            if cycle < len(beats):
                raw, tag, last = beats[cycle]
                ctx.set(unit.fill.payload.data, raw)
                ctx.set(unit.fill.payload.tag, tag)
                ctx.set(unit.fill.payload.last, last)
                ctx.set(unit.fill.valid, 1)
            else:
                ctx.set(unit.fill.valid, 0)
                trace["fed"] = trace["fed"] or cycle
            ready = rng.random() >= backpressure
            ctx.set(unit.out.ready, ready)
            if ctx.get(unit.issuing):
                trace["issue_cycles"].append(cycle)
            if ctx.get(unit.out.valid) and ready:
                c, row = segments[segment]
                addr = (desc.out_addr + row * desc.out_stride + c * desc.chunk_tiles * hw.lanes_out * hw.act_bytes
                        + beat * hw.axi_bytes)
                data = ctx.get(unit.out.payload.data).to_bytes(hw.axi_bytes, "little")
                strb = ctx.get(unit.out.payload.strb)
                for i in range(hw.axi_bytes):
                    if strb >> i & 1:
                        written[addr + i] = data[i]
                cols = min(desc.n - c * desc.chunk_tiles * hw.lanes_out, chunks[c] * hw.lanes_out)
                beat += 1
                if beat == -(-cols * hw.act_bytes // hw.axi_bytes):
                    segment, beat = segment + 1, 0
            if ctx.get(unit.done):
                trace["done"] = True
                break
            await ctx.tick()

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert trace["done"], "the unit never signalled done"
    assert bytes(written) == expected, "compute unit output differs from isa_sim"
    issues = trace["issue_cycles"]
    if desc.flags & Flag.BYPASS:
        return issues
    assert len(issues) == desc.m * desc.k_tiles * desc.n_tiles
    if backpressure == 0.0:
        # Once every fill word is in (the rows of chunk 1 arrive last), nothing holds the array
        # back: it issues a tile on every cycle until its last one.
        tail = [cycle for cycle in issues if cycle >= trace["fed"]]
        assert len(tail) >= desc.k_tiles and tail == list(range(trace["fed"], issues[-1] + 1))
    return issues


# ------------------------------------------------------------------------------ cosim


def _refusal_runs(hw):
    """LINEAR and header refusals, one per check of docs/isa.md §8.3 and in the priority order there,
    on mlp-odd's Program: the status code, DESCRIPTORS_DONE (the refused descriptor's index) and an
    image holding exactly the earlier descriptors' results."""
    program, image = _compiled("mlp-odd", hw, seed=1)
    geo = Geometry(hw)
    size = len(image.data)
    first_only = Program(program.fingerprint, program.image_bytes, program.descriptors[:1])
    after = {0: image.data, 1: isa_sim(first_only, image, hw).data}
    li, lo, ts = hw.lanes_in, hw.lanes_out, hw.tile_stride(hw.weight_bytes)
    top = size // hw.axi_bytes * hw.axi_bytes  # an aligned address at (or past) the image's end
    half = hw.axi_bytes // 2

    def put(w, **fields):
        for index, value in fields.items():
            w[int(index[1:])] = value & 0xFFFFFFFF

    def flags(bits):
        return lambda w: put(w, w0=w[0] | bits << 8)

    max_k, max_c = geo.max_k_tiles, geo.max_chunk_tiles
    # A chunk within both limits whose tiles and bias exceed the bank together.
    tight = hw.weight_buffer_bytes // (max_k * ts + lo * hw.bias_bytes) + 1
    assert tight <= max_c
    header = [
        ("bad magic", "BAD_MAGIC", lambda w: put(w, w0=w[0] ^ 1)),
        ("bad magic and version", "BAD_MAGIC", lambda w: put(w, w0=w[0] ^ 1, w1=2)),
        ("bad version", "BAD_VERSION", lambda w: put(w, w1=2)),
        ("bad fingerprint", "BAD_FINGERPRINT", lambda w: put(w, w2=w[2] ^ 0x100)),
        ("bad fingerprint and descriptor_bytes", "BAD_FINGERPRINT", lambda w: put(w, w2=w[2] ^ 1, w4=32)),
        ("descriptor_bytes 32", "BAD_HEADER", lambda w: put(w, w4=32)),
        ("count past the image", "BAD_HEADER", lambda w: put(w, w3=size // 64)),
        ("image_bytes short of the Program", "BAD_HEADER", lambda w: put(w, w5=64 * 3 - 1)),
    ]
    linear = [
        (0, "opcode 0", "BAD_OPCODE", lambda w: put(w, w0=w[0] & ~0xFF)),
        (1, "opcode 6", "BAD_OPCODE", lambda w: put(w, w0=w[0] & ~0xFF | 6)),
        (1, "opcode 2 (CONV) on a LINEAR block: kh = 0", "BAD_DESCRIPTOR", lambda w: put(w, w0=w[0] & ~0xFF | 2)),
        (0, "opcode 5 bad too", "BAD_OPCODE", lambda w: put(w, w0=w[0] & ~0xFF | 3, w1=0)),
        (0, "reserved flag 11", "BAD_DESCRIPTOR", flags(1 << 11)),
        (0, "reserved flag 23", "BAD_DESCRIPTOR", flags(1 << 23)),
        (0, "B_ROWMAJOR and B_TRANSPOSED", "BAD_DESCRIPTOR", flags(1 << 5 | 1 << 10)),
        (0, "BYPASS with BIAS", "BAD_DESCRIPTOR", flags(int(Flag.BYPASS))),
        (0, "M = 0", "BAD_DESCRIPTOR", lambda w: put(w, w1=0)),
        (1, "K = 0", "BAD_DESCRIPTOR", lambda w: put(w, w2=w[2] & ~0xFFFF)),
        (0, "k_tiles + 1", "BAD_DESCRIPTOR", lambda w: put(w, w3=w[3] + 1)),
        (0, "n_tiles - 1", "BAD_DESCRIPTOR", lambda w: put(w, w3=w[3] - (1 << 16))),
        (0, "chunk_tiles 0", "BAD_DESCRIPTOR", lambda w: put(w, w15=w[15] & ~0xFFFF)),
        (0, "chunk_tiles > n_tiles", "BAD_DESCRIPTOR", lambda w: put(w, w15=w[15] + 0xFF)),
        (0, "RQ1 width 0", "BAD_DESCRIPTOR", lambda w: put(w, w13=w[13] & ~(0x3F << 8))),
        (0, "RQ1 width 33", "BAD_DESCRIPTOR", lambda w: put(w, w13=w[13] & ~(0x3F << 8) | 33 << 8)),
        (0, "RQ1 round 7", "BAD_DESCRIPTOR", lambda w: put(w, w13=w[13] | 7 << 16)),
        (0, "RQ1 overflow 5", "BAD_DESCRIPTOR", lambda w: put(w, w13=w[13] & ~(7 << 20) | 5 << 20)),
        (0, "RQ1 reserved bit 31", "BAD_DESCRIPTOR", lambda w: put(w, w13=w[13] | 1 << 31)),
        (1, "RQ2 width 0 with RESIDUAL", "BAD_DESCRIPTOR", lambda w: put(w, w14=w[14] & ~(0x3F << 8))),
        (0, "bad descriptor before does-not-fit", "BAD_DESCRIPTOR",
         lambda w: put(w, w1=0, w2=(w[2] & ~0xFFFF) | li * (max_k + 1), w3=(w[3] & ~0xFFFF) | (max_k + 1))),
        (0, "x row past the activation bank", "DOES_NOT_FIT",
         lambda w: put(w, w2=(w[2] & ~0xFFFF) | li * (max_k + 1), w3=(w[3] & ~0xFFFF) | (max_k + 1))),
        (0, "chunk past the bias budget", "DOES_NOT_FIT",
         lambda w: put(w, w2=(w[2] & 0xFFFF) | lo * (max_c + 1) << 16, w3=(w[3] & 0xFFFF) | (max_c + 1) << 16,
                       w15=(w[15] & ~0xFFFF) | (max_c + 1))),
        (0, "chunk tiles and bias past the bank", "DOES_NOT_FIT",
         lambda w: put(w, w2=li * max_k | lo * tight << 16, w3=max_k | tight << 16, w15=(w[15] & ~0xFFFF) | tight)),
        (0, "does-not-fit before misaligned", "DOES_NOT_FIT",
         lambda w: put(w, w2=(w[2] & ~0xFFFF) | li * (max_k + 1), w3=(w[3] & ~0xFFFF) | (max_k + 1), w4=w[4] + 2)),
        (0, "x misaligned", "MISALIGNED", lambda w: put(w, w4=w[4] + half)),
        (0, "x_stride misaligned", "MISALIGNED", lambda w: put(w, w9=w[9] + 2)),
        (1, "out misaligned", "MISALIGNED", lambda w: put(w, w8=w[8] + half)),
        (0, "out_stride misaligned", "MISALIGNED", lambda w: put(w, w12=w[12] + 2)),
        (0, "weight tiles misaligned", "MISALIGNED", lambda w: put(w, w5=w[5] + half)),
        (1, "bias misaligned", "MISALIGNED", lambda w: put(w, w6=w[6] + 2)),
        (1, "residual misaligned", "MISALIGNED", lambda w: put(w, w7=w[7] + half)),
        (1, "res_stride misaligned", "MISALIGNED", lambda w: put(w, w11=w[11] + 2)),
        (0, "misaligned before out of bounds", "MISALIGNED", lambda w: put(w, w4=w[4] + 2, w1=1 << 20)),
        (0, "x past the image", "OUT_OF_BOUNDS", lambda w: put(w, w1=1 << 20)),
        (0, "x stride product past 32 bits", "OUT_OF_BOUNDS", lambda w: put(w, w1=3, w9=1 << 31)),
        (1, "out past the image", "OUT_OF_BOUNDS", lambda w: put(w, w8=top)),
        (0, "weight tiles past the image", "OUT_OF_BOUNDS", lambda w: put(w, w5=top - hw.axi_bytes)),
        (1, "bias past the image", "OUT_OF_BOUNDS", lambda w: put(w, w6=top - hw.axi_bytes)),
        (1, "residual past the image", "OUT_OF_BOUNDS", lambda w: put(w, w11=1 << 24)),
    ]

    def mutated(offset, mutate):
        data = bytearray(image.data)
        words = [int.from_bytes(data[offset + 4 * i:offset + 4 * i + 4], "little") for i in range(16)]
        mutate(words)
        data[offset:offset + 64] = b"".join(w.to_bytes(4, "little") for w in words)
        return bytes(data)

    runs = [tb.Run(image.data, image.data, image.regions, expect_status=Status.MISALIGNED, expect_done=0,
                   program_offset=half, label="Program misaligned")]
    for label, status, mutate in header:
        data = mutated(0, mutate)
        runs.append(tb.Run(data, data, image.regions, expect_status=Status[status], expect_done=0, label=label))
    for index, label, status, mutate in linear:
        data = mutated(64 * (1 + index), mutate)
        expected = data[:64 * 3] + after[index][64 * 3:]
        runs.append(tb.Run(data, expected, image.regions, expect_status=Status[status], expect_done=index,
                           label=label))
    return runs


def _shared_refusal_runs(hw, cases=None):
    """The refusal table of tests/refusals.py (the one isa_sim and the HLS core run): its status, the
    descriptors it completes, and the image those descriptors alone leave."""
    runs = []
    for case in refusal_cases(hw) if cases is None else cases:
        if case.status == Status.OK:
            expected, done = isa_sim(case.image, case.image, hw).data, len(Program.from_bytes(case.program).descriptors)
        else:
            done = case.executed
            before = bytearray(case.image[:HEADER_BYTES + DESCRIPTOR_BYTES * done])
            struct.pack_into("<I", before, 12, done)
            expected = isa_sim(bytes(before), case.image, hw).data if done else case.image
        runs.append(tb.Run(case.image, expected, (), expect_status=case.status, expect_done=done,
                           program_offset=case.program_offset, label=case.name))
    return runs


@pytest.mark.cosim
def test_rtl_without_row_units_refuses_their_opcodes(tmp_path):
    """The table's row-less case (32-bit activations, 4x4): one LINEAR runs (four weight tiles per bank row),
    then LAYERNORM is BAD_OPCODE with DESCRIPTORS_DONE 1 and nothing else written."""
    case = rowless_case()
    runs = _shared_refusal_runs(case.hw, [case])
    (result,) = tb.run_bench(tmp_path, case.hw, runs, stall_prob=0.3)
    assert (result["status"], result["descriptors_done"]) == (Status.BAD_OPCODE, 1)


def _run_bench(tmp_path, hw, pairs, extra_runs=(), **bench):
    runs = []
    for index, (program, image) in enumerate(pairs):
        runs.append(tb.Run(image.data, isa_sim(program, image, hw).data, image.regions, label=f"program {index}"))
    return tb.run_bench(tmp_path, hw, runs + list(extra_runs), **bench)  # the HDL AXI memory


def _ideal(program, hw=None):
    """Array steps: M·k_tiles·n_tiles per LINEAR descriptor (BYPASS: M·n_tiles, times lanes_out/lanes_in if wider)."""
    per_tile = Geometry(hw).bypass_words_per_tile if hw is not None else 1
    return sum(d.m * (per_tile if d.flags & Flag.BYPASS else d.k_tiles) * d.n_tiles
               for d in program.descriptors if isinstance(d, LinearDescriptor))


@pytest.mark.cosim
@pytest.mark.parametrize("board", list(SHIPPED))
def test_rtl_equals_isa_sim(tmp_path, board):
    """Every shipped geometry, random stalls (0.3) on every AXI channel: the whole image equals isa_sim's
    after mlp-odd, the coverage model (B_ROWMAJOR, and its MatMul again with B_TRANSPOSED), standalone
    Add/ReLU/Requantize (BYPASS), GELU, row units; then the refusal table."""
    hw = SHIPPED[board]
    odd = _compiled("mlp-odd", hw, seed=1, scale=3.0)  # 3x the calibrated scale: saturation paths
    coverage = _compiled(parse_spec(COVERAGE_SPEC), hw, seed=2, scale=2.0)
    flags = Flag(0)
    for desc in coverage[0].descriptors:
        flags |= desc.flags
    assert {Flag.BYPASS, Flag.B_ROWMAJOR, Flag.W_UNSIGNED, Flag.R_UNSIGNED, Flag.RELU2} <= set(flags)
    # GELU after RQ1 (and after ReLU1 on mlp-odd's fc1), before the residual sum (mlp-odd's fc2, coverage's s, s2).
    coverage_gelu = _with_gelu(*coverage, every=2)
    assert isa_sim(*coverage_gelu, hw).data[64:] != isa_sim(*coverage, hw).data[64:]
    bypass = _compiled(parse_spec(BYPASS_SPEC), hw, seed=3, scale=2.0)
    assert sum(bool(d.flags & Flag.BYPASS) for d in bypass[0].descriptors) >= 2
    # mlp-odd with GELU, LAYERNORM and SOFTMAX descriptors over its tensors and over ROW_CASES.
    mixed = _mixed_program(hw, seed=3)
    softmax_rows = _zoo_build("softmax-rows", hw, seed=2, scale=3.0)  # 3x the calibrated range: saturation
    assert {type(d).__name__ for d in softmax_rows[0].descriptors} == {"LinearDescriptor", "RowDescriptor"}
    programs = [odd, coverage, coverage_gelu, bypass, mixed, softmax_rows]
    runs = [tb.Run(image.data, isa_sim(program, image, hw).data, image.regions, label=f"program {index}",
                   expect_done=len(program.descriptors)) for index, (program, image) in enumerate(programs)]
    # The coverage model with its activation MatMul reading B^T (B_TRANSPOSED).
    matmul = next(i for i, d in enumerate(coverage[0].descriptors) if d.flags & Flag.B_ROWMAJOR)
    transposed, transposed_image, transposed_expected = _transposed(*coverage, hw, matmul, seed=4)
    programs.append((transposed, transposed_image))
    runs.append(tb.Run(transposed_image.data, transposed_expected, transposed_image.regions, label="B_TRANSPOSED",
                       expect_done=len(transposed.descriptors)))
    errors = _shared_refusal_runs(hw) + _refusal_runs(hw) + _row_error_runs(hw)
    results = tb.run_bench(tmp_path, hw, runs + errors, stall_prob=0.3)
    assert len(results) == len(runs) + len(errors)
    for result, (program, _) in zip(results, programs):
        assert result["status"] == 0 and result["descriptors_done"] == len(program.descriptors)
        # Every tile of every descriptor is issued exactly once.
        assert result["cycles"] - result["stalls"] == _ideal(program, hw)
    for result, run in zip(results[len(runs):], errors):
        assert result["status"] == run.expect_status and result["descriptors_done"] == run.expect_done
        if run.expect_done == 0:
            assert result["write_beats"] == 0, run.label


@pytest.mark.cosim
@pytest.mark.full_model
def test_rtl_runs_mlp_tiny(tmp_path):
    program, image = _compiled("mlp-tiny", HW_LARGE, seed=4)
    (result,) = _run_bench(tmp_path, HW_LARGE, [(program, image)])
    assert result["status"] == 0 and result["descriptors_done"] == 2
    assert result["cycles"] - result["stalls"] == _ideal(program)


#: vit-mlp-block's geometries: 8x8/AXI64 and the shipped boards' (16x8/AXI64, 16x16/AXI128, 32x32/AXI128),
#: so the LayerNorm unit runs at 4 and 8 elements per beat. 8x8 builds a core of its own: make test-full only.
VIT_MLP_GEOMETRIES = {"8x8-axi64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64),
                      "16x8-axi64": SHIPPED["pynq-z2"], "16x16-axi128": HW_LARGE, "32x32-axi128": SHIPPED["zcu102"]}


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("geometry", [pytest.param(g, marks=pytest.mark.full_tier) if g == "8x8-axi64" else g
                                      for g in VIT_MLP_GEOMETRIES])
def test_rtl_runs_vit_mlp_block(tmp_path, geometry):
    """LAYERNORM, LINEAR with GELU, LINEAR with the residual: the compiler's Program equals isa_sim, cycles within 5 %."""
    hw = VIT_MLP_GEOMETRIES[geometry]
    program, image = _zoo_build("vit-mlp-block", hw, seed=1)
    assert [type(d).__name__ for d in program.descriptors][0] == "RowDescriptor"
    assert any(isinstance(d, LinearDescriptor) and d.flags & Flag.GELU for d in program.descriptors)
    reference = isa_sim(program, image, hw)
    (result,) = _run_bench(tmp_path, hw, [(program, image)])
    assert result["status"] == 0 and result["descriptors_done"] == len(program.descriptors)
    assert result["cycles"] - result["stalls"] == _ideal(program)
    print(f"vit-mlp-block at {geometry}: CYCLES {result['cycles']}, estimate {reference.total_cycles}")
    assert abs(reference.total_cycles - result["cycles"]) / result["cycles"] <= 0.05


# (opcode, M, N) of the row-descriptor cycle model's check: long rows (bound by the unit: a beat per
# cycle for LAYERNORM, an element per cycle for SOFTMAX; 190 ends in a partial beat) and short rows
# (bound by the read bursts in flight).
ROW_TIMING_CASES = ((OPCODE_LAYERNORM, 129, 192), (OPCODE_LAYERNORM, 64, 190), (OPCODE_SOFTMAX, 129, 129),
                    (OPCODE_SOFTMAX, 4, 1024), (OPCODE_LAYERNORM, 50, 7), (OPCODE_SOFTMAX, 64, 1))


@pytest.mark.cosim
def test_row_descriptors_stream_at_the_units_rate_and_match_the_model(tmp_path):
    """One LAYERNORM or SOFTMAX descriptor per run at 16x16 / AXI 128: isa_sim's bytes; on long rows about
    one beat (row_lanes = 8 elements) per cycle for LAYERNORM and one element per cycle for SOFTMAX; the §5
    estimate within 10 % of the measured cycles (measured: within 3 %)."""
    hw = HW_LARGE
    runs, estimates = [], []
    for opcode, m, n in ROW_TIMING_CASES:
        program, image = tb.row_program(hw, opcode, m, n, seed=m * n)
        reference = isa_sim(program, image, hw)
        estimates.append(reference.total_cycles)
        runs.append(tb.Run(image.data, reference.data, image.regions, label=f"opcode {opcode} {m}x{n}"))
    results = tb.run_bench(tmp_path, hw, runs)
    assert len(results) == len(ROW_TIMING_CASES)
    for (opcode, m, n), result, estimate in zip(ROW_TIMING_CASES, results, estimates):
        assert result["status"] == 0 and result["descriptors_done"] == 1
        assert abs(estimate - result["cycles"]) / result["cycles"] <= 0.10, (opcode, m, n, result["cycles"], estimate)
        if m * n >= 10_000:  # long rows: the unit, not the memory, sets the pace
            per_row = -(-n // hw.row_lanes) if opcode == OPCODE_LAYERNORM else n
            # Plus the fixed costs: the descriptor fetch, the first row's latency (and γ, β), the drain.
            assert result["cycles"] <= 1.05 * m * per_row + 400, (opcode, m, n, result["cycles"])


@pytest.mark.cosim
def test_bench_reports_a_corrupted_expected_output(tmp_path):
    hw = SHIPPED["pynq-z2"]
    program, image = _compiled("mlp-odd", hw, seed=5)
    expected = bytearray(isa_sim(program, image, hw).data)
    out = image.region("out")
    at = out.offset + 3 * out.row_stride + 7 * hw.act_bytes
    expected[at] ^= 0x01
    with pytest.raises(toolchain.ToolError, match=r"first mismatch in region 'out' at element \(3, 7\)"):
        tb.run_bench(tmp_path, hw, [tb.Run(image.data, bytes(expected), image.regions)])


LINEAR_SPEC = {  # Edge-MoE's Q/K/V projection, as benchmarks/bench_accelerator.py runs it
    "name": "linear-129x192",
    "inputs": {"x": {"shape": [129, 192], "distribution": "normal", "scale": 1.0}},
    "layers": [{"name": "qkv", "op": "Linear", "input": "x", "features": 192}],
    "outputs": ["qkv"],
}


@pytest.mark.cosim
def test_linear_at_the_compilers_chunks_reaches_90_percent_and_the_model(tmp_path):
    """129x192 -> 192 at 16x16 lanes, 64-cycle read latency: weight loads hidden, estimate within 5 %."""
    program, image = _compiled(parse_spec(LINEAR_SPEC), HW_LARGE, seed=1)
    (desc,) = program.descriptors
    assert desc.chunk_tiles < desc.n_tiles  # one chunk would expose its whole weight load
    reference = isa_sim(program, image, HW_LARGE)
    (result,) = _run_bench(tmp_path, HW_LARGE, [(program, image)])  # compares the image with isa_sim's
    assert result["status"] == 0 and result["descriptors_done"] == 1
    ideal = sum(c.ideal for c in reference.cycles)
    assert result["cycles"] - result["stalls"] == ideal == _ideal(program)
    assert ideal / result["cycles"] >= 0.90
    assert abs(reference.total_cycles - result["cycles"]) / result["cycles"] <= 0.05
