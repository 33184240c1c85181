"""Persistence plots: the bars and error bars drawn, and the widget view's numbers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

from curriclab.methods.persistence import percent_match  # noqa: E402
from curriclab.plots.persistence import persistence_view, percent_match_bars  # noqa: E402


def test_bars_carry_the_values_and_the_seed_spread():
    _, ax = plt.subplots()
    values = torch.tensor([50.0, 10.0, 40.0])
    drawn = percent_match_bars(ax, {"r": values}, {"r": torch.full((3,), 10.0)},
                               spread={"r": (values - 5, values + 1)})
    bars = [d for d in drawn if isinstance(d, BarContainer)]
    errors = [d for d in drawn if isinstance(d, ErrorbarContainer)]
    assert [p.get_height() for p in bars[0].patches] == [50.0, 10.0, 40.0]
    segments = errors[0].lines[2][0].get_segments()
    assert [(s[0][1], s[1][1]) for s in segments] == [(45, 51), (5, 11), (35, 41)]
    assert list(ax.get_xticks()) == [1, 2, 3]
    plt.close("all")


def test_persistence_view_draws_each_runs_percent_match():
    torch.manual_seed(0)
    tables = {"losses": {"a": torch.rand(3, 40), "b": torch.rand(3, 40)}}
    fig = persistence_view(4, (2, 3), "losses", False, tables=tables)
    bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    for container, name in zip(bars, ("a", "b")):
        expected = percent_match(tables["losses"][name], 4, 2, 3).numpy()
        assert np.allclose([p.get_height() for p in container.patches], expected)
    with pytest.raises(ValueError, match="kind must be one of"):
        persistence_view(4, (2, 3), "end_of_epoch", False, tables=tables)
    plt.close("all")
