from __future__ import annotations

import math

import pytest
import torch

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import LogisticRegression
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import chi_square_test
from curriclab.core.training import cross_entropy_per_sample, fit, seed_everything
from curriclab.methods.infobatch import InfoBatchSampler, below_mean
from curriclab.methods.sampling import (
    SGDSSampler,
    importance_weights,
    loss_probabilities,
    prune_and_reintroduce,
)
from tests.helpers.sampling import SEED_ALPHA, _counts, _feed, _generator

pytestmark = pytest.mark.usefixtures("one_thread")


# --- pure functions ---------------------------------------------------------------------------

def test_loss_probabilities_are_proportional_to_loss_on_the_active_set():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    active = torch.tensor([True, True, False, True])
    p = loss_probabilities(losses, active)
    assert torch.allclose(p, torch.tensor([1 / 7, 2 / 7, 0.0, 4 / 7], dtype=torch.float64))


def test_power_and_uniform_mix():
    losses = torch.tensor([1.0, 3.0])
    active = torch.ones(2, dtype=torch.bool)
    assert torch.allclose(loss_probabilities(losses, active, power=2.0),
                          torch.tensor([0.1, 0.9], dtype=torch.float64))
    mixed = loss_probabilities(losses, active, uniform_mix=0.5)
    assert torch.allclose(mixed, torch.tensor([0.5 * 0.25 + 0.25, 0.5 * 0.75 + 0.25],
                                              dtype=torch.float64))
    assert float(importance_weights(mixed).max()) <= 1 / 0.5 + 1e-6


def test_unseen_samples_count_as_the_largest_seen_loss_and_zero_losses_give_uniform():
    losses = torch.tensor([1.0, float("nan"), 3.0])
    p = loss_probabilities(losses, torch.ones(3, dtype=torch.bool))
    assert torch.allclose(p, torch.tensor([1 / 7, 3 / 7, 3 / 7], dtype=torch.float64))
    never_seen = loss_probabilities(torch.full((4,), float("nan")), torch.ones(4, dtype=torch.bool))
    assert torch.allclose(never_seen, torch.full((4,), 0.25, dtype=torch.float64))
    zeros = loss_probabilities(torch.zeros(3), torch.tensor([True, False, True]))
    assert torch.allclose(zeros, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))


def test_empty_inputs_do_not_crash():
    assert loss_probabilities(torch.empty(0), torch.empty(0, dtype=torch.bool)).numel() == 0
    assert loss_probabilities(torch.ones(3), torch.zeros(3, dtype=torch.bool)).sum().item() == 0.0
    assert importance_weights(torch.zeros(3)).sum().item() == 0.0


def test_prune_and_reintroduce_counts_and_choices_are_exact():
    n = 1000
    losses = torch.randperm(n, generator=_generator(1)).float()
    active = prune_and_reintroduce(losses, torch.ones(n, dtype=torch.bool), 0.1, 0.01, _generator())
    assert int(active.sum()) == n - 100 + 10
    lowest = torch.argsort(losses)[:100]
    back = lowest[active[lowest]]
    assert len(back) == 10  # exactly the reintroduced ones come from the pruned pool
    assert bool(active[torch.argsort(losses)[100:]].all())  # nothing above the cut is pruned
    # second step: prune floor(0.1 * 910) = 91 of the active, bring back floor(9.1) = 9 of the 181
    again = prune_and_reintroduce(losses, active, 0.1, 0.01, _generator(2))
    assert int(again.sum()) == 910 - 91 + 9


def test_unseen_samples_are_pruned_last():
    losses = torch.tensor([0.5, float("nan"), 0.1, 0.2])
    active = prune_and_reintroduce(losses, torch.ones(4, dtype=torch.bool), 0.75, 0.0)
    assert active.tolist() == [False, True, False, False]


# --- SGD-S sampler ------------------------------------------------------------------------------

def test_transient_epochs_are_permutations_of_all_samples():
    sampler = SGDSSampler(50, transient_epochs=2, generator=_generator())
    for epoch in range(2):
        sampler.set_epoch(epoch)
        assert sorted(sampler) == list(range(50))
        assert torch.equal(sampler.probabilities(), torch.full((50,), 0.02, dtype=torch.float64))


