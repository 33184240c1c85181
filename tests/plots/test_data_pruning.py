"""curriclab.plots.data_pruning: what each figure draws, checked against hand counts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from curriclab.plots import data_pruning as plots  # noqa: E402


def _frame() -> pd.DataFrame:
    rows = []
    for fraction, base in ((0.1, 60.0), (0.5, 75.0)):
        rows.append({"score": "random", "keep": "-", "fraction": fraction, "mean": base})
        for score in ("EL2N", "forgetting"):
            for keep, shift in (("hard", -5.0), ("easy", 2.0)):
                rows.append({"score": score, "keep": keep, "fraction": fraction,
                             "mean": base + shift, "difference": shift, "low": shift - 1,
                             "high": shift + 1})
        rows.append({"score": "all data, same steps", "keep": "-", "fraction": fraction,
                     "mean": base + 1, "difference": 1.0, "low": 0.0, "high": 2.0})
    return pd.DataFrame(rows)


def test_forgetting_histogram_counts_events_and_never_learned():
    events = torch.tensor([0, 0, 1, 2, 5, 0])
    learned = torch.tensor([True, True, True, True, True, False])
    fig, ax = plt.subplots()
    shares = plots.forgetting_histogram(ax, {"toy": (events, learned)}, max_events=2)
    np.testing.assert_allclose(shares["toy"], [2 / 6, 1 / 6, 2 / 6, 1 / 6])
    assert len(ax.patches) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="runs"):
        plots.forgetting_histogram(ax, {})


def test_extremes_grid_shows_the_highest_and_lowest_scores():
    images = torch.arange(6.0)[:, None, None, None].expand(6, 1, 2, 2).clone()
    scores = torch.tensor([0.5, 3.0, 1.0, 2.0, 0.0, 4.0], dtype=torch.float64)
    fig = plots.extremes_grid(images, torch.arange(6), {"s": scores}, count=2)
    axes = fig.axes
    assert len(axes) == 4
    assert [int(ax.images[0].get_array()[0, 0]) for ax in axes] == [5, 1, 4, 0]
    assert axes[0].get_ylabel() == "s\nhardest"
    plt.close(fig)
    with pytest.raises(ValueError, match="6 images"):
        plots.extremes_grid(images, torch.arange(6), {"s": scores[:3]})


def test_agreement_heatmap_writes_every_value():
    table = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["a", "b"], columns=["a", "b"])
    fig, ax = plt.subplots()
    plots.agreement_heatmap(ax, table)
    assert sorted(t.get_text() for t in ax.texts) == ["0.30", "0.30", "1.00", "1.00"]
    plt.close(fig)
    with pytest.raises(ValueError, match="square"):
        plots.agreement_heatmap(ax, pd.DataFrame())


def test_pruning_curves_and_differences_draw_one_line_per_score():
    fig, (left, right) = plt.subplots(1, 2)
    lines = plots.pruning_curves(left, _frame(), "hard", all_data=90.0)
    assert [line.get_label() for line in lines] == [
        "EL2N (hard)", "forgetting (hard)", "random", "all data, same steps", "all data"]
    np.testing.assert_allclose(lines[0].get_ydata(), [55.0, 70.0])
    drawn = plots.pruning_differences(right, _frame(), "easy")
    assert len(drawn) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="keeping"):
        plots.pruning_curves(left, _frame()[_frame()["keep"] == "-"], "hard")


def test_kept_class_shares_count_the_kept_subset():
    scores = torch.tensor([0.1, 0.9, 0.8, 0.2], dtype=torch.float64)
    targets = torch.tensor([0, 1, 1, 0])
    shares = plots.kept_class_shares(scores, targets, 0.5, "hard", 2)
    assert shares.tolist() == [0.0, 1.0]
    assert plots.kept_class_shares(scores, targets, 0.5, "easy", 2).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="length"):
        plots.kept_class_shares(scores, targets[:3], 0.5, "hard", 2)


def test_pruning_explorer_marks_the_chosen_run():
    scores = {"EL2N": torch.linspace(0, 1, 20, dtype=torch.float64)}
    targets = torch.arange(20) % 4
    fig = plots.pruning_explorer(_frame(), scores, targets, "EL2N", 0.1, "hard")
    assert "EL2N keep hard 10%" in fig.axes[0].get_title()
    assert len(fig.axes[1].patches) == 8
    plt.close(fig)
    with pytest.raises(ValueError, match="score must be"):
        plots.pruning_explorer(_frame(), scores, targets, "GraNd", 0.1, "hard")
    with pytest.raises(ValueError, match="no run"):
        plots.pruning_explorer(_frame(), scores, targets, "EL2N", 0.3, "hard")
