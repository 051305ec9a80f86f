# SPDX-License-Identifier: Apache-2.0
"""``hwgen build --trim-units``: a core without the LayerNorm and softmax units for a model that never uses them.

Fast tier: the field enters the fingerprint only when cleared (the shipped cores keep theirs); ``core_for``
trims a CNN's core and no other; the RTL controller and the HLS config leave the row engine out; the
compiler, the validity rule (isa_sim) and ``hwgen build`` refuse LayerNorm on such a core in one line.
An HLS-only build trims but keeps the board's lanes (no resource estimate). Cosim tier: ``hwgen build
--trim-units`` of resnet8 on pynq-z2 spends the units' DSPs on 192 MACs (8×24, Yosys-checked), its report sets
that core beside the board's default one, and the core equals the golden model in g++ and in Verilator
with random stalls.
"""

from __future__ import annotations

import dataclasses

import pytest

from hwgen import zoo
from hwgen.board import load_board
from hwgen.build import build_project, compile_for
from hwgen.compiler import isa_sim
from hwgen.cosim import tb_accelerator as tb
from hwgen.hwparams import HwParams
from hwgen.isa import DESCRIPTOR_BYTES, HEADER_BYTES, Status, check_descriptor
from hwgen.rtl.controller import Controller
from hwgen.rtl.row_engine import RowEngine
from hwgen.sim import simulate
from hwgen.units import core_for, row_units_problem

PYNQ = load_board("pynq-z2").hw_params()
TRIMMED = dataclasses.replace(PYNQ, has_row_units=False)


def test_the_field_enters_the_fingerprint_only_when_cleared():
    assert "has_row_units" not in HwParams().canonical() and "has_row_units" not in PYNQ.canonical()
    assert TRIMMED.canonical().endswith(";has_row_units=0") and TRIMMED.fingerprint() != PYNQ.fingerprint()
    assert HwParams.from_dict(TRIMMED.to_dict()) == TRIMMED
    with pytest.raises(ValueError, match="^has_row_units must be true or false, not 0$"):
        HwParams(has_row_units=0)


def test_core_for_trims_only_models_without_row_unit_ops():
    cnn, vit, mlp = (zoo.load_model(name).graph for name in ("resnet8", "vit-tiny", "vit-mlp-block"))
    assert core_for(cnn, PYNQ, trim_units=True) == TRIMMED
    assert core_for(cnn, PYNQ) == PYNQ  # only on request
    assert core_for(mlp, PYNQ, trim_units=True) == PYNQ  # LayerNorm
    assert core_for(vit, PYNQ, trim_units=True).has_row_units  # LayerNorm, Attention


def test_the_executors_leave_the_row_units_out():
    assert row_units_problem(TRIMMED) == "this hardware has no LayerNorm and softmax unit (HwParams.has_row_units is false)"
    assert RowEngine in Controller(PYNQ).engine_classes
    controller = Controller(TRIMMED)
    controller._MustUse__silence = True
    assert RowEngine not in controller.engine_classes and not controller.has_rows


def test_layernorm_is_refused_on_a_trimmed_core():
    with pytest.raises(ValueError, match="has_row_units is false"):
        compile_for("vit-mlp-block", TRIMMED)
    # The descriptor itself: the Program compiled for the full core, checked for the trimmed one (isa_sim's rule).
    compiled = compile_for("vit-mlp-block", PYNQ)
    data = compiled.image.data
    layernorm = next(i for i, d in enumerate(compiled.program.descriptors) if d.name == "LAYERNORM")
    offset = HEADER_BYTES + DESCRIPTOR_BYTES * layernorm
    refusal = check_descriptor(data[offset:offset + DESCRIPTOR_BYTES], TRIMMED, len(data))
    assert refusal is not None and refusal.status == Status.BAD_OPCODE

def test_an_hls_only_build_trims_but_keeps_the_lanes(tmp_path):
    result = build_project("resnet8", "pynq-z2", tmp_path / "out", flow="hls", trim_units=True)
    accel, trim = result.report["accelerator"], result.report["trim"]
    assert accel["has_row_units"] is False and (accel["lanes_in"], accel["lanes_out"]) == (16, 8)
    assert trim["widened"] is False and trim["why_not_widened"].startswith("an HLS-only build has no resource estimate")
    assert trim["default"]["resources"] is None and trim["default"]["lanes"] == trim["trimmed"]["lanes"] == "16x8"
    assert "## Trimmed units (`--trim-units`)" in (result.out / "report.md").read_text()


@pytest.mark.cosim
@pytest.mark.full_model
def test_resnet8_on_the_trimmed_widened_pynq_core_equals_golden(tmp_path):
    """pynq-z2's units cost about 75 DSPs: the trimmed core spends them on 192 MACs instead of 128 (Yosys-checked
    under the board's 220), runs resnet8 in fewer cycles, and equals the golden model in g++ and in Verilator
    with stalls."""
    result = build_project("resnet8", "pynq-z2", tmp_path / "out", flow="both", trim_units=True)
    report = result.report
    accel, trim, used = report["accelerator"], report["trim"], report["resources"]["used"]
    lanes = (accel["lanes_in"], accel["lanes_out"])
    assert accel["has_row_units"] is False and trim["widened"] is True
    assert lanes[0] * lanes[1] == 192 and trim["trimmed"]["lanes"] == f"{lanes[0]}x{lanes[1]}"
    assert trim["default"]["has_row_units"] is True and trim["default"]["lanes"] == "16x8"
    assert trim["trimmed"]["resources"] == {k: used[k] for k in trim["trimmed"]["resources"]}
    assert used["DSP"] <= 220 < trim["default"]["resources"]["DSP"] + 192 - 128  # the units' DSPs paid for it
    assert trim["trimmed"]["cycles"] == report["performance"]["analytical"]["cycles"] < trim["default"]["cycles"]
    assert simulate(result.out, "hls").equal  # the HLS core without the units, in g++
    core = HwParams.from_dict({k: accel[k] for k in HwParams().to_dict()})
    compiled = compile_for("resnet8", core)
    done = len(compiled.program.descriptors)
    runs = [tb.Run(compiled.image.data, compiled.expected, compiled.image.regions, label="resnet8", expect_done=done)]
    (run,) = tb.run_bench(tmp_path / "rtl", core, runs, stall_prob=0.3)
    assert run["status"] == 0 and run["descriptors_done"] == done
    assert isa_sim(compiled.program, compiled.image, core).data == compiled.expected
