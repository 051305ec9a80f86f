# SPDX-License-Identifier: Apache-2.0
"""MaxPool2d as pairwise-maximum CONVs on the MAC array: ``max(a, b) = a + relu(b − a)``, exact.

There is no window-maximum datapath. A pooling window's maximum is built from steps that each take
the maximum of two pixels of one feature map, a fixed distance apart, for every output pixel. Each
step is one CONV descriptor (docs/isa.md §3.9):

- its window holds both pixels (``kw = d + 1`` pixels of one image row, or ``kh = d + 1`` image rows
  of one pixel);
- its block-diagonal ±1 weights make the accumulator ``b − a`` exactly (weight −1 on the first pixel's
  channel, +1 on the last's);
- RQ1 keeps every bit (``act_bits + 1`` wide, no shift), RELU1 clips it at 0;
- its residual is ``a`` itself (the window's first pixel, addressed through ``res_stride`` and ``res_skip``),
  and RQ2 returns the sum ``a + relu(b − a) = max(a, b)`` into the input's format, which it always fits.

A window of ``k`` pixels along an axis takes ``ceil(log2 k)`` steps: spans double (``max`` of two spans
``t`` apart covers ``2t``) until the last step, the strided one, joins two spans that overlap. Rows
first, then columns: ``ceil(log2 kw) + ceil(log2 kh)`` descriptors, intermediate maps in scratch.

Padding: the compiler borders a padded map with zeros, not −∞ (docs/isa.md §4), which is the same
maximum only when no value is negative, so a padded MaxPool2d must read the output of a ReLU (or an
unsigned format); otherwise it is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.golden.exact import pair
from hwgen.hwparams import HwParams
from hwgen.ir import Graph, Node
from hwgen.isa import ConvDescriptor, Flag, Requant
from hwgen.qfx import QFmt

__all__ = ["MaxStep", "maxpool_steps", "maxpool_problem", "step_weights", "step_descriptor", "WEIGHT_FORMAT"]

#: The ±1 weights' format: two integer bits, no fraction (codes −1 and +1 are the values).
WEIGHT_FORMAT = QFmt(2, 2)


@dataclass(frozen=True)
class MaxStep:
    """One pairwise-maximum step: ``dst[y, x] = max(src[a], src[a + d along axis])``, ``a`` the output pixel's
    first source pixel (``(s·y, x)`` for the rows axis ``"y"``, ``(y, s·x)`` for ``"x"``), in the source's view."""

    axis: str  # "x": two pixels of an image row; "y": two image rows
    distance: int  # d ≥ 1, in pixels (x) or image rows (y)
    stride: int  # along the axis
    src: str  # the graph tensor or scratch map read
    dst: str  # the graph tensor (the last step) or scratch map written
    dst_hw: tuple[int, int]  # the destination's (height, width) in pixels
    #: Pixels from one row of a scratch destination to the next: at least ``stride · grid_w`` of the x step reading
    #: it, so that step's residual walk (``res_skip = pitch − stride · grid_w`` pixels) never goes backwards.
    pitch: int = 0

    @property
    def window(self) -> tuple[int, int]:
        """The CONV window (kh, kw) holding both pixels."""
        return (self.distance + 1, 1) if self.axis == "y" else (1, self.distance + 1)


def maxpool_problem(graph: Graph, node: Node) -> str | None:
    """Why ``node`` (a MaxPool2d) cannot run on the array, one line naming it; or ``None``."""
    (kh, kw), (sh, sw) = pair(node.attr("kernel", 1)), pair(node.attr("stride", 1))
    if sh > kh or sw > kw:
        return f"MaxPool2d {node.name!r} must have a stride no larger than its kernel, not stride {(sh, sw)} kernel {(kh, kw)}"
    if any(pair(node.attr("padding", 0))):
        producer = graph.producer(node.inputs[0])
        fmt = graph.tensor(node.inputs[0]).fmt
        if not ((producer is not None and producer.op == "ReLU") or (fmt is not None and not fmt.signed)):
            return (f"MaxPool2d {node.name!r} must read a ReLU's output (or an unsigned format) when it pads, not "
                    f"{node.inputs[0]!r}: feature maps are bordered with zeros, the maximum of a window needs −∞")
    return None


def _axis_steps(k: int, stride: int, extent: int, out: int) -> list[tuple[int, int, int]]:
    """(distance, stride, extent after the step) of each step along one axis: windows of ``k`` of an
    ``extent``-long (bordered) axis, ``out`` of them ``stride`` apart. A 1-wide strided window is one
    distance-0 step (weights +1 − 1 = 0: ``a + relu(0) = a``, a strided copy)."""
    if k == 1:
        return [(0, stride, out)] if stride > 1 else []
    steps, span = [], 1
    while 2 * span < k:
        steps.append((span, 1, extent - span))  # spans double, every position kept
        extent -= span
        span *= 2
    steps.append((k - span, stride, out))  # the strided step: two overlapping spans cover k
    return steps