def test_steady_draw_frequencies_follow_probabilities_chi_square():
    n = 30
    losses = torch.linspace(0.05, 3.0, n)
    sampler = SGDSSampler(n, transient_epochs=1, prune_fraction=0.2, reintroduce_fraction=0.0,
                          num_draws=30000, generator=_generator(3))
    sampler.set_epoch(0)
    _feed(sampler, losses)
    sampler.set_epoch(1)
    draws = torch.tensor(list(sampler))
    p = sampler.probabilities()
    assert int((p > 0).sum()) == 24  # 6 lowest pruned
    _, _, p_value = chi_square_test(_counts(draws, n), p)
    assert p_value > SEED_ALPHA
    # and the test has power: the same draws are clearly not uniform over the active set
    _, _, p_uniform = chi_square_test(_counts(draws, n), (p > 0).double())
    assert p_uniform < 1e-12


def test_pruned_samples_are_never_drawn_and_sizes_match_epoch_sizes():
    n = 500
    losses = torch.rand(n, generator=_generator(4)) + 0.01
    sampler = SGDSSampler(n, transient_epochs=2, prune_fraction=0.2, reintroduce_fraction=0.05,
                          generator=_generator(5))
    sizes = []
    for epoch in range(7):
        sampler.set_epoch(epoch)
        draws = torch.tensor(list(sampler), dtype=torch.long)
        sizes.append(len(sampler))
        assert len(draws) == len(sampler)
        assert bool(sampler.active[draws].all())
        assert bool((sampler.probabilities()[~sampler.active] == 0).all())
        _feed(sampler, losses)
    assert sizes == sampler.epoch_sizes(7)
    assert sizes[:3] == [500, 500, 500 - 100 + 25]
    fixed = SGDSSampler(n, transient_epochs=2, num_draws=64)
    assert fixed.epoch_sizes(4) == [500, 500, 64, 64]


def test_iterating_twice_in_one_epoch_gives_the_same_draws():
    sampler = SGDSSampler(40, transient_epochs=0, generator=_generator())
    sampler.set_epoch(0)
    assert list(sampler) == list(sampler)
    sampler.set_epoch(0)  # the same epoch again does not re-prune
    assert int(sampler.active.sum()) == 36


def _tiny_problem():
    generator = _generator(6)
    inputs = torch.randn(7, 2, generator=generator)
    targets = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    model = LogisticRegression(2, 2)
    with torch.no_grad():
        model.linear.weight.copy_(torch.randn(2, 2, generator=generator))
    return inputs, targets, model


def _gradient(model, objective) -> torch.Tensor:
    model.zero_grad()
    objective.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("prune_fraction", [0.0, 0.3])
def test_unbiased_weights_make_the_expected_gradient_the_active_mean_gradient(prune_fraction):
    """Exact enumeration: sum_i p_i * grad(hook on sample i alone) = mean gradient of the active."""
    inputs, targets, model = _tiny_problem()
    losses = cross_entropy_per_sample(model(inputs), targets).detach()
    sampler = SGDSSampler(7, transient_epochs=1, prune_fraction=prune_fraction,
                          reintroduce_fraction=0.0, unbiased=True, generator=_generator())
    sampler.set_epoch(0)
    _feed(sampler, losses)
    sampler.set_epoch(1)
    p = sampler.probabilities()
    expected = sum(
        float(p[i]) * _gradient(model, sampler.objective(
            torch.tensor([i]), cross_entropy_per_sample(model(inputs[i:i + 1]), targets[i:i + 1])))
        for i in range(7) if p[i] > 0
    )
    active = torch.nonzero(sampler.active).squeeze(1)
    full = _gradient(model, cross_entropy_per_sample(model(inputs[active]), targets[active]).mean())
    assert torch.allclose(expected, full, atol=1e-6)
    biased = SGDSSampler(7, transient_epochs=1, prune_fraction=prune_fraction,
                         reintroduce_fraction=0.0, generator=_generator())
    biased.set_epoch(0)
    _feed(biased, losses)
    biased.set_epoch(1)
    assert bool((biased.weights(torch.arange(7)) == 1).all())


