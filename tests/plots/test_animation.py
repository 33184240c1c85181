"""curriclab.plots.animation."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from curriclab.plots.animation import write_gif


def test_write_gif_has_one_frame_per_step(tmp_path):
    fig, ax = plt.subplots()
    path = write_gif(fig, lambda k: ax.plot([0, 1], [0, k], color="C0"), range(4),
                     tmp_path / "a.gif")
    assert Image.open(path).n_frames == 4
    with pytest.raises(ValueError, match="frames"):
        write_gif(plt.figure(), lambda k: None, [], tmp_path / "b.gif")
