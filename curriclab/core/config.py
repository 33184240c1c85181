"""Run-size switch shared by notebooks and benchmarks.

`CURRICLAB_QUICK=1` shrinks data and epochs so that a notebook runs in well under a minute
(this is what the test suite does); without it (unset, empty or `0`) the notebooks run the full
experiments. Any other value is refused by name, so a typo such as `CURRICLAB_QUICK=2` cannot
silently start a full-scale run.
Notebook cells never read the variable themselves: they call `pick(full=..., quick=...)`.
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["is_quick", "pick", "QUICK_ENV", "QUICK_VALUES"]

T = TypeVar("T")

QUICK_ENV = "CURRICLAB_QUICK"
QUICK_VALUES = {"1": True, "true": True, "yes": True, "on": True,
                "0": False, "false": False, "no": False, "off": False, "": False}
"""The accepted values of `CURRICLAB_QUICK` (case and surrounding spaces ignored)."""


def is_quick() -> bool:
    """Whether `CURRICLAB_QUICK` asks for quick mode.

    Returns:
        True for 1, true, yes, on; False for 0, false, no, off, an empty value or an unset variable.

    Raises:
        ValueError: any other value; the message names the variable and the accepted values.
    """
    value = os.environ.get(QUICK_ENV, "")
    key = value.strip().lower()
    if key not in QUICK_VALUES:
        accepted = ", ".join(repr(v) for v in QUICK_VALUES if v)
        raise ValueError(f"{QUICK_ENV} must be one of {accepted} or empty/unset, got {value!r}")
    return QUICK_VALUES[key]


def pick(full: T, quick: T) -> T:
    """Return `quick` in quick mode and `full` otherwise.

    Args:
        full: the value for a full-scale run.
        quick: the value under `CURRICLAB_QUICK=1`.

    Returns:
        `quick` if `is_quick()`, else `full` (the object itself).

    Raises:
        ValueError: `CURRICLAB_QUICK` holds a value `is_quick` does not accept.
    """
    return quick if is_quick() else full
