# SPDX-License-Identifier: Apache-2.0
"""CONV (docs/isa.md §3.9) on the RTL core's LINEAR engine, in Verilator, equals isa_sim.

Fast tier (Amaranth only): ConvGeometry (``K / kh``, ``K mod kh`` and the grid's products, a bit per cycle)
equals Python, restarting when its inputs change mid-computation; the CONV layout names the bits the codec packs.

Cosim tier: CONV Programs built here (a Linear compiled for ``x = im2col(feature map)``, then one CONV
descriptor with its weights, bias, RQ words, residual and output reading the channels-last feature map
instead; isa_sim's result must equal the Linear's over the gathered rows) run on the core and leave the
image isa_sim leaves, byte for byte (the whole image, STATUS and DESCRIPTORS_DONE, every tile issued once):
patch embeddings (3×32×32 with 8×8 patches; DeiT-tiny's 3×224×224 with 16×16 patches, K = 768, N = 192,
196 windows, once at 16×16), 3×3 convolutions over 16 channels at stride 1 and 2 (BIAS, RELU, RESIDUAL,
one output tile per chunk), an 8-channel one whose segments end inside an activation word with padded
feature-map rows, ``kh = 1``; padded convolutions over a 16-channel 8×8 map stored with a one-pixel zero
border (3×3 pad 1 at stride 1 with RESIDUAL from a map with a two-pixel border, at stride 2, and a 1×1 stride-2
shortcut reading the interior), each writing into the interior of a bordered output map (``out_skip``,
``res_skip``: the borders hold random bytes the CONV must neither read nor write); a LINEAR/CONV/CONV/LINEAR Program; the compiler's CONV_SPEC of
tests/test_conv.py (six CONVs) for two inputs; at 8×8/AXI64, 16×8/AXI64 and 32×32/AXI128 with random stalls
(0.3 on every AXI channel) and at 16×16/AXI128 without (cycles printed). Refusals: this file's CONV table (every check of §3.7 in
its order, the ``x`` extent past 2³²), the skips' table (misaligned ``out_skip`` / ``res_skip``, the output and
residual past the image through the skip or past 2³², and the accepted neighbours of those) and tests/refusals.py's
CONV cases give isa_sim's status and image.
Whole ViTs (vit-tiny, deit-tiny) on the attention cores: tests/test_vit_rtl.py.
"""

from __future__ import annotations

import dataclasses
import functools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwgen import golden
from hwgen.board import load_board
from hwgen.compiler import Flag, LinearDescriptor, Program, compile_graph, isa_sim
from hwgen.compiler.layout import MemoryImage, Region
from hwgen.cosim import tb_accelerator as tb
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.pipeline import run_passes
from hwgen.quant import QuantConfig
from hwgen.isa import CONV_FIELDS, ConvDescriptor, Status, check_descriptor, pack, unpack
from hwgen.rtl.descriptor import CONV_DESCRIPTOR_LAYOUT, OPCODE_CONV
from hwgen.rtl.conv_geometry import ConvGeometry

from refusals import conv_refusal_cases
from test_accelerator_rtl import _compiled, _shared_refusal_runs, _with_program
from test_conv import CONV_SPEC, MAXPOOL_SPEC

GEOMETRIES = {
    "8x8-axi64": HwParams(lanes_in=8, lanes_out=8, axi_data_width=64),
    "16x8-axi64": load_board("pynq-z2").hw_params(),
    "16x16-axi128": load_board("ultra96").hw_params(),
    "32x32-axi128": load_board("zcu102").hw_params(),
}
STALLS = {"8x8-axi64": 0.3, "16x8-axi64": 0.3, "16x16-axi128": 0.0, "32x32-axi128": 0.3}


# ------------------------------------------------------------------------------ fast


def _geometry(f):
    """What ConvGeometry computes, from the CONV fields ``f``."""
    return {"seg": f["k"] // f["kh"], "seg_rem": f["k"] % f["kh"], "rows": f["grid_h"] * f["grid_w"],
            "x_rows": (f["grid_h"] - 1) * f["stride_y"] + f["kh"] - 1, "x_across": (f["grid_w"] - 1) * f["x_stride"],
            "grid_step": f["stride_y"] * f["seg_stride"] % (1 << 32),
            "out_across": (f["grid_w"] - 1) * f["out_stride"], "res_across": (f["grid_w"] - 1) * f["res_stride"]}


