"""curriclab.plots.ala."""

from __future__ import annotations

import math

import pytest
import torch

from curriclab.experiments.adaptive_loss_alignment import StudentRun
from curriclab.experiments.harness import Arm, run_arm
from tests.helpers.ala import TOY_STUDY


def _toy_ala_run():
    """An ALA run (decisions every 2 steps) of the toy study: its validation curve as a
    `StudentRun` and the agent's history."""
    study = TOY_STUDY.replace(arms=(Arm("ala", "ala", {"beta": 0.1, "interval": 2}),))
    curve, _, artifacts = run_arm(study, study.arms[0], 0)
    rows = curve[1:]  # after each epoch
    run = StudentRun("ala", 0, [row["validation_loss"] for row in rows],
                     [1 - row["validation_accuracy"] for row in rows])
    return run, artifacts["history"]

# ---------------------------------------------------------------- plots


def test_plots_draw_runs_and_survive_empty_selections():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curriclab.methods.ala.agent import AlignmentHistory
    from curriclab.plots import ala as ala_plots

    run, history = _toy_ala_run()
    fig, axes = plt.subplots(2, 4)
    assert len(ala_plots.mismatch_curves(axes[0, 0], run)) == 4
    assert len(ala_plots.loss_family_curves(axes[0, 1], diagonals=(0.5, 1.0))) == 3
    assert len(ala_plots.phi_summary(axes[0, 2], history)) == 2
    assert len(ala_plots.action_probabilities(axes[0, 3], history)) == 6  # 3 actions x 2 kinds
    assert len(ala_plots.reward_curve(axes[1, 0], [history], window=2)) == 1
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
    assert ala_plots.confusion_heatmap(axes[5], torch.full((2, 2), math.nan)) is None
    plt.close(fig)
    plt.close(ala_plots.phi_heatmaps(empty))
    plt.close("all")


def test_controller_and_harness_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from curriclab.plots import ala as ala_plots

    _, history = _toy_ala_run()
    fig = ala_plots.controller_figure({"a": history, "b": history}, window=2)
    assert len(fig.axes) == 6
    plt.close(fig)
    plt.close(ala_plots.decision_view([history], 0, 1))
    with pytest.raises(ValueError, match="run"):
        ala_plots.decision_view([history], 1, 0)
    with pytest.raises(ValueError, match="histories"):
        ala_plots.controller_figure({})
    ours = pd.DataFrame({"mean": [-0.1], "low": [-0.2], "high": [0.0]}, index=["x"])
    fig, ax = plt.subplots()
    bars = ala_plots.relative_reductions(ax, ours, {"paper": 0.096})
    assert [b.patches[0].get_height() for b in bars] == pytest.approx([-10.0, 9.6])
    plt.close("all")


def test_bad_selections_name_the_argument():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curriclab.methods.ala.agent import AlignmentHistory
    from curriclab.plots import ala as ala_plots

    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="run 0 has no controller decisions"):
        ala_plots.decision_view([AlignmentHistory()], 0, 0)
    with pytest.raises(ValueError, match="run.val_loss and run.val_error"):
        ala_plots.mismatch_curves(ax, StudentRun("a", 0, val_loss=[0.5, 0.4], val_error=[0.2]))
    plt.close("all")
