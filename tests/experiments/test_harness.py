"""The experiment harness: specs, splits, the seeded runs, budgets, cadence, selection on
validation, the result record and the comparisons (checked against hand computations)."""

import math

import pandas as pd
import pytest
import torch
from scipy.stats import ttest_rel

from curriclab.core.data import make_loader
from curriclab.core.protocol import SampleMethod
from curriclab.core.training import evaluate, seed_everything, train_epoch
from curriclab.experiments.harness.arms import ARM_METHODS, ArmSetup
from curriclab.experiments.harness.results import (
    Results, cost_to_target, paired_costs, paired_table, validation_target,
)
from curriclab.experiments.harness.runner import build_model, run, run_arm, tune
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits

pytestmark = pytest.mark.usefixtures("mnist_train", "one_thread")  # skips without MNIST

DATA = DataSpec(train_size=400, validation_size=200, test_size=300)
SMALL = Study("small", DATA, ModelSpec("mlp", (16,)), TrainSpec(lr=0.05, batch_size=50, epochs=2),
              arms=(Arm("uniform"),), seeds=(0, 1), eval_every=3)


class _Seen(SampleMethod):
    def __init__(self, n: int):
        self.counts = torch.zeros(n, dtype=torch.long)

    def objective(self, index, losses):
        self.counts.index_add_(0, index, torch.ones_like(index))


@pytest.fixture
def seen_arm(monkeypatch):
    """An arm method that trains on the even training indices and records what it saw."""
    def build(context, every: int = 2):
        seen = _Seen(len(context.train))
        keep = torch.arange(0, len(context.train), every)
        return ArmSetup(methods=[seen], train_indices=keep,
                        collect=lambda: {"counts": seen.counts.clone(), "kept": float(len(keep))},
                        cost={"samples": 1000.0, "seconds": 2.5})
    monkeypatch.setitem(ARM_METHODS, "test_seen", build)


def test_splits_are_disjoint_stratified_and_drawn_from_training_data(mnist_train):
    splits = load_splits(DataSpec(train_size=1000, validation_size=500, holdout_size=300,
                                  test_size=200))
    sources = [set(s.source_indices.tolist()) for s in (splits.train, splits.validation,
                                                        splits.holdout)]
    assert [len(s) for s in sources] == [1000, 500, 300]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    shares = torch.bincount(mnist_train.targets).double() / len(mnist_train)
    counts = torch.bincount(splits.validation.targets, minlength=10).double()
    assert (counts - 500 * shares).abs().max() < 1  # stratified: every class its quota
    assert len(splits.test) == 200 and not splits.corrupted.any()


def test_label_noise_corrupts_exactly_the_training_share_and_only_training():
    clean = load_splits(DataSpec(train_size=1000, validation_size=500))
    noisy = load_splits(DataSpec(train_size=1000, validation_size=500, label_noise=0.2))
    changed = noisy.train.targets != clean.train.targets
    assert int(noisy.corrupted.sum()) == 200 and torch.equal(changed, noisy.corrupted)
    assert torch.equal(noisy.validation.targets, clean.validation.targets)


