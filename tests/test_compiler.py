# SPDX-License-Identifier: Apache-2.0
"""The compiler: descriptor encoding, memory layout as docs/isa.md states it, refusals, determinism,
artefact round trips and the cycle model."""

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest

from hwgen import golden, zoo
from hwgen.compiler import (
    CycleModel,
    Flag,
    LinearDescriptor,
    MemoryImage,
    Program,
    Requant,
    compile_graph,
    estimate_cycles,
    isa_sim,
)
from hwgen.compiler.layout import pack_tiles, read_tiles
from hwgen.isa import MAGIC, VERSION
from hwgen.frontend import parse_spec
from hwgen.hwparams import HwParams
from hwgen.ir import load_graph
from hwgen import pipeline
from hwgen.pipeline import build, run_passes, save_build
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES
from hwgen.quant import QuantConfig
from test_isa_sim import COVERAGE_SPEC as ISA_COVERAGE_SPEC


@pytest.fixture(scope="module")
def qgraphs():
    return {name: run_passes(zoo.load_model(name).graph, QuantConfig()) for name in ("mlp-tiny", "mlp-odd")}


def _random_descriptor(rng):
    def rq():
        return Requant(int(rng.integers(-128, 128)), int(rng.integers(1, 33)), bool(rng.integers(2)),
                       ROUNDING_MODES[rng.integers(7)], OVERFLOW_MODES[rng.integers(5)], int(rng.integers(0, 64)))

    flags = Flag(int(rng.integers(0, 512)))
    u32 = lambda: int(rng.integers(0, 2**32))  # noqa: E731
    u16 = lambda: int(rng.integers(0, 2**16))  # noqa: E731
    return LinearDescriptor(
        flags, u32(), u16(), u16(), u16(), u16(), u32(), u32(), u32(), u32(), u32(), u32(), u32(), u32(), u32(),
        rq(), rq() if flags & Flag.RESIDUAL else None, u16(), int(rng.integers(256)), int(rng.integers(256)),
    )


def test_descriptors_round_trip_through_their_64_bytes():
    rng = np.random.default_rng(1)
    descriptors = tuple(_random_descriptor(rng) for _ in range(300))
    program = Program(0xDEADBEEF, 123456, descriptors)
    data = program.to_bytes()
    assert len(data) == 64 + 64 * 300
    assert Program.from_bytes(data) == program
    magic, version, fingerprint, count, size, image = struct.unpack_from("<6I", data)
    assert (magic, version, fingerprint, count, size, image) == (MAGIC, VERSION, 0xDEADBEEF, 300, 64, 123456)
    assert data[:4] == b"HWGP"


def test_descriptor_word_layout_matches_the_isa_document():
    rq1 = Requant(-3, 16, True, "RND_CONV", "SAT", 29)
    rq2 = Requant(5, 9, False, "TRN_ZERO", "SAT_SYM", 19)
    desc = LinearDescriptor(Flag.BIAS | Flag.RESIDUAL | Flag.R_UNSIGNED, 64, 192, 768, 12, 48, 0x100, 0x200, 0x300,
                            0x400, 0x500, 384, 0, 1536, 1536, rq1, rq2, 21, 2, 7)
    w = struct.unpack("<16I", desc.encode())
    assert w[0] == 1 | (1 | 4 | 256) << 8
    assert w[1:4] == (64, 192 | 768 << 16, 12 | 48 << 16)
    assert w[4:13] == (0x100, 0x200, 0x300, 0x400, 0x500, 384, 0, 1536, 1536)
    assert w[13] == (0xFD | 16 << 8 | 1 << 14 | 6 << 16 | 1 << 20 | 29 << 24)
    assert w[14] == (5 | 9 << 8 | 0 << 14 | 1 << 16 | 3 << 20 | 19 << 24)
    assert w[15] == 21 | 2 << 16 | 7 << 24


