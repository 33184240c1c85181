"""curriclab.plots.sampling."""

import matplotlib.pyplot as plt
import pytest
import torch

from curriclab.plots import sampling as plots
from tests.helpers.sampling import _record

pytestmark = pytest.mark.usefixtures("one_thread")


def test_plots_draw_and_survive_empty_selections():
    fig, axes = plt.subplots(1, 5)
    assert plots.accuracy_vs_cost(axes[0], []) == []
    assert plots.unique_share(axes[1], []) == []
    plots.weight_vs_own_loss(axes[2], torch.empty(0), torch.empty(0), "empty")
    plots.received_weight_by_index(axes[3], torch.zeros(0), 0)
    plots.draw_counts(axes[4], torch.zeros(0), torch.zeros(0))
    record = _record("uniform", 0, [0.1, 0.5], [0, 10], [0.0, 1.0], [1.0])
    assert len(plots.accuracy_vs_cost(axes[0], [record], "samples")) == 1
    assert axes[2].get_title().endswith("r undefined")
    plt.close(fig)
