"""curriclab.ui.widgets."""

import pytest

from curriclab.ui.widgets import checked_interact


def test_checked_interact_raises_what_the_callback_raised():
    calls = []
    widget = checked_interact(lambda size: calls.append(size), size=(1, 10))
    assert calls == [5] and widget.children
    with pytest.raises(ZeroDivisionError):
        checked_interact(lambda size: 1 / 0, size=(1, 10))
