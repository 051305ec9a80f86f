# SPDX-License-Identifier: Apache-2.0
"""Front ends: model spec YAML (+ .npz weights) and the built-in zoo to the IR."""