def test_conv_geometry_equals_python_and_restarts_on_new_inputs():
    """Random and extreme fields (grid sides ≥ 1, kh ≥ 1): every result after at most 17 cycles, still ready a
    cycle later; fields changed mid-computation give the new fields' results."""
    geometry = ConvGeometry()
    rng = random.Random(3)
    names = ("k", "kh", "grid_h", "grid_w", "stride_y", "x_stride", "seg_stride", "out_stride", "res_stride")
    widths = {f.name: f.bits for f in CONV_FIELDS}

    def fields():
        f = {name: rng.randrange(1, 1 << widths[name]) for name in names}
        if rng.random() < 0.3:
            f.update({name: (1 << widths[name]) - 1 for name in names})  # every field at its largest
        return f

    cases = [dict(k=768, kh=16, grid_h=14, grid_w=14, stride_y=16, x_stride=96, seg_stride=1344, out_stride=384,
                  res_stride=384)]
    cases += [fields() for _ in range(60)]
    seen = []

    async def bench(ctx):
        for index, f in enumerate(cases):
            for name in names:
                ctx.set(getattr(geometry.desc, name), f[name])
            if index % 7 == 3 and f != cases[index - 1]:  # change the fields mid-computation: the new fields' results
                await ctx.tick().repeat(5)
                assert not ctx.get(geometry.ready)
                f = fields()
                for name in names:
                    ctx.set(getattr(geometry.desc, name), f[name])
            cycles = 0
            while not ctx.get(geometry.ready):
                await ctx.tick()
                cycles += 1
            assert cycles <= 17
            seen.append((f, {name: ctx.get(getattr(geometry, name)) for name in _geometry(f)}))
            await ctx.tick()
            assert ctx.get(geometry.ready)  # the same fields: still ready

    sim = Simulator(geometry)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == len(cases)
    for f, got in seen:
        assert got == _geometry(f), f


def test_conv_layout_matches_the_codec():
    rng = random.Random(5)
    for _ in range(20):
        fields = {f.name: rng.randrange(1 << f.bits) for f in CONV_FIELDS}
        fields.update(opcode=OPCODE_CONV, flags=rng.randrange(1 << 10))
        bits = int.from_bytes(pack(CONV_FIELDS, fields), "little")
        for name, value in unpack(CONV_FIELDS, pack(CONV_FIELDS, fields)).items():
            member = CONV_DESCRIPTOR_LAYOUT[name]
            assert bits >> member.offset & ((1 << member.width) - 1) == value, name