def test_unbiased_weighted_mean_estimates_the_plain_mean_monte_carlo():
    n = 40
    losses = torch.linspace(0.1, 2.0, n)
    # a fixed per-sample value that (like a gradient) grows with the loss
    quantity = 1 + torch.arange(n) / n + 0.5 * torch.sin(torch.arange(n).float())
    sampler = SGDSSampler(n, transient_epochs=1, prune_fraction=0.0, unbiased=True,
                          num_draws=50000, generator=_generator(7))
    sampler.set_epoch(0)
    _feed(sampler, losses)
    sampler.set_epoch(1)
    draws = torch.tensor(list(sampler))
    terms = sampler.weights(draws) * quantity[draws]
    standard_error = float(terms.std()) / math.sqrt(len(terms))
    assert abs(float(terms.mean()) - float(quantity.mean())) < 4 * standard_error
    plain = float(quantity[draws].mean())  # without weights the estimate is biased to high loss
    assert abs(plain - float(quantity.mean())) > 4 * standard_error


def test_resume_from_state_dict_draws_what_an_uninterrupted_run_draws():
    n = 200
    losses = torch.rand(n, generator=_generator(8)) + 0.01

    def run(sampler, epochs, record):
        for epoch in epochs:
            sampler.set_epoch(epoch)
            draws = torch.tensor(list(sampler), dtype=torch.long)
            record.append(draws)
            sampler.update(draws, losses[draws] * (1 + epoch))

    for make in (
        lambda g: SGDSSampler(n, 1, 0.1, 0.02, generator=g, unbiased=True),
        lambda g: InfoBatchSampler(n, total_epochs=6, generator=g),
    ):
        straight, resumed = [], []
        uninterrupted = make(_generator(9))
        run(uninterrupted, range(6), straight)
        first = make(_generator(9))
        run(first, range(3), resumed)
        second = make(_generator(123))
        second.load_state_dict(first.state_dict())
        run(second, range(3, 6), resumed)
        assert all(torch.equal(a, b) for a, b in zip(straight, resumed))
        assert torch.equal(uninterrupted.weights(torch.arange(n)), second.weights(torch.arange(n)))
        assert torch.equal(uninterrupted.sample_losses, second.sample_losses)


@pytest.mark.parametrize("bad", [float("nan"), -0.5, float("inf")])
def test_bad_losses_are_rejected(bad):
    sampler = SGDSSampler(5)
    with pytest.raises(ValueError, match="losses"):
        sampler.update(torch.tensor([0, 1]), torch.tensor([0.3, bad]))


def test_bad_arguments_are_rejected_with_their_names():
    with pytest.raises(ValueError, match="indices"):
        SGDSSampler(5).update(torch.tensor([5]), torch.tensor([0.3]))
    with pytest.raises(ValueError, match="indices"):
        SGDSSampler(5).weights(torch.tensor([-1]))
    for name in ("prune_fraction", "reintroduce_fraction"):
        for value in (1.0, -0.1, float("nan")):
            with pytest.raises(ValueError, match=name):
                SGDSSampler(5, **{name: value})
    with pytest.raises(TypeError, match="prune_fraction"):
        SGDSSampler(5, prune_fraction="0.1")
    with pytest.raises(ValueError, match="num_samples"):
        SGDSSampler(-1)
    with pytest.raises(TypeError, match="transient_epochs"):
        SGDSSampler(5, transient_epochs=1.5)
    with pytest.raises(ValueError, match="num_draws"):
        SGDSSampler(5, num_draws=-1)
    with pytest.raises(ValueError, match="power"):
        SGDSSampler(5, power=0)
    with pytest.raises(ValueError, match="uniform_mix"):
        SGDSSampler(5, uniform_mix=1.0)
    with pytest.raises(ValueError, match="prune_ratio"):
        InfoBatchSampler(5, total_epochs=3, prune_ratio=1.0)
    with pytest.raises(ValueError, match="delta"):
        InfoBatchSampler(5, total_epochs=3, delta=1.5)
    with pytest.raises(ValueError, match="total_epochs"):
        InfoBatchSampler(5, total_epochs=0)
    sampler = SGDSSampler(5)
    sampler.set_epoch(2)
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(1)
    with pytest.raises(ValueError, match="samples"):
        SGDSSampler(6).load_state_dict(sampler.state_dict())


