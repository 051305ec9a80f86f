# SPDX-License-Identifier: Apache-2.0
"""The memory image: one byte array with named regions, and the packing rules of docs/isa.md §3–§4.

The packing functions here are the only definition of how activations (row-major, rows padded to
the AXI word; feature maps channels-last), weight tiles (output-tile major, ``lanes_in × lanes_out``
per tile, remainders zero) and bias vectors lie in DDR; the compiler writes with them and
``isa_sim`` reads with them.
"""

from __future__ import annotations

import enum

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hwgen.qfx import QFmt

__all__ = [
    "RegionKind",
    "Region",
    "MemoryImage",
    "container_dtype",
    "ROWS",
    "HWC",
    "LAYOUTS",
    "rows_of",
    "layout_rows",
    "tensor_rows",
    "rows_tensor",
    "interior",
    "pack_rows",
    "read_rows",
    "read_windows",
    "write_rows",
    "pack_tiles",
    "read_tiles",
    "pack_vector",
    "read_vector",
]


def container_dtype(nbytes: int, signed: bool) -> np.dtype:
    """The little-endian NumPy dtype of an ``nbytes`` container."""
    return np.dtype(f"<{'i' if signed else 'u'}{nbytes}")


#: How a tensor's elements map to rows of containers (docs/isa.md §4). ``ROWS``: row-major, every axis but
#: the last a row axis. ``HWC``: a (C, H, W) feature map channels-last, one row of C containers per pixel,
#: pixels row-major over (y, x): the order a CONV reads its windows in and writes its output rows in.
ROWS, HWC = "rows", "hwc"
LAYOUTS = (ROWS, HWC)


def rows_of(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, columns) of a tensor stored row-major: every axis but the last is a row axis."""
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows, shape[-1]


def layout_rows(shape: tuple[int, ...], layout: str, pad: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(rows, columns) of a tensor of ``shape`` stored in ``layout`` (a feature map with a zero border of
    ``pad = (py, px)`` pixels: its ``(H + 2·py)·(W + 2·px)`` padded pixels)."""
    if layout == HWC:
        channels, height, width = shape
        return (height + 2 * pad[0]) * (width + 2 * pad[1]), channels
    return rows_of(shape)


