"""curriclab.plots.spl: the selection scatter and the animation."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

from curriclab.core.data import spl_toy_data
from curriclab.experiments.harness import Arm, DataSpec
from curriclab.experiments.self_paced_learning import demo_histories, demo_study
from curriclab.methods.spl import REGULARIZERS
from curriclab.plots.spl import (
    CLASS_COLORS,
    animate_spl,
    plot_histories,
    selection_scatter,
    weight_curves,
)


def test_scatter_keeps_class_colours_and_survives_an_empty_selection():
    fig, ax = plt.subplots()
    inputs = torch.randn(5, 2)
    targets = torch.tensor([1, 1, 1, 1, 1])
    (points,) = selection_scatter(ax, inputs, targets, torch.tensor([1.0, 0, 0, 0, 0]))
    colors = points.get_facecolors()
    assert tuple(colors[0][:3]) == pytest.approx(matplotlib.colors.to_rgb(CLASS_COLORS[1]))
    assert colors[0][3] > colors[1][3]  # selected solid, unselected faded
    selection_scatter(ax, inputs, targets, torch.zeros(5))
    selection_scatter(ax, inputs[:0], targets[:0], torch.zeros(0))
    assert len(weight_curves(ax, 0.5)) == len(REGULARIZERS)
    plt.close(fig)


def test_animation_has_one_frame_per_epoch(tmp_path):
    data, flipped = spl_toy_data(n_per_class=100, n_anomalies=2, seed=2)
    arms = (Arm("a", "self_paced", {"trace": True}),
            Arm("b", "self_paced", {"threshold": 1e-9, "trace": True}))  # nothing selected
    blobs = DataSpec("blobs", train_size=200, validation_size=0, test_size=100, split_seed=2,
                     label_noise=0.01, noise_pattern="farthest")  # the same 200 points
    runs = demo_histories(demo_study(3, (0,), 50).replace(data=blobs, arms=arms))[0]
    path = animate_spl(runs, data.inputs, data.targets, tmp_path / "spl.gif", highlight=flipped)
    assert Image.open(path).n_frames == 3
    plt.close(plot_histories(runs, len(data)))
    with pytest.raises(ValueError, match="same number"):
        animate_spl({"a": runs["a"], "c": runs["a"][:2]}, data.inputs, data.targets,
                    tmp_path / "x.gif")


def test_bad_inputs_name_the_argument():
    _, ax = plt.subplots()
    inputs, targets = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"weights must have one entry per point of inputs \(4\)"):
        selection_scatter(ax, inputs, targets, torch.ones(3))
    with pytest.raises(ValueError, match=r"targets must have one entry per point"):
        selection_scatter(ax, inputs, targets[:2], torch.ones(4))
    with pytest.raises(ValueError, match=r"highlight must have one entry per point"):
        selection_scatter(ax, inputs, targets, torch.ones(4), highlight=torch.ones(5, dtype=bool))
    with pytest.raises(ValueError, match="lam must be finite"):
        weight_curves(ax, float("inf"))
    _, rings = selection_scatter(ax, inputs, targets, torch.ones(4),
                                 highlight=torch.tensor([True, False, True, False]))
    assert rings.get_offsets().tolist() == inputs[[0, 2]].tolist()
    plt.close("all")
