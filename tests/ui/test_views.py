"""curriclab.ui.views: the widget views draw what the experiment they run returns."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from curriclab.experiments.harness import Results  # noqa: E402
from curriclab.experiments.rho_loss import (  # noqa: E402
    grid_arm_name,
    rho_loss_study,
    selection_grid_study,
)
from curriclab.experiments.self_paced_learning import explore  # noqa: E402
from curriclab.ui.views import rho_loss_explore_view, rolling_loss_view, spl_explore_view  # noqa: E402


def test_the_spl_view_draws_the_cached_run_it_explores():
    fig = spl_explore_view(0.5, 1.5, "hard", 0.1, epochs=2)
    _, _, history = explore(0.5, 1.5, "hard", 0.1, 2)
    assert len(history) == 2 and len(fig.axes) == 2
    plt.close(fig)


def test_the_rolling_view_sorts_by_the_chosen_key_and_refuses_others():
    import pytest
    import torch

    losses = torch.arange(100, dtype=torch.float64)
    keys = {"same": losses.clone(), "reversed": -losses}
    fig = rolling_loss_view("reversed", 10, False, keys=keys, losses=losses)
    assert "-1.000" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="sort_by"):
        rolling_loss_view("nope", 10, False, keys=keys, losses=losses)


def test_the_rho_loss_view_draws_the_chosen_method_against_uniform():
    base = rho_loss_study("mnist", 0.2, train_size=400, validation_size=200, holdout_size=200,
                          test_size=200, k=8, candidates=40, steps=4)
    grid = selection_grid_study(base, (2,), k=8, steps=4)
    name = grid_arm_name("rho_loss", 2)
    curves = [{"arm": arm, "seed": 0, "step": step, "seconds": step / 10.0, "samples": 8 * step,
               "forwarded": 8 * step, "validation_accuracy": 0.5}
              for arm in ("uniform", name) for step in (0, 4)]
    history = {"mislabelled_per_step": torch.tensor([0.1, 0.0, 0.2, 0.1], dtype=torch.float64)}
    record = Results(grid, curves, [], {("uniform", 0): history, (name, 0): history})
    figure = rho_loss_explore_view({0.2: record}, 0.2, 2, "rho_loss")
    assert len(figure.axes) == 2 and "rho_loss" in figure.axes[0].get_title()
    plt.close(figure)
    with pytest.raises(ValueError, match="noise"):
        rho_loss_explore_view({0.2: record}, 0.1, 2, "rho_loss")
    with pytest.raises(ValueError, match="no runs"):
        rho_loss_explore_view({0.2: record}, 0.2, 5, "rho_loss")