def test_a_uniform_run_is_exactly_the_hand_written_loop():
    study = SMALL.replace(eval_every=0, seeds=(3,))
    _, final, _ = run_arm(study, study.arms[0], 3)
    splits = load_splits(DATA)
    seed_everything(3)
    model = build_model(study.model, splits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = make_loader(splits.train, 50, shuffle=True,
                         generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        train_epoch(model, loader, optimizer, progress=False)
    assert final["test_accuracy"] == evaluate(model, splits.test).accuracy
    assert final["steps"] == 16 and final["samples"] == 800


def test_adding_an_arm_moves_no_other_arm():
    alone = run(SMALL, progress=False)
    more = run(SMALL.replace(arms=(Arm("SGD-S", "sgds", {"transient_epochs": 1}), Arm("uniform"))),
               progress=False)
    pick = [r for r in more.finals if r["arm"] == "uniform"]
    for a, b in zip(alone.finals, pick):
        assert a["test_accuracy"] == b["test_accuracy"] and a["samples"] == b["samples"]


def test_step_budget_stops_mid_epoch_and_cadence_is_every_k_steps():
    study = SMALL.replace(train=TrainSpec(lr=0.05, batch_size=50, steps=11), seeds=(0,))
    results = run(study, progress=False)
    steps = [row["step"] for row in results.curves]
    assert steps == [0, 3, 6, 9, 11]  # every 3 steps, and the last step
    assert results.finals[0]["steps"] == 11 and results.finals[0]["samples"] == 550
    seconds = [row["seconds"] for row in results.curves]
    assert seconds == sorted(seconds) and seconds[0] == 0.0


def test_select_best_tests_the_best_on_validation_model():
    results = run(SMALL.replace(select="best", seeds=(0,)), progress=False)
    curve = results.curve_frame()
    best = curve.loc[curve["validation_accuracy"].idxmax()]
    final = results.finals[0]
    assert final["chosen_step"] == best["step"]
    assert final["validation_accuracy"] == best["validation_accuracy"]


def test_train_indices_restrict_the_draws_and_keep_training_split_keys(seen_arm):
    study = SMALL.replace(arms=(Arm("half", "test_seen"),), seeds=(0,))
    results = run(study, progress=False)
    counts = results.artifacts[("half", 0)]["counts"]
    assert torch.equal(counts[0::2], torch.full((200,), 2)) and not counts[1::2].any()
    final = results.finals[0]
    assert final["kept"] == 200.0 and final["extra_samples"] == 1000.0


def test_extra_cost_is_added_to_the_cost_to_target(seen_arm):
    study = SMALL.replace(arms=(Arm("uniform"), Arm("half", "test_seen")), seeds=(0,))
    results = run(study, progress=False)
    with_extra = cost_to_target(results, 0.0, "samples")
    without = cost_to_target(results, 0.0, "samples", include_extra=False)
    assert with_extra["cost"].tolist() == [0.0, 1000.0] and without["cost"].tolist() == [0.0, 0.0]


def test_results_round_trip_through_json(tmp_path):
    results = run(SMALL.replace(seeds=(0,)), progress=False)
    results.finals[0]["never"] = math.inf
    loaded = Results.load(results.save(tmp_path / "r.json"))
    assert loaded.study == results.study and loaded.curves == results.curves
    assert math.isnan(loaded.finals[0]["never"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="result record"):
        Results.load(tmp_path / "bad.json")


def _record(finals, curves=()):
    arms = tuple(Arm(name) for name in dict.fromkeys(row["arm"] for row in finals))
    return Results(Study("hand", arms=arms, seeds=(0, 1, 2)), list(curves), list(finals), {})


def test_paired_table_matches_scipy():
    a, b = [0.91, 0.93, 0.90, 0.95], [0.90, 0.90, 0.91, 0.92]
    finals = [{"arm": arm, "seed": s, "test_accuracy": v}
              for arm, values in (("base", b), ("new", a)) for s, v in enumerate(values)]
    table = paired_table(_record(finals), "test_accuracy", scale=100).set_index("arm")
    interval = ttest_rel(a, b).confidence_interval(0.95)
    assert table.loc["new", "difference"] == pytest.approx(100 * (sum(a) - sum(b)) / 4)
    assert table.loc["new", "low"] == pytest.approx(100 * interval.low)
    assert table.loc["new", "high"] == pytest.approx(100 * interval.high)
    assert math.isnan(table.loc["base", "difference"])


def test_targets_and_costs_by_hand():
    curves = [{"arm": arm, "seed": seed, "step": step, "samples": 10 * step, "seconds": step,
               "validation_accuracy": acc}
              for arm, seed, points in (
                  ("base", 0, [(0, .1), (5, .8), (9, .9)]), ("base", 1, [(0, .1), (4, .85)]),
                  ("fast", 0, [(0, .1), (2, .9)]), ("fast", 1, [(0, .1), (3, .7)]))
              for step, acc in points]
    finals = [{"arm": a, "seed": s} for a in ("base", "fast") for s in (0, 1)]
    record = _record(finals, curves)
    assert validation_target(record, "base") == pytest.approx(0.85)
    costs = cost_to_target(record, 0.85, "samples")
    assert costs["cost"].tolist() == [90.0, 40.0, 20.0, math.inf]
    table = paired_costs(costs, "base").set_index("arm")
    assert table.loc["fast", "reached"] == 1 and table.loc["fast", "ratio to baseline"] == 20 / 90
    assert "difference" not in table.columns or math.isnan(table.loc["fast", "difference"])


def test_tune_picks_each_arms_best_validation_value_and_never_reads_test(monkeypatch):
    import curriclab.experiments.harness.runner as run_module

    reads = []
    original = run_module.evaluate
    monkeypatch.setattr(run_module, "evaluate",
                        lambda model, data, **kw: reads.append(len(data)) or original(model, data))
    tuned, rows = tune(SMALL.replace(seeds=(0,)), [0.001, 0.05], progress=False)
    frame = pd.DataFrame(rows)
    assert 300 not in reads  # the test split (300 samples) was never evaluated
    best = frame.loc[frame["validation_accuracy"].idxmax()]
    assert tuned.arms[0].train["lr"] == best["lr"] and frame["chosen"].sum() == 1


@pytest.mark.parametrize("make, name", [
    (lambda: TrainSpec(lr=-1), "lr"), (lambda: TrainSpec(schedule="step"), "schedule"),
    (lambda: DataSpec(label_noise=1.5), "label_noise"), (lambda: ModelSpec("resnet"), "name"),
    (lambda: Arm("a", train={"lrr": 1}), "lrr"),
    (lambda: Study("s", arms=(Arm("a"), Arm("a"))), "unique"),
    (lambda: Study("s", select="best", track=("test",)), "validation"),
    (lambda: Study("s", seeds=()), "seeds"),
])
def test_bad_specs_are_refused_by_name(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_unknown_arm_method_and_bad_params_are_named():
    with pytest.raises(ValueError, match="method must be one of"):
        run(SMALL.replace(arms=(Arm("x", "nope"),)), progress=False)
    with pytest.raises(ValueError, match="bad params"):
        run(SMALL.replace(arms=(Arm("x", "sgds", {"speed": 2}),)), progress=False)


def test_study_round_trips_through_its_dict():
    study = SMALL.replace(arms=(Arm("a", "sgds", {"unbiased": True}, {"lr": 0.2}),))
    assert Study.from_dict(study.to_dict()) == study


def test_a_selection_arm_forwards_its_candidates_and_back_propagates_its_choice(monkeypatch):
    from curriclab.methods.batch_selection import TopLossSelection

    monkeypatch.setitem(ARM_METHODS, "test_top_loss", lambda context: ArmSetup(
        methods=[TopLossSelection(10, context.train_spec.batch_size)]))
    study = SMALL.replace(arms=(Arm("top", "test_top_loss"),), seeds=(0,))
    final = run(study, progress=False).finals[0]
    assert final["forwarded"] == 800 and final["samples"] == 16 * 10 and final["steps"] == 16
