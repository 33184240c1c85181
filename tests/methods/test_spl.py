"""Self-paced learning: closed-form weights, lambda schedules, SPLLoss state, plots and the CLI."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from curriclab.core.data import make_loader, spl_toy_data
from curriclab.core.models import LogisticRegression
from curriclab.core.training import per_sample_losses, seed_everything, train_epoch
from curriclab.experiments.self_paced_learning import (
    history_table,
    noisy_blobs,
    outcome,
    summarise,
    train_spl,
)
from curriclab.methods.spl import (
    REGULARIZERS,
    SPLLoss,
    linear_pace,
    spl_objective,
    spl_weights,
    threshold_for_fraction,
)
from curriclab.plots.spl import (
    CLASS_COLORS,
    accuracy_bars,
    animate_spl,
    final_boundary_and_selection,
    plot_histories,
    selection_scatter,
    weight_curves,
)
from curriclab.ui.cli import main

LAM, LAM_LOW = 0.6, 0.25



def spl_loss(spl: SPLLoss, output, target, index):
    """SPL's objective on the per-sample cross-entropy of `output` (what train_epoch computes)."""
    return spl.objective(index, F.cross_entropy(output, target, reduction="none"))

def reference_regularizer(name, v, lam, lam_low):
    """f(v) written out from the issue's definitions, independently of curriclab.spl."""
    if name == "hard":
        return -lam * v
    if name == "linear":
        return lam * (v**2 / 2 - v)
    if name == "logarithmic":
        zeta = 1 - lam
        return zeta * v - zeta**v / math.log(zeta)
    zeta = lam * lam_low / (lam - lam_low)
    return -zeta * torch.log(v + zeta / lam)


@pytest.mark.parametrize("name", REGULARIZERS)
def test_weights_minimise_the_spl_objective_on_a_fine_grid(name):
    losses = torch.linspace(0.0, 1.2, 97, dtype=torch.float64)
    losses = losses[(losses - LAM).abs() > 1e-3]  # the hard minimiser is not unique at loss = lam
    grid = torch.linspace(0.0, 1.0, 20001, dtype=torch.float64)
    lam_low = LAM_LOW if name == "mixture" else None
    objective = grid[None, :] * losses[:, None] + reference_regularizer(name, grid[None, :], LAM, LAM_LOW)
    brute_force = grid[objective.argmin(1)]
    closed_form = spl_weights(losses, LAM, name, lam_low)
    assert torch.allclose(closed_form, brute_force, atol=1e-4)
    # the closed form is the exact minimum: never worse than any grid point
    best = spl_objective(closed_form, losses, LAM, name, lam_low)
    assert bool((best <= objective.min(1).values + 1e-12).all())
    assert torch.allclose(
        spl_objective(grid, torch.full_like(grid, 0.3), LAM, name, lam_low),
        0.3 * grid + reference_regularizer(name, grid, LAM, LAM_LOW),
    )


def test_every_regularizer_selects_exactly_the_losses_below_lambda():
    losses = torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 1.5
    for name in REGULARIZERS:
        weights = spl_weights(losses, LAM, name, LAM_LOW if name == "mixture" else None)
        assert bool(((weights > 0) == (losses < LAM)).all()), name
        assert bool(((weights >= 0) & (weights <= 1)).all()), name
    assert bool((spl_weights(losses, math.inf) == 1).all())  # lambda = inf: plain training


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lam": 0.0}, "lam"),
        ({"lam": math.nan}, "lam"),
        ({"lam": 1.0, "regularizer": "logarithmic"}, "lam"),
        ({"lam": 0.5, "regularizer": "mixture"}, "lam_low"),
        ({"lam": 0.5, "regularizer": "mixture", "lam_low": 0.5}, "lam_low"),
        ({"lam": 0.5, "regularizer": "cubic"}, "regularizer"),
    ],
)
def test_invalid_parameters_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spl_weights(torch.tensor([0.1, 0.2]), **kwargs)


@pytest.mark.parametrize("bad", [-0.1, math.nan])
def test_negative_or_nan_losses_are_rejected(bad):
    with pytest.raises(ValueError, match="losses"):
        spl_weights(torch.tensor([0.1, bad]), 0.5)


def test_threshold_for_fraction_selects_the_target_share():
    losses = torch.rand(1000, generator=torch.Generator().manual_seed(1))
    for fraction in (0.001, 0.25, 0.5, 0.999, 1.0):
        lam = threshold_for_fraction(losses, fraction)
        assert int((losses < lam).sum()) == math.ceil(fraction * 1000)
    # never empty, ties go in together, unseen (NaN) samples are ignored
    assert int((losses < threshold_for_fraction(losses, 1e-9)).sum()) == 1
    tied = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.9, math.nan])
    assert int((tied < threshold_for_fraction(tied, 0.4)).sum()) == 4
    assert threshold_for_fraction(torch.zeros(3), 0.5) > 0
    with pytest.raises(ValueError, match="fraction"):
        threshold_for_fraction(losses, 0.0)
    with pytest.raises(ValueError, match="losses"):
        threshold_for_fraction(torch.full((3,), math.nan), 0.5)


