"""Figures of notebook 05: what each function draws matches the data it was given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from curriclab.experiments import data_parameters as study  # noqa: E402
from curriclab.experiments.harness import Results  # noqa: E402
from curriclab.plots import data_parameters as figures  # noqa: E402


@pytest.fixture
def results():
    """Two arms x two seeds, three epochs of 100 samples, evaluated before and after each epoch
    (hand-made rows: nothing is trained)."""
    spec = study.noisy_label_study(train_size=100, validation_size=50, epochs=3, seeds=(0, 1),
                                   arms=("baseline", "instance"))
    curves, finals = [], []
    for arm, offset in (("baseline", 0.0), ("instance", 0.1)):
        for seed in (0, 1):
            for epoch in range(4):
                curves.append({"arm": arm, "seed": seed, "step": 10 * epoch,
                               "samples": 100 * epoch,
                               "test_accuracy": 0.5 + offset + 0.1 * epoch + 0.02 * seed,
                               "validation_accuracy": 0.4})
            finals.append({"arm": arm, "seed": seed, "steps": 30, "chosen_step": 10 * (1 + seed),
                           "samples": 300})
    return Results(spec, curves, finals, {})


def test_accuracy_curves_draw_the_mean_over_seeds_and_the_chosen_models(results):
    fig, ax = plt.subplots()
    drawn = figures.accuracy_curves(ax, results)
    assert list(drawn) == ["baseline", "instance"]
    x, y = drawn["instance"].get_data()
    np.testing.assert_allclose(x, [1, 2, 3])  # the evaluation before training is left out
    np.testing.assert_allclose(y, [0.71, 0.81, 0.91])  # mean of seeds 0 and 1
    stars = [c for c in ax.collections if c.get_offsets().shape[0] == 2]
    np.testing.assert_allclose(stars[0].get_offsets(), [[1, 0.6], [2, 0.72]])
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.bbox.x1 - 1  # beside
    plt.close(fig)


def test_auc_curves_start_at_epoch_one():
    fig, ax = plt.subplots()
    lines = figures.auc_curves(ax, {"sigma": [0.7, 0.8, 0.9]})
    np.testing.assert_allclose(lines[0].get_xdata(), [1, 2, 3])
    assert figures.auc_curves(ax, {}) == []
    plt.close(fig)


def test_sigma_ridges_one_band_per_epoch_and_label():
    sigma = torch.ones(3, 6)
    sigma[2, :3] = 10.0
    corrupted = torch.tensor([True, True, True, False, False, False])
    fig, ax = plt.subplots()
    assert len(figures.sigma_ridges(ax, sigma, corrupted, [0, 2])) == 4
    assert [t.get_text() for t in ax.get_yticklabels()] == ["epoch 0", "epoch 2"]
    empty_fig, empty = plt.subplots()
    assert figures.sigma_ridges(empty, torch.empty(0, 0), corrupted, [0]) == []
    assert not empty.axison
    plt.close(fig)
    plt.close(empty_fig)


def test_roc_curves_and_class_sigma_lines():
    fig, (left, right) = plt.subplots(1, 2)
    lines = figures.roc_curves(left, {"d": (torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]),
                                            0.5)})
    assert len(lines) == 2 and "AUC 0.500" in lines[1].get_label()
    class_sigma = torch.ones(4, 3)
    class_sigma[:, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    drawn = figures.class_sigma_lines(right, class_sigma, [2])
    assert len(drawn) == 3 and drawn[2].get_linewidth() > drawn[0].get_linewidth()
    np.testing.assert_allclose(drawn[2].get_ydata(), [1, 2, 3, 4])
    assert isinstance(right.xaxis.get_major_locator(), MaxNLocator)
    plt.close(fig)
