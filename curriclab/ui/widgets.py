"""Slider UIs whose errors are not swallowed.

`ipywidgets.interact` catches an exception raised by its callback and only prints it, so a
notebook test would pass even though the widget is broken. `checked_interact` runs the callback
once with the initial values and re-raises whatever it raised, so the cell (and nbval) fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets

__all__ = ["checked_interact"]


def checked_interact(function: Callable[..., Any], **controls: Any) -> ipywidgets.interactive:
    """Like `ipywidgets.interact(function, **controls)`, but an exception in the first call is raised.

    Returns the `interactive` widget (already displayed). Later calls (slider moves) show their
    errors in the widget's output as usual.
    """
    errors: list[BaseException] = []

    def recording(**kwargs: Any) -> Any:
        try:
            return function(**kwargs)
        except Exception as error:
            errors.append(error)
            raise

    widget = ipywidgets.interactive(recording, **controls)
    if errors:
        raise errors[0]
    from IPython.display import display

    display(widget)
    return widget
