# SPDX-License-Identifier: Apache-2.0
"""Whole CNNs on the RTL core in Verilator, from the image to the logits, equal the golden model.

resnet8 (MLPerf Tiny: padded 3×3 convolutions into zero-bordered maps, 1×1 stride-2 shortcuts,
residual adds with ReLU, global average pool, classifier) and mobilenet-block (depthwise 3×3 as
block-diagonal CONVs, pointwise 1×1) run at 8×8/AXI64 and at pynq-z2's 16×8/AXI64 with random stalls
(0.3 on every AXI channel) and at ultra96's 16×16/AXI128 without; their measured cycles are printed
beside the analytical model and the array's ideal, and held within 5 % of the model. hybrid (strided
convolution stages, then two transformer blocks) runs on the attention cores at 8×8/AXI64 with stalls
and 16×16/AXI128. The bench compares every byte of the image after the run. The cores are the ones
other tests build (tests/test_conv_rtl.py, tests/test_attention_hls.py), so no Verilator build is added.
"""

from __future__ import annotations

import pytest

from hwgen import toolchain
from hwgen.build import compile_for
from hwgen.cosim import tb_accelerator as tb

from test_attention_hls import GEOMETRIES as ATTENTION_CORES
from test_conv_rtl import GEOMETRIES as CORES

CNN_CORES = {name: CORES[name] for name in ("8x8-axi64", "16x8-axi64", "16x16-axi128")}
STALLS = {"8x8-axi64": 0.3, "16x8-axi64": 0.3, "16x16-axi128": 0.0}


def _run(tmp_path, model: str, hw, stalls: float, expected: bytes | None = None):
    compiled = compile_for(model, hw)
    done = len(compiled.program.descriptors)
    runs = [tb.Run(compiled.image.data, expected or compiled.expected, compiled.image.regions, label=model,
                   expect_done=done)]
    (result,) = tb.run_bench(tmp_path, hw, runs, stall_prob=stalls)
    assert result["status"] == 0 and result["descriptors_done"] == done
    return compiled, result


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("model", ["resnet8", "mobilenet-block"])
@pytest.mark.parametrize("name", CNN_CORES)
def test_cnn_rtl_equals_golden(tmp_path, model, name):
    hw = CNN_CORES[name]
    compiled, result = _run(tmp_path, model, hw, STALLS[name])
    measured, estimate = result["cycles"], compiled.reference.total_cycles
    ideal = compiled.macs / hw.macs_per_cycle
    print(f"{model} at {name}: {measured:,} cycles measured ({result['stalls']:,} stalled), {estimate:,} analytical, "
          f"ideal {ideal:,.0f} ({ideal / measured:.1%} of the array)")
    if not STALLS[name]:
        assert abs(estimate - measured) <= 0.05 * measured
    if name == "8x8-axi64" and model == "resnet8":  # a corrupted expected logit fails the bench
        head = compiled.image.region("head")
        want = bytearray(compiled.expected)
        want[head.offset] ^= 0x01
        with pytest.raises(toolchain.ToolError, match="mismatch"):
            _run(tmp_path / "corrupted", "resnet8", hw, STALLS[name], bytes(want))


@pytest.mark.cosim
@pytest.mark.full_model
@pytest.mark.parametrize("name", ["8x8-axi64", "16x16-axi128"])
def test_hybrid_rtl_equals_golden(tmp_path, name):
    _run(tmp_path, "hybrid", ATTENTION_CORES[name], 0.3 if name == "8x8-axi64" else 0.0)
