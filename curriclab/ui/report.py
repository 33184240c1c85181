"""Prose built from results: Markdown outputs whose numbers come from the run, not from a hand.

A notebook states a run-specific number by rendering it:

    show("Pruning to {kept:.0%} costs {gap}.", kept=0.3, gap=interval(-0.4, -0.7, -0.1))
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["interval", "share", "show", "signed"]


def signed(value: float, digits: int = 2, unit: str = "") -> str:
    """`value` with an explicit sign, e.g. "+0.55" or "-1.20 points".

    Args:
        value: the number.
        digits: decimals shown.
        unit: appended after the number, e.g. " points" (with its leading space).

    Returns:
        The text, or "n/a" for NaN or an infinity.
    """
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}{unit}"


def interval(difference: float, low: float, high: float, digits: int = 2,
             unit: str = " points") -> str:
    """A paired difference and its interval: "+0.55 points [+0.43, +0.66]".

    Args:
        difference: the mean paired difference.
        low: the interval's lower end.
        high: the interval's upper end.
        digits: decimals shown.
        unit: appended to the difference only.

    Returns:
        The text; "<difference> (no interval)" when any of the three is not finite.
    """
    if not all(math.isfinite(v) for v in (difference, low, high)):
        return f"{signed(difference, digits, unit)} (no interval)"
    return f"{signed(difference, digits, unit)} [{signed(low, digits)}, {signed(high, digits)}]"


def share(value: float, digits: int = 1) -> str:
    """A fraction as a percentage, e.g. 0.917 -> "91.7 %".

    Args:
        value: the fraction (1 = 100 %).
        digits: decimals shown.

    Returns:
        The text.
    """
    return f"{100 * value:.{digits}f} %"


def show(template: str, **values: Any) -> None:
    """Display `template.format(**values)` as a Markdown output (returns None, so a cell that
    ends with the call shows the text once).

    Args:
        template: a `str.format` template in Markdown.
        **values: the values it names.

    Raises:
        KeyError: the template names a value that was not given.
    """
    from IPython.display import Markdown, display

    display(Markdown(template.format(**values)))
