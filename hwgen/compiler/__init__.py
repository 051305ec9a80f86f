# SPDX-License-Identifier: Apache-2.0
"""Compile a quantized graph to a Program for the accelerator, and execute it in NumPy (isa_sim)."""
