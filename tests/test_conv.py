# SPDX-License-Identifier: Apache-2.0
"""CONV (docs/isa.md §3.9): the descriptor, its checks, isa_sim against the golden model, the models that use it.

The codec round-trips every field; the rule refuses in §3.7's order with LINEAR's checks where the
fields are LINEAR's; Conv2d layers (several kernels, strides, channel counts) and the zoo ViTs run in
isa_sim bit-exactly equal to the golden model; a corrupted weight or expected value is noticed.
"""

from __future__ import annotations

import dataclasses

import pytest

from hwgen.hwparams import HwParams
from hwgen.isa import (
    CONV_FIELDS, ConvDescriptor, Flag, Opcode, Program, Requant, Status, check_descriptor, decode_descriptor, pack,
    unpack,
)
from hwgen.qfx import QFmt

HW = HwParams()
RQ = Requant.between(QFmt(32, 12), QFmt(16, 5, rounding="RND_CONV", overflow="SAT"))


def _patch_embedding(hw: HwParams = HW, **changes) -> ConvDescriptor:
    """DeiT-tiny's patch embedding (docs/isa.md §3.9): 3×224×224, 16×16 patches, 192 channels."""
    act = hw.act_bytes
    k, n = 16 * 16 * 3, 192
    fields = dict(flags=Flag.BIAS, grid_h=14, grid_w=14, kh=16, stride_y=16, k=k, n=n,
                  k_tiles=-(-k // hw.lanes_in), n_tiles=-(-n // hw.lanes_out), x_addr=0x10000, w_addr=0x400,
                  bias_addr=0x8000, res_addr=0, out_addr=0x80000, x_stride=16 * 3 * act, seg_stride=224 * 3 * act,
                  res_stride=0, out_stride=n * act, rq1=RQ, rq2=None, chunk_tiles=4)
    fields.update(changes)
    return ConvDescriptor(**fields)


def test_descriptor_round_trips_and_lists():
    desc = _patch_embedding()
    data = desc.encode()
    assert data[0] == Opcode.CONV and len(data) == 64
    assert decode_descriptor(data) == desc
    f = unpack(CONV_FIELDS, data)
    assert (f["grid_h"], f["kh"], f["stride_y"], f["x_stride"], f["grid_w"], f["seg_stride"]) == (14, 16, 16, 96, 14, 1344)
    assert desc.m == 196 and desc.seg_elems == 48
    assert desc.segment_addrs(15) == [0x10000 + 16 * 1344 + 96 + j * 1344 for j in range(16)]
    residual = dataclasses.replace(desc, flags=Flag.BIAS | Flag.RESIDUAL | Flag.RELU2, rq2=RQ, res_addr=0x100000,
                                   res_stride=384, y_shift=3, r_shift=1)
    assert ConvDescriptor.decode(residual.encode()) == residual
    text = Program(HW.fingerprint(), 1 << 21, (desc,)).listing()
    assert "CONV grid 14x14 (M=196) kernel rows 16 stride_y 16 K=768 N=192" in text
    assert "window stride 96 row stride 1344 segments 16x48" in text


def test_decode_refuses_other_opcodes():
    data = bytearray(_patch_embedding().encode())
    data[0] = Opcode.LINEAR
    with pytest.raises(ValueError, match=r"^descriptor opcode must be 2 \(CONV\), not 1$"):
        ConvDescriptor.decode(bytes(data))


def _edit(desc: ConvDescriptor, **values) -> bytes:
    f = unpack(CONV_FIELDS, desc.encode())
    f.update(values)
    return pack(CONV_FIELDS, f)


@pytest.mark.parametrize("edit,status", [
    (dict(), None),
    (dict(flags=int(Flag.BIAS) | 1 << 11), Status.BAD_DESCRIPTOR),
    (dict(flags=int(Flag.BIAS | Flag.BYPASS)), Status.BAD_DESCRIPTOR),
    (dict(flags=int(Flag.B_ROWMAJOR)), Status.BAD_DESCRIPTOR),
    (dict(flags=int(Flag.B_TRANSPOSED)), Status.BAD_DESCRIPTOR),
    (dict(grid_h=0), Status.BAD_DESCRIPTOR),
    (dict(grid_w=0), Status.BAD_DESCRIPTOR),
    (dict(kh=0), Status.BAD_DESCRIPTOR),
    (dict(stride_y=0), Status.BAD_DESCRIPTOR),
    (dict(kh=5), Status.BAD_DESCRIPTOR),  # 768 is not a multiple of 5
    (dict(k_tiles=47), Status.BAD_DESCRIPTOR),
    (dict(chunk_tiles=13), Status.BAD_DESCRIPTOR),
    (dict(rq1=0), Status.BAD_DESCRIPTOR),
    (dict(k=16 * 16 * 16, k_tiles=256), Status.DOES_NOT_FIT),
    (dict(chunk_tiles=12, flags=int(Flag.BIAS)), Status.DOES_NOT_FIT),
    (dict(x_stride=90), Status.MISALIGNED),
    (dict(seg_stride=1340), Status.MISALIGNED),
    (dict(k=16 * 16 * 3 - 16, k_tiles=47), Status.MISALIGNED),  # segments of 47 elements: 94 bytes
    (dict(x_addr=0x10008), Status.MISALIGNED),
    (dict(out_stride=380), Status.MISALIGNED),
    (dict(out_addr=(1 << 21) - 192), Status.OUT_OF_BOUNDS),
    (dict(seg_stride=1 << 14), Status.OUT_OF_BOUNDS),
    (dict(stride_y=255), Status.OUT_OF_BOUNDS),
])
def test_conv_checks_in_order(edit, status):
    refusal = check_descriptor(_edit(_patch_embedding(), **edit), HW, 1 << 21)
    assert (refusal.status if refusal else None) == status, refusal


def test_conv_x_extent_is_the_last_window_s_last_row():
    """OUT_OF_BOUNDS at exactly one byte short of the last segment's end; accepted at the end."""
    desc = _patch_embedding()
    end = desc.x_addr + 13 * 16 * 1344 + 13 * 96 + 15 * 1344 + 96
    big = max(end, desc.out_addr + 195 * 384 + 384)
    assert check_descriptor(desc.encode(), HW, big) is None
    moved = _edit(desc, x_addr=desc.x_addr + big - end + 16)
    assert check_descriptor(moved, HW, big).status == Status.OUT_OF_BOUNDS
