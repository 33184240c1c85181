"""Run-size switch shared by notebooks and benchmarks.

`CURRICLAB_QUICK=1` shrinks data and epochs so that a notebook runs in well under a minute
(this is what the test suite does); without it the notebooks run the full experiments.
Notebook cells never read the variable themselves: they call `pick(full=..., quick=...)`.
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["is_quick", "pick", "QUICK_ENV"]

T = TypeVar("T")

QUICK_ENV = "CURRICLAB_QUICK"


def is_quick() -> bool:
    """True when `CURRICLAB_QUICK` is set to a true-ish value (1, true, yes, on)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, quick: T) -> T:
    """Return `quick` in quick mode and `full` otherwise."""
    return quick if is_quick() else full
