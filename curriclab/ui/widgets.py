"""Slider UIs whose errors are not swallowed, with a static copy GitHub can show.

`ipywidgets.interact` catches an exception raised by its callback and only prints it, so a
notebook test would pass even though the widget is broken. `checked_interact` runs the callback
once with the initial values and re-raises whatever it raised, so the cell (and nbval) fails.

GitHub draws no widgets: what a widget shows lives only in the notebook's saved widget state. So
`checked_interact` also draws the initial state once more as an ordinary output (a static PNG
under a caption), which GitHub renders.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import ipywidgets
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure

__all__ = ["checked_interact", "STATIC_CAPTION"]

STATIC_CAPTION = "*Static copy of the widget's initial state (GitHub does not draw widgets):*"


def checked_interact(function: Callable[..., Any], *, static_copy: bool = True,
                     **controls: Any) -> None:
    """Like `ipywidgets.interact(function, **controls)`, but an exception in the first call is
    raised, and the initial state is drawn again as a static output.

    Args:
        function: the callback; it draws (e.g. with `plt.show()`) or returns what to show.
        static_copy: call `function` once more with the initial values outside the widget, under
            `STATIC_CAPTION`, so the stored notebook shows the figure on GitHub.
        **controls: the widgets or abbreviations `ipywidgets.interactive` accepts.

    Returns:
        None: the widget is displayed, and returning it would display it a second time when the
        call is a cell's last expression.

    Raises:
        Exception: whatever the callback raised on its first call.
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
    display(widget)
    if static_copy:
        display(Markdown(STATIC_CAPTION))
        _display_static(function(**widget.kwargs))


def _display_static(shown: Any) -> None:
    """Display what a callback returned: a matplotlib figure as a PNG (then closed), anything
    else as itself; None (the callback drew with `plt.show()`) shows nothing more."""
    if isinstance(shown, Figure):
        buffer = io.BytesIO()
        shown.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(shown)
        display(Image(data=buffer.getvalue(), format="png"))
    elif shown is not None:
        display(shown)
