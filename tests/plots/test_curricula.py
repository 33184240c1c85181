"""curriclab.plots.curricula: pacing curves, available wrong-label shares, the widget's figure
and the forest plot (values checked against the formulas they draw)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from curriclab.methods.curriculum import PACINGS, pacing_fraction
from curriclab.plots.curricula import (
    curriculum_view,
    noisy_share_curves,
    paired_gaps,
    pacing_curves,
)


def test_pacing_curves_draw_the_formulas():
    fig, ax = plt.subplots()
    curves = pacing_curves(ax, 50, start=0.3, full_at=0.6, highlight="root",
                           extra={"SPL": ([0, 25], [0.2, 0.9])})
    assert set(curves) == set(PACINGS) and len(ax.lines) == len(PACINGS) + 1
    assert curves["quadratic"][20] == pytest.approx(pacing_fraction("quadratic", 20, 50,
                                                                    start=0.3, full_at=0.6))
    assert all(values[0] == pytest.approx(0.3) and values[-1] == 1.0
               for values in curves.values())
    plt.close(fig)


def test_noisy_share_counts_the_wrong_labels_of_the_available_prefix():
    scores = torch.arange(10.0)
    corrupted = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    fig, ax = plt.subplots()
    drawn = noisy_share_curves(ax, scores, corrupted, 10, pacing="step", start=0.5,
                               full_at=0.5, points=11)
    # step pacing: the easiest (or hardest) half until step 5, then everything
    assert drawn["easy"][:5].tolist() == [0.0] * 5 and drawn["hard"][:5].tolist() == [1.0] * 5
    assert drawn["easy"][5] == drawn["hard"][5] == drawn["random"][5] == 0.5
    with pytest.raises(ValueError, match="corrupted"):
        noisy_share_curves(ax, scores, corrupted[:3], 10)
    plt.close(fig)


def test_the_widget_figure_and_its_errors():
    scores = {"loss": torch.rand(40), "random": torch.rand(40)}
    corrupted = torch.rand(40) < 0.3
    figure = curriculum_view("exponential", 0.1, "loss", scores=scores, corrupted=corrupted,
                             total_steps=30)
    assert len(figure.axes) == 2 and "exponential" in figure.axes[0].get_title()
    with pytest.raises(ValueError, match="score"):
        curriculum_view("linear", 0.2, "el2n", scores=scores, corrupted=corrupted,
                        total_steps=30)


def test_paired_gaps_draws_one_interval_per_arm_and_condition():
    table = pd.DataFrame([
        {"condition": "A", "arm": "standard", "difference": float("nan"), "low": float("nan"),
         "high": float("nan")},
        {"condition": "A", "arm": "curriculum", "difference": 1.0, "low": 0.5, "high": 1.5},
        {"condition": "B", "arm": "curriculum", "difference": -1.0, "low": -2.0, "high": 0.1},
        {"condition": "B", "arm": "budget", "difference": 2.0, "low": 1.0, "high": 3.0},
    ])
    fig, ax = plt.subplots()
    drawn = paired_gaps(ax, table)
    assert drawn["condition"].tolist() == ["A", "B", "B"]
    # every arm in the legend once, also one that only some conditions have
    assert ax.get_legend_handles_labels()[1] == ["curriculum", "budget"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    with pytest.raises(ValueError, match="columns"):
        paired_gaps(ax, table.drop(columns="low"))
    plt.close(fig)