@pytest.mark.parametrize(
    "data, message",
    [
        (b"XXXX" + bytes(60), r"^Program magic must be 0x50475748, not 0x58585858$"),
        (struct.pack("<16I", MAGIC, 9, 0, 0, 64, 0, *[0] * 10), r"^Program version must be 1, not 9$"),
        (struct.pack("<16I", MAGIC, 1, 0, 2, 64, 0, *[0] * 10), r"^a Program of 2 descriptors must be 192 bytes, not 64$"),
        (struct.pack("<16I", MAGIC, 1, 0, 1, 64, 0, *[0] * 10) + bytes(64), r"^descriptor opcode must be one of 1, 2, 3, 4, 5, 6, 7, 8, not 0$"),
    ],
)
def test_bad_program_bytes_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        Program.from_bytes(data)


def test_weight_tiles_lie_where_the_document_says():
    hw = HwParams(lanes_in=8, lanes_out=32, weight_bits=16, axi_data_width=64)
    rng = np.random.default_rng(2)
    raw = rng.integers(-(2**15), 2**15, size=(37, 70))
    stride = hw.tile_stride(2)
    memory = np.frombuffer(pack_tiles(raw, 8, 32, 2, stride, True), dtype=np.uint8)
    k_tiles, n_tiles = 5, 3
    assert memory.size == k_tiles * n_tiles * stride
    for k, n in [(0, 0), (36, 69), (8, 31), (17, 40), (9, 64)]:
        kt, i, nt, o = k // 8, k % 8, n // 32, n % 32
        address = (nt * k_tiles + kt) * stride + (i * 32 + o) * 2
        assert int.from_bytes(memory[address : address + 2].tobytes(), "little", signed=True) == raw[k, n]
    tiles = read_tiles(memory, 0, k_tiles, n_tiles, 8, 32, 2, stride, True)
    assert np.array_equal(tiles[:37, :70], raw)
    assert not tiles[37:].any() and not tiles[:, 70:].any()  # remainders are zero


def test_layout_regions_are_aligned_disjoint_and_complete(qgraphs):
    for hw in (HwParams(), HwParams(lanes_in=8, lanes_out=32, axi_data_width=64)):
        program, image = compile_graph(qgraphs["mlp-odd"], hw)
        end = 0
        for region in image.regions:
            assert region.offset % hw.axi_bytes == 0 and region.size % hw.axi_bytes == 0
            assert region.offset == end  # packed in order, no overlap
            end = region.offset + region.size
            if region.row_stride:
                assert region.row_stride % hw.axi_bytes == 0
                assert region.row_stride >= region.shape[-1] * hw.act_bytes
        assert end == len(image.data) == program.image_bytes
        assert image.region("program").offset == 0
        assert image.data[: program.nbytes] == program.to_bytes()
        kinds = {r.name: r.kind for r in image.regions}
        assert kinds == {"program": "program", "fc1.weight": "weights", "fc1.bias": "bias", "fc2.weight": "weights",
                         "fc2.bias": "bias", "x": "input", "relu1": "activation", "out": "output"}


def test_fusion_gives_one_descriptor_per_linear_layer(qgraphs):
    program, image = compile_graph(qgraphs["mlp-tiny"], HwParams())
    first, second = program.descriptors
    assert first.flags == Flag.BIAS | Flag.RELU1
    assert second.flags == Flag.BIAS | Flag.RESIDUAL
    assert image.labels == ("fc1 + fc1.requantize + relu1", "fc2 + fc2.requantize + out + out.requantize")
    # fc1's 192x768 int8 weights (147 KiB) exceed one 64 KiB bank: a column of 12 tiles (3 KiB) plus
    # its 16 biases takes 3136 bytes, so at most 20 of the 48 output tiles fit a chunk; of 1..20, the
    # cycle model prefers 3 (tests of the rule below).
    assert (first.k_tiles, first.n_tiles, first.chunk_tiles) == (12, 48, 3)
    listing = program.listing(image.labels)
    assert "#0   LINEAR M=64 K=192 N=768 tiles 12x48 chunks 16x3 flags BIAS|RELU1  ; fc1" in listing
    assert "rq2  >>" in listing


