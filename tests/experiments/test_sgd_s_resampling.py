"""Notebook 04's study: the position-keyed weights, the per-epoch counts, equal-budget arms, the
fair comparisons and costs to a target (against hand computations and scipy), and the fair run."""

import math

import pytest
import torch
from scipy.stats import ttest_rel

from curriclab.experiments.harness import Arm, DataSpec, Results, Study, TrainSpec, run_arm
from curriclab.experiments.sgd_s_resampling import (
    EpochCounts,
    budget_arm_name,
    cached_run,
    costs_to_target,
    equal_budget_arm,
    fair_comparisons,
    long_study,
    position_keyed_weights,
    run_fair,
    short_study,
)
from curriclab.methods.infobatch import InfoBatchSampler, below_mean
from curriclab.methods.sampling import SGDSSampler
from tests.helpers.sampling import _feed, _generator

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the position-keyed weights of Zakka's SGD-S script (blog-code, pr-lr) ----------------------

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


def test_draw_share_of_the_heaviest_weights_by_hand():
    losses = torch.tensor([8.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1])
    demo = position_keyed_weights(losses, 0.1, 0.0)  # prunes the 0.1, keeps ids 0..8 in order
    assert demo.num_kept == 9 and demo.received[:9].tolist() == losses[:9].tolist()
    total = float(losses[:9].sum())
    assert demo.draw_share_of_heaviest(0.1) == pytest.approx(8.0 / total)  # one of 9 samples
    assert demo.draw_share_of_heaviest(0.3) == pytest.approx(10.0 / total)  # three of 9
    assert demo.draw_share_of_heaviest(1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fraction"):
        demo.draw_share_of_heaviest(0.0)


# --- per-epoch counts ---------------------------------------------------------------------------

def test_epoch_counts_count_samples_distinct_draws_and_candidates():
    counts = EpochCounts(6)
    counts.objective(torch.tensor([0, 1, 1, 2]), torch.ones(4))
    counts.objective(torch.tensor([2, 0]), torch.ones(2))
    counts.after_epoch(0)
    counts.objective(torch.arange(6), torch.ones(6))
    counts.after_epoch(1)
    assert counts.samples == [6, 6] and counts.distinct_share == pytest.approx([0.5, 1.0])
    assert counts.collect(steady_from=1)["steady_distinct_share"] == pytest.approx(1.0)
    assert math.isnan(counts.collect(steady_from=5)["steady_distinct_share"])
    # InfoBatch: the candidates of epoch e + 1 are the below-mean samples when its plan is made
    sampler = InfoBatchSampler(8, total_epochs=4, delta=0.5, generator=_generator(3))
    infobatch = EpochCounts(8, sampler)
    losses = torch.tensor([0.1, 0.2, 0.1, 3.0, 0.1, 0.2, 4.0, 0.3])
    sampler.set_epoch(0)
    _feed(sampler, losses)
    sampler.after_epoch(0)  # plans epoch 1 (a pruning epoch: 1 < 0.5 * 4)
    infobatch.after_epoch(0)
    sampler.after_epoch(1)  # plans epoch 2 (annealing)
    infobatch.after_epoch(1)
    assert infobatch.candidates == [0, int(below_mean(losses).sum()), 0] == [0, 6, 0]


# --- equal budgets, comparisons and costs on hand-made records ----------------------------------

def _record(finals, curves=()):
    arms = tuple(dict.fromkeys(row["arm"] for row in finals))
    study = Study("hand", train=TrainSpec(batch_size=10, epochs=8),
                  arms=tuple(Arm(name) for name in arms), seeds=(0, 1, 2))
    return Results(study, list(curves), list(finals), {})


def _finals(arm, accuracies, samples):
    return [{"arm": arm, "seed": seed, "test_accuracy": a, "samples": s}
            for seed, (a, s) in enumerate(zip(accuracies, samples))]


def test_equal_budget_arm_spends_the_methods_mean_samples():
    record = _record(_finals("uniform", [0.9] * 3, [800] * 3)
                     + _finals("InfoBatch", [0.9] * 3, [480, 500, 521]))
    by_steps = equal_budget_arm(record, "InfoBatch")
    assert by_steps.name == budget_arm_name("InfoBatch") == "uniform, InfoBatch's samples"
    # 100 samples per epoch at batch 10: 5 whole epochs (50 steps), then 0.33 samples -> 0 steps
    assert by_steps.train == {"steps": 50} and by_steps.method == "uniform"
    ragged = _record(_finals("uniform", [0.9] * 3, [8 * 95] * 3)  # 95 per epoch: 10 steps each
                     + _finals("SGD-S", [0.9] * 3, [95 + 95 + 47] * 3))
    assert equal_budget_arm(ragged, "SGD-S").train == {"steps": 10 + 10 + 5}  # 47 / 10 -> 5
    by_epochs = equal_budget_arm(record, "InfoBatch", by="epochs")
    assert by_epochs.train == {"epochs": 5}  # 8 epochs x 500.33 / 800 = 5.003
    with pytest.raises(ValueError, match="by"):
        equal_budget_arm(record, "InfoBatch", by="seconds")
    with pytest.raises(ValueError, match="no runs"):
        equal_budget_arm(record, "SGD-S")


def test_fair_comparisons_match_scipys_paired_t_interval():
    uniform, short = [0.90, 0.92, 0.95], [0.88, 0.91, 0.90]
    method = [0.91, 0.90, 0.93]
    record = _record(_finals("uniform", uniform, [800] * 3)
                     + _finals("InfoBatch", method, [500] * 3)
                     + _finals(budget_arm_name("InfoBatch"), short, [500] * 3)
                     + _finals("SGD-S", uniform, [800] * 3))
    table = fair_comparisons(record, ["InfoBatch", "SGD-S"])
    assert table["budget"].tolist() == ["same epochs", "same samples", "same epochs"]
    for row, reference in zip(table.to_dict("records"), (uniform, short)):
        interval = ttest_rel(method, reference).confidence_interval(0.95)
        assert row["difference"] == pytest.approx(100 * (sum(method) - sum(reference)) / 3)
        assert (row["low"], row["high"]) == pytest.approx((100 * interval.low,
                                                           100 * interval.high))
    assert table.loc[0, "samples ratio"] == pytest.approx(500 / 800)
    assert (table.loc[0, "lower"], table.loc[0, "higher"]) == (2, 1)
    assert (table.loc[1, "lower"], table.loc[1, "higher"]) == (1, 2)
    assert table.loc[2, "difference"] == 0.0


def test_costs_to_target_read_the_first_evaluation_reaching_it():
    curves = []
    for seed in range(3):
        for step, (u, f) in enumerate([(0.5, 0.6), (0.8, 0.9), (0.95, 0.96)]):
            curves += [{"arm": "uniform", "seed": seed, "step": step, "samples": 100 * step,
                        "seconds": 2.0 * step, "validation_accuracy": u},
                       {"arm": "fast", "seed": seed, "step": step, "samples": 60 * step + seed,
                        "seconds": 1.0 * step, "validation_accuracy": f}]
    record = _record(_finals("uniform", [0.9] * 3, [200] * 3)
                     + _finals("fast", [0.9] * 3, [120] * 3), curves)
    table = costs_to_target(record, 0.85).set_index(["cost", "arm"])
    # uniform reaches 0.85 at step 2 (200 samples, 4 s); fast at step 1 (60 + seed, 1 s)
    assert table.loc[("samples", "fast"), "mean cost"] == pytest.approx(61.0)
    assert table.loc[("samples", "fast"), "speed-up"] == pytest.approx(600 / 183)
    assert table.loc[("samples", "fast"), "difference"] == pytest.approx(61 - 200)
    assert table.loc[("seconds", "fast"), "speed-up"] == pytest.approx(4.0)
    assert table.loc[("seconds", "uniform"), "speed-up"] == pytest.approx(1.0)
    never = costs_to_target(record, 0.99).set_index(["cost", "arm"])
    assert never.loc[("samples", "fast"), "reached"] == 0
    assert math.isnan(never.loc[("samples", "fast"), "speed-up"])
    # a seed the baseline did not run is left out of the speed-up, not a KeyError
    extra = [dict(row, seed=3) for row in curves if row["arm"] == "fast" and row["seed"] == 0]
    longer = _record(_finals("uniform", [0.9] * 3, [200] * 3)
                     + _finals("fast", [0.9] * 4, [120] * 4), curves + extra)
    table = costs_to_target(longer, 0.85).set_index(["cost", "arm"])
    assert table.loc[("samples", "fast"), "speed-up"] == pytest.approx(600 / 183)


# --- runs on MNIST (skipped without it) ----------------------------------------------------------

@pytest.mark.usefixtures("mnist_train")
def test_counted_arms_spend_exactly_their_plans():
    study = short_study(192, 64, 64, epochs=4, seeds=(0,), eval_every=2)
    counted = {}
    for arm in study.arms:
        curve, final, artifacts = run_arm(study, arm, 0)
        counted[arm.name] = (final, artifacts)
        assert sum(artifacts["epoch_samples"]) == final["samples"] == curve[-1]["samples"]
        assert [row["step"] for row in curve] == list(range(0, final["steps"], 2)) + [
            final["steps"]]
    assert counted["uniform"][1]["epoch_samples"] == [192] * 4
    assert counted["uniform"][0]["steady_distinct_share"] == 1.0
    sizes = SGDSSampler(192, 2).epoch_sizes(4)
    for name in ("SGD-S", "SGD-S unbiased"):
        final, artifacts = counted[name]
        assert artifacts["epoch_samples"] == sizes
        shares = artifacts["epoch_distinct_share"]
        assert shares[:2] == [1.0, 1.0] and max(shares[2:]) < 1.0  # drawn with replacement
        assert final["steady_distinct_share"] == pytest.approx(sum(shares[2:]) / 2)
    final, artifacts = counted["InfoBatch"]
    sampler = artifacts["sampler"]
    assert isinstance(sampler, InfoBatchSampler) and sampler.pruning_epochs == 4
    samples, candidates = artifacts["epoch_samples"], artifacts["epoch_candidates"]
    assert samples[0] == 192 and candidates[0] == 0
    for epoch in range(1, 4):
        assert 0 < candidates[epoch] < 192
        assert 192 - candidates[epoch] <= samples[epoch] < 192


@pytest.mark.usefixtures("mnist_train")
def test_run_fair_tunes_every_arm_alike_and_adds_equal_budget_baselines():
    study = long_study(160, 64, 64, epochs=3, seeds=(0, 1), eval_every=0)
    results, tuning = run_fair(study, (0.05, 0.2), ["InfoBatch"], by="epochs", progress=False)
    names = ["uniform", "InfoBatch", budget_arm_name("InfoBatch")]
    assert [arm.name for arm in results.study.arms] == names
    for name in names:
        rows = tuning[tuning["arm"] == name]
        assert rows["lr"].tolist() == [0.05, 0.2] and rows["chosen"].sum() == 1
        best = rows.loc[rows["validation_accuracy"].idxmax(), "lr"]
        assert results.study.arm(name).train["lr"] == best
    samples = results.final_values("samples")
    share = sum(samples["InfoBatch"]) / sum(samples["uniform"])
    assert results.study.arm(names[2]).train["epochs"] == max(1, round(3 * share))
    assert {row["arm"] for row in results.finals} == set(names)
    assert len(results.finals) == 6 and all("test_accuracy" in row for row in results.finals)


@pytest.mark.usefixtures("mnist_train")
def test_cached_run_trains_a_spec_once():
    study = Study("cache", DataSpec(train_size=100, validation_size=50, test_size=50),
                  train=TrainSpec(batch_size=50), arms=(Arm("uniform"),), seeds=(0,))
    first = cached_run(study)
    assert cached_run(study.replace()) is first
    assert cached_run(study.replace(seeds=(1,))) is not first
