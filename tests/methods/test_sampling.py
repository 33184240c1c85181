import math

import matplotlib.pyplot as plt
import pytest
import torch

from curriclab.core.protocol import SampleMethod
from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import LogisticRegression
from curriclab.core.stats import chi_square_test, pool_by_probability
from curriclab.core.training import cross_entropy_per_sample, fit, seed_everything
from curriclab.experiments.sgd_s_resampling import (
    METHODS,
    SCHEDULE_METHODS,
    RunRecord,
    RunSettings,
    ScheduleSettings,
    claim_table,
    claim_table_markdown,
    compare_schedule,
    cost_to_accuracy,
    final_accuracies,
    make_sampler,
    position_keyed_weights,
    reachable_target,
    run_method,
    run_schedule,
    schedule_table,
)
from curriclab.methods.infobatch import InfoBatchSampler, below_mean
from curriclab.methods.sampling import (
    SGDSSampler,
    importance_weights,
    loss_probabilities,
    prune_and_reintroduce,
)
from curriclab.plots import sampling as plots

SEED_ALPHA = 1e-3  # fixed seeds: a false alarm would need a 1-in-1000 draw


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny; a second thread only adds contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _feed(sampler, losses: torch.Tensor) -> None:
    """Record every sample's fixed loss, as a full pass would."""
    sampler.update(torch.arange(len(losses)), losses)


def _counts(indices: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bincount(indices, minlength=n)


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


def test_chi_square_p_values_match_closed_forms():
    # dof 2: p = exp(-x / 2); dof 1 at x = 3.841459: p = 0.05
    observed = torch.tensor([30.0, 50.0, 20.0])
    statistic, dof, p = chi_square_test(observed, torch.tensor([1 / 3, 1 / 3, 1 / 3]))
    expected = 100 / 3
    assert statistic == pytest.approx(sum((o - expected) ** 2 / expected for o in (30, 50, 20)))
    assert dof == 2 and p == pytest.approx(math.exp(-statistic / 2))
    _, _, p1 = chi_square_test(torch.tensor([50 + 3.841459**0.5 * 5, 50 - 3.841459**0.5 * 5]),
                               torch.tensor([0.5, 0.5]))
    assert p1 == pytest.approx(0.05, abs=1e-5)
    with pytest.raises(ValueError, match="probability 0"):
        chi_square_test(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.5, 0.5, 0.0]))


def test_pooling_keeps_totals_and_balances_group_mass():
    p = torch.rand(500, generator=_generator(13)).double()
    p[:50] = 0
    p /= p.sum()
    counts = torch.bincount(torch.multinomial(p, 600, True, generator=_generator(14)), minlength=500)
    pooled, mass = pool_by_probability(counts, p, groups=10)
    assert float(pooled.sum()) == 600 and float(mass.sum()) == pytest.approx(1.0)
    assert len(mass) == 10 and float(mass.max()) < 0.1 + float(p.max())
    assert chi_square_test(pooled, mass)[2] > SEED_ALPHA
    assert len(pool_by_probability(torch.zeros(0), torch.zeros(0))[0]) == 0
    # power: 600 uniform draws over the same support, pooled by p, fail the test against p
    uniform = (p > 0).double() / int((p > 0).sum())
    wrong = torch.bincount(torch.multinomial(uniform, 600, True, generator=_generator(15)),
                           minlength=500)
    assert chi_square_test(*pool_by_probability(wrong, p, groups=10))[2] < 1e-6


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
        float(p[i]) * _gradient(model, sampler.objective(torch.tensor([i]), cross_entropy_per_sample(
            model(inputs[i:i + 1]), targets[i:i + 1])))
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


# --- InfoBatch-style pruner ---------------------------------------------------------------------

def test_below_mean_ignores_unseen_samples():
    losses = torch.tensor([1.0, float("nan"), 3.0, 0.5])
    assert below_mean(losses).tolist() == [True, False, False, True]
    assert not bool(below_mean(torch.full((3,), float("nan"))).any())


