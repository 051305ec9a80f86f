# SPDX-License-Identifier: Apache-2.0
"""Board descriptions as YAML data (installed as ``hwgen.boards``)."""

from pathlib import Path

#: Folder holding ``<board>.yaml`` files.
BOARD_DIR = Path(__file__).resolve().parent