def tensor_rows(raw: np.ndarray, layout: str, pad: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The (rows, columns) matrix whose rows are stored one after another: ``raw`` in ``layout`` (a feature map
    bordered by ``pad`` pixels of zeros)."""
    if layout == HWC:
        if any(pad):
            raw = np.pad(raw, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
        return np.ascontiguousarray(raw.reshape(raw.shape[0], -1).T)
    return raw.reshape(layout_rows(raw.shape, layout))


def rows_tensor(rows: np.ndarray, shape: tuple[int, ...], layout: str, pad: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The tensor of ``shape`` whose rows in ``layout`` are ``rows`` (the inverse of :func:`tensor_rows`: a
    bordered map's border is dropped)."""
    if layout == HWC:
        channels, height, width = shape
        (py, px) = pad
        full = np.ascontiguousarray(rows.T).reshape(channels, height + 2 * py, width + 2 * px)
        return np.ascontiguousarray(full[:, py:py + height, px:px + width])
    return rows.reshape(shape)


def interior(offset: int, shape: tuple[int, ...], row_stride: int, pad: tuple[int, int]) -> tuple[int, int]:
    """(first byte, skip) of the interior of a feature map bordered by ``pad`` pixels: its pixel (0, 0) and the
    bytes after each image row beyond ``W·row_stride`` (a CONV's ``out_skip`` / ``res_skip``, docs/isa.md §3.9)."""
    (py, px), width = pad, shape[2]
    return offset + (py * (width + 2 * px) + px) * row_stride, 2 * px * row_stride


def pack_rows(raw: np.ndarray, nbytes: int, row_stride: int, signed: bool) -> bytes:
    """Row-major containers of a (rows, cols) raw array, each row padded with zeros to ``row_stride``."""
    rows, cols = raw.shape
    out = np.zeros((rows, row_stride), dtype=np.uint8)
    containers = np.ascontiguousarray(raw, dtype=container_dtype(nbytes, signed))  # views (Tokens) may be strided
    out[:, : cols * nbytes] = containers.view(np.uint8).reshape(rows, cols * nbytes)
    return out.tobytes()


def read_rows(memory: np.ndarray, addr: int, rows: int, cols: int, stride: int, nbytes: int, signed: bool) -> np.ndarray:
    """int64 (rows, cols) values of containers at ``addr + r·stride + c·nbytes`` (sign- or zero-extended)."""
    end = addr + (rows - 1) * stride + cols * nbytes
    if addr < 0 or end > memory.size:
        raise ValueError(f"read of {rows}x{cols} elements at {addr:#x} must lie inside the {memory.size}-byte image")
    view = np.lib.stride_tricks.as_strided(memory[addr:], shape=(rows, cols * nbytes), strides=(stride, 1))
    return np.ascontiguousarray(view).view(container_dtype(nbytes, signed)).astype(np.int64)


def read_windows(memory: np.ndarray, addr: int, grid: tuple[int, int], segments: int, seg_elems: int,
                 steps: tuple[int, int, int], nbytes: int, signed: bool) -> np.ndarray:
    """int64 (grid_h·grid_w, segments·seg_elems) rows gathered window by window (a CONV's x, docs/isa.md §3.9).

    Row ``(gy, gx)`` (row-major over the grid) is ``segments`` runs of ``seg_elems`` containers, run ``j``
    at ``addr + gy·steps[0] + gx·steps[1] + j·steps[2]``.
    """
    (grid_h, grid_w), (row_step, window_step, seg_step) = grid, steps
    seg_bytes = seg_elems * nbytes
    end = addr + (grid_h - 1) * row_step + (grid_w - 1) * window_step + (segments - 1) * seg_step + seg_bytes
    if addr < 0 or end > memory.size:
        raise ValueError(f"read of {grid_h}x{grid_w} windows at {addr:#x} must lie inside the {memory.size}-byte image")
    view = np.lib.stride_tricks.as_strided(memory[addr:], shape=(grid_h, grid_w, segments, seg_bytes),
                                           strides=(row_step, window_step, seg_step, 1))
    rows = np.ascontiguousarray(view).reshape(grid_h * grid_w, segments * seg_bytes)
    return rows.view(container_dtype(nbytes, signed)).astype(np.int64)


def write_rows(memory: np.ndarray, addr: int, values: np.ndarray, stride: int, nbytes: int) -> None:
    """Write the low ``8·nbytes`` bits of each value into containers at ``addr + r·stride + c·nbytes``."""
    rows, cols = values.shape
    end = addr + (rows - 1) * stride + cols * nbytes
    if addr < 0 or end > memory.size:
        raise ValueError(f"write of {rows}x{cols} elements at {addr:#x} must lie inside the {memory.size}-byte image")
    low = (values & ((1 << (8 * nbytes)) - 1)).astype(container_dtype(nbytes, False))
    target = np.lib.stride_tricks.as_strided(memory[addr:], shape=(rows, cols * nbytes), strides=(stride, 1))
    target[...] = low.view(np.uint8).reshape(rows, cols * nbytes)


def pack_tiles(raw: np.ndarray, lanes_in: int, lanes_out: int, nbytes: int, tile_stride: int, signed: bool) -> bytes:
    """Weight tiles of a (K, N) array in the order the array consumes them (docs/isa.md §3.3).

    Tile ``(kt, nt)`` is stored at index ``nt·k_tiles + kt``; inside it element ``(i, o)`` is
    ``raw[kt·lanes_in + i, nt·lanes_out + o]`` at position ``i·lanes_out + o``; zeros pad the
    remainders and each tile up to ``tile_stride`` bytes.
    """
    k, n = raw.shape
    k_tiles, n_tiles = -(-k // lanes_in), -(-n // lanes_out)
    padded = np.zeros((k_tiles * lanes_in, n_tiles * lanes_out), dtype=np.int64)
    padded[:k, :n] = raw
    # (kt, i, nt, o) -> (nt, kt, i, o)
    tiles = padded.reshape(k_tiles, lanes_in, n_tiles, lanes_out).transpose(2, 0, 1, 3)
    body = tiles.reshape(n_tiles * k_tiles, lanes_in * lanes_out).astype(container_dtype(nbytes, signed))
    out = np.zeros((n_tiles * k_tiles, tile_stride), dtype=np.uint8)
    out[:, : lanes_in * lanes_out * nbytes] = body.view(np.uint8).reshape(n_tiles * k_tiles, -1)
    return out.tobytes()


def read_tiles(
    memory: np.ndarray, addr: int, k_tiles: int, n_tiles: int, lanes_in: int, lanes_out: int,
    nbytes: int, tile_stride: int, signed: bool,
) -> np.ndarray:
    """The (k_tiles·lanes_in, n_tiles·lanes_out) int64 matrix that :func:`pack_tiles` laid out."""
    count = k_tiles * n_tiles
    body = read_rows(memory, addr, count, lanes_in * lanes_out, tile_stride, nbytes, signed)
    tiles = body.reshape(n_tiles, k_tiles, lanes_in, lanes_out).transpose(1, 2, 0, 3)
    return tiles.reshape(k_tiles * lanes_in, n_tiles * lanes_out)


def pack_vector(raw: np.ndarray, length: int, nbytes: int) -> bytes:
    """Two's-complement containers of a 1-D array, zero-padded to ``length`` entries."""
    padded = np.zeros(length, dtype=np.int64)
    padded[: raw.size] = raw
    return padded.astype(container_dtype(nbytes, True)).tobytes()


def read_vector(memory: np.ndarray, addr: int, length: int, nbytes: int) -> np.ndarray:
    """int64 values of ``length`` two's-complement containers at ``addr``."""
    return read_rows(memory, addr, 1, length, length * nbytes, nbytes, True)[0]


class RegionKind(str, enum.Enum):
    """What a region of the image holds (docs/isa.md §4); the value is what ``memory.json`` says."""

    PROGRAM = "program"
    WEIGHTS = "weights"
    BIAS = "bias"
    PARAMS = "params"
    INPUT = "input"
    ACTIVATION = "activation"
    OUTPUT = "output"
    #: Written and read by the Program itself (attention scores and row statistics, MoE token lists and counts):
    #: no tensor of the graph.
    SCRATCH = "scratch"

    @property
    def holds_tensor(self) -> bool:
        """An activation tensor in rows (input, intermediate or output): the host or a descriptor writes it."""
        return self in (RegionKind.INPUT, RegionKind.ACTIVATION, RegionKind.OUTPUT)

    def __str__(self) -> str:
        return self.value


def with_scratch(expected: bytes, after: bytes, regions) -> bytes:
    """``expected`` with every scratch region's bytes taken from ``after`` (a run's image): a scratch
    region (attention scores and row statistics, MoE lists and counts) holds no tensor of the graph, so
    what the Program leaves there is defined by isa_sim, not by the golden model."""
    for region in regions:
        if region.kind is RegionKind.SCRATCH:
            end = region.offset + region.size
            expected = expected[:region.offset] + after[region.offset:end] + expected[end:]
    return expected


@dataclass(frozen=True)
class Region:
    """A named byte range of the image: what it holds and how (docs/isa.md §4)."""

    name: str
    kind: RegionKind
    offset: int
    size: int
    format: str = ""
    shape: tuple[int, ...] = ()
    row_stride: int = 0
    container_bits: int = 0
    layout: str = ROWS  # how the tensor's elements form rows: ROWS or HWC (docs/isa.md §4)
    pad: tuple[int, int] = (0, 0)  # a feature map's zero border in pixels (py, px) (docs/isa.md §4)

    def __post_init__(self):
        object.__setattr__(self, "pad", tuple(int(p) for p in self.pad))
        try:
            object.__setattr__(self, "kind", RegionKind(self.kind))
        except ValueError:
            kinds = ", ".join(k.value for k in RegionKind)
            raise ValueError(f"region kind must be one of {kinds}, not {self.kind!r}") from None
        if self.layout not in LAYOUTS:
            raise ValueError(f"region layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.layout == HWC and len(self.shape) != 3:
            raise ValueError(f"an {HWC} region must hold a (C, H, W) tensor, not shape {tuple(self.shape)}")
        if any(self.pad) and self.layout != HWC:
            raise ValueError(f"a region with a zero border must be an {HWC} feature map, not layout {self.layout!r}")

    @property
    def rows(self) -> int:
        """Rows of containers the tensor takes (pixels of an HWC feature map, its border included)."""
        return layout_rows(self.shape, self.layout, self.pad)[0]

    @property
    def fmt(self) -> QFmt:
        """The region's fixed-point format."""
        return QFmt.parse(self.format)


@dataclass(frozen=True)
class MemoryImage:
    """The bytes the accelerator sees, and the layout the host uses to place inputs and read outputs."""

    data: bytes
    regions: tuple[Region, ...]
    labels: tuple[str, ...] = ()  # per descriptor: the layers it implements (for listings)

    def region(self, name: str) -> Region:
        """The region called ``name``."""
        for region in self.regions:
            if region.name == name:
                return region
        raise ValueError(f"region must be one of {', '.join(r.name for r in self.regions)}, not {name!r}")

    def array(self) -> np.ndarray:
        """A writable uint8 copy of the bytes."""
        return np.frombuffer(self.data, dtype=np.uint8).copy()

    def with_data(self, data: bytes | np.ndarray) -> MemoryImage:
        """The same layout over other bytes of the same size (e.g. after a run)."""
        data = bytes(data) if not isinstance(data, bytes) else data
        if len(data) != len(self.data):
            raise ValueError(f"image data must be {len(self.data)} bytes, not {len(data)}")
        return MemoryImage(data, self.regions, self.labels)

    def write(self, name: str, raw: np.ndarray) -> MemoryImage:
        """A copy with activation region ``name`` holding ``raw`` (its tensor shape, int64 codes)."""
        region = self.region(name)
        if not region.kind.holds_tensor:
            raise ValueError(f"region {name!r} must be an activation region to write, not {region.kind}")
        fmt = region.fmt
        raw = fmt.check_raw(raw, f"values for {name!r}")
        if raw.shape != region.shape:
            raise ValueError(f"values for {name!r} must have shape {region.shape}, not {raw.shape}")
        memory = self.array()
        packed = pack_rows(tensor_rows(raw, region.layout, region.pad), region.container_bits // 8, region.row_stride,
                           fmt.signed)
        # An HWC region of packed pixels may end inside an AXI word: only its own bytes are written.
        memory[region.offset : region.offset + len(packed)] = np.frombuffer(packed, dtype=np.uint8)
        return self.with_data(memory.tobytes())

    def write_all(self, values) -> MemoryImage:
        """A copy with every region named in the mapping ``values`` written (:meth:`write`)."""
        image = self
        for name, raw in values.items():
            image = image.write(name, raw)
        return image

    def with_values(self, values) -> MemoryImage:
        """A copy with every tensor region (input, activation, output) holding ``values[name]``: the image
        after a correct run."""
        return self.write_all({r.name: values[r.name] for r in self.regions if r.kind.holds_tensor})

    def read(self, name: str) -> np.ndarray:
        """int64 raw codes of activation region ``name``, in its tensor shape."""
        region = self.region(name)
        rows, cols = layout_rows(region.shape, region.layout, region.pad)
        memory = np.frombuffer(self.data, dtype=np.uint8)
        values = read_rows(memory, region.offset, rows, cols, region.row_stride, region.container_bits // 8, region.fmt.signed)
        return rows_tensor(values, region.shape, region.layout, region.pad)

    def region_bytes(self, name: str) -> bytes:
        """The raw bytes of region ``name`` (padding included)."""
        region = self.region(name)
        return self.data[region.offset : region.offset + region.size]

    def layout(self) -> dict:
        """The JSON layout document (``memory.json``)."""
        return {
            "hwgen_memory_image": 1,
            "size": len(self.data),
            "regions": [{**asdict(r), "shape": list(r.shape), "pad": list(r.pad)} for r in self.regions],
            "descriptor_labels": list(self.labels),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``memory.bin`` and ``memory.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "memory.bin").write_bytes(self.data)
        (directory / "memory.json").write_text(json.dumps(self.layout(), indent=1) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MemoryImage:
        """Read ``memory.bin`` and ``memory.json`` from ``directory``."""
        directory = Path(directory)
        layout = json.loads((directory / "memory.json").read_text(encoding="utf-8"))
        if layout.get("hwgen_memory_image") != 1:
            raise ValueError(f"memory layout version must be 1, not {layout.get('hwgen_memory_image')!r}")
        data = (directory / "memory.bin").read_bytes()
        if len(data) != layout["size"]:
            raise ValueError(f"memory.bin must be {layout['size']} bytes as memory.json says, not {len(data)}")
        regions = tuple(Region(**{**r, "shape": tuple(r["shape"])}) for r in layout["regions"])
        return cls(data, regions, tuple(layout.get("descriptor_labels", ())))