# ------------------------------------------------------------------------------ CONV Programs


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """A valid convolution over a ``c × h × w`` feature map stored channels-last, with ``pad`` pixels of zero padding
    read from the zero border of ``border ≥ pad`` pixels the map is stored with (docs/isa.md §3.9: the CONV starts at
    pixel ``(border − pad, border − pad)`` of the bordered map). ``out_border`` / ``res_border``: the output is
    written into (the residual read from) the interior of a map with that border (``out_skip`` / ``res_skip``), its
    border bytes random (the CONV must neither write nor read them); ``None``: dense rows, as a Linear's."""

    label: str
    c: int
    h: int
    w: int
    kernel: int
    stride: int
    n: int
    ops: tuple = ("bias",)      # "bias", "relu", "residual"
    chunk_tiles: int | None = None  # None: the compiler's
    row_pad_words: int = 0      # AXI words of padding after each feature-map row (seg_stride > W·C·act_bytes)
    pad: int = 0                # the convolution's zero padding (pixels, both axes)
    border: int = 0             # the input map's zero border (pixels); ≥ pad
    out_border: int | None = None
    res_border: int | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return ((self.h + 2 * self.pad - self.kernel) // self.stride + 1,
                (self.w + 2 * self.pad - self.kernel) // self.stride + 1)

    @property
    def k(self) -> int:
        return self.kernel * self.kernel * self.c


def _spec(shape: ConvShape) -> dict:
    """The Linear the CONV is: x = im2col rows (M × K), N features, the shape's bias, ReLU and residual."""
    grid_h, grid_w = shape.grid
    m = grid_h * grid_w
    inputs = {"x": {"shape": [m, shape.k], "distribution": "normal", "scale": 1.0}}
    layers = [{"name": "conv", "op": "Linear", "input": "x", "features": shape.n, "bias": "bias" in shape.ops}]
    last = "conv"
    if "residual" in shape.ops:
        inputs["r"] = {"shape": [m, shape.n], "distribution": "normal", "scale": 1.0}
        layers.append({"name": "sum", "op": "Add", "inputs": [last, "r"]})
        last = "sum"
    if "relu" in shape.ops:
        layers.append({"name": "relu", "op": "ReLU", "input": last})
        last = "relu"
    return {"name": f"conv-{shape.label}", "inputs": inputs, "layers": layers, "outputs": [last]}


def _gather(fmap: np.ndarray, shape: ConvShape) -> np.ndarray:
    """im2col of the ``(h + 2·pad) × (w + 2·pad) × c`` (padded) feature map: row (gy, gx) is its window's kernel rows,
    (ky, kx, c) order."""
    grid_h, grid_w = shape.grid
    s, k = shape.stride, shape.kernel
    rows = [fmap[gy * s:gy * s + k, gx * s:gx * s + k, :].reshape(-1) for gy in range(grid_h) for gx in range(grid_w)]
    return np.stack(rows)


@dataclasses.dataclass(frozen=True)
class ConvCase:
    """A one-CONV Program, its image, and the image the reference leaves."""

    shape: ConvShape
    program: Program
    image: MemoryImage
    expected: bytes
    linear: LinearDescriptor  # the Linear over the gathered rows the CONV equals
    gathered: bytes  # the image with the gathered rows in the Linear's x region (its Program bytes not written)


def _bordered(data: bytearray, hw: HwParams, rng, grid: tuple[int, int], border: int, stride: int) -> tuple[int, int]:
    """A map of ``grid`` pixels ``stride`` bytes apart with a ``border``-pixel border, appended to ``data`` (random
    bytes); returns its first byte and its interior's first byte."""
    grid_h, grid_w = grid
    at = hw.align(len(data))
    size = (grid_h + 2 * border) * (grid_w + 2 * border) * stride
    data += bytearray(at - len(data)) + rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
    return at, at + (border * (grid_w + 2 * border) + border) * stride


def conv_case(shape: ConvShape, hw: HwParams, seed: int = 1) -> ConvCase:
    """The Linear of :func:`_spec` compiled for ``hw``, turned into a CONV over a random feature map appended to
    its image (with the shape's border, and its bordered output and residual maps); the reference is isa_sim's
    CONV, which must equal isa_sim's Linear over the gathered rows, its output rows at the CONV's (the CONV writes
    nothing else)."""
    program, image = _compiled(parse_spec(_spec(shape)), hw, seed=seed)
    (linear,) = program.descriptors
    if shape.chunk_tiles is not None:
        linear = dataclasses.replace(linear, chunk_tiles=shape.chunk_tiles)
    rng = np.random.default_rng(seed)
    ab, axi = hw.act_bytes, hw.axi_bytes
    x_region = image.region("x")
    fmt = x_region.fmt
    fmap = rng.integers(fmt.min_raw, fmt.max_raw + 1, size=(shape.h, shape.w, shape.c))
    # The feature map with its zero border, channels-last, each row padded to whole AXI words (plus
    # row_pad_words, random bytes), after the image.
    b, q = shape.border, shape.pad
    assert 0 <= q <= b, shape
    bordered = np.zeros((shape.h + 2 * b, shape.w + 2 * b, shape.c), dtype=np.int64)
    bordered[b:b + shape.h, b:b + shape.w] = fmap
    padded = bordered[b - q:b + shape.h + q, b - q:b + shape.w + q]  # what the convolution reads
    seg_stride = hw.align(bordered.shape[1] * shape.c * ab) + shape.row_pad_words * axi
    fmap_at = hw.align(len(image.data))
    data = bytearray(image.data) + bytearray(fmap_at - len(image.data))
    fill = rng.integers(0, 256, size=bordered.shape[0] * seg_stride, dtype=np.uint8)
    data += fill.tobytes()
    for y in range(bordered.shape[0]):
        row = bordered[y].reshape(-1).astype(f"<i{ab}").tobytes()
        data[fmap_at + y * seg_stride:fmap_at + y * seg_stride + len(row)] = row
    regions = image.regions + (Region("fmap", "input", fmap_at, bordered.shape[0] * seg_stride, str(fmt),
                                      (bordered.shape[0], bordered.shape[1] * shape.c), seg_stride, 8 * ab),)
    grid_h, grid_w = shape.grid
    m = grid_h * grid_w
    row_bytes = linear.n * ab
    res_addr, res_skip, out_addr, out_skip = linear.res_addr, 0, linear.out_addr, 0
    if shape.res_border is not None:  # the Linear's residual rows, into the interior of a bordered map
        assert linear.flags & Flag.RESIDUAL, shape
        at, res_addr = _bordered(data, hw, rng, shape.grid, shape.res_border, linear.res_stride)
        res_skip = 2 * shape.res_border * linear.res_stride
        regions += (dataclasses.replace(image.region("r"), name="rmap", offset=at, size=len(data) - at,
                                        shape=((len(data) - at) // linear.res_stride, linear.n)),)
    if shape.out_border is not None:  # the output into the interior of a bordered map (random bytes: untouched)
        at, out_addr = _bordered(data, hw, rng, shape.grid, shape.out_border, linear.out_stride)
        out_skip = 2 * shape.out_border * linear.out_stride
        regions += (dataclasses.replace(image.region(_spec(shape)["outputs"][0]), name="omap", offset=at,
                                        size=len(data) - at, shape=((len(data) - at) // linear.out_stride, linear.n)),)
    conv = ConvDescriptor(
        flags=linear.flags, grid_h=grid_h, grid_w=grid_w, kh=shape.kernel, stride_y=shape.stride, k=linear.k,
        n=linear.n, k_tiles=linear.k_tiles, n_tiles=linear.n_tiles,
        x_addr=fmap_at + (b - q) * seg_stride + (b - q) * shape.c * ab, w_addr=linear.w_addr,
        bias_addr=linear.bias_addr, res_addr=res_addr, out_addr=out_addr,
        x_stride=shape.stride * shape.c * ab, seg_stride=seg_stride, res_stride=linear.res_stride,
        out_stride=linear.out_stride, rq1=linear.rq1, rq2=linear.rq2, chunk_tiles=linear.chunk_tiles,
        y_shift=linear.y_shift, r_shift=linear.r_shift, res_skip=res_skip, out_skip=out_skip)
    if shape.res_border is not None:
        for r in range(m):
            src = linear.res_addr + r * linear.res_stride
            data[conv.res_row_addr(r):conv.res_row_addr(r) + row_bytes] = image.data[src:src + row_bytes]
    assert check_descriptor(conv.encode(), hw, len(data)) is None, shape
    conv_program = Program(hw.fingerprint(), len(data), (conv,))
    # The x region holds the gathered rows for the Linear; for the CONV, random bytes it must not read. So does
    # the Linear's r region when the CONV reads its residual from a bordered map.
    gathered = MemoryImage(bytes(data), regions).write("x", _gather(padded, shape))
    linear_program = Program(hw.fingerprint(), len(data), (linear,))
    after_linear = isa_sim(linear_program, _with_program(gathered, linear_program), hw).data
    encoded = conv_program.to_bytes()
    conv_data = bytearray(data)
    conv_data[:len(encoded)] = encoded
    scrambled = [x_region] + ([image.region("r")] if shape.res_border is not None else [])
    for region in scrambled:
        conv_data[region.offset:region.offset + region.size] = rng.integers(
            0, 256, size=region.size, dtype=np.uint8).tobytes()
    gather = bytearray(conv_data)
    for r in range(m):  # the Linear's output rows, where the CONV writes them
        src = linear.out_addr + r * linear.out_stride
        gather[conv.out_row_addr(r):conv.out_row_addr(r) + row_bytes] = after_linear[src:src + row_bytes]
    conv_image = MemoryImage(bytes(conv_data), regions)
    expected = isa_sim(conv_program, conv_image, hw).data
    assert expected == bytes(gather) != bytes(conv_data)  # isa_sim's CONV is the Linear over the gathered rows
    return ConvCase(shape, conv_program, conv_image, expected, linear, gathered.data)


#: Patch embeddings (kernel = stride), 3×3 convolutions at stride 1 and 2 over 16 channels with every fused
#: operation, 8 channels (segments of 24 elements: they end inside an activation word), kh = 1, padded rows.
SHAPES = (
    ConvShape("patch8 3x32x32", c=3, h=32, w=32, kernel=8, stride=8, n=24, ops=("bias",)),
    ConvShape("3x3 s1 c16 relu", c=16, h=10, w=9, kernel=3, stride=1, n=20, ops=("bias", "relu")),
    ConvShape("3x3 s2 c16 residual", c=16, h=11, w=11, kernel=3, stride=2, n=40, ops=("bias", "residual", "relu"),
              chunk_tiles=1),
    ConvShape("3x3 s1 c8 padded rows", c=8, h=7, w=8, kernel=3, stride=1, n=12, ops=("residual",), row_pad_words=1),
    ConvShape("1x1 c16", c=16, h=5, w=6, kernel=1, stride=1, n=16, ops=("bias", "relu")),
    # Padded convolutions (ResNet-8's): the input map stored with a one-pixel zero border, the output written into
    # the interior of a bordered map (out_skip), the residual read from the interior of one (res_skip).
    ConvShape("3x3 pad1 c16 bordered out and residual", c=16, h=8, w=8, kernel=3, stride=1, n=40,
              ops=("bias", "residual", "relu"), chunk_tiles=1, pad=1, border=1, out_border=1, res_border=2),
    ConvShape("3x3 s2 pad1 c16 bordered out", c=16, h=8, w=8, kernel=3, stride=2, n=32, ops=("bias", "relu"),
              chunk_tiles=1, pad=1, border=1, out_border=1),
    ConvShape("1x1 s2 shortcut of a bordered map", c=16, h=8, w=8, kernel=1, stride=2, n=32, ops=("bias",),
              border=1, out_border=1),
)
DEIT = ConvShape("deit-tiny patch16", c=3, h=224, w=224, kernel=16, stride=16, n=192, ops=("bias",))


@functools.cache
def cases(name: str) -> tuple[ConvCase, ...]:
    hw = GEOMETRIES[name]
    return tuple(conv_case(shape, hw, seed=3 + i) for i, shape in enumerate(SHAPES))


def _runs(conv_cases):
    return [tb.Run(c.image.data, c.expected, c.image.regions, label=c.shape.label, expect_done=1) for c in conv_cases]


def mixed_run(case: ConvCase, hw: HwParams) -> tb.Run:
    """LINEAR, CONV, CONV, LINEAR on the same output (the Linear over the gathered rows, the CONV over the feature
    map): the engine switches between the two and runs a CONV whose K and kh its divider already holds."""
    (conv,) = case.program.descriptors
    program = Program(hw.fingerprint(), case.program.image_bytes, (case.linear, conv, conv, case.linear))
    image = _with_program(MemoryImage(case.gathered, case.image.regions), program)
    expected = isa_sim(Program(hw.fingerprint(), program.image_bytes, (case.linear,) * 4), image, hw).data
    return tb.Run(image.data, expected, image.regions, label=f"LINEAR/CONV/CONV/LINEAR {case.shape.label}",
                  expect_done=4)


def refusal_runs(case: ConvCase, hw: HwParams) -> list[tb.Run]:
    """One CONV refused per check of docs/isa.md §3.7, in its priority order: the status written here, which the
    rule (isa_sim's) must give too; nothing runs, so the image stays as it was. Built on a CONV with BIAS and
    RESIDUAL (its RQ2 checked) and kh = 3."""
    (desc,) = case.program.descriptors
    assert desc.flags & Flag.BIAS and desc.flags & Flag.RESIDUAL and desc.kh == 3 and desc.k == 144
    li, lo, ab, axi = hw.lanes_in, hw.lanes_out, hw.act_bytes, hw.axi_bytes
    size = case.program.image_bytes
    top = size // axi * axi
    max_k = hw.act_buffer_bytes // (li * ab)
    max_c = hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + lo * hw.bias_bytes)
    big_k = dict(kh=1, k=li * (max_k + 1), k_tiles=max_k + 1)
    # x's last byte past 2^32 by less than the image: a 32-bit sum would wrap into it (out and r rows kept in).
    far = dict(grid_w=65535, x_stride=0x10000 - axi, out_stride=0, res_stride=0)
    rows = (desc.grid_h - 1) * desc.stride_y + desc.kh - 1
    wrap = (1 << 32) - (desc.x_addr + 65534 * far["x_stride"] + desc.seg_elems * ab)
    far["seg_stride"] = (wrap // rows + axi) // axi * axi
    assert 0 < desc.x_addr + rows * far["seg_stride"] + 65534 * far["x_stride"] + desc.seg_elems * ab - (1 << 32) < size

    def flags(*extra):
        return dict(flags=int(desc.flags) | sum(int(f) for f in extra))

    table = [
        ("reserved flag bit 11", dict(flags=int(desc.flags) | 1 << 11), "BAD_DESCRIPTOR"),
        ("BYPASS", flags(Flag.BYPASS), "BAD_DESCRIPTOR"),
        ("B_ROWMAJOR", flags(Flag.B_ROWMAJOR), "BAD_DESCRIPTOR"),
        ("B_TRANSPOSED", flags(Flag.B_TRANSPOSED), "BAD_DESCRIPTOR"),
        ("grid_h 0", dict(grid_h=0), "BAD_DESCRIPTOR"),
        ("grid_w 0", dict(grid_w=0), "BAD_DESCRIPTOR"),
        ("kh 0", dict(kh=0), "BAD_DESCRIPTOR"),
        ("stride_y 0", dict(stride_y=0), "BAD_DESCRIPTOR"),
        ("K 0", dict(k=0, k_tiles=0), "BAD_DESCRIPTOR"),
        ("N 0", dict(n=0, n_tiles=0), "BAD_DESCRIPTOR"),
        ("K mod kh = 4 (kh 5)", dict(kh=5), "BAD_DESCRIPTOR"),
        ("K mod kh = 144 (kh 255)", dict(kh=255), "BAD_DESCRIPTOR"),
        ("K mod kh = 1 (K 145)", dict(k=145, k_tiles=-(-145 // li)), "BAD_DESCRIPTOR"),
        ("k_tiles + 1", dict(k_tiles=desc.k_tiles + 1), "BAD_DESCRIPTOR"),
        ("n_tiles + 1", dict(n_tiles=desc.n_tiles + 1), "BAD_DESCRIPTOR"),
        ("chunk_tiles 0", dict(chunk_tiles=0), "BAD_DESCRIPTOR"),
        ("chunk_tiles > n_tiles", dict(chunk_tiles=desc.n_tiles + 1), "BAD_DESCRIPTOR"),
        ("RQ1 width 0", dict(rq1=desc.rq1.encode() & ~(0x3F << 8)), "BAD_DESCRIPTOR"),
        ("RQ2 overflow 7 with RESIDUAL", dict(rq2=desc.rq2.encode() | 7 << 20), "BAD_DESCRIPTOR"),
        ("kh 5 before does-not-fit and misaligned", dict(big_k, kh=5, x_addr=desc.x_addr + ab), "BAD_DESCRIPTOR"),
        ("row of x past the activation bank", big_k, "DOES_NOT_FIT"),
        ("chunk past the bias budget", dict(n=lo * (max_c + 1), n_tiles=max_c + 1, chunk_tiles=max_c + 1),
         "DOES_NOT_FIT"),
        ("does-not-fit before misaligned", dict(big_k, seg_stride=desc.seg_stride + ab), "DOES_NOT_FIT"),
        ("x_addr misaligned", dict(x_addr=desc.x_addr + ab), "MISALIGNED"),
        ("x_stride misaligned", dict(x_stride=desc.x_stride + ab), "MISALIGNED"),
        ("seg_stride misaligned", dict(seg_stride=desc.seg_stride + ab), "MISALIGNED"),
        ("seg_bytes misaligned (47 elements)", dict(k=3 * 47, k_tiles=-(-141 // li)), "MISALIGNED"),
        ("out_addr misaligned", dict(out_addr=desc.out_addr + ab), "MISALIGNED"),
        ("out_stride misaligned", dict(out_stride=desc.out_stride + ab), "MISALIGNED"),
        ("w_addr misaligned", dict(w_addr=desc.w_addr + ab), "MISALIGNED"),
        ("bias_addr misaligned", dict(bias_addr=desc.bias_addr + ab), "MISALIGNED"),
        ("res_addr misaligned", dict(res_addr=desc.res_addr + ab), "MISALIGNED"),
        ("res_stride misaligned", dict(res_stride=desc.res_stride + ab), "MISALIGNED"),
        ("misaligned before out of bounds", dict(seg_stride=desc.seg_stride + ab, stride_y=255), "MISALIGNED"),
        ("x: stride_y 255", dict(stride_y=255), "OUT_OF_BOUNDS"),
        ("x: one more grid row", dict(grid_h=desc.grid_h + 1), "OUT_OF_BOUNDS"),
        ("x: one more window per grid row", dict(grid_w=desc.grid_w + 1), "OUT_OF_BOUNDS"),
        ("x: last byte past 2^32", far, "OUT_OF_BOUNDS"),
        ("out past the image", dict(out_addr=top), "OUT_OF_BOUNDS"),
        ("residual past the image", dict(res_stride=0x10000 - axi), "OUT_OF_BOUNDS"),
        ("weights past the image", dict(w_addr=top - axi), "OUT_OF_BOUNDS"),
        ("bias past the image", dict(bias_addr=top - axi), "OUT_OF_BOUNDS"),
    ]
    runs = []
    fields = unpack(CONV_FIELDS, desc.encode())
    for label, changes, status in table:
        words = pack(CONV_FIELDS, {**fields, **changes})
        refusal = check_descriptor(words, hw, size)
        assert refusal is not None and refusal.status == Status[status], (label, refusal)
        data = bytearray(case.image.data)
        data[64:128] = words
        runs.append(tb.Run(bytes(data), bytes(data), case.image.regions, expect_status=Status[status], expect_done=0,
                           label=f"CONV refused: {label}"))
    return runs


def _grid_end(desc: ConvDescriptor, addr: int, stride: int, skip: int, act_bytes: int) -> int:
    """One past the last byte of a CONV's output or residual rows (docs/isa.md §3.9), written out."""
    return (addr + (desc.grid_h - 1) * (desc.grid_w * stride + skip) + (desc.grid_w - 1) * stride
            + desc.n * act_bytes)


def _past_2_32(desc: ConvDescriptor, addr: int, size: int, axi: int, act_bytes: int) -> dict:
    """Two grid rows of ``grid_w`` windows, ``stride`` and ``skip`` (AXI-aligned, 16 bits) such that rows at
    ``addr`` end past 2³² by less than ``size``: a 32-bit sum would wrap into the image."""
    grid = dataclasses.replace(desc, grid_h=2)
    for stride in range(0x10000 - axi, 0x8000, -axi):
        grid_w = ((1 << 32) - addr) // (2 * stride)
        for grid_w in (grid_w, grid_w + 1):
            base = _grid_end(dataclasses.replace(grid, grid_w=grid_w), addr, stride, 0, act_bytes)
            skip = max(0, (1 << 32) + 1 - base + axi - 1) // axi * axi
            if grid_w < 1 << 16 and skip < 1 << 16 and 0 < base + skip - (1 << 32) < size:
                return dict(grid_h=2, stride_y=1, grid_w=grid_w, x_stride=0, stride=stride, skip=skip)
    raise AssertionError("no 16-bit stride and skip wrap past 2^32 into the image")


def skip_runs(case: ConvCase, hw: HwParams) -> list[tb.Run]:
    """The checks of out_skip and res_skip (docs/isa.md §3.7, §3.9) on a CONV with BIAS, RESIDUAL and both skips:
    MISALIGNED for either skip (res_skip only with RESIDUAL: without it the CONV runs), OUT_OF_BOUNDS for the output
    and the residual reaching past the image by one AXI word more of skip (the same rows one word of skip fewer, at
    the image's end, run), and for rows whose extent passes 2³² by less than the image."""
    (desc,) = case.program.descriptors
    assert desc.flags & Flag.BIAS and desc.flags & Flag.RESIDUAL and desc.out_skip and desc.res_skip
    ab, axi = hw.act_bytes, hw.axi_bytes
    size = case.program.image_bytes
    # The last aligned addresses whose rows, with the case's skips, still end inside the image.
    out_top = (size - _grid_end(desc, 0, desc.out_stride, desc.out_skip, ab)) // axi * axi
    res_top = (size - _grid_end(desc, 0, desc.res_stride, desc.res_skip, ab)) // axi * axi
    assert _grid_end(desc, out_top, desc.out_stride, desc.out_skip + axi, ab) > size
    assert _grid_end(desc, res_top, desc.res_stride, desc.res_skip + axi, ab) > size
    out_far = _past_2_32(desc, desc.out_addr, size, axi, ab)
    res_far = _past_2_32(desc, desc.res_addr, size, axi, ab)
    table = [
        ("out_skip misaligned", dict(out_skip=desc.out_skip + ab), "MISALIGNED"),
        ("res_skip misaligned with RESIDUAL", dict(res_skip=desc.res_skip + ab), "MISALIGNED"),
        ("out_skip misaligned before out of bounds", dict(out_skip=0x10000 - ab), "MISALIGNED"),
        ("res_skip misaligned before out of bounds", dict(res_skip=0x10000 - ab), "MISALIGNED"),
        ("accepted: res_skip misaligned without RESIDUAL",
         dict(flags=int(desc.flags & ~Flag.RESIDUAL), res_skip=desc.res_skip + ab), "OK"),
        ("out past the image through out_skip", dict(out_addr=out_top, out_skip=desc.out_skip + axi),
         "OUT_OF_BOUNDS"),
        ("accepted: out through out_skip up to the image's end", dict(out_addr=out_top), "OK"),
        ("residual past the image through res_skip", dict(res_addr=res_top, res_skip=desc.res_skip + axi),
         "OUT_OF_BOUNDS"),
        ("accepted: residual through res_skip up to the image's end",
         dict(res_addr=res_top, out_addr=case.linear.out_addr, out_skip=0), "OK"),
        ("out: last byte past 2^32 (through out_skip)",
         dict(grid_h=2, stride_y=1, grid_w=out_far["grid_w"], x_stride=0, out_stride=out_far["stride"],
              out_skip=out_far["skip"], res_stride=0, res_skip=0), "OUT_OF_BOUNDS"),
        ("residual: last byte past 2^32 (through res_skip)",
         dict(grid_h=2, stride_y=1, grid_w=res_far["grid_w"], x_stride=0, res_stride=res_far["stride"],
              res_skip=res_far["skip"], out_stride=0, out_skip=0), "OUT_OF_BOUNDS"),
    ]
    runs = []
    fields = unpack(CONV_FIELDS, desc.encode())
    for label, changes, status in table:
        words = pack(CONV_FIELDS, {**fields, **changes})
        refusal = check_descriptor(words, hw, size)
        assert (refusal.status if refusal else Status.OK) == Status[status], (label, refusal)
        data = bytearray(case.image.data)
        data[64:128] = words
        done = int(status == "OK")
        if done and changes.get("flags", desc.flags) & Flag.RESIDUAL:  # no output row overwrites a residual row
            f = {**fields, **changes}
            out = (f["out_addr"], _grid_end(desc, f["out_addr"], f["out_stride"], f["out_skip"], ab))
            res = (f["res_addr"], _grid_end(desc, f["res_addr"], f["res_stride"], f["res_skip"], ab))
            assert out[1] <= res[0] or res[1] <= out[0], label
        expected = isa_sim(bytes(data), bytes(data), hw).data if done else bytes(data)
        runs.append(tb.Run(bytes(data), expected, case.image.regions, expect_status=Status[status],
                           expect_done=done, label=f"CONV skips: {label}"))
    return runs


def compiled_convolutions(hw: HwParams) -> list[tb.Run]:
    """tests/test_conv.py's CONV_SPEC as the compiler lowers it (six CONVs: padded and packed RGB pixels, 8-channel
    kernel rows no lane count divides, rectangular kernels and strides, a CONV over a CONV's output, fused constant
    residual, Add and ReLU; a Linear on a CONV's tokens) and its MAXPOOL_SPEC (pairwise-maximum CONVs through
    scratch maps, a padded pool reading a zero border) for two seeded inputs each, against isa_sim."""
    runs = []
    for label, spec, convs in (("CONV_SPEC", CONV_SPEC, 6), ("MAXPOOL_SPEC", MAXPOOL_SPEC, 13)):
        qgraph = run_passes(parse_spec(spec).graph, QuantConfig.for_hw(hw))
        program, image = compile_graph(qgraph, hw)
        assert sum(isinstance(d, ConvDescriptor) for d in program.descriptors) == convs
        for seed, scale in ((1, 1.0), (2, 3.0)):  # 3x the calibrated range: saturation
            data = image.write_all(golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=seed, scale=scale)))
            runs.append(tb.Run(data.data, isa_sim(program, data, hw).data, data.regions, label=f"{label} seed {seed}",
                               expect_done=len(program.descriptors)))
    return runs


@pytest.mark.cosim
@pytest.mark.parametrize("name", GEOMETRIES)
def test_conv_rtl_equals_isa_sim(tmp_path, name):
    """Every shape of SHAPES as one CONV Program (and DeiT-tiny's patch embedding at 16×16), the compiler's CONV
    Programs and a LINEAR/CONV/CONV/LINEAR Program: the whole image after the run equals isa_sim's, STATUS OK,
    every tile issued once (cycles − stalls = M·k_tiles·n_tiles); then this file's CONV refusal table and
    tests/refusals.py's CONV cases (status, descriptors completed, the image those leave)."""
    hw = GEOMETRIES[name]
    conv_cases = cases(name)
    if name == "16x16-axi128":
        conv_cases += (conv_case(DEIT, hw, seed=2),)
    runs = _runs(conv_cases) + [mixed_run(conv_cases[1], hw)] + compiled_convolutions(hw)
    refusals = (refusal_runs(conv_cases[2], hw) + skip_runs(conv_cases[5], hw)
                + _shared_refusal_runs(hw, conv_refusal_cases(hw)))
    results = tb.run_bench(tmp_path, hw, runs + refusals, stall_prob=STALLS[name])
    assert len(results) == len(runs) + len(refusals)
    for case, result in zip(conv_cases, results):
        (desc,) = case.program.descriptors
        assert result["status"] == 0 and result["descriptors_done"] == 1, case.shape.label
        assert result["cycles"] - result["stalls"] == desc.m * desc.k_tiles * desc.n_tiles, case.shape.label
        print(f"{name} {case.shape.label}: M={desc.m} K={desc.k} N={desc.n}, {result['cycles']} cycles, "
              f"ideal {desc.m * desc.k_tiles * desc.n_tiles}")
    for result, run in zip(results[len(conv_cases):], runs[len(conv_cases):]):
        assert (result["status"], result["descriptors_done"]) == (0, run.expect_done), run.label
    for result, run in zip(results[len(runs):], refusals):
        assert (result["status"], result["descriptors_done"]) == (run.expect_status, run.expect_done), run.label
        if run.expect_done == 0:
            assert result["write_beats"] == 0, run.label
