"""curriclab.plots.importance."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from curriclab.experiments.gradient_norm_vs_loss import rolling_by_rank
from curriclab.plots.importance import chunk_correlations, density_loglog, rolling_band, timing_bars


def test_plots_skip_unplottable_points_and_survive_empty_input():
    fig, axes = plt.subplots(1, 3)
    hexes = density_loglog(axes[0], torch.tensor([0.0, 1.0, 2.0, float("nan")]),
                           torch.tensor([1.0, 2.0, 3.0, 4.0]), xlabel="loss", ylabel="norm")
    assert float(hexes.get_array().sum()) == 2.0  # only the two positive, finite pairs are binned
    assert "2 pairs" in axes[0].texts[0].get_text()
    empty = torch.zeros(0)
    assert density_loglog(axes[1], empty, empty, xlabel="a", ylabel="b") is None
    line, _ = rolling_band(axes[2], *rolling_by_rank(empty, empty), xlabel="rank", ylabel="loss")
    assert len(line.get_xdata()) == 0
    assert len(chunk_correlations(axes[2], empty, label="c", xlabel="chunk")) == 1
    bars = timing_bars(axes[1], {"floor": 2.0, "loop": 50.0})
    assert [bar.get_width() for bar in bars] == [1.0, 25.0]
    with pytest.raises(ValueError, match="baseline"):
        timing_bars(axes[1], {"loop": 1.0})
    plt.close(fig)
