# SPDX-License-Identifier: Apache-2.0
"""Model specs (YAML + optional ``.npz`` weights, see ``docs/model-spec.md``) to float graphs."""

from hwgen.frontend.spec import Model, load_spec, parse_spec, random_weight

__all__ = ["Model", "load_spec", "parse_spec", "random_weight"]