def test_linear_pace_runs_from_start_to_stop_and_stays():
    pace = linear_pace(0.2, 1.0, 5)
    assert [round(pace(e), 6) for e in range(7)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="start"):
        linear_pace(0.0)


def batch(n=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    output = torch.randn(n, 3, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (n,), generator=generator)
    return output, target, torch.arange(n)


def test_reductions_and_their_gradients():
    output, target, index = batch()
    losses = F.cross_entropy(output, target, reduction="none")
    lam = float(losses.detach().median()) + 1e-6
    v = (losses.detach() < lam).float()
    for reduction, divisor in (("mean", len(v)), ("selected", v.sum())):
        loss = spl_loss(SPLLoss(8, threshold=lam, reduction=reduction), output, target, index)
        (grad,) = torch.autograd.grad(loss, output)
        expected = (v * F.cross_entropy(output, target, reduction="none")).sum() / divisor
        (expected_grad,) = torch.autograd.grad(expected, output)
        assert torch.allclose(loss, expected) and torch.allclose(grad, expected_grad)
        assert bool((grad[v == 0] == 0).all())  # unselected samples do not move the model


@pytest.mark.parametrize("reduction", ["mean", "selected"])
def test_an_empty_selection_gives_a_zero_loss_that_back_propagates(reduction):
    output, target, index = batch()
    spl = SPLLoss(8, threshold=1e-6, reduction=reduction)
    loss = spl_loss(spl, output, target, index)
    loss.backward()
    assert float(loss.detach()) == 0.0 and bool((output.grad == 0).all())
    assert not bool(spl.selected.any())


def test_weights_are_kept_by_dataset_index_under_shuffled_batches():
    data, _ = spl_toy_data(n_per_class=100, seed=3)
    torch.manual_seed(0)
    model = LogisticRegression()
    spl = SPLLoss(len(data), threshold=0.7, regularizer="linear")
    loader = make_loader(data, 16, shuffle=True, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for index, x, y in loader:
            spl_loss(spl, model(x), y, index)
    expected = per_sample_losses(model, data)
    assert torch.allclose(spl.sample_losses, expected, atol=1e-6)
    assert torch.allclose(spl.weights, spl_weights(expected, 0.7, "linear"), atol=1e-6)


def test_thresholds_grow_geometrically_and_respect_the_cap():
    spl = SPLLoss(4)
    thresholds = []
    for epoch in range(3):
        spl.after_epoch(epoch)
        thresholds.append(round(spl.threshold, 6))
    assert thresholds == [0.135, 0.18225, 0.246038]
    log = SPLLoss(4, threshold=0.5, growing_factor=2.0, regularizer="logarithmic")
    log.after_epoch(0)
    assert log.threshold == 0.99  # lambda < 1 is required by this regularizer
    with pytest.raises(ValueError, match="growing_factor"):
        SPLLoss(4, growing_factor=0.9)
    with pytest.raises(ValueError, match="reduction"):
        SPLLoss(4, reduction="sum")


def test_pace_sets_lambda_from_recorded_losses_and_refresh_reweighs_everything():
    data, _ = spl_toy_data(n_per_class=200, seed=4)
    torch.manual_seed(0)
    model = LogisticRegression()
    spl = SPLLoss(len(data), pace=linear_pace(0.25, 1.0, 4))
    with pytest.raises(ValueError, match="refresh"):
        spl.follow_pace()
    spl.refresh(model, data)
    spl.follow_pace()
    assert int(spl.selected.sum()) == 100  # 25 % of 400
    spl.after_epoch(0)
    assert int(spl.selected.sum()) == 200  # 50 % in epoch 1
    with pytest.raises(ValueError, match="pace"):
        SPLLoss(4).follow_pace()
    with pytest.raises(ValueError, match="samples"):
        spl.refresh(model, data.subset(range(10)))


def test_state_dict_round_trip_resumes_identically():
    output, target, index = batch(n=10)
    spl = SPLLoss(10, threshold=1.0, regularizer="mixture", reduction="selected")
    spl_loss(spl, output[:6], target[:6], index[:6])
    spl.after_epoch(0)
    restored = SPLLoss(10, regularizer="mixture", reduction="selected")
    restored.load_state_dict(spl.state_dict())
    assert restored.threshold == spl.threshold and restored.epoch == spl.epoch
    assert torch.equal(restored.weights, spl.weights)
    assert torch.equal(restored.sample_losses.isnan(), spl.sample_losses.isnan())
    assert torch.equal(spl_loss(spl, output, target, index), spl_loss(restored, output, target, index))
    with pytest.raises(ValueError, match="samples"):
        SPLLoss(3, regularizer="mixture").load_state_dict(spl.state_dict())
    with pytest.raises(ValueError, match="regularizer"):
        SPLLoss(10).load_state_dict(spl.state_dict())


def test_train_spl_with_nothing_selected_leaves_the_model_unchanged():
    data, _ = spl_toy_data(n_per_class=200, seed=0)
    history = train_spl(data, epochs=1, threshold=1e-6, batch_size=64, seed=5)
    seed_everything(5)
    initial = LogisticRegression()
    assert history[0].empty_batches == history[0].batches == 7
    assert history[0].selected == 0
    assert torch.equal(history[0].model.linear.weight, initial.linear.weight)


def test_plain_training_is_spl_with_infinite_lambda():
    data, _ = spl_toy_data(n_per_class=300, seed=1)
    history = train_spl(data, epochs=3, threshold=math.inf, batch_size=32, lr=3e-2, seed=0)
    assert all(r.selected == 600 and r.empty_batches == 0 for r in history)
    seed_everything(0)
    model = LogisticRegression()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    loader = make_loader(data, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        train_epoch(model, loader, optimizer, progress=False)
    assert torch.allclose(model.linear.weight, history[-1].model.linear.weight, atol=1e-6)
    assert history[-1].train_accuracy > 0.9


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
    data, flipped = spl_toy_data(n_per_class=100, seed=2)
    runs = {
        "a": train_spl(data, epochs=3, batch_size=50, seed=0),
        "b": train_spl(data, epochs=3, threshold=1e-9, batch_size=50, seed=0),  # nothing selected
    }
    path = animate_spl(runs, data.inputs, data.targets, tmp_path / "spl.gif", highlight=flipped)
    assert Image.open(path).n_frames == 3
    plt.close(plot_histories(runs, len(data)))
    with pytest.raises(ValueError, match="same number"):
        animate_spl({"a": runs["a"], "c": runs["a"][:2]}, data.inputs, data.targets, tmp_path / "x.gif")


def test_cli_writes_the_demo_gif(tmp_path, capsys):
    out = tmp_path / "demo.gif"
    assert main(["spl-demo", "--out", str(out), "--epochs", "2", "--seed", "3"]) == 0
    assert Image.open(out).n_frames == 2
    assert "wrote" in capsys.readouterr().out


def test_noisy_blobs_flip_the_requested_share():
    clean, _ = spl_toy_data(n_per_class=200, n_anomalies=0, seed=6)
    data, flipped = noisy_blobs(0.1, structured=True, n_per_class=200, seed=6)
    assert int(flipped.sum()) == 40 and bool((data.targets[flipped] == 1).all())
    distance = (data.inputs - torch.tensor([3.0, 3.0])).norm(dim=1)
    assert float(distance[flipped].min()) >= float(distance[~flipped].max())  # the farthest points
    data, flipped = noisy_blobs(0.1, structured=False, n_per_class=200, seed=6)
    assert int(flipped.sum()) == 40
    assert torch.equal(data.targets != clean.targets, flipped)
    with pytest.raises(ValueError, match="share"):
        noisy_blobs(1.5, structured=True)


def test_warm_up_trains_on_everything_before_spl_starts():
    data, _ = spl_toy_data(n_per_class=100, seed=7)
    history = train_spl(data, epochs=2, threshold=1e-9, warmup_epochs=1, batch_size=50, seed=0)
    assert history[0].threshold == math.inf and history[0].selected == 200
    assert history[1].threshold == 1e-9 and history[1].empty_batches == history[1].batches
    with pytest.raises(ValueError, match="warmup_epochs"):
        train_spl(data, epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match="optimizer"):
        train_spl(data, optimizer="lbfgs")
    table = history_table(history)
    assert list(table.index) == [r.epoch for r in history]
    assert table["empty batches"].tolist() == [f"{r.empty_batches}/{r.batches}" for r in history]
    assert table["selected"].tolist() == [r.selected for r in history]
    assert outcome(history) == {
        "selected_first_epoch": 200, "empty_epochs": 1, "final_accuracy": history[1].train_accuracy
    }


def test_summaries_and_their_bars():
    rows = [
        {"method": "plain", "test_accuracy": a, "flipped_selected": 1.0} for a in (0.9, 0.8)
    ] + [{"method": "spl", "test_accuracy": 0.95, "flipped_selected": 0.0}]
    summary = summarise(rows)
    assert summary["plain"] == pytest.approx(
        {"mean_accuracy": 0.85, "min_accuracy": 0.8, "max_accuracy": 0.9, "flipped_selected": 1.0}
    )
    fig, ax = plt.subplots()
    bars = accuracy_bars(ax, {"a": summary, "b": {"spl": summary["spl"]}})
    assert [bar.get_height() for bar in bars[0]] == pytest.approx([0.85])
    assert [bar.get_height() for bar in bars[1]] == pytest.approx([0.95, 0.95])
    accuracy_bars(ax, {})  # nothing to draw is not an error
    plt.close(fig)
    with pytest.raises(ValueError, match="history"):
        final_boundary_and_selection([], torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
