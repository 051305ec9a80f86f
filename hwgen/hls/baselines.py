# SPDX-License-Identifier: Apache-2.0
"""Other generators' kernels, compiled with g++ on the same raw vectors, for side-by-side comparisons.

:func:`hls4ml_softmax_kernel` wraps hls4ml's own ``nnet::softmax_stable`` / ``softmax_latency``
from the ``nnet_utils`` headers shipped in the hls4ml wheel (``toolchain.hls4ml_templates_dir()``),
configured the way hls4ml's Vivado backend writes the config struct.  :data:`HLS4ML_DEFAULTS`
are that backend's defaults (hls4ml 1.3.0: 1024-entry tables, every internal type
``ap_fixed<18,8,AP_RND,AP_SAT>``; for ``stable`` the normalized input type is the input type
made unsigned and the exp table at most 2^(W−1) entries).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwgen import toolchain
from hwgen.hls.kernel import Kernel, KernelPort
from hwgen.qfx import QFmt

__all__ = ["Hls4mlSoftmax", "HLS4ML_DEFAULTS", "hls4ml_softmax_kernel", "hls4ml_include_dir"]

_DEFAULT_TYPE = QFmt(18, 8, True, "RND", "SAT")


@dataclass(frozen=True)
class Hls4mlSoftmax:
    """The parameters of hls4ml's softmax config struct (``softmax_config_template``)."""

    implementation: str = "stable"
    table_size: int = 1024
    exp_table_t: QFmt = _DEFAULT_TYPE
    inv_table_t: QFmt = _DEFAULT_TYPE
    accum_t: QFmt = _DEFAULT_TYPE
    inv_inp_t: QFmt = _DEFAULT_TYPE

    def __post_init__(self):
        if self.implementation not in ("stable", "latency"):
            raise ValueError(f"implementation must be stable or latency, not {self.implementation!r}")
        if self.table_size < 2 or self.table_size & (self.table_size - 1):
            raise ValueError(f"table_size must be a power of two ≥ 2, not {self.table_size}")


HLS4ML_DEFAULTS = Hls4mlSoftmax()


def hls4ml_include_dir():
    """hls4ml's ``nnet_utils`` folder (its C++ layer library)."""
    return toolchain.hls4ml_templates_dir() / "vivado" / "nnet_utils"


def hls4ml_softmax_kernel(name: str, params: Hls4mlSoftmax, in_fmt: QFmt, out_fmt: QFmt, n: int) -> Kernel:
    """hls4ml's softmax over a row of ``n`` values, as hls4ml's backend would configure it.

    Compile with ``CSim(..., flags=[f"-I{hls4ml_include_dir()}"])``.
    """
    exp_table_size = params.table_size
    if params.implementation == "stable":
        # The backend's rule: the normalized input is unsigned with the sign bit dropped, and
        # its table is never larger than that type has codes.
        norm_width, norm_int = in_fmt.width - int(in_fmt.signed), in_fmt.int_bits - int(in_fmt.signed)
        inp_norm = f"ap_ufixed<{norm_width}, {norm_int}>"
        if in_fmt.signed:
            exp_table_size = min(exp_table_size, 2**norm_width)
    else:
        inp_norm = "ap_fixed<1, 0>"
    config = f"{name}_config"
    declarations = f"""#include "nnet_activation.h"

struct {config} : nnet::activ_config {{
    static const unsigned n_in = {n};
    static const unsigned n_slice = {n};
    static const unsigned n_outer = 1;
    static const unsigned n_inner = 1;
    static const int parallelization_factor = -1;
    static const unsigned exp_table_size = {exp_table_size};
    static const unsigned inv_table_size = {params.table_size};
    static const unsigned io_type = nnet::io_parallel;
    static const unsigned reuse_factor = 1;
    static const unsigned axis = 1;
    static const nnet::softmax_implementation implementation = nnet::softmax_implementation::{params.implementation};
    static constexpr float exp_scale = 1.0;
    typedef {params.exp_table_t.cpp_type()} exp_table_t;
    typedef {params.inv_table_t.cpp_type()} inv_table_t;
    typedef {params.accum_t.cpp_type()} accum_t;
    typedef {params.inv_inp_t.cpp_type()} inv_inp_t;
    typedef {inp_norm} inp_norm_t;
}};
"""
    in_type, out_type = in_fmt.cpp_type(), out_fmt.cpp_type()
    return Kernel(
        name=name,
        declarations=declarations,
        call=f"nnet::softmax_{params.implementation}<{in_type}, {out_type}, {config}>(in, out)",
        inputs=(KernelPort("in", in_fmt, n),),
        outputs=(KernelPort("out", out_fmt, n),),
    )
