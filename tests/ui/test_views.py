"""curriclab.ui.views: the widget views draw what the experiment they run returns."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from curriclab.experiments.self_paced_learning import explore  # noqa: E402
from curriclab.ui.views import rolling_loss_view, spl_explore_view  # noqa: E402


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
