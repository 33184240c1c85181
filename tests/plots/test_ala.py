"""curriclab.plots.ala."""

from __future__ import annotations

import math

import pytest
import torch

from curriclab.experiments.adaptive_loss_alignment import ala_factory, train_student

# ---------------------------------------------------------------- plots


def test_plots_draw_runs_and_survive_empty_selections(toy_setup):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curriclab.methods.ala.agent import AlignmentHistory
    from curriclab.plots import ala as ala_plots

    run = train_student(toy_setup, "ala", ala_factory(beta=0.1, interval=2), seed=0)
    history = run.rule.history
    fig, axes = plt.subplots(2, 4)
    assert len(ala_plots.mismatch_curves(axes[0, 0], run)) == 4
    assert len(ala_plots.loss_family_curves(axes[0, 1], diagonals=(0.5, 1.0))) == 3
    assert len(ala_plots.phi_summary(axes[0, 2], history)) == 2
    assert len(ala_plots.action_probabilities(axes[0, 3], history)) == 3
    assert len(ala_plots.reward_curve(axes[1, 0], [history], window=2)) == 1
    assert len(ala_plots.selected_test_errors(axes[1, 1], {"ala": [run]})) == 2
    assert len(ala_plots.mean_curves(axes[1, 2], {"ala": [run]})) == 1
    assert ala_plots.confusion_heatmap(axes[1, 3], torch.rand(2, 2) + 0.1) is not None
    plt.close(fig)
    plt.close(ala_plots.phi_heatmaps(history, count=3))
    with pytest.raises(ValueError, match="position"):
        ala_plots.phi_snapshot(plt.gca(), history, len(history.phi))

    empty = AlignmentHistory()
    fig, axes = plt.subplots(1, 6)
    assert ala_plots.phi_summary(axes[0], empty) == []
    assert ala_plots.action_probabilities(axes[1], empty) == []
    assert ala_plots.reward_curve(axes[2], [empty], window=3) == []
    assert ala_plots.selected_test_errors(axes[3], {"none": []}) == []
    assert ala_plots.mean_curves(axes[4], {}) == []
    assert ala_plots.confusion_heatmap(axes[5], torch.full((2, 2), math.nan)) is None
    plt.close(fig)
    plt.close(ala_plots.phi_heatmaps(empty))
    plt.close("all")
