"""curriclab.plots.dynamic_loss."""

import pytest
import torch


def test_plots_draw_and_survive_empty_selections():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curriclab.plots.dynamic_loss import (
        dev_error_curves,
        error_dots,
        gradient_factors,
        phi_heatmaps,
        unrolled_diagram,
    )

    fig, ax = plt.subplots()
    assert len(gradient_factors(ax, scales=(1.0, 2.0))) == 3
    fig, ax = plt.subplots()  # a fresh, linear-scale axes for the diagram
    assert unrolled_diagram(ax, steps=2)
    fig.canvas.draw()  # renders the diagram's math text
    assert dev_error_curves(ax, {}) == [] and len(dev_error_curves(ax, {"a": ([1, 2], [0.5, 0.4])})) == 1
    assert error_dots(ax, {}) == [] and len(error_dots(ax, {"a": [0.1, 0.2]}, {"paper": 1.9})) == 4
    assert error_dots(ax, {"empty": []})
    assert phi_heatmaps(plt.figure(), [], []) == []
    assert len(phi_heatmaps(plt.figure(), [torch.eye(3), -torch.eye(3)], ["a", "b"])) == 2
    with pytest.raises(ValueError, match="titles"):
        phi_heatmaps(plt.figure(), [torch.eye(3)], [])
    with pytest.raises(ValueError, match="steps"):
        unrolled_diagram(ax, steps=0)
    plt.close("all")