def test_empty_sampler_and_empty_batches():
    for sampler in (SGDSSampler(0, transient_epochs=1), InfoBatchSampler(0, total_epochs=3)):
        for epoch in range(3):
            sampler.set_epoch(epoch)
            assert list(sampler) == [] and len(sampler) == 0
        objective = sampler.objective(torch.empty(0, dtype=torch.long), torch.empty(0))
        assert float(objective) == 0.0
    none_drawn = SGDSSampler(10, transient_epochs=0, num_draws=0)
    assert list(none_drawn) == []


# --- in a training loop -------------------------------------------------------------------------

def test_fit_with_the_sampler_records_losses_by_dataset_index():
    seed_everything(0)
    inputs = torch.randn(64, 2)
    targets = (inputs.sum(1) > 0).long()
    sampler = SGDSSampler(64, transient_epochs=1, prune_fraction=0.25, reintroduce_fraction=0.0)
    model = LogisticRegression(2, 2)
    loader = make_loader(IndexedDataset(inputs, targets), 16, sampler=sampler)

    class IndexAsLoss(SampleMethod):  # a loss that names its sample
        def compute_losses(self, output, target, index):
            return cross_entropy_per_sample(output, target) * 0 + 0.01 * (index + 1)

    history = fit(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), 3,
                  methods=[IndexAsLoss(), sampler], progress=False)
    assert [record.train.samples for record in history] == sampler.epoch_sizes(3)
    assert torch.allclose(sampler.sample_losses, 0.01 * (torch.arange(64) + 1))
    # the 16 lowest "losses" (indices 0..15) were pruned after epoch 0, so never drawn later
    assert int(sampler.tracker.last_epoch[:16].max()) == 0
    assert int(sampler.tracker.last_epoch[16:].max()) == 2


# ---------------------------------------------------------------- sharding, in one process


