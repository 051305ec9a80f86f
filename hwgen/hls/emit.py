# SPDX-License-Identifier: Apache-2.0
"""Render HLS configs, tops and harnesses from the Jinja2 templates in ``hls_templates/``.

Python fills only configs and tops; the kernels themselves are plain C++ headers beside the
templates.  Every rendered file starts with a do-not-edit stamp naming the hwgen version, and
any variable a template uses but the caller forgot is an error (``StrictUndefined``), never an
empty string in the output.
"""

from __future__ import annotations

import functools

import jinja2

from hwgen import stamp
from hwgen.hls.kernel import Kernel, KernelPort
from hwgen.hls_templates import TEMPLATE_DIR
from hwgen.qfx import QFmt

__all__ = ["environment", "stamp", "render", "requantize_config", "requantize_kernel"]

# Comment leader of each kind of file a template may produce, keyed by the suffix before ``.j2``.
_COMMENT = {".h": "//", ".hpp": "//", ".cpp": "//", ".tcl": "#", ".xdc": "#", ".sh": "#", ".py": "#"}


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment over ``hls_templates/*.j2``: strict, newline-preserving."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template_name: str, **context) -> str:
    """Render ``hls_templates/<template_name>`` (a ``*.j2`` file) with a do-not-edit stamp on top."""
    if not template_name.endswith(".j2"):
        raise ValueError(f"template name must end in .j2, not {template_name!r}")
    suffix = "." + template_name[: -len(".j2")].rsplit(".", 1)[-1]
    if suffix not in _COMMENT:
        raise ValueError(f"template file kind must be one of {', '.join(_COMMENT)}, not {suffix!r}")
    body = environment().get_template(template_name).render(**context)
    return f"{_COMMENT[suffix]} {stamp()}\n{body}"


def requantize_config(name: str, in_fmt: QFmt, out_fmt: QFmt, lanes: int) -> str:
    """A self-contained header declaring ``struct <name>`` for ``hwgen::requantize``."""
    # Building the port checks the arguments with the same messages the harness would give.
    KernelPort("in", in_fmt, lanes)
    KernelPort("out", out_fmt, lanes)
    return render(
        "requantize_config.h.j2",
        name=name,
        lanes=lanes,
        in_type=in_fmt.cpp_type(),
        out_type=out_fmt.cpp_type(),
        in_fmt=str(in_fmt),
        out_fmt=str(out_fmt),
    )


def requantize_kernel(name: str, in_fmt: QFmt, out_fmt: QFmt, lanes: int) -> Kernel:
    """``hwgen::requantize`` on one beat of ``lanes`` values, ready for :class:`hwgen.hls.CSim`."""
    config = f"{name}_config"
    return Kernel(
        name=name,
        declarations=requantize_config(config, in_fmt, out_fmt, lanes),
        call=f"hwgen::requantize<{config}>(in, out)",
        inputs=(KernelPort("in", in_fmt, lanes),),
        outputs=(KernelPort("out", out_fmt, lanes),),
    )
