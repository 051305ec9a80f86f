# SPDX-License-Identifier: Apache-2.0
"""Whole ViTs on the RTL core in Verilator, from the image to the logits, equal the golden model.

vit-tiny (3×32×32 image, 8×8 patches, class token, 2 blocks, 10 classes) runs on every shipped
attention core (``Board.core_for``: pynq-z2 8×8/AXI64 and ultra96 16×8/AXI128 with random stalls of
0.3 on every AXI channel, kv260 16×16/AXI128, zcu102 32×32/AXI128 with stalls); deit-tiny (224×224,
12 blocks, 1,000 classes, 1.25 GMAC) runs once, at 16×16/AXI128 with the 64-cycle read latency and
no stalls, and its measured cycles are held within 5 % of the analytical model and printed per layer
type. The bench compares every byte of the image after the run (tensors from the golden model, the
attention scratch from isa_sim); the cores are the attention tests' (tests/test_attention_hls.py
``GEOMETRIES``), so no Verilator build is added.
"""

from __future__ import annotations

from collections import Counter

import pytest

from hwgen import toolchain
from hwgen.build import compile_for
from hwgen.cosim import tb_accelerator as tb
from hwgen.isa import AttentionDescriptor, Flag, RowDescriptor

from test_attention_hls import GEOMETRIES

STALLS = {"8x8-axi64": 0.3, "16x8-axi128": 0.3, "16x16-axi128": 0.0, "32x32-axi128": 0.3}


def _run(tmp_path, model: str, name: str):
    hw = GEOMETRIES[name]
    compiled = compile_for(model, hw)
    done = len(compiled.program.descriptors)
    runs = [tb.Run(compiled.image.data, compiled.expected, compiled.image.regions, label=model, expect_done=done)]
    (result,) = tb.run_bench(tmp_path, hw, runs, stall_prob=STALLS[name])
    assert result["status"] == 0 and result["descriptors_done"] == done
    return compiled, result


@pytest.mark.cosim
@pytest.mark.parametrize("name", GEOMETRIES)
def test_vit_tiny_rtl_equals_golden(tmp_path, name):
    compiled, _ = _run(tmp_path, "vit-tiny", name)
    if name == "8x8-axi64":  # a corrupted expected logit fails the bench
        head = compiled.image.region("head")
        want = bytearray(compiled.expected)
        want[head.offset + 1] ^= 0x10
        runs = [tb.Run(compiled.image.data, bytes(want), compiled.image.regions, label="corrupted")]
        with pytest.raises(toolchain.ToolError, match="mismatch"):
            tb.run_bench(tmp_path / "corrupted", GEOMETRIES[name], runs, stall_prob=STALLS[name])


@pytest.mark.cosim
@pytest.mark.full_model
def test_deit_tiny_rtl_equals_golden_at_16x16(tmp_path):
    compiled, result = _run(tmp_path, "deit-tiny", "16x16-axi128")
    measured, estimate = result["cycles"], compiled.reference.total_cycles
    per_type = Counter()
    for desc, cycles in zip(compiled.program.descriptors, compiled.reference.cycles):
        per_type[desc.name if isinstance(desc, (RowDescriptor, AttentionDescriptor)) else
                 ("BYPASS" if desc.flags & Flag.BYPASS else desc.name)] += cycles.cycles
    ideal = compiled.macs / GEOMETRIES["16x16-axi128"].macs_per_cycle
    print(f"deit-tiny at 16x16/AXI128: {measured:,} cycles measured, {estimate:,} analytical "
          f"({(estimate - measured) / measured:+.2%}), ideal {ideal:,.0f} ({ideal / measured:.1%} of the array); "
          + ", ".join(f"{k} {v:,}" for k, v in per_type.most_common()))
    assert abs(estimate - measured) <= 0.05 * measured