@pytest.mark.parametrize("size", [0, 1, 5, 36, 37])
@pytest.mark.parametrize("replicas", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_interleave_to_the_padded_or_cut_plan(size, replicas, drop_last):
    plan = torch.randperm(max(size, 1))[:size]
    shards = []
    for rank in range(replicas):
        sampler = SGDSSampler(max(size, 1), rank=rank, num_replicas=replicas, drop_last=drop_last)
        shards.append(sampler.shard(plan))
    lengths = {len(shard) for shard in shards}
    assert len(lengths) == 1  # every rank takes as many steps (DDP needs that)
    length = lengths.pop()
    if drop_last:
        expected = plan[: size - size % replicas]
    else:
        expected = torch.cat([plan, plan.repeat(replicas)[: -size % replicas]]) if size else plan
    assert length * replicas == len(expected)
    assert torch.equal(torch.stack(shards, 1).reshape(-1) if length else expected, expected)


def test_sampler_length_matches_its_shard():
    for drop_last in (False, True):
        for rank in (0, 1, 2):
            sampler = InfoBatchSampler(10, total_epochs=2, num_replicas=3, rank=rank,
                                       drop_last=drop_last)
            assert len(sampler) == len(list(sampler)) == (3 if drop_last else 4)


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError, match="rank"):
        SGDSSampler(5, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        SGDSSampler(5, num_replicas=0, rank=0)


# --- which losses a plan reads, and when plans are made -------------------------------------------

def _epoch_losses(n: int, epoch: int) -> torch.Tensor:
    """Losses that swing from epoch to epoch (sample i alternates around its own level), so the
    latest loss and a moving average rank the samples differently."""
    level = torch.linspace(0.2, 2.0, n)
    swing = torch.where(torch.arange(n) % 2 == 0, 1.5, -0.15) * (-1) ** epoch
    return (level + swing).clamp_min(0.01)


def _assert_identical(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bitwise equal, NaN (never seen) where `expected` is NaN."""
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=0.0, equal_nan=True)


def _by_hand_sgds(n, epochs, losses_seen, *, seed, transient, prune, back, uniform_mix):
    """SGD-S's plans from the pure functions alone: one generator, `randperm` in the transient
    epochs, then prune (from the losses seen so far) and multinomial draws."""
    generator = _generator(seed)
    active = torch.ones(n, dtype=torch.bool)
    plans = []
    for epoch in range(epochs):
        if epoch < transient:
            plans.append((torch.randperm(n, generator=generator), torch.ones(n)))
            continue
        losses = losses_seen(epoch)
        active = prune_and_reintroduce(losses, active, prune, back, generator)
        p = loss_probabilities(losses, active, 1.0, uniform_mix)
        indices = torch.multinomial(p, int(active.sum()), replacement=True, generator=generator)
        plans.append((indices, importance_weights(p)))
    return plans


def _run_usual_order(sampler, epochs, feed):
    """set_epoch(e) -> iterate -> record (in batches, repeats included) -> after_epoch(e)."""
    plans = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        plans.append((sampler.plan.indices.clone(), sampler.plan.weights.clone()))
        drawn = torch.tensor(list(sampler), dtype=torch.long)
        for batch in drawn.split(7):
            sampler.objective(batch, feed(epoch)[batch])
        sampler.after_epoch(epoch)
    return plans


@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_sgds_plans_read_the_moving_average_of_the_losses(momentum):
    """At momentum 0 every plan is the one made by hand from the last recorded losses; at
    momentum 0.6 the one made by hand from an exponential moving average computed in a loop."""
    n, epochs = 60, 6
    sampler = SGDSSampler(n, 1, 0.2, 0.05, generator=_generator(21), unbiased=True,
                          uniform_mix=0.1, momentum=momentum)
    plans = _run_usual_order(sampler, epochs, lambda epoch: _epoch_losses(n, epoch))
    averages, average = [], torch.full((n,), float("nan"))
    for epoch, (indices, _) in enumerate(plans):
        averages.append(average.clone())  # what epoch `epoch`'s plan sees
        new = _epoch_losses(n, epoch)
        for batch in indices.split(7):  # one step per batch that holds the sample
            for i in set(batch.tolist()):
                previous = new[i] if math.isnan(float(average[i])) else average[i]
                average[i] = momentum * previous + (1.0 - momentum) * new[i]
    expected = _by_hand_sgds(n, epochs, lambda epoch: averages[epoch], seed=21, transient=1,
                             prune=0.2, back=0.05, uniform_mix=0.1)
    for (indices, weights), (want_indices, want_weights) in zip(plans, expected):
        assert torch.equal(indices, want_indices) and torch.equal(weights, want_weights)
    _assert_identical(sampler.plan_losses, average)
    if momentum == 0.0:  # the moving average is the last loss, bit for bit
        _assert_identical(sampler.plan_losses, sampler.sample_losses)
    else:
        latest = SGDSSampler(n, 1, 0.2, 0.05, generator=_generator(21), unbiased=True,
                             uniform_mix=0.1)
        unsmoothed = _run_usual_order(latest, epochs, lambda epoch: _epoch_losses(n, epoch))
        assert not all(torch.equal(a[0], b[0]) for a, b in zip(plans, unsmoothed))


def test_repeated_indices_in_a_batch_keep_the_last_loss_in_the_average_at_momentum_zero():
    sampler = SGDSSampler(4, generator=_generator())
    sampler.update(torch.tensor([2, 0, 2, 2]), torch.tensor([5.0, 1.0, 3.0, 0.5]))
    _assert_identical(sampler.plan_losses, sampler.sample_losses)
    assert sampler.plan_losses[[0, 2]].tolist() == [1.0, 0.5]


@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_infobatch_prunes_by_the_moving_average(momentum):
    n, epochs, ratio = 50, 5, 0.5
    sampler = InfoBatchSampler(n, total_epochs=epochs + 1, prune_ratio=ratio, delta=1.0,
                               generator=_generator(22), momentum=momentum)
    plans = _run_usual_order(sampler, epochs, lambda epoch: _epoch_losses(n, epoch))
    generator, average = _generator(22), torch.full((n,), float("nan"))
    for epoch, (indices, weights) in enumerate(plans):
        candidates = below_mean(average)
        dropped = candidates & (torch.rand(n, generator=generator) < ratio)
        kept = torch.nonzero(~dropped).squeeze(1)
        assert torch.equal(indices, kept[torch.randperm(len(kept), generator=generator)])
        assert torch.equal(weights, torch.where(candidates & ~dropped, 1.0 / (1.0 - ratio), 1.0))
        new = _epoch_losses(n, epoch)
        for i in indices.tolist():  # a permutation: every kept sample is recorded once
            previous = new[i] if math.isnan(float(average[i])) else average[i]
            average[i] = momentum * previous + (1.0 - momentum) * new[i]
    _assert_identical(sampler.plan_losses, average)
    if momentum:
        latest = InfoBatchSampler(n, total_epochs=epochs + 1, prune_ratio=ratio, delta=1.0,
                                  generator=_generator(22))
        unsmoothed = _run_usual_order(latest, epochs, lambda epoch: _epoch_losses(n, epoch))
        assert not all(torch.equal(a[1], b[1]) for a, b in zip(plans, unsmoothed))


def _snapshot(sampler):
    return (sampler.plan.indices.clone(), sampler.plan.weights.clone(),
            sampler.generator.get_state(), getattr(sampler, "active", torch.empty(0)).clone())


def _poke(sampler):
    """Everything that must only read the plan, several times over."""
    for _ in range(3):
        len(sampler)
        sampler.state_dict()
        list(sampler)
        sampler.weights(torch.arange(sampler.num_samples))


@pytest.mark.parametrize("make", [
    lambda: SGDSSampler(40, 0, 0.2, 0.05, generator=_generator(30), unbiased=True),
    lambda: SGDSSampler(40, 2, 0.3, 0.0, generator=_generator(31), num_replicas=3, rank=2),
    lambda: InfoBatchSampler(40, total_epochs=5, generator=_generator(32), drop_last=True,
                             num_replicas=3, rank=1),
], ids=["sgds-no-transient", "sgds-sharded", "infobatch"])
def test_len_state_dict_and_iteration_never_change_the_plan_or_the_generator(make):
    """Poking a sampler (len, state_dict, iteration, weights) right after construction, after
    recording losses and after set_epoch changes nothing: the run equals an unpoked one."""
    n, epochs = 40, 5
    poked, plain = make(), make()
    _poke(poked)
    assert all(torch.equal(a, b) for a, b in zip(_snapshot(poked), _snapshot(plain)))
    for epoch in range(epochs):
        for sampler in (poked, plain):
            sampler.update(torch.arange(n), _epoch_losses(n, epoch))
        before = _snapshot(poked)
        _poke(poked)  # losses recorded, no set_epoch yet: the plan stays the one made before
        assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(poked)))
        for sampler in (poked, plain):
            sampler.set_epoch(epoch + 1)
        _poke(poked)
        assert all(torch.equal(a, b) for a, b in zip(_snapshot(poked), _snapshot(plain)))


def test_the_plan_of_epoch_zero_is_made_at_construction():
    """Epoch 0's plan is fixed when the sampler is made: losses recorded before its first use
    do not prune it (the lazy plan of before would have pruned by them at the first len())."""
    n = 30
    sampler = SGDSSampler(n, 0, 0.2, 0.0, generator=_generator(40))
    made = sampler.plan.indices.clone()
    sampler.update(torch.arange(n), torch.linspace(3.0, 0.1, n))
    len(sampler)
    sampler.set_epoch(0)  # the same epoch: keeps the plan
    assert torch.equal(sampler.plan.indices, made)
    expected = _by_hand_sgds(n, 1, lambda epoch: torch.full((n,), float("nan")), seed=40,
                             transient=0, prune=0.2, back=0.0, uniform_mix=0.0)
    assert torch.equal(made, expected[0][0])
