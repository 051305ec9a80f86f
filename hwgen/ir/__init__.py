# SPDX-License-Identifier: Apache-2.0
"""The one IR: an immutable graph of tensors and nodes, and ``verify`` for its invariants."""
