"""curriclab.ui.widgets."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from curriclab.ui.widgets import STATIC_CAPTION, checked_interact  # noqa: E402


def test_checked_interact_raises_what_the_callback_raised():
    calls = []
    assert checked_interact(lambda size: calls.append(size), size=(1, 10)) is None
    assert calls == [5, 5]  # the widget's first call, then the static copy's
    with pytest.raises(ZeroDivisionError):
        checked_interact(lambda size: 1 / 0, size=(1, 10))


def test_the_static_copy_is_an_ordinary_output_after_the_widget():
    InteractiveShell.instance()

    def draw(size):
        fig, ax = plt.subplots()
        ax.plot(range(size))
        return fig

    with capture_output() as captured:
        checked_interact(draw, size=(1, 10))
    kinds = [list(output.data) for output in captured.outputs]
    assert "application/vnd.jupyter.widget-view+json" in kinds[0]
    assert captured.outputs[1].data["text/markdown"] == STATIC_CAPTION
    assert "image/png" in kinds[2]


def test_no_static_copy_when_asked():
    calls = []
    checked_interact(lambda size: calls.append(size), static_copy=False, size=(1, 10))
    assert calls == [5]
