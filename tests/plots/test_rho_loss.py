"""Notebook 10's plots draw what they are given: curve means over seeds, paired differences with
their intervals (and unreached arms marked), and mislabelled shares."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from curriclab.experiments.harness import Results  # noqa: E402
from curriclab.experiments.rho_loss import rho_loss_study  # noqa: E402
from curriclab.plots.rho_loss import (  # noqa: E402
    accuracy_curves,
    mislabelled_lines,
    paired_differences,
)

BASE = rho_loss_study("mnist", 0.2, train_size=400, validation_size=200, holdout_size=200,
                      test_size=200, k=8, candidates=40, steps=4)


def _curve(arm, seed, step, accuracy):
    return {"arm": arm, "seed": seed, "step": step, "seconds": step / 10.0, "samples": 8 * step,
            "forwarded": 8 * step, "validation_accuracy": accuracy}


def test_accuracy_curves_draw_the_mean_over_seeds():
    curves = [_curve("uniform", s, step, acc) for s, accs in ((0, (0.1, 0.5)), (1, (0.3, 0.7)))
              for step, acc in zip((0, 10), accs)]
    fig, ax = plt.subplots()
    lines = accuracy_curves(ax, Results(BASE, curves, [], {}), arms=["uniform"], target=0.6)
    assert np.allclose(lines["uniform"].get_ydata(), [0.2, 0.6])
    assert np.allclose(lines["uniform"].get_xdata(), [0, 10])
    with pytest.raises(ValueError, match="x must"):
        accuracy_curves(ax, Results(BASE, curves, [], {}), x="epochs")
    plt.close(fig)


def test_paired_differences_draw_intervals_and_mark_unreached_arms():
    frame = pd.DataFrame({"noise": [0.0, 0.2, 0.0, 0.2], "arm": ["RHO-LOSS"] * 2 + ["top-loss"] * 2,
                          "difference": [-5.0, -8.0, 2.0, np.nan], "low": [-7.0, -9.0, 1.0, np.nan],
                          "high": [-3.0, -7.0, 3.0, np.nan]})
    fig, ax = plt.subplots()
    rho, top = paired_differences(ax, frame, unit="(steps)")
    assert np.allclose(rho.lines[0].get_ydata(), [-5.0, -8.0])
    segments = rho.lines[2][0].get_segments()
    assert np.allclose([s[:, 1] for s in segments], [[-7.0, -3.0], [-9.0, -7.0]])
    assert len(top.lines[0].get_ydata()) == 1
    assert any(text.get_text() == "not reached" for text in ax.texts)
    plt.close(fig)


def test_mislabelled_lines_and_the_noise_rate():
    fig, ax = plt.subplots()
    lines = mislabelled_lines(ax, {"top-loss": torch.tensor([0.5, 0.6])}, 0.2)
    assert np.allclose(lines["top-loss"].get_ydata(), [0.5, 0.6])
    assert any(np.allclose(line.get_ydata(), 0.2) for line in ax.lines[1:])
    plt.close(fig)
