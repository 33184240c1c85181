"""The SGD-S notebook's runner: position-keyed weights, runs, cost-to-accuracy and the claim table."""

import math

import pytest
import torch

from curriclab.core.data import IndexedDataset
from curriclab.experiments.sgd_s_resampling import (
    METHODS,
    SCHEDULE_METHODS,
    RunSettings,
    ScheduleSettings,
    claim_table,
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
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler
from tests.helpers.sampling import _feed, _generator, _record

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the position-keyed weights of Zakka's SGD-S script (blog-code, pr-lr) ------------------------------------------------------

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


# --- the long schedule of InfoBatch's own regime ------------------------------------------------

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