def test_infobatch_prunes_below_mean_at_rate_r_and_rescales_the_rest():
    n, ratio, epochs = 400, 0.3, 40
    losses = torch.linspace(0.0, 2.0, n)
    low = losses < losses.mean()
    sampler = InfoBatchSampler(n, total_epochs=epochs + 1, prune_ratio=ratio, delta=1.0,
                               generator=_generator(10))
    sampler.set_epoch(0)
    assert sorted(sampler) == list(range(n))  # nothing seen yet: full data
    kept_counts = torch.zeros(n)
    expected_weight = torch.zeros(n)
    for epoch in range(1, epochs + 1):
        _feed(sampler, losses)
        sampler.set_epoch(epoch)
        drawn = torch.tensor(list(sampler), dtype=torch.long)
        assert len(set(drawn.tolist())) == len(drawn)  # a permutation of the kept samples
        kept = _counts(drawn, n).float()
        kept_counts += kept
        expected_weight += kept * sampler.weights(torch.arange(n))
    assert bool((kept_counts[~low] == epochs).all())  # above-mean samples are never pruned
    total = int(low.sum()) * epochs
    kept_share = float(kept_counts[low].sum()) / total
    assert abs(kept_share - (1 - ratio)) < 4 * math.sqrt(ratio * (1 - ratio) / total)
    # unbiased: kept share * weight 1/(1-r) is 1 on average for every below-mean sample
    assert abs(float(expected_weight[low].mean()) / epochs - 1.0) < 4 * math.sqrt(
        ratio / (1 - ratio) / total)


def test_infobatch_uses_all_data_in_the_final_epochs():
    sampler = InfoBatchSampler(100, total_epochs=8, prune_ratio=0.5, delta=0.75)
    assert [sampler.prunes_in(e) for e in range(8)] == [True] * 6 + [False] * 2
    # delta * total_epochs counted in integers: 0.55 * 100 is 55.00000000000001 in floats.
    rounded_up = InfoBatchSampler(10, total_epochs=100, delta=0.55)
    assert rounded_up.pruning_epochs == 55 and not rounded_up.prunes_in(55)
    assert InfoBatchSampler(100, total_epochs=4, delta=0.6).pruning_epochs == 3  # epochs 0-2 < 2.4
    for epoch in range(8):
        sampler.set_epoch(epoch)
        _feed(sampler, torch.linspace(0, 1, 100))
    assert sorted(sampler) == list(range(100))
    assert bool((sampler.weights(torch.arange(100)) == 1).all())


# --- the original's position-keyed weights ------------------------------------------------------

def test_position_bug_weights_ignore_each_samples_own_loss():
    n = 2000
    losses = torch.rand(n, generator=_generator(11)) * 3
    demo = position_keyed_weights(losses, 0.1, 0.01, _generator(12))
    kept = n - 200 + 20
    assert demo.num_kept == kept
    assert bool((demo.received[kept:] == 0).all()) and bool((demo.received[:kept] > 0).all())
    assert int(demo.drawable.sum()) == kept
    with_zero = position_keyed_weights(torch.tensor([0.0, 0.0, 1.0, 2.0]), 0.25, 0.0)
    assert with_zero.num_kept == 3 and with_zero.drawable.tolist() == [False, True, True, False]
    intended = demo.intended > 0
    assert torch.corrcoef(torch.stack([demo.intended[intended], losses[intended]]))[0, 1] > 0.9999
    r = torch.corrcoef(torch.stack([demo.received[:kept], losses[:kept]]))[0, 1]
    assert abs(float(r)) < 4 / math.sqrt(kept)


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


# --- the experiment runner and its summary ------------------------------------------------------

def _record(method, seed, accuracy, samples, seconds, shares):
    return RunRecord(method, seed, accuracy, samples, seconds, shares)


