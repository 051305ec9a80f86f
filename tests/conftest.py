# SPDX-License-Identifier: Apache-2.0
"""Scheduling for ``pytest -n 2 --dist loadgroup``: whole-core builds first, one board per worker.

A board's first build runs Yosys on its whole core for minutes (cached by content afterwards).
Collected in file order, those builds started late and left one worker synthesizing while the
other sat idle; and two tests of one board on two workers made one wait on the cache lock. So
the tests that build a board are grouped by board (``xdist_group``: one worker runs a group) and
collected first, largest core first; everything else fills in around them.
"""

from __future__ import annotations

import pytest

#: Boards by the size of their default core (Yosys time), largest first.
_BOARD_ORDER = ("zcu102", "kv260", "ultra96", "pynq-z2")


def _board(item) -> str | None:
    """The board whose build this test needs, if it is one of the long builds."""
    if item.path.name == "test_cli_build.py":
        return "ultra96"  # its module fixture builds the default board
    callspec = getattr(item, "callspec", None)
    if item.path.name == "test_build.py" and callspec is not None and "built" in callspec.params:
        return callspec.params["built"]
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        board = _board(item)
        if board is not None:
            item.add_marker(pytest.mark.xdist_group(f"board-{board}"))

    def rank(item) -> int:
        board = _board(item)
        return _BOARD_ORDER.index(board) if board in _BOARD_ORDER else len(_BOARD_ORDER)

    items.sort(key=rank)  # stable: file order within each rank
