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

    rows = [("model", "input", "MACs", "ops", "description")]
    for source in args.models or zoo.names():
        try:
            model = zoo.load_model(source, round_scales=args.round_scales)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        graph = model.graph
        shapes = ", ".join(f"{n} " + "x".join(map(str, graph.tensor(n).shape)) for n in graph.inputs)
        rows.append((graph.name, shapes, f"{zoo.macs(model):,}", str(len(graph.nodes)), graph.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}  {row[4]}".rstrip())
    return 0


class _Progress:
    """The current step beside a rich spinner on stderr (transient: an error stays the only line); silent when quiet."""

    def __init__(self, quiet: bool):
        self.status = None
        if not quiet:
            from rich.console import Console

            self.console = Console(stderr=True)
            self.status = self.console.status("starting")

    def __enter__(self):
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.stop()

    def __call__(self, label: str) -> None:
        if self.status is not None:
            self.status.update(label)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _cmd_build(args: argparse.Namespace) -> int:
    import json

    from hwgen.build import build_project
    from hwgen.toolchain import ToolError

    try:
        with _Progress(args.quiet or args.json) as progress:
            result = build_project(args.model, args.board, args.out, flow=args.flow, lanes=args.lanes,
                                   clock_mhz=args.clock_mhz, force=args.force, sim=args.sim, progress=progress,
                                   round_scales=args.round_scales, calibration=args.calibration,
                                   trim_units=args.trim_units)
    except ValueError as exc:
        raise UserError(_one_line(exc)) from None
    except ToolError as exc:
        print(f"hwgen: error: {exc}", file=sys.stderr)
        return 1
    report = result.report
    if args.json:
        print(json.dumps({"out": str(result.out), "report": report}, indent=1))
        return 0
    perf, res = report["performance"], report["resources"]
    best = perf["measured"] or perf["analytical"]
    source = "measured in Verilator" if perf["measured"] else "analytical"
    print(f"built {report['model']['name']} for {report['board']['name']} in {result.out}")
    print(f"  {best['cycles']:,} cycles ({source}) = {best['latency_us']:,.1f} us, {best['fps']:,.1f} FPS "
          f"at {perf['clock_mhz']:g} MHz")
    if res["used"] is None:
        print(f"  resources: {res['estimator']}")
    else:
        print("  " + ", ".join(
            f"{k} {res['used'][k]:,}/{res['budget'][k]:,}"
            + (f" ({res['percent'][k]:.0f} %)" if res["percent"][k] is not None else "")
            for k in res["budget"]))
    if res["over_budget"]:
        print(f"  OVER BUDGET (written because of --force): {', '.join(res['over_budget'])}")
    print(f"  report: {result.out / 'report.md'}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hwgen.frontend.onnx import load_onnx, spec_files

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise UserError(f"out folder {out} must be empty or new (or use --force), not holding files")
    try:
        model = load_onnx(args.model, round_scales=args.round_scales)
        files = spec_files(model, Path(args.model).name)
    except ValueError as exc:
        raise UserError(_one_line(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    graph = model.graph
    print(f"imported {Path(args.model).name}: {len(graph.nodes)} layers "
          f"({', '.join(sorted(set(n.op for n in graph.nodes)))}), {len(model.formats)} exact QONNX formats")
    for note in model.notes:
        print(f"  note: {note}")
    print(f"  wrote {', '.join(str(out / name) for name in files)}")
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    import json

    from hwgen.sim import load_folder, simulate
    from hwgen.toolchain import ToolError

    try:
        built = load_folder(args.folder, args.task)
        with _Progress(args.quiet or args.json) as progress:
            progress(f"running the Program on the {args.backend} backend")
            result = simulate(built, args.backend)
    except ValueError as exc:
        raise UserError(_one_line(exc)) from None
    except ToolError as exc:
        print(f"hwgen: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        golden = "golden.npz" if not args.task else f"golden_task{args.task}.npz"
        verdict = f"equal to {golden}" if result.equal else f"NOT equal to {golden}"
        print(f"{args.backend}: {verdict}; {result.cycles:,} cycles, {result.cycles_source}"
              + (f" (analytical {result.analytical_cycles:,})" if args.backend == "rtl" else ""))
        for problem in result.mismatches:
            print(f"  {problem}")
    return 0 if result.equal else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    name = "report.json" if args.json else "report.md"
    path = Path(args.folder) / name
    if not (Path(args.folder) / "hwgen.yaml").is_file() or not path.is_file():
        raise UserError(f"folder must be one hwgen build wrote (with hwgen.yaml and {name}), not {args.folder!r}")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


_ROUND_SCALES_HELP = ("round QONNX Quant scales that are not powers of two to the nearest power of two (the report "
                      "lists each with the error it adds) instead of refusing the model")


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

    p = sub.add_parser("models", help="list the built-in models (or given specs / ONNX files) with input shapes, MACs and op count")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="zoo names, YAML spec paths or .onnx files to describe (default: the zoo)")
    p.add_argument("--round-scales", action="store_true", help=_ROUND_SCALES_HELP)
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "import",
        help="import an ONNX/QONNX file into an editable YAML spec and .npz of weights",
        description="Read MODEL.onnx (float ONNX from torch/timm, or QONNX from Brevitas), fuse its patterns into "
                    "hwgen's ops and write DIR/model.yaml and DIR/model.npz: the same model as a spec you can read "
                    "and edit, which 'hwgen build --model DIR/model.yaml' accepts. Exact QONNX formats are written "
                    "under 'formats:'. docs/frontends.md lists what is supported.",
    )
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX or QONNX file (external data next to it)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="folder to write; must be empty or new unless --force")
    p.add_argument("--round-scales", action="store_true", help=_ROUND_SCALES_HELP)
    p.add_argument("--force", action="store_true", help="write into a folder that holds files")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("boards", help="list the boards hwgen builds for, with their parts, clocks and budgets")
    p.set_defaults(func=_cmd_boards)

    from hwgen.build import DEFAULT_MODEL, FLOWS
    from hwgen.sim import BACKENDS

    p = sub.add_parser(
        "build",
        help="turn a model into a folder for Vivado/Vitis, with driver, golden data and a report",
        description="Compile MODEL for BOARD's accelerator and write the RTL, the HLS sources, the Vivado and "
                    "Vitis HLS projects, the host driver, the Program, memory image and golden outputs, and a "
                    "report (cycles, resources against the budget, accuracy). docs/build.md describes the folder.",
    )
    p.add_argument("--board", required=True, help="a board name (see 'hwgen boards') or a board .yaml")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a zoo name (see 'hwgen models'), a spec .yaml or an ONNX/QONNX .onnx file (docs/frontends.md); "
                        f"default: {DEFAULT_MODEL}")
    p.add_argument("--calibration", metavar="INPUTS.npy",
                   help="float inputs of shape (N, *input shape) to choose the activation formats from "
                        "(default: seeded random inputs); the report says which was used")
    p.add_argument("--round-scales", action="store_true", help=_ROUND_SCALES_HELP)
    p.add_argument("--out", metavar="DIR", help="folder to write (default: build/BOARD); must be empty unless --force")
    p.add_argument("--flow", choices=FLOWS, default="both", help="emit the RTL, the HLS design or both (default: both)")
    p.add_argument("--lanes", metavar="INxOUT", help="MAC array lanes, e.g. 16x16 (default: the board's)")
    p.add_argument("--clock-mhz", type=float, metavar="F", help="PL clock in MHz (default: the board's)")
    p.add_argument("--trim-units", action="store_true",
                   help="leave the LayerNorm and softmax units out of the core when the model has no LayerNorm, "
                        "Softmax or Attention (a CNN), and spend the freed DSPs on wider lanes when that is faster and the "
                        "Yosys estimate fits the board (unless --lanes is given; docs/build.md)")
    p.add_argument("--sim", action="store_true", help="also run the RTL in Verilator and report measured cycles")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out, and write a design over budget")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the result as JSON (implies --quiet)")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("sim", help="run a built folder's Program on a backend and compare with golden.npz",
                       description="Exit status 0 only when every tensor equals golden.npz bit for bit, 1 when not.")
    p.add_argument("folder", metavar="DIR", help="a folder 'hwgen build' wrote")
    p.add_argument("--backend", choices=BACKENDS, default="isa",
                   help="isa_sim (NumPy), rtl (Verilator) or hls (g++ C simulation); default isa")
    p.add_argument("--task", type=int, default=0, metavar="N",
                   help="the TASK register: which gate a multi-task MoE model runs, compared with "
                        "golden_task<N>.npz (default 0, golden.npz)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the result as JSON (implies --quiet)")
    p.set_defaults(func=_cmd_sim)

    p = sub.add_parser("report", help="print the report of a built folder")
    p.add_argument("folder", metavar="DIR", help="a folder 'hwgen build' wrote")
    p.add_argument("--json", action="store_true", help="print report.json instead of report.md")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    before = list(logging.getLogger().handlers)
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    # Tools' loggers that set their own level (cocotb's runner logs every command at INFO) pass
    # through our handler only at the level asked for.
    for handler in logging.getLogger().handlers:
        if handler not in before:
            handler.setLevel(level)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"hwgen: error: {exc}", file=sys.stderr)
        return 2
