"""Self-paced learning: closed-form weights, lambda schedules, SPLLoss state."""

import math

import pytest
import torch
import torch.nn.functional as F

from curriclab.core.data import make_loader, spl_toy_data
from curriclab.core.models import LogisticRegression
from curriclab.core.training import per_sample_losses
from curriclab.methods.spl import (
    REGULARIZERS,
    SPLLoss,
    linear_pace,
    spl_objective,
    spl_weights,
    threshold_for_fraction,
)

LAM, LAM_LOW = 0.6, 0.25


def spl_loss(spl: SPLLoss, output, target, index):
    """SPL's objective on the per-sample cross-entropy of `output` (what train_epoch computes)."""
    return spl.objective(index, F.cross_entropy(output, target, reduction="none"))


def reference_regularizer(name, v, lam, lam_low):
    """f(v) written out from the issue's definitions, independently of curriclab.methods.spl."""
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
    objective = grid[None, :] * losses[:, None] + reference_regularizer(
        name, grid[None, :], LAM, LAM_LOW
    )
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
    assert torch.equal(
        spl_loss(spl, output, target, index), spl_loss(restored, output, target, index)
    )
    with pytest.raises(ValueError, match="'losses'"):
        SPLLoss(3, regularizer="mixture").load_state_dict(spl.state_dict())
    with pytest.raises(ValueError, match="regularizer"):
        SPLLoss(10).load_state_dict(spl.state_dict())
