# SPDX-License-Identifier: Apache-2.0
"""The bit-exact NumPy golden model: the specification every executor must equal."""
