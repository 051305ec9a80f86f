# SPDX-License-Identifier: Apache-2.0
"""isa_sim refuses exactly what docs/isa.md §3.7 says, with its status, at every shipped geometry.

The table (``tests/refusals.py``) is the one the RTL and HLS tests run too. Each refused case must
stop with the documented status after the documented number of descriptors, leaving the image as
those descriptors alone leave it; each accepted case must run to the end.
"""

import dataclasses
import struct

import pytest

from hwgen.board import board_names, load_board
from hwgen.compiler import Refused, isa_sim
from hwgen.hwparams import HwParams
from hwgen.isa import DESCRIPTOR_BYTES, HEADER_BYTES, Status, check_descriptor

from refusals import FC2, attention_refusal_cases, moe_refusal_cases, refusal_cases, rowless_case

#: Every shipped board's geometry, and the 8x8 / AXI 64 bench configuration.
GEOMETRIES = {name: load_board(name).hw_params() for name in board_names()}
GEOMETRIES["8x8-axi64"] = HwParams(lanes_in=8, lanes_out=8, axi_data_width=64)
#: The same geometries with the attention engine (and the 48-bit accumulators attention needs).
ATTENTION_GEOMETRIES = {name: dataclasses.replace(hw, acc_bits=48, has_attention=True) for name, hw in GEOMETRIES.items()}
#: The same geometries with the MoE engine.
MOE_GEOMETRIES = {name: dataclasses.replace(hw, has_moe=True) for name, hw in GEOMETRIES.items()}
#: The statuses only the MoE engine reports (at run time): its own table covers them.
MOE_STATUSES = {Status.BAD_TASK, Status.BAD_COUNT}


def _truncated(case):
    """The case's Program cut to the descriptors it completes: what the image must look like after."""
    program = bytearray(case.image[: HEADER_BYTES + DESCRIPTOR_BYTES * case.executed])
    struct.pack_into("<I", program, 12, case.executed)
    return bytes(program)


@pytest.mark.parametrize("hw", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_isa_sim_refuses_each_case_with_its_status(hw):
    cases = refusal_cases(hw) + [rowless_case()]
    statuses = {case.status for case in cases}
    assert statuses >= set(Status) - {Status.READ_ERROR, Status.WRITE_ERROR} - MOE_STATUSES, "every status is covered"
    _run_on_isa_sim(cases)


@pytest.mark.parametrize("hw", ATTENTION_GEOMETRIES.values(), ids=ATTENTION_GEOMETRIES.keys())
def test_isa_sim_refuses_each_attention_case_with_its_status(hw):
    cases = attention_refusal_cases(hw)
    assert {case.status for case in cases} == {Status.OK, Status.BAD_OPCODE, Status.BAD_DESCRIPTOR, Status.DOES_NOT_FIT,
                                               Status.MISALIGNED, Status.OUT_OF_BOUNDS}
    _run_on_isa_sim(cases)


@pytest.mark.parametrize("hw", MOE_GEOMETRIES.values(), ids=MOE_GEOMETRIES.keys())
def test_isa_sim_refuses_each_moe_case_with_its_status(hw):
    cases = moe_refusal_cases(hw)
    assert {case.status for case in cases} == {Status.OK, Status.BAD_OPCODE, Status.BAD_DESCRIPTOR, Status.DOES_NOT_FIT,
                                               Status.MISALIGNED, Status.OUT_OF_BOUNDS} | MOE_STATUSES
    _run_on_isa_sim(cases)


def _run_on_isa_sim(cases):
    for case in cases:
        where = case.program_offset
        if case.status == Status.OK:
            result = isa_sim(case.image[where:], case.image, case.hw, program_offset=where, task=case.task)
            assert len(result.cycles) == case.executed, case.name
            continue
        with pytest.raises(Refused) as caught:
            isa_sim(case.image[where:], case.image, case.hw, program_offset=where, task=case.task)
        assert (caught.value.status, caught.value.executed) == (case.status, case.executed), case.name
        before = isa_sim(_truncated(case), case.image, case.hw, task=case.task).data if case.executed else case.image
        assert caught.value.data == before, case.name


def test_the_rule_names_the_problem():
    hw = GEOMETRIES["ultra96"]
    case = next(c for c in refusal_cases(hw) if c.name == "LINEAR: chunk_tiles > n_tiles")
    block = case.image[HEADER_BYTES + FC2 * DESCRIPTOR_BYTES :][:DESCRIPTOR_BYTES]
    refusal = check_descriptor(block, hw, len(case.image))
    assert refusal.status == Status.BAD_DESCRIPTOR
    assert str(refusal).startswith("BAD_DESCRIPTOR: chunk_tiles must be in 1..")
