"""Quick mode switch, GIF writer and the exception-raising widget helper."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from curriclab.core.config import pick
from curriclab.plots.animation import write_gif
from curriclab.ui.widgets import checked_interact


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("0", False), ("", False)])
def test_pick_follows_the_environment(monkeypatch, value, quick):
    monkeypatch.setenv("CURRICLAB_QUICK", value)
    assert pick(full="full", quick="quick") == ("quick" if quick else "full")


def test_write_gif_has_one_frame_per_step(tmp_path):
    fig, ax = plt.subplots()
    path = write_gif(fig, lambda k: ax.plot([0, 1], [0, k], color="C0"), range(4), tmp_path / "a.gif")
    assert Image.open(path).n_frames == 4
    with pytest.raises(ValueError, match="frames"):
        write_gif(plt.figure(), lambda k: None, [], tmp_path / "b.gif")


def test_checked_interact_raises_what_the_callback_raised():
    calls = []
    widget = checked_interact(lambda size: calls.append(size), size=(1, 10))
    assert calls == [5] and widget.children
    with pytest.raises(ZeroDivisionError):
        checked_interact(lambda size: 1 / 0, size=(1, 10))
