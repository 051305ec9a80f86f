# SPDX-License-Identifier: Apache-2.0
"""Render the vendor scripts in ``boards/templates/`` with named override hooks.

The environment is :func:`hwgen.hls.emit.environment` (strict: a variable a template uses but the
caller forgot is an error) with the board templates as its loader. Templates call
``{{ hook("script_after_bd") }}`` where a user may add Tcl; :func:`render` fills each hook from
``overrides`` (empty when absent) and refuses override names the template does not offer, so a
misspelt hook is an error instead of silently doing nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import jinja2

from hwgen.boards import BOARD_DIR
from hwgen.hls.emit import environment as hls_environment
from hwgen import stamp

__all__ = ["TEMPLATE_DIR", "environment", "render", "tcl_word", "tcl_braced", "stamp"]

#: Folder of the Jinja templates for vendor projects (installed as ``hwgen/boards/templates``).
TEMPLATE_DIR = BOARD_DIR / "templates"

_WORD = re.compile(r"[A-Za-z0-9_.:/+-]+")
_BRACED = re.compile(r"[^{}\\\n\r]*")


def tcl_word(what: str, value: str) -> str:
    """``value`` if it is a Tcl word that needs no quoting (names, parts, relative paths)."""
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise ValueError(f"{what} must be letters, digits and _.:/+- only, not {value!r}")
    return value


def tcl_braced(value: object) -> str:
    """``{value}``: a literal Tcl word; refuses text that braces cannot hold literally."""
    text = str(value)
    if not _BRACED.fullmatch(text):
        raise ValueError(f"Tcl value must hold no braces, backslashes or line breaks, not {text!r}")
    return "{" + text + "}"


@functools.cache
def environment() -> jinja2.Environment:
    """The strict HLS environment, loading from ``boards/templates`` and with a ``tcl`` filter."""
    env = hls_environment().overlay(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)))
    env.filters["tcl"] = tcl_braced
    return env


def render(template: str, hooks: tuple[str, ...], overrides: Mapping[str, str] | None, **context) -> str:
    """Render ``boards/templates/<template>`` with ``stamp``, ``hook()`` and ``context``.

    ``hooks`` names the override points the template offers; every one must be used by the
    template, and ``overrides`` may only name those.
    """
    overrides = dict(overrides or {})
    for name, text in overrides.items():
        if name not in hooks:
            raise ValueError(f"override must be one of {', '.join(hooks)}, not {name!r}")
        if not isinstance(text, str):
            raise ValueError(f"override {name} must be a string, not {type(text).__name__}")
    used: set[str] = set()

    def hook(name: str) -> str:
        if name not in hooks:
            raise ValueError(f"template {template} uses hook {name!r}, which must be one of {', '.join(hooks)}")
        used.add(name)
        return overrides.get(name, "").rstrip("\n")

    text = environment().get_template(template).render(stamp=stamp(), hook=hook, **context)
    missing = sorted(set(hooks) - used)
    if missing:
        raise ValueError(f"template {template} must offer every hook, but it lacks {', '.join(missing)}")
    return text