def maxpool_steps(graph: Graph, node: Node) -> list[MaxStep]:
    """The pairwise-maximum steps of ``node``, rows (``x``) first; scratch maps are named ``<node>.max<i>``."""
    _, height, width = graph.tensor(node.inputs[0]).shape
    _, out_h, out_w = graph.tensor(node.outputs[0]).shape
    (kh, kw), (sh, sw), (ph, pw) = (pair(node.attr(a, d)) for a, d in (("kernel", 1), ("stride", 1), ("padding", 0)))
    rows, cols = height + 2 * ph, width + 2 * pw
    plan = [("x", *s) for s in _axis_steps(kw, sw, cols, out_w)] + [("y", *s) for s in _axis_steps(kh, sh, rows, out_h)]
    plan = plan or [("x", 0, 1, out_w)]  # a 1×1 window at stride 1: a copy
    shapes = []
    for axis, _, _, extent in plan:
        rows, cols = (extent, cols) if axis == "y" else (rows, extent)
        shapes.append((rows, cols))
    steps, src = [], node.inputs[0]
    for i, ((axis, distance, stride, _), shape) in enumerate(zip(plan, shapes)):
        last = i == len(plan) - 1
        dst = node.outputs[0] if last else f"{node.name}.max{i}"
        pitch = shape[1]
        if not last and plan[i + 1][0] == "x":
            pitch = max(pitch, plan[i + 1][2] * shapes[i + 1][1])
        steps.append(MaxStep(axis, distance, stride, src, dst, shape, pitch))
        src = dst
    return steps


def step_weights(step: MaxStep, channels: int, outputs: int) -> np.ndarray:
    """The (K, N) ±1 weight codes of a step: K = window pixels × ``channels`` ordered (ky, kx, c), N = ``outputs``."""
    pixels = step.distance + 1
    w = np.zeros((pixels * channels, outputs), dtype=np.int64)
    for c in range(outputs):
        w[c, c] -= 1
        w[step.distance * channels + c, c] += 1
    return w


def step_descriptor(step: MaxStep, fmt: QFmt, src: tuple[int, int, int], dst: tuple[int, int, int], w_addr: int,
                    channels: int, outputs: int, hw: HwParams) -> ConvDescriptor:
    """The CONV of one step, with one chunk of all its output tiles (the compiler picks the chunking).

    ``src`` = (first byte of the source view's pixel (0, 0), pixel bytes, bytes of one (bordered) image row);
    ``dst`` = (first byte of output pixel (0, 0), pixel bytes, bytes added after each output row: ``out_skip``).
    """
    src_addr, pixel, image_row = src
    out_addr, out_pixel, out_skip = dst
    grid_h, grid_w = step.dst_hw
    kh, kw = step.window
    k = kh * kw * channels
    if step.axis == "x":  # a = pixel (gy, s·gx): the next output row's a is one image row on
        x_stride, stride_y, res_stride = step.stride * pixel, 1, step.stride * pixel
        res_skip = image_row - grid_w * res_stride
    else:  # a = pixel (s·gy, gx): the next output row's a is s image rows on
        x_stride, stride_y, res_stride = pixel, step.stride, pixel
        res_skip = step.stride * image_row - grid_w * pixel
    flags = Flag.RELU1 | Flag.RESIDUAL
    if not fmt.signed:
        flags |= Flag.X_UNSIGNED | Flag.R_UNSIGNED
    # RQ1 keeps b − a whole (one bit wider than the input); RQ2 puts a + relu(b − a) back in the input's format.
    rq1 = Requant(0, fmt.width + 1, True, "TRN", "WRAP", hw.acc_bits)
    rq2 = Requant(0, fmt.width, fmt.signed, "TRN", "WRAP", hw.acc_bits)
    n_tiles = -(-outputs // hw.lanes_out)
    return ConvDescriptor(
        flags=flags, grid_h=grid_h, grid_w=grid_w, kh=kh, stride_y=stride_y, k=k, n=outputs,
        k_tiles=-(-k // hw.lanes_in), n_tiles=n_tiles, x_addr=src_addr, w_addr=w_addr, bias_addr=0,
        res_addr=src_addr, out_addr=out_addr, x_stride=x_stride, seg_stride=image_row, res_stride=res_stride,
        out_stride=out_pixel, rq1=rq1, rq2=rq2, chunk_tiles=n_tiles, res_skip=res_skip, out_skip=out_skip,
    )
