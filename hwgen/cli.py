# SPDX-License-Identifier: Apache-2.0
"""The ``hwgen`` command line: one sub-command per job, each a small function of parsed arguments.

Errors the user can fix (bad formats, bad files) print one line ``hwgen: error: …`` and exit 2;
only the CLI prints — the library logs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from hwgen import __version__

log = logging.getLogger("hwgen")


class UserError(Exception):
    """A problem with the user's input; reported as one line, without a traceback."""


def _cmd_formats(args: argparse.Namespace) -> int:
    from hwgen import qfx

    print("Fixed-point formats follow Xilinx ap_fixed<W,I,Q,O> / ap_ufixed exactly.")
    print("  notation : fixed<W,I[,Q[,O]]>  ufixed<W,I[,Q[,O]]>  ap_fixed<…>  int<N>  uint<N>")
    print("  value    : raw * 2^(I-W)  (W = total bits, I = integer bits incl. sign; I may be < 0 or > W)")
    print(f"  rounding : {', '.join(qfx.ROUNDING_MODES)}")
    print(f"  overflow : {', '.join(qfx.OVERFLOW_MODES)}")
    for text in args.show or ["fixed<8,3,RND,SAT>", "ufixed<8,0>", "fixed<16,6,RND_CONV,SAT>"]:
        fmt = _parse_fmt(text)
        lo, hi = fmt.to_float(fmt.min_raw), fmt.to_float(fmt.max_raw)
        print(f"  {str(fmt):<28} range [{lo:.10g}, {hi:.10g}]  step {fmt.lsb:.10g}")
    return 0


def _parse_fmt(text: str):
    from hwgen import qfx

    try:
        return qfx.QFmt.parse(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _cmd_quantize(args: argparse.Namespace) -> int:
    import numpy as np

    fmt = _parse_fmt(args.to)
    src = _parse_fmt(args.source) if args.source else None
    for value in args.values:
        try:
            x = float(value)
        except ValueError:
            raise UserError(f"value must be a number, not {value!r}") from None
        try:
            if src is None:
                raw = int(fmt.quantize(np.array([x]))[0])
                origin = f"{x!r}"
            else:
                src_raw = src.quantize(np.array([x]))
                raw = int(fmt.cast(src_raw, src)[0])
                origin = f"{x!r} as {src} = {float(src.to_float(src_raw)[0])!r}"
        except ValueError as exc:
            raise UserError(str(exc)) from None
        print(f"{origin} -> {fmt}: raw {raw} = {float(fmt.to_float(np.array([raw]))[0])!r}")
    return 0


def _cmd_boards(args: argparse.Namespace) -> int:
    from hwgen.board import list_boards

    try:
        boards = list_boards()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    rows = [("board", "part", "PS", "PL clock", "DSP", "LUT", "BRAM36", "URAM", "lanes")]
    for b in boards:
        rows.append((
            b.name, b.part, b.ps, f"{b.pl_clock.source} {b.pl_clock.default_mhz:g} MHz",
            str(b.budget["DSP"]), str(b.budget["LUT"]), str(b.budget["BRAM36"]), str(b.budget["URAM"]),
            f"{b.accelerator['lanes_in']}x{b.accelerator['lanes_out']}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = [all(row[i].isdigit() for row in rows[1:]) for i in range(len(rows[0]))]
    for row in rows:
        cells = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric))
        print("  ".join(cells).rstrip())
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from hwgen import zoo

    rows = [("model", "input", "MACs", "description")]
    for source in args.models or zoo.names():
        try:
            model = zoo.load_model(source)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        graph = model.graph
        shapes = ", ".join(f"{n} " + "x".join(map(str, graph.tensor(n).shape)) for n in graph.inputs)
        rows.append((graph.name, shapes, f"{zoo.macs(model):,}", graph.description))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwgen",
        description="Turn quantized vision models into bit-exact FPGA accelerators (Amaranth RTL + Vitis HLS).",
    )
    parser.add_argument("--version", action="version", version=f"hwgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of every step")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("formats", help="explain the fixed-point notation and show example formats")
    p.add_argument("show", nargs="*", metavar="FMT", help="formats to describe, e.g. 'fixed<16,6,RND,SAT>'")
    p.set_defaults(func=_cmd_formats)

    p = sub.add_parser(
        "quantize",
        help="quantize numbers into a format exactly as ap_fixed assignment would",
        description="Quantize each VALUE into --to, or first into --from and then cast into --to.",
    )
    p.add_argument("values", nargs="+", metavar="VALUE", help="decimal numbers")
    p.add_argument("--to", required=True, metavar="FMT", help="destination format, e.g. 'fixed<8,3,RND,SAT>'")
    p.add_argument("--from", dest="source", metavar="FMT", help="quantize into this format first, then cast")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("models", help="list the built-in models with their input shapes and MAC counts")
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo names or YAML spec paths to describe (default: the zoo)")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("boards", help="list the boards hwgen builds for, with their parts, clocks and budgets")
    p.set_defaults(func=_cmd_boards)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except UserError as exc:
        print(f"hwgen: error: {exc}", file=sys.stderr)
        return 2