def test_compiling_twice_gives_identical_bytes(qgraphs):
    for qgraph in qgraphs.values():
        for hw in (HwParams(), HwParams(lanes_in=8, lanes_out=32)):
            program_a, image_a = compile_graph(qgraph, hw)
            program_b, image_b = compile_graph(qgraph, hw)
            assert program_a.to_bytes() == program_b.to_bytes()
            assert image_a.data == image_b.data and image_a.layout() == image_b.layout()


def test_every_artefact_round_trips_byte_identically(tmp_path):
    model = zoo.load_model("mlp-odd")
    hw = HwParams(lanes_in=8, lanes_out=8)
    first = build(model, hw, save_dir=tmp_path / "a")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {"program.bin", "program.txt", "memory.bin", "memory.json",
                                       "qgraph/graph.yaml", "qgraph/graph.npz", "passes/06_quantize/graph.yaml"}

    qgraph = load_graph(tmp_path / "a" / "qgraph")
    program = Program.load(tmp_path / "a" / "program.bin")
    image = MemoryImage.load(tmp_path / "a")
    assert program == first.program and image == first.image
    save_build(dataclasses.replace(first, qgraph=qgraph, program=program, image=image), tmp_path / "b")
    for f in files:
        if not str(f).startswith("passes"):
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # The reloaded graph compiles to the same bytes and computes the same numbers.
    again_program, again_image = compile_graph(qgraph, hw)
    assert again_program.to_bytes() == program.to_bytes() and again_image.data == image.data
    x = golden.quantize_inputs(qgraph, golden.sample_inputs(qgraph, seed=0))
    assert all(np.array_equal(a, b) for a, b in zip(golden.run(qgraph, x).values(), golden.run(first.qgraph, x).values()))
    # The saved passes are resumable: the last one is the quantized graph.
    assert (tmp_path / "a" / "passes/06_quantize/graph.npz").read_bytes() == (tmp_path / "a" / "qgraph/graph.npz").read_bytes()


@pytest.mark.parametrize(
    "hw, message",
    [
        (HwParams(act_buffer_bytes=208),
         r"^layer 'fc1': one input row needs 224 bytes of activation buffer \(K=100\), more than act_buffer_bytes=208$"),
        (HwParams(weight_buffer_bytes=1024),
         r"^layer 'fc1': one column of weight tiles needs 1856 bytes \(K=100, 16x16 lanes\), more than weight_buffer_bytes=1024$"),
        (HwParams(act_bits=8), r"^format of 'x' must fit the 8-bit activation container, not fixed<16,4,RND_CONV,SAT>$"),
        (HwParams(acc_bits=24), r"^accumulator of 'fc1' needs 29 bits, more than the hardware's acc_bits=24$"),
    ],
)
def test_layers_that_cannot_fit_are_refused(qgraphs, hw, message):
    with pytest.raises(ValueError, match=message):
        compile_graph(qgraphs["mlp-odd"], hw)


def test_unsupported_and_float_graphs_are_refused(qgraphs):
    with pytest.raises(ValueError, match=r"^graph must be quantized before compiling, not a float graph$"):
        compile_graph(zoo.load_model("mlp-odd").graph, HwParams())
    spec = {"name": "pool", "inputs": {"x": {"shape": [2, 6, 6]}},
            "layers": [{"name": "p", "op": "MaxPool2d", "input": "x", "kernel": 3, "padding": 1}], "outputs": ["p"]}
    with pytest.raises(ValueError, match=r"^MaxPool2d 'p' must read a ReLU's output \(or an unsigned format\) when"):
        build(parse_spec(spec), HwParams())
    spec["layers"] = [{"name": "t", "op": "TopK", "input": "x", "k": 2}]
    spec["outputs"] = ["t"]
    with pytest.raises(ValueError, match=r"^op TopK is not supported yet$"):
        build(parse_spec(spec), HwParams())
    with pytest.raises(ValueError, match=r"^hw must be a HwParams, not dict$"):
        compile_graph(qgraphs["mlp-odd"], {})


