# SPDX-License-Identifier: Apache-2.0
"""Quantization: choose a QFX format for every tensor of a float graph."""
