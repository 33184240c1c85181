"""Persistence plots: the bars and error bars drawn, and the widget view's numbers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

from curriclab.methods.persistence import percent_match  # noqa: E402
from curriclab.plots.persistence import (  # noqa: E402
    pair_match_curves,
    percent_match_bars,
    persistence_view,
    seed_match_bars,
)


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


def test_bars_refuse_mismatched_inputs_by_name_and_label_the_last_dash():
    _, ax = plt.subplots()
    three = torch.tensor([50.0, 10.0, 40.0])
    with pytest.raises(ValueError, match="matches: every range must have the same number"):
        percent_match_bars(ax, {"a": three, "b": three[:2]})
    with pytest.raises(ValueError, match=r"spread\['a'\]"):
        percent_match_bars(ax, {"a": three}, spread={"a": (three[:2], three)})
    with pytest.raises(ValueError, match=r"chance\['a'\] must hold 1 or 3 values"):
        percent_match_bars(ax, {"a": three}, {"a": torch.ones(2)})
    # a zero on a log axis is left undrawn, not refused (a quantile can lose every sample)
    percent_match_bars(ax, {"a": torch.tensor([1.0, 0.0, 2.0])}, log_scale=True)
    # a range without a chance level after one with it: the dash, not the bars, is "chance"
    drawn = percent_match_bars(ax, {"a": three, "b": three}, {"a": torch.tensor(10.0)})
    assert drawn[1].get_label() == "chance" and drawn[2].get_label() == "b"
    assert percent_match_bars(ax, {}) == []
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


def test_seed_bars_show_the_mean_and_the_extreme_seeds():
    _, ax = plt.subplots()
    table = torch.tensor([[10.0, 2.0], [30.0, 4.0], [20.0, 9.0]])
    drawn = seed_match_bars(ax, {"r": table}, {"r": torch.tensor([1.0, 1.0])}, log_scale=False)
    bars = [d for d in drawn if isinstance(d, BarContainer)][0]
    assert [p.get_height() for p in bars.patches] == [20.0, 5.0]
    segments = [d for d in drawn if isinstance(d, ErrorbarContainer)][0].lines[2][0].get_segments()
    assert [(s[0][1], s[1][1]) for s in segments] == [(10, 30), (2, 9)]
    plt.close("all")


def test_pair_curves_average_over_seeds_and_label_the_pairs():
    _, ax = plt.subplots()
    pairs = {"1-2": torch.tensor([[10.0, 5.0, 5.0, 1.0], [20.0, 7.0, 3.0, 3.0]]),
             "2-3": torch.tensor([[30.0, 6.0, 6.0, 8.0], [40.0, 6.0, 6.0, 10.0]])}
    curves = pair_match_curves(ax, pairs, 25.0)
    assert curves["top quantile"].tolist() == [15.0, 35.0]
    assert curves["bottom quantile"].tolist() == [2.0, 9.0]
    assert curves["the others (mean)"].tolist() == [5.0, 6.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-2", "2-3"]
    plt.close("all")
