# SPDX-License-Identifier: Apache-2.0
"""Parameter validation for components: a refused component must not also warn "created but never used"."""

__all__ = ["refuse"]


def refuse(component, message):
    """Raise ``ValueError(message)`` from a component's ``__init__``.

    Amaranth warns about every elaboratable that is garbage-collected without being elaborated;
    a component whose parameters were refused was never meant to be, so that warning is silenced.
    """
    component._MustUse__silence = True
    raise ValueError(message)
