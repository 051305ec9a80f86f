# SPDX-License-Identifier: Apache-2.0
"""The two tiers of the suite, and the order that keeps both workers busy.

``make test`` (what CI runs) and ``make test-full`` (``--full``): whole-model tests take a
``full_board`` argument; CI runs them on one board (the default one, ultra96, whose core every other
test already builds, so they reuse its cached Yosys and Verilator results); ``--full`` runs them on
every shipped board. Tests that take a ``full_sample`` argument run one sample of their cases in
CI and every sample with ``--full`` (the QFX-against-``ap_fixed`` sweep: 2 of its 8 translation
units, which still hold every rounding × overflow pair, in CI).

Order: ``make test`` runs ``pytest -n 2 --dist worksteal``, which hands each worker one half of the
collected tests and lets an idle worker take the tail of the other's queue. On a cold cache the
tests that build a board's core (Yosys, Verilator) take most of the time, so they go first in each
half, split between the two by their cold cost (measured: ``--durations`` of a cold run), and the
light tests fill the rest.
"""

from __future__ import annotations

from hwgen.board import board_names

#: The board whole-model tests run on in CI.
CI_BOARD = "ultra96"


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="make test-full: run the whole-model tests on every shipped board, not only ultra96")


#: Tests that build a core on a cold cache, in two groups of about equal cold cost (seconds from a cold
#: run's ``--durations``: each board's Yosys estimate 150-600, its Verilator build 70-520, a unit
#: bench's Verilator build 90-170). The first half of the collection starts with FIRST, the second
#: with SECOND; an entry matches a node id by ``all`` of its substrings.
FIRST = (("test_build.py::", "ultra96"), ("test_build.py::", "kv260"), ("test_rtl_equals_isa_sim[ultra96]",),
         ("test_rtl_equals_isa_sim[kv260]",), ("test_softmax.py::test_softmax_rtl",), ("test_gelu.py::test_gelu_rtl",),
         ("test_attention_rtl.py::", "8x8"), ("test_attention_rtl.py::", "32x32"), ("test_vit_rtl.py::test_deit",))
SECOND = (("test_build.py::", "pynq-z2"), ("test_build.py::", "zcu102"), ("test_rtl_equals_isa_sim[pynq-z2]",),
          ("test_rtl_equals_isa_sim[zcu102]",), ("test_layernorm.py::test_layernorm_rtl",),
          ("test_attention_rtl.py::", "16x16"), ("test_attention_rtl.py::", "16x8"),
          ("test_conv_rtl_equals_isa_sim[8x8",),  # the plain 8x8 core (test_fast_memory's too)
          ("test_trim_units.py::test_resnet8",))  # the trimmed, widened pynq-z2 core: Yosys and Verilator


def _matches(nodeid: str, entries) -> bool:
    return any(all(part in nodeid for part in entry) for entry in entries)


def pytest_collection_modifyitems(config, items):
    if not config.getoption("full"):  # the full tier is not collected into CI's run at all
        tier = [item for item in items if item.get_closest_marker("full_tier")]
        if tier:
            config.hook.pytest_deselected(items=tier)
            items[:] = [item for item in items if not item.get_closest_marker("full_tier")]
    first = [item for item in items if _matches(item.nodeid, FIRST)]
    second = [item for item in items if not _matches(item.nodeid, FIRST) and _matches(item.nodeid, SECOND)]
    heavy = {id(item) for item in first + second}
    rest = [item for item in items if id(item) not in heavy]
    middle = max(0, len(items) // 2 - len(first))
    items[:] = first + rest[:middle] + second + rest[middle:]


def pytest_generate_tests(metafunc):
    full = metafunc.config.getoption("full")
    if "full_board" in metafunc.fixturenames:
        metafunc.parametrize("full_board", board_names() if full else [CI_BOARD])
    if "full_sample" in metafunc.fixturenames:
        samples = getattr(metafunc.module, "SAMPLES")
        metafunc.parametrize("full_sample", samples if full else getattr(metafunc.module, "CI_SAMPLES"))