def test_cost_to_accuracy_and_claim_table_on_hand_made_records():
    uniform = [_record("uniform", s, [0.1, 0.5, 0.8, 0.9 + s / 100], [0, 10, 20, 30],
                       [0, 2.0, 4.0, 6.0], [1.0, 1.0, 1.0]) for s in (0, 1)]
    fast = [_record("fast", s, [0.1, 0.92, 0.95, 0.96], [0, 10, 15, 20], [0, 1.0, 2.0, 3.0],
                    [1.0, 0.5, 0.3]) for s in (0, 1)]
    never = [_record("never", 0, [0.1, 0.2, 0.3, 0.4], [0, 10, 20, 30], [0, 2, 4, 6], [1, 1, 1])]
    records = uniform + fast + never
    target = reachable_target(records)
    assert target == 0.9
    assert cost_to_accuracy(fast[0], target, "samples") == 10
    assert cost_to_accuracy(never[0], target) == math.inf
    rows = {row["method"]: row for row in claim_table(records, target, RunSettings(transient_epochs=1))}
    assert rows["fast"]["speed-up (time)"] == pytest.approx(6.0 / 1.0)
    assert rows["fast"]["speed-up (samples)"] == pytest.approx(30 / 10)
    assert rows["fast"]["samples vs baseline"] == pytest.approx(20 / 30)
    assert rows["fast"]["unique share per steady epoch"] == pytest.approx(0.4)
    assert rows["never"]["speed-up (samples)"] == 0.0 and rows["never"]["reached target"] == 0
    assert rows["uniform"]["final accuracy"] == pytest.approx(0.905)
    table = claim_table_markdown(list(rows.values()), {"method": "claim"})
    assert table.count("\n") == 2 + 3 and "| claim |" in table
    with pytest.raises(ValueError, match="cost"):
        cost_to_accuracy(fast[0], 0.5, "steps")
    with pytest.raises(ValueError, match="method"):
        reachable_target(fast)


def test_run_method_counts_samples_and_distinct_draws():
    generator = _generator(16)
    data = IndexedDataset(torch.randn(48, 1, 28, 28, generator=generator),
                          torch.randint(0, 10, (48,), generator=generator))
    settings = RunSettings(epochs=3, batch_size=48, transient_epochs=1)
    records = {method: run_method(method, data, data, settings, seed=0) for method in METHODS}
    for record in records.values():
        assert len(record.accuracy) == len(record.samples) == len(record.seconds) == 4
        assert record.samples[0] == 0 and record.seconds == sorted(record.seconds)
    assert records["uniform"].samples == [0, 48, 96, 144]
    assert records["uniform"].unique_share == [1.0, 1.0, 1.0]
    sizes = SGDSSampler(48, 1).epoch_sizes(3)
    assert records["SGD-S"].samples[1:] == [sum(sizes[:k]) for k in (1, 2, 3)]
    assert all(share < 1.0 for share in records["SGD-S"].unique_share[1:])  # drawn with replacement
    # same seed, same initial model: every method starts from the same test accuracy
    assert len({record.accuracy[0] for record in records.values()}) == 1
    with pytest.raises(ValueError, match="method"):
        make_sampler("sgd-s", 10, settings, _generator())


def _tiny_digits(n: int = 96, seed: int = 17) -> IndexedDataset:
    """n 4x4 'images' whose class (of 3) is readable from a few pixels: learnable in a few epochs."""
    generator = _generator(seed)
    targets = torch.arange(n) % 3
    inputs = 0.3 * torch.randn(n, 1, 4, 4, generator=generator)
    inputs[torch.arange(n), 0, 0, targets] += 2.0
    return IndexedDataset(inputs, targets)