def _coverage_graph():
    """test_isa_sim's model of every descriptor path (BYPASS, RESIDUAL, B_ROWMAJOR, ...), 40-bit sums."""
    model = parse_spec(ISA_COVERAGE_SPEC)
    return run_passes(model.graph, QuantConfig(acc_bits=40, formats=model.formats))


def _documented_cycles(desc, hw, latency=64, drain=30):
    """docs/isa.md §5, term by term, written from the document rather than from cycles.py."""
    beats = lambda nbytes: -(-nbytes // hw.axi_bytes)  # noqa: E731
    bypass, res = bool(desc.flags & Flag.BYPASS), int(bool(desc.flags & Flag.RESIDUAL))
    e = hw.act_bytes if desc.flags & (Flag.B_ROWMAJOR | Flag.B_TRANSPOSED) else hw.weight_bytes
    n_chunks = -(-desc.n_tiles // desc.chunk_tiles)
    t = [min(desc.chunk_tiles, desc.n_tiles - c * desc.chunk_tiles) for c in range(n_chunks)]
    cols = [min(desc.n - c * desc.chunk_tiles * hw.lanes_out, t[c] * hw.lanes_out) for c in range(n_chunks)]
    compute = [desc.m * t[c] * (1 if bypass else desc.k_tiles) for c in range(n_chunks)]
    bias = [0 if bypass else beats(t[c] * hw.lanes_out * hw.bias_bytes) * int(bool(desc.flags & Flag.BIAS))
            for c in range(n_chunks)] + [0]
    tiles = [0 if bypass else beats(t[c] * desc.k_tiles * hw.tile_stride(e)) for c in range(n_chunks)] + [0]
    wload = [b + w for b, w in zip(bias, tiles)]
    bursts = [-(-b // 64) + -(-w // 64) for b, w in zip(bias, tiles)]
    # A row of x: one burst (LINEAR), or one per kernel row of the window (CONV, docs/isa.md §3.9).
    commands = getattr(desc, "kh", 1)
    x_row = commands * beats(desc.k // commands * hw.act_bytes)
    x_rows = [desc.m * x_row] * n_chunks
    x_commands = [desc.m * (commands + res)] * n_chunks
    grid = [0] * n_chunks
    first_x = x_row
    # The window mode (docs/isa.md §8.2): overlapping or touching windows whose grid row of kh strips, pitch words
    # apart, fits in one activation bank (half the ring); the ring word and the ring powers of two AXI words.
    if hasattr(desc, "kh"):
        seg_bytes = desc.k // desc.kh * hw.act_bytes
        slots, ring = hw.lanes_in * hw.act_bytes // hw.axi_bytes, 2 * hw.act_buffer_bytes // hw.axi_bytes
        strip = beats((desc.grid_w - 1) * desc.x_stride + seg_bytes)
        pitch = strip + (beats(seg_bytes) - strip) % slots
        if (desc.x_stride <= seg_bytes and not slots & (slots - 1) and not ring & (ring - 1)
                and desc.kh * pitch <= ring // 2):
            fifo = 1
            while fifo < 2 * (hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + hw.lanes_out
                                                         * hw.bias_bytes)) * (hw.lanes_out * hw.act_bytes // hw.axi_bytes):
                fifo *= 2
            merged = (n_chunks == 1 and desc.res_stride == beats(desc.n * hw.act_bytes) * hw.axi_bytes
                      and desc.grid_w * desc.res_stride // hw.axi_bytes <= fifo)
            x_rows = [desc.grid_h * desc.kh * strip] * n_chunks
            x_commands = [desc.grid_h * desc.kh + res * (desc.grid_h if merged else desc.m)] * n_chunks
            grid = [desc.grid_h * (latency + desc.kh * strip) + wload[c + 1] for c in range(n_chunks)]
            first_x = desc.kh * strip + desc.kh
    beats_c = [x_rows[c] + desc.m * res * beats(cols[c] * hw.act_bytes) + wload[c + 1] for c in range(n_chunks)]
    reads = [max(beats_c[c], -(-(beats_c[c] + (x_commands[c] + bursts[c + 1]) * latency) // 8))
             for c in range(n_chunks)]
    writes = [desc.m * beats(cols[c] * hw.act_bytes) for c in range(n_chunks)]
    body = sum(max(compute[c], reads[c], writes[c], grid[c]) for c in range(n_chunks))
    fetch = latency + beats(64) + 6  # the descriptor, then the controller's 6 cycles of checks
    return fetch + latency + wload[0] + first_x + body + drain


def test_cycle_estimates_follow_the_documented_model(qgraphs):
    coverage = _coverage_graph()
    previous, flags_seen = None, Flag(0)
    # acc_bits=40: the coverage model's sums need more than 32 bits.
    for hw in (HwParams(lanes_in=8, lanes_out=8, axi_data_width=64, acc_bits=40), HwParams(acc_bits=40),
               HwParams(lanes_in=32, lanes_out=32, acc_bits=40)):
        program, image = compile_graph(qgraphs["mlp-tiny"], hw)
        for graph in (qgraphs["mlp-odd"], coverage):
            program_other, _ = compile_graph(graph, hw)
            descriptors = program.descriptors + program_other.descriptors
            # Every chunk size a layer could take, not only the compiler's choice.
            descriptors += tuple(dataclasses.replace(d, chunk_tiles=t) for d in program_other.descriptors
                                 if not d.flags & Flag.BYPASS for t in range(1, d.n_tiles))
            for desc in descriptors:
                flags_seen |= desc.flags
                est = estimate_cycles(desc, hw)
                assert est.cycles == _documented_cycles(desc, hw)
                assert est.ideal == desc.m * (1 if desc.flags & Flag.BYPASS else desc.k_tiles) * desc.n_tiles
                assert est.cycles == est.fetch + est.first_load + est.body + est.drain
                assert est.ideal <= est.body and 0 < est.utilization <= 1
                slower = estimate_cycles(desc, hw, CycleModel(latency=100, drain=31))
                assert slower.cycles == _documented_cycles(desc, hw, latency=100, drain=31)
        total = isa_sim(program, image, hw).total_cycles
        if previous is not None:
            assert total < previous  # more lanes, fewer cycles
        previous = total
    assert Flag.BYPASS | Flag.RESIDUAL | Flag.B_ROWMAJOR | Flag.BIAS in flags_seen
    # fc1 at 16x16: 64 rows x 12 k-tiles x 48 n-tiles, compute-bound at the compiler's chunk size.
    hw = HwParams()
    program, image = compile_graph(qgraphs["mlp-tiny"], hw)
    est = estimate_cycles(program.descriptors[0], hw)
    assert est.ideal == 36864 and est.body == 36864
    # isa_sim reports the same estimates, and the header read once per run.
    result = isa_sim(program, image, hw)
    assert result.cycles == tuple(estimate_cycles(d, hw) for d in program.descriptors)
    assert result.header_cycles == 64 + 4 and result.total_cycles == 68 + sum(e.cycles for e in result.cycles)
    assert isa_sim(program, image, hw, CycleModel(latency=10)).header_cycles == 10 + 4


def _largest_chunk_that_fits(desc, hw):
    e = hw.act_bytes if desc.flags & (Flag.B_ROWMAJOR | Flag.B_TRANSPOSED) else hw.weight_bytes
    column = desc.k_tiles * hw.tile_stride(e) + (hw.lanes_out * hw.bias_bytes if desc.flags & Flag.BIAS else 0)
    max_chunk_tiles = hw.weight_buffer_bytes // (hw.tile_stride(hw.weight_bytes) + hw.lanes_out * hw.bias_bytes)
    return min(desc.n_tiles, hw.weight_buffer_bytes // column, max_chunk_tiles)


def test_compiler_picks_the_chunk_size_of_the_lowest_estimate(qgraphs):
    coverage = _coverage_graph()
    linear = {"name": "linear", "inputs": {"x": {"shape": [129, 192]}},
              "layers": [{"name": "qkv", "op": "Linear", "input": "x", "features": 192}], "outputs": ["qkv"]}
    graphs = [qgraphs["mlp-tiny"], qgraphs["mlp-odd"], coverage, run_passes(parse_spec(linear).graph, QuantConfig())]
    chose_smaller = chose_largest = ties = 0
    for hw in (HwParams(acc_bits=40), HwParams(lanes_in=8, lanes_out=8, axi_data_width=64, acc_bits=40),
               HwParams(lanes_in=8, lanes_out=32, weight_buffer_bytes=32768, acc_bits=40)):
        for graph in graphs:
            program, _ = compile_graph(graph, hw)
            for desc in program.descriptors:
                if desc.flags & Flag.BYPASS:
                    assert desc.chunk_tiles == desc.n_tiles
                    continue
                largest = _largest_chunk_that_fits(desc, hw)
                assert 1 <= desc.chunk_tiles <= largest
                chosen = estimate_cycles(desc, hw).cycles
                for tiles in range(1, largest + 1):
                    other = estimate_cycles(dataclasses.replace(desc, chunk_tiles=tiles), hw).cycles
                    assert chosen < other or (chosen == other and tiles <= desc.chunk_tiles), (desc, tiles)
                    ties += chosen == other and tiles != desc.chunk_tiles
                chose_smaller += desc.chunk_tiles < largest
                chose_largest += desc.chunk_tiles == largest
    assert chose_smaller and chose_largest and ties  # every branch of the rule is exercised (mlp-odd at 8x32 ties)
    # The 129x192 -> 192 Linear at 16x16: one 12-tile chunk fits, smaller chunks hide its weight load.
    program, _ = compile_graph(graphs[3], HwParams())
    (desc,) = program.descriptors
    assert desc.n_tiles == _largest_chunk_that_fits(desc, HwParams()) == 12 and desc.chunk_tiles < 12


def test_pipeline_verifies_after_every_pass_and_can_stop_early(tmp_path, monkeypatch):
    graph = zoo.load_model("mlp-odd").graph
    assert [name for name, _ in pipeline.PASSES] == ["fold_batchnorm", "lower_pools", "lower_flatten_linear",
                                                      "check_supported", "insert_requantize", "quantize"]
    partial = run_passes(graph, QuantConfig(), save_dir=tmp_path, stop_after="insert_requantize")
    assert not partial.is_quantized and any(n.op == "Requantize" for n in partial.nodes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_fold_batchnorm", "02_lower_pools",
                                                          "03_lower_flatten_linear", "04_check_supported",
                                                          "05_insert_requantize"]
    assert load_graph(tmp_path / "05_insert_requantize") == partial
    with pytest.raises(ValueError, match=r"^stop_after must be one of fold_batchnorm, lower_pools, lower_flatten_linear, "
                                         r"check_supported, insert_requantize, quantize, not 'fuse'$"):
        run_passes(graph, QuantConfig(), stop_after="fuse")

    def drop_producer(g, config):  # a broken pass: leaves a tensor without producer
        return g.replace(nodes=g.nodes[1:])

    monkeypatch.setattr(pipeline, "PASSES", [("broken", drop_producer)] + pipeline.PASSES)
    with pytest.raises(ValueError, match=r"^node 'relu1' \(ReLU\): input 'fc1' has no producer and is neither a graph input nor a constant$"):
        run_passes(graph, QuantConfig())


def test_isa_doc_examples_are_what_the_compiler_prints():
    """docs/isa.md §6 shows real listings: each code block there is the listing of the model it names."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text(encoding="utf-8")
    section = text.split("## 6. Example", 1)[1].split("\n## 7.", 1)[0]
    blocks = section.split("```\n")[1::2]
    listings = []
    for name in ("mlp-odd", "vit-mlp-block"):
        result = build(zoo.load_model(name), HwParams())
        listings.append(result.program.listing(result.image.labels))
    assert blocks == listings
