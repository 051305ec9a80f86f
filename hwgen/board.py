# SPDX-License-Identifier: Apache-2.0
"""Boards as validated data: ``boards/<name>.yaml`` → a frozen :class:`Board`.

A board file names the FPGA part and Vivado board part, the processing system (Zynq-7000
``processing_system7`` or Zynq UltraScale+ ``zynq_ultra_ps_e``), the PL clock the PS provides,
the HP port width, the resource budget, the PS settings hwgen applies on top of the board preset,
and the accelerator parameters that fit the board by default. ``docs/boards.md`` describes every
field. Every problem is one line: ``board ultra96: hp_width must be 32, 64 or 128, not 96``.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hwgen.boards import BOARD_DIR

__all__ = [
    "Board",
    "PlClock",
    "PS_TYPES",
    "BUDGET_KEYS",
    "ACCELERATOR_KEYS",
    "load_board",
    "list_boards",
    "board_names",
]

#: Processing-system IP of each PS type, with what the block-design templates rely on.
PS_TYPES = ("processing_system7", "zynq_ultra_ps_e")
#: Resources a budget counts (the keys of :func:`hwgen.toolchain.yosys_resources` a board can bound).
BUDGET_KEYS = ("DSP", "LUT", "FF", "BRAM36", "URAM")
#: Accelerator parameters a board may choose (the rest of HwParams describes the model, not the board).
ACCELERATOR_KEYS = ("lanes_in", "lanes_out", "act_buffer_bytes", "weight_buffer_bytes", "axi_data_width")

_FIELDS = (
    "name", "description", "part", "board_part", "board_files_url", "ps", "family", "pl_clock",
    "hp_width", "budget", "ps_settings", "accelerator",
)
_OPTIONAL = {"board_part", "board_files_url"}

# What each PS type fixes: the synthesis family, the PL clock pins, the HP widths its slave ports
# take, the prefix of its CONFIG parameters, and the settings the block-design template's wiring
# needs (M_AXI control master, HP0 slave, the clock and reset pins of clock index {n}).
_PS_RULES: dict[str, dict[str, Any]] = {
    "zynq_ultra_ps_e": {
        "family": "xcup",
        "clock": re.compile(r"pl_clk([0-3])"),
        "clock_example": "pl_clk0",
        "hp_widths": (32, 64, 128),
        "prefix": "PSU",
        "required": {"PSU__USE__M_AXI_GP0": "1", "PSU__USE__S_AXI_GP2": "1", "PSU__FPGA_PL{n}_ENABLE": "1"},
        "derived": ("PSU__CRL_APB__PL{n}_REF_CTRL__FREQMHZ", "PSU__SAXIGP2__DATA_WIDTH"),
    },
    "processing_system7": {
        "family": "xc7",
        "clock": re.compile(r"FCLK_CLK([0-3])"),
        "clock_example": "FCLK_CLK0",
        "hp_widths": (32, 64),
        "prefix": "PCW",
        "required": {
            "PCW_USE_M_AXI_GP0": "1", "PCW_USE_S_AXI_HP0": "1",
            "PCW_EN_CLK{n}_PORT": "1", "PCW_EN_RST{n}_PORT": "1",
        },
        "derived": ("PCW_FPGA{n}_PERIPHERAL_FREQMHZ", "PCW_S_AXI_HP0_DATA_WIDTH"),
    },
}

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_PART = re.compile(r"x[a-z0-9]+(-[a-z0-9]+){1,3}", re.IGNORECASE)
_BOARD_PART = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+:part0:[A-Za-z0-9_.]+")
_SETTING_KEY = re.compile(r"(PSU|PCW)_[A-Z0-9_]+")
# Values land inside Tcl braces: no braces, backslashes or line breaks.
_SETTING_VALUE = re.compile(r"[^{}\\\n\r]*")
_CLOCK_RANGE = (10.0, 500.0)


@dataclass(frozen=True)
class PlClock:
    """The PL clock the processing system provides.

    Attributes
    ----------
    source : str
        The PS output pin: ``pl_clk0``…``pl_clk3`` (UltraScale+) or ``FCLK_CLK0``…``FCLK_CLK3`` (Zynq-7000).
    default_mhz : float
        Frequency the accelerator runs at unless the user asks for another.
    index : int
        The clock's number (the digit in ``source``); the reset pin and PS settings use the same one.
    """

    source: str
    default_mhz: float
    index: int


@dataclass(frozen=True)
class Board:
    """One board, validated; build it with :func:`load_board`. ``docs/boards.md`` lists the fields."""

    name: str
    description: str
    part: str
    board_part: str | None
    board_files_url: str | None
    ps: str
    family: str
    pl_clock: PlClock
    hp_width: int
    budget: Mapping[str, int]
    ps_settings: Mapping[str, str]
    accelerator: Mapping[str, int]
    path: Path
    #: lanes (in, out) of the core with the attention engine, when the board's lanes do not fit it
    attention_lanes: tuple[int, int] | None = None

    def clock_mhz(self, requested: float | None = None) -> float:
        """``requested`` (the board default when ``None``) after checking it is a usable PL clock."""
        mhz = self.pl_clock.default_mhz if requested is None else requested
        low, high = _CLOCK_RANGE
        if isinstance(mhz, bool) or not isinstance(mhz, (int, float)) or not low <= mhz <= high:
            raise ValueError(f"clock_mhz must be a number from {low:g} to {high:g}, not {mhz!r}")
        return float(mhz)

    def derived_ps_settings(self, clock_mhz: float) -> dict[str, str]:
        """The PS settings hwgen computes for this build: the PL clock frequency and the HP width."""
        freq_key, width_key = (k.format(n=self.pl_clock.index) for k in _PS_RULES[self.ps]["derived"])
        return {freq_key: f"{self.clock_mhz(clock_mhz):g}", width_key: str(self.hp_width)}

    def hw_params(self, **changes: Any):
        """The board's default :class:`~hwgen.hwparams.HwParams`, with ``changes`` applied."""
        from hwgen.hwparams import HwParams

        return HwParams.from_dict({**self.accelerator, **changes})

    def core_for(self, graph, hw=None, *, lanes_given: bool = False, trim_units: bool = False):
        """The core ``graph`` gets on this board: ``hw`` (default the board's) with what the model needs
        (:func:`hwgen.units.core_for`: the attention engine; without the row units with ``trim_units``),
        at ``attention_lanes`` when it has the attention engine and the lanes were not given by the user."""
        from hwgen.units import core_for

        core = core_for(graph, self.hw_params() if hw is None else hw, trim_units=trim_units)
        if core.has_attention and self.attention_lanes and not lanes_given:
            core = dataclasses.replace(core, lanes_in=self.attention_lanes[0], lanes_out=self.attention_lanes[1])
        return core