def test_run_schedule_spends_exactly_the_planned_samples_on_a_cosine_schedule():
    data = _tiny_digits()
    n = len(data)
    settings = ScheduleSettings(epochs=6, batch_size=16, lr=0.2, hidden=(8,), delta=0.5)
    records = {method: run_schedule(method, data, data, settings, seed=3)
               for method in SCHEDULE_METHODS}
    pruning_epochs = InfoBatchSampler(n, 6, delta=0.5).pruning_epochs
    assert pruning_epochs == 3
    for record in records.values():
        assert len(record.accuracy) == len(record.samples) == len(record.seconds) == 7
        assert len(record.cpu_seconds) == 7 and len(record.planned) == len(record.lr) == 6
        assert record.samples[0] == 0 and record.seconds[0] == record.cpu_seconds[0] == 0.0
        assert record.seconds == sorted(record.seconds)
        assert record.cpu_seconds == sorted(record.cpu_seconds)
        # every epoch back-propagates exactly its plan
        assert [b - a for a, b in zip(record.samples, record.samples[1:])] == record.planned
        # the learning rate follows the cosine from lr to 0, one step per epoch
        expected = [0.2 * 0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]
        assert record.lr == pytest.approx(expected)
    uniform, infobatch = records["uniform"], records["InfoBatch"]
    assert uniform.planned == [n] * 6 and uniform.candidates == [0] * 6
    assert uniform.unique_share == [1.0] * 6
    # InfoBatch: a full first epoch (nothing seen), pruning epochs drop at most their candidates,
    # the annealing epochs use all data
    assert infobatch.planned[0] == n and infobatch.candidates[0] == 0
    assert infobatch.planned[pruning_epochs:] == [n] * (6 - pruning_epochs)
    assert infobatch.candidates[pruning_epochs:] == [0] * (6 - pruning_epochs)
    for epoch in range(1, pruning_epochs):
        assert 0 < infobatch.candidates[epoch] < n
        assert n - infobatch.candidates[epoch] <= infobatch.planned[epoch] < n
        assert infobatch.unique_share[epoch] == pytest.approx(infobatch.planned[epoch] / n)
    # same seed, same initial model; and both learn the tiny task
    assert uniform.accuracy[0] == infobatch.accuracy[0]
    assert min(uniform.accuracy[-1], infobatch.accuracy[-1]) > 0.9
    # repeatable: the same seed gives the same run
    again = run_schedule("InfoBatch", data, data, settings, seed=3)
    assert again.accuracy == infobatch.accuracy and again.planned == infobatch.planned


def test_compare_schedule_pairs_methods_by_seed():
    data = _tiny_digits(48)
    settings = ScheduleSettings(epochs=2, batch_size=16, hidden=(4,))
    records = compare_schedule(data, data, settings, seeds=[5, 2], progress=False)
    assert [(r.seed, r.method) for r in records] == [(5, "uniform"), (5, "InfoBatch"),
                                                     (2, "uniform"), (2, "InfoBatch")]
    finals = final_accuracies(records)
    assert finals["uniform"] == [records[2].accuracy[-1], records[0].accuracy[-1]]  # seed order
    with pytest.raises(ValueError, match="different seeds"):
        final_accuracies(records[:3])
    rows = {row["method"]: row for row in schedule_table(records)}
    assert rows["uniform"]["samples vs baseline"] == 1.0 and rows["uniform"]["difference"] == 0.0
    assert rows["InfoBatch"]["epochs"] == 2 and rows["InfoBatch"]["seeds"] == 2
    ratios = [records[k + 1].samples[-1] / records[k].samples[-1] for k in (0, 2)]
    assert rows["InfoBatch"]["samples vs baseline"] == pytest.approx(sum(ratios) / 2)
    differences = [records[k + 1].accuracy[-1] - records[k].accuracy[-1] for k in (0, 2)]
    assert rows["InfoBatch"]["difference"] == pytest.approx(sum(differences) / 2)
    low, high = rows["InfoBatch"]["difference low"], rows["InfoBatch"]["difference high"]
    assert low <= rows["InfoBatch"]["difference"] <= high
    with pytest.raises(ValueError, match="baseline"):
        schedule_table(records, baseline="SGD-S")
    with pytest.raises(ValueError, match="method"):
        run_schedule("SGD-S", data, data, settings, seed=0)
    with pytest.raises(ValueError, match="epochs"):
        run_schedule("uniform", data, data, ScheduleSettings(epochs=0), seed=0)


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


def test_the_unbiased_variant_draws_with_a_floor_that_caps_its_weights():
    settings = RunSettings(transient_epochs=1, unbiased_uniform_mix=0.25)
    losses = torch.tensor([1e-6, 1e-3, 1.0, 5.0] * 10)
    weights = {}
    for method in ("SGD-S", "SGD-S unbiased"):
        sampler = make_sampler(method, 40, settings, _generator())
        sampler.set_epoch(0)
        _feed(sampler, losses)
        sampler.set_epoch(1)
        weights[method] = sampler.weights(torch.arange(40))
        assert sampler.uniform_mix == (0.25 if method == "SGD-S unbiased" else 0.0)
    assert float(weights["SGD-S unbiased"].max()) <= 1 / 0.25 + 1e-5
    assert bool((weights["SGD-S"] == 1).all())
