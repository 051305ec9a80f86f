# SPDX-License-Identifier: Apache-2.0
"""The two tiers of the suite: ``make test`` (what CI runs) and ``make test-full`` (``--full``).

Whole-model tests take a ``full_board`` argument: CI runs them on one board (the default one,
ultra96, whose core every other test already builds, so they reuse its cached Yosys and
Verilator results); ``--full`` runs them on every shipped board.
"""

from __future__ import annotations

from hwgen.board import board_names

#: The board whole-model tests run on in CI.
CI_BOARD = "ultra96"


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="make test-full: run the whole-model tests on every shipped board, not only ultra96")


def pytest_generate_tests(metafunc):
    if "full_board" in metafunc.fixturenames:
        boards = board_names() if metafunc.config.getoption("full") else [CI_BOARD]
        metafunc.parametrize("full_board", boards)
