# SPDX-License-Identifier: Apache-2.0
"""Several components side by side in one toplevel, so one Verilator build checks many parameter sets.

Verilator spends seconds compiling a design and milliseconds simulating a small one, so a test
of a dozen configurations builds a :class:`Bundle` of them once.  Each member's ports appear as
``<name>__<port>`` (``rq0__i__valid``...); all members share ``clk`` and ``rst``.
"""

from __future__ import annotations

from collections.abc import Mapping

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hwgen.rtl._errors import refuse

__all__ = ["Bundle"]


class Bundle(wiring.Component):
    """Members placed side by side, each member's interface forwarded as one port group.

    Parameters
    ----------
    members : Mapping[str, wiring.Component]
        Name (a Python identifier) → component.

    Attributes
    ----------
    <name> : Out(member.signature)
        The member's own ports, unchanged in direction, under its name.
    """

    def __init__(self, members: Mapping[str, wiring.Component]):
        members = dict(members)
        if not members:
            refuse(self, "members must name at least one component, not {}")
        for name, member in members.items():
            if not isinstance(name, str) or not name.isidentifier() or "__" in name:
                refuse(self, f"member name must be an identifier without '__', not {name!r}")
            if not isinstance(member, wiring.Component):
                refuse(self, f"member {name} must be a wiring.Component, not {member!r}")
        self.members = members
        super().__init__({name: Out(member.signature) for name, member in members.items()})

    def elaborate(self, platform):
        m = Module()
        for name, member in self.members.items():
            m.submodules[name] = member
            wiring.connect(m, wiring.flipped(getattr(self, name)), member)
        return m