def board_names() -> list[str]:
    """Names of the boards shipped in ``hwgen.boards``, sorted."""
    return sorted(p.stem for p in BOARD_DIR.glob("*.yaml"))


def list_boards() -> list[Board]:
    """Every shipped board, loaded and validated, sorted by name."""
    return [load_board(name) for name in board_names()]


def load_board(name_or_path: str | Path) -> Board:
    """Load a shipped board by name (``ultra96``) or any board file by path (``my/board.yaml``)."""
    text = str(name_or_path)
    names = board_names()
    if text in names:
        path = BOARD_DIR / f"{text}.yaml"
    elif text.endswith((".yaml", ".yml")) and Path(text).is_file():
        path = Path(text)
    else:
        raise ValueError(f"board must be one of {', '.join(names)} (or a path to a .yaml), not {text!r}")
    return _parse(path)


# ----------------------------------------------------------------------------------- validation


class _Checker:
    """Formats one-line errors naming the board: ``board <label>: <what> must be <rule>, not <value>``."""

    def __init__(self, label: str):
        self.label = label

    def fail(self, what: str, rule: str, value: Any) -> None:
        raise ValueError(f"board {self.label}: {what} must be {rule}, not {value!r}")

    def mapping(self, what: str, value: Any) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(what, "a mapping", value)
        return value

    def string(self, what: str, value: Any, pattern: re.Pattern | None = None, rule: str = "a string") -> str:
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.fullmatch(value)):
            self.fail(what, rule, value)
        return value

    def integer(self, what: str, value: Any, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(what, f"an integer of at least {low}", value)
        return value

    def keys(self, what: str, data: Mapping, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                self.fail(f"{what} key" if what else "key", f"one of {', '.join(allowed)}", key)
        for key in required:
            if key not in data:
                raise ValueError(f"board {self.label}: {f'{what}.' if what else ''}{key} must be given, but it is missing")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"board file {path} must be valid YAML, not malformed{where}: {problem}") from None
    except OSError as exc:
        raise ValueError(f"board file {path} must be readable, not {exc.strerror.lower()}") from None


def _setting_value(check: _Checker, key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return check.string(f"ps_settings.{key}", value, _SETTING_VALUE, "a number or a string without braces")


def _parse(path: Path) -> Board:
    data = _read_yaml(path)
    check = _Checker(path.stem)
    check.mapping("the file", data)
    check.keys("", data, _FIELDS, tuple(f for f in _FIELDS if f not in _OPTIONAL))

    name = check.string("name", data["name"], _NAME, "lower-case letters, digits and '-'")
    check.label = name
    if path.parent.resolve() == BOARD_DIR and name != path.stem:
        check.fail("name", f"the file name {path.stem!r}", name)
    description = check.string("description", data["description"])
    part = check.string("part", data["part"], _PART, "a Xilinx part such as xczu3eg-sbva484-1-i")
    board_part = data.get("board_part")
    if board_part is not None:
        check.string("board_part", board_part, _BOARD_PART, "vendor:board:part0:version or null")
    url = data.get("board_files_url")
    if url is not None:
        check.string("board_files_url", url, re.compile(r"https?://\S+"), "an http(s) URL or null")

    ps = data["ps"]
    if ps not in PS_TYPES:
        check.fail("ps", f"one of {', '.join(PS_TYPES)}", ps)
    rules = _PS_RULES[ps]
    if data["family"] != rules["family"]:
        check.fail("family", f"{rules['family']} for ps {ps}", data["family"])

    clock = check.mapping("pl_clock", data["pl_clock"])
    check.keys("pl_clock", clock, ("source", "default_mhz"), ("source", "default_mhz"))
    match = rules["clock"].fullmatch(str(clock["source"]))
    if not match:
        check.fail("pl_clock.source", f"a {ps} clock pin such as {rules['clock_example']}", clock["source"])
    mhz = clock["default_mhz"]
    low, high = _CLOCK_RANGE
    if isinstance(mhz, bool) or not isinstance(mhz, (int, float)) or not low <= mhz <= high:
        check.fail("pl_clock.default_mhz", f"a number from {low:g} to {high:g}", mhz)
    pl_clock = PlClock(source=clock["source"], default_mhz=float(mhz), index=int(match.group(1)))

    widths = rules["hp_widths"]
    if isinstance(data["hp_width"], bool) or data["hp_width"] not in widths:
        rule = ", ".join(map(str, widths[:-1])) + f" or {widths[-1]}"
        check.fail("hp_width", f"{rule}" if ps == "zynq_ultra_ps_e" else f"{rule} for ps {ps}", data["hp_width"])

    budget = check.mapping("budget", data["budget"])
    check.keys("budget", budget, BUDGET_KEYS, BUDGET_KEYS)
    budget = {key: check.integer(f"budget.{key}", budget[key]) for key in BUDGET_KEYS}

    settings = check.mapping("ps_settings", data["ps_settings"])
    ps_settings: dict[str, str] = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not _SETTING_KEY.fullmatch(key) or not key.startswith(rules["prefix"] + "_"):
            check.fail("ps_settings key", f"a {ps} parameter name starting with {rules['prefix']}_", key)
        ps_settings[key] = _setting_value(check, key, value)
    n = pl_clock.index
    for key, value in rules["required"].items():
        key = key.format(n=n)
        if ps_settings.get(key) != value:
            why = "the block design's wiring uses that port"
            check.fail(f"ps_settings.{key}", f"{value} ({why})", ps_settings.get(key))
    for key in rules["derived"]:
        key = key.format(n=n)
        if key in ps_settings:
            check.fail("ps_settings key", "absent: hwgen derives it from pl_clock and hp_width", key)

    accel = check.mapping("accelerator", data["accelerator"])
    check.keys("accelerator", accel, ACCELERATOR_KEYS + ("attention_lanes",), ACCELERATOR_KEYS)
    accelerator = {key: accel[key] for key in ACCELERATOR_KEYS}
    attention_lanes = accel.get("attention_lanes")
    if attention_lanes is not None:
        if (not isinstance(attention_lanes, list) or len(attention_lanes) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in attention_lanes)):
            check.fail("accelerator.attention_lanes", "a list of two lane counts [lanes_in, lanes_out]", attention_lanes)
        attention_lanes = tuple(attention_lanes)
    if accelerator["axi_data_width"] != data["hp_width"]:
        check.fail("accelerator.axi_data_width", f"the HP port width {data['hp_width']}", accelerator["axi_data_width"])
    from hwgen.hwparams import HwParams

    try:
        HwParams.from_dict(dict(accelerator))
        if attention_lanes is not None:
            HwParams.from_dict({**accelerator, "lanes_in": attention_lanes[0], "lanes_out": attention_lanes[1]})
    except ValueError as exc:
        raise ValueError(f"board {name}: accelerator: {exc}") from None

    return Board(
        name=name,
        description=description,
        part=part,
        board_part=board_part,
        board_files_url=url,
        ps=ps,
        family=rules["family"],
        pl_clock=pl_clock,
        hp_width=data["hp_width"],
        budget=types.MappingProxyType(budget),
        ps_settings=types.MappingProxyType(ps_settings),
        accelerator=types.MappingProxyType(accelerator),
        path=path,
        attention_lanes=attention_lanes,
    )
