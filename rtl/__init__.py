# SPDX-License-Identifier: Apache-2.0
"""Amaranth hardware blocks of the hwgen accelerator (installed as ``hwgen.rtl``)."""
