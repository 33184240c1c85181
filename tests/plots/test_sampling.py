"""curriclab.plots.sampling."""

import matplotlib.pyplot as plt
import pytest
import torch

from curriclab.plots import sampling as plots
from tests.helpers.sampling import _record

pytestmark = pytest.mark.usefixtures("one_thread")


def test_plots_draw_and_survive_empty_selections():
    fig, axes = plt.subplots(1, 5)
    assert plots.error_vs_cost(axes[0], []) == []
    assert plots.unique_share(axes[1], []) == []
    plots.weight_vs_own_loss(axes[2], torch.empty(0), torch.empty(0), "empty")
    plots.received_weight_by_index(axes[3], torch.zeros(0), 0)
    plots.draw_counts(axes[4], torch.zeros(0), torch.zeros(0))
    record = _record("uniform", 0, [0.1, 0.5], [0, 10], [0.0, 1.0], [1.0])
    assert len(plots.error_vs_cost(axes[0], [record], "samples")) == 1
    assert axes[2].get_title().endswith("r undefined")
    plt.close(fig)


def test_paired_differences_plot_shows_the_paired_interval():
    records = [_record(method, seed, [0.1, acc], [0, 10], [0.0, 1.0], [1.0])
               for seed, (u, i) in enumerate([(0.90, 0.91), (0.92, 0.92), (0.95, 0.97)])
               for method, acc in (("uniform", u), ("InfoBatch", i))]
    fig, ax = plt.subplots()
    (dots,) = plots.paired_differences(ax, records)
    assert dots.get_offsets()[:, 1].tolist() == pytest.approx([1.0, 0.0, 2.0])
    assert ax.lines[1].get_ydata()[0] == pytest.approx(1.0)  # the mean difference, in points
    empty_fig, empty_ax = plt.subplots()
    assert len(plots.paired_differences(empty_ax, [])) == 1 and not empty_ax.get_legend()
    plt.close(fig)
    plt.close(empty_fig)
