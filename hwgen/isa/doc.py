# SPDX-License-Identifier: Apache-2.0
"""The tables of ``docs/isa.md`` (opcodes, fields, flags, status codes), generated from :mod:`hwgen.isa.spec`.

The document marks each generated table with ``<!-- isa:NAME -->`` … ``<!-- /isa:NAME -->``;
:func:`render_document` replaces every marked table by the generator's text, and a test keeps the
committed document equal to it. ``python -m hwgen.isa.doc docs/isa.md`` rewrites the file in place.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from hwgen.isa.spec import (
    BLOCKS, FLAG_MEANINGS, MOE_FLAG_MEANINGS, OPCODE_MEANINGS, RESERVED_OPCODES, STATUS_MEANINGS, Field, Flag, MoeFlag,
    Opcode, Status,
)
from hwgen.qfx import OVERFLOW_MODES, ROUNDING_MODES

__all__ = ["TABLES", "render_document"]


def _bits(f: Field) -> str:
    if f.bits > 32:
        return f"{f.word}–{f.word + f.bits // 32 - 1}"
    return str(f.word)


def _range(f: Field) -> str:
    return "" if f.bits > 32 else f"{f.lo + f.bits - 1}:{f.lo}" if f.bits > 1 else str(f.lo)


def _field_table(fields: tuple[Field, ...], word_column: bool = True) -> str:
    if word_column:
        rows = ["| word | bits | field | meaning |", "|---|---|---|---|"]
        rows += [f"| {_bits(f)} | {_range(f)} | {'reserved' if f.reserved else f'`{f.name}`'} | {f.meaning} |"
                 for f in fields]
    else:
        rows = ["| bits | field | meaning |", "|---|---|---|"]
        rows += [f"| {_range(f)} | {'reserved' if f.reserved else f'`{f.name}`'} | {f.meaning} |" for f in fields]
    return "\n".join(rows)


def _opcodes() -> str:
    rows = ["| code | name | meaning |", "|---|---|---|", "| 0 | — | invalid: `BAD_OPCODE` |"]
    codes = {int(op): (op.name, OPCODE_MEANINGS[op]) for op in Opcode}
    codes.update({code: (name, "reserved for a later operator: `BAD_OPCODE` today") for code, name in RESERVED_OPCODES.items()})
    rows += [f"| {code} | `{name}` | {meaning} |" for code, (name, meaning) in sorted(codes.items())]
    rows.append(f"| {max(codes) + 1}–255 | — | invalid: `BAD_OPCODE` |")
    return "\n".join(rows)


def _flags(flags=Flag, meanings=FLAG_MEANINGS) -> str:
    rows = ["| bit | name | meaning |", "|---|---|---|"]
    rows += [f"| {int(f).bit_length() - 1} | `{f.name}` | {meanings[f]} |" for f in flags]
    rows.append(f"| {len(flags)}–23 | reserved | `0` (`BAD_DESCRIPTOR` otherwise) |")
    return "\n".join(rows)


def _status() -> str:
    rows = ["| code | name | meaning |", "|---|---|---|"]
    rows += [f"| {int(s)} | `{s.name}` | {STATUS_MEANINGS[s]} |" for s in Status]
    return "\n".join(rows)


def _modes() -> str:
    return ("Rounding codes: " + ", ".join(f"`{i} {m}`" for i, m in enumerate(ROUNDING_MODES)) + ".\n"
            "Overflow codes: " + ", ".join(f"`{i} {m}`" for i, m in enumerate(OVERFLOW_MODES)) + ".")


#: Every generated table of docs/isa.md, by marker name.
TABLES = {
    **{name: (lambda block=block: _field_table(block.fields, word_column=block.bits > 32)) for name, block in BLOCKS.items()},
    "opcodes": _opcodes,
    "flags": _flags,
    "moe_flags": lambda: _flags(MoeFlag, MOE_FLAG_MEANINGS),
    "modes": _modes,
    "status": _status,
}

_MARKED = re.compile(r"(<!-- isa:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(\n<!-- /isa:(?P=name) -->)", re.S)


def render_document(text: str) -> str:
    """``text`` with every marked table replaced by its generated form; an unknown or missing marker is an error."""
    seen = set()

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"ISA table marker must be one of {', '.join(TABLES)}, not {name!r}")
        seen.add(name)
        return match.group(1) + TABLES[name]() + match.group(4)

    result = _MARKED.sub(replace, text)
    missing = set(TABLES) - seen
    if missing:
        raise ValueError(f"docs/isa.md must mark every generated table, not miss {', '.join(sorted(missing))}")
    return result


def main(argv: list[str]) -> int:
    """``python -m hwgen.isa.doc PATH``: rewrite the generated tables of PATH in place."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m hwgen.isa.doc docs/isa.md\n")
        return 2
    path = Path(argv[0])
    path.write_text(render_document(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
